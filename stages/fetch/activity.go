package fetch

import (
	"maps"
	"sync"

	"github.com/sluicehq/sluice/governor"
)

// Activity returns what the stage's inputs are doing now. Safe for
// concurrent use while the stage runs.
func (s *Stage) Activity() governor.Activity {
	a := s.act.snapshot()
	a.TokenWait, a.Backoff = s.gov.Waiting()
	a.Workers = s.cfg.Concurrency
	a.InFlight = int(s.flow.Stats().InFlight())
	busy := a.LeaseWait + a.Backoff
	for _, n := range a.TokenWait {
		busy += n
	}
	for _, n := range a.Requests {
		busy += n
	}
	a.Handover = max(a.InFlight-busy, 0)
	return a
}

// Domains returns the governor's domains, sorted by domain (see
// governor.DomainStats; Rate is +Inf when unlimited). Safe for concurrent
// use.
func (s *Stage) Domains() []governor.DomainStats { return s.gov.Stats().Domains }

// state is one thing an input can be doing inside the stage.
type state int

const (
	stateLease   state = iota // waiting for a proxy lease
	stateRequest              // in a request through a proxy
)

// activity counts inputs in the states a worker goes through (the
// governor counts those it holds). The zero value is ready to use; safe
// for concurrent use.
type activity struct {
	mu        sync.Mutex
	lease     int
	requests  map[string]int // by proxy
	domainReq map[string]int // by domain
	started   map[string]*busyStats
}

// busyStats measure a proxy's requests over the run, for the pool's
// utilisation: how many started, the most in flight at once, and the sum
// of the number in flight as each started.
type busyStats struct{ requests, peak, sum int64 }

// enter records that an input is now in st (domain and proxy as they
// apply) and returns the function that records it has left.
func (a *activity) enter(st state, domain, proxy string) (leave func()) {
	a.add(st, domain, proxy, 1)
	return func() { a.add(st, domain, proxy, -1) }
}

func (a *activity) add(st state, domain, proxy string, n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	bump := func(m *map[string]int, k string) {
		if *m == nil {
			*m = map[string]int{}
		}
		if (*m)[k] += n; (*m)[k] <= 0 {
			delete(*m, k)
		}
	}
	switch st {
	case stateLease:
		a.lease += n
	case stateRequest:
		bump(&a.requests, proxy)
		bump(&a.domainReq, domain)
		if n > 0 {
			if a.started == nil {
				a.started = map[string]*busyStats{}
			}
			b := a.started[proxy]
			if b == nil {
				b = &busyStats{}
				a.started[proxy] = b // bounded: one per proxy of the pool
			}
			busy := int64(a.requests[proxy])
			b.requests++
			b.sum += busy
			b.peak = max(b.peak, busy)
		}
	}
}

// busy returns the run's busy statistics of proxy (zero if none started).
func (a *activity) busy(proxy string) busyStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	if b := a.started[proxy]; b != nil {
		return *b
	}
	return busyStats{}
}

func (a *activity) snapshot() governor.Activity {
	a.mu.Lock()
	defer a.mu.Unlock()
	return governor.Activity{
		LeaseWait:      a.lease,
		Requests:       maps.Clone(a.requests),
		DomainRequests: maps.Clone(a.domainReq),
	}
}
