package fetch

import (
	"maps"
	"math"
	"sync"
)

// Activity is a snapshot of what the stage's inputs are doing right now,
// for live gauges and the stall watchdog. Maps hold only keys with a
// non-zero count, so their size is bounded by the inputs in flight.
type Activity struct {
	// Workers is the number of fetching goroutines (the global limit).
	Workers int
	// InFlight is the number of inputs taken from the queue and not yet
	// handed to the next stage.
	InFlight int
	// TokenWait counts inputs queued in the governor for their domain, by
	// domain: waiting for a token, a slot under the domain's limit, a
	// proxy whose (proxy, domain) bucket has a token, or the end of a
	// Retry-After pause. No worker is held while they wait.
	TokenWait map[string]int
	// LeaseWait counts inputs waiting for the pool to lease them a proxy.
	LeaseWait int
	// Requests counts requests in flight (connecting, sending or reading),
	// by proxy id ("direct" without a pool).
	Requests map[string]int
	// DomainRequests counts requests in flight by domain.
	DomainRequests map[string]int
	// Backoff counts inputs waiting out a backoff before their next
	// attempt (held by the governor, not by a worker).
	Backoff int
	// Handover counts finished inputs waiting for the next stage to take
	// them: InFlight less every input in one of the states above.
	Handover int
}

// DomainState is the rate limit currently applied to one domain.
type DomainState struct {
	Domain string
	// Rate is the domain's token rate in requests per second; negative
	// means unlimited.
	Rate float64
	// Burst is the size of the domain's token bucket.
	Burst int
	// Limit is the number of requests the domain may have in flight at
	// once: its adaptive concurrency limit.
	Limit int
	// Level is the adaptive controller's fraction of the domain's maximum
	// rate and concurrency.
	Level float64
}

// Activity returns what the stage's inputs are doing now. Safe for
// concurrent use while the stage runs.
func (s *Stage) Activity() Activity {
	a := s.act.snapshot()
	a.TokenWait, a.Backoff = s.gov.waiting()
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

// Domains returns the limits in force for the domains the governor
// knows, sorted by domain. Safe for concurrent use.
func (s *Stage) Domains() []DomainState {
	st := s.gov.Stats()
	out := make([]DomainState, 0, len(st.Domains))
	for _, d := range st.Domains {
		r := d.Rate
		if math.IsInf(r, 1) {
			r = -1
		}
		out = append(out, DomainState{Domain: d.Domain, Rate: r, Burst: d.Limits.Burst, Limit: d.Concurrency, Level: d.Level})
	}
	return out
}

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

func (a *activity) snapshot() Activity {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Activity{
		LeaseWait:      a.lease,
		Requests:       maps.Clone(a.requests),
		DomainRequests: maps.Clone(a.domainReq),
	}
}
