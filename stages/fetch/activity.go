package fetch

import (
	"maps"
	"math"
	"sort"
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
	// TokenWait counts inputs waiting for their domain's rate-limit token,
	// by domain.
	TokenWait map[string]int
	// LeaseWait counts inputs waiting for the pool to lease them a proxy.
	LeaseWait int
	// Requests counts requests in flight (connecting, sending or reading),
	// by proxy id ("direct" without a pool).
	Requests map[string]int
	// DomainRequests counts requests in flight by domain.
	DomainRequests map[string]int
	// Backoff counts inputs waiting out a backoff before their next attempt.
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
	// once: today the global limit, as there is no per-domain control yet.
	Limit int
}

// Activity returns what the stage's inputs are doing now. Safe for
// concurrent use while the stage runs.
func (s *Stage) Activity() Activity {
	a := s.act.snapshot()
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

// Domains returns the rate limits of the domains seen recently, sorted by
// domain. Safe for concurrent use.
func (s *Stage) Domains() []DomainState {
	s.mu.Lock()
	out := make([]DomainState, 0, len(s.limiters))
	for name, d := range s.limiters {
		r := float64(d.lim.Limit())
		if math.IsInf(r, 1) {
			r = -1
		}
		out = append(out, DomainState{Domain: name, Rate: r, Burst: d.lim.Burst(), Limit: s.cfg.Concurrency})
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Domain < out[j].Domain })
	return out
}

// state is one thing an input can be doing inside the stage.
type state int

const (
	stateToken   state = iota // waiting for a domain token
	stateLease                // waiting for a proxy lease
	stateRequest              // in a request through a proxy
	stateBackoff              // waiting before a retry
)

// activity counts inputs per state. The zero value is ready to use; safe
// for concurrent use.
type activity struct {
	mu        sync.Mutex
	token     map[string]int // by domain
	lease     int
	requests  map[string]int // by proxy
	domainReq map[string]int // by domain
	backoff   int
}

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
	case stateToken:
		bump(&a.token, domain)
	case stateLease:
		a.lease += n
	case stateRequest:
		bump(&a.requests, proxy)
		bump(&a.domainReq, domain)
	case stateBackoff:
		a.backoff += n
	}
}

func (a *activity) snapshot() Activity {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Activity{
		TokenWait:      maps.Clone(a.token),
		LeaseWait:      a.lease,
		Requests:       maps.Clone(a.requests),
		DomainRequests: maps.Clone(a.domainReq),
		Backoff:        a.backoff,
	}
}
