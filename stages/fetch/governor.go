package fetch

import (
	"sync"
	"sync/atomic"
	"time"
)

// Semaphore is a counting semaphore whose size can move while permits are
// held: shrinking it below the permits held lets no new permit out until
// enough are released. It never blocks; the governor's dispatcher tries it
// and waits for a release event instead. Safe for concurrent use.
type Semaphore struct {
	mu   sync.Mutex
	size int
	held int
}

// NewSemaphore returns a semaphore of the given size.
func NewSemaphore(size int) *Semaphore { return &Semaphore{size: max(size, 0)} }

// TryAcquire takes a permit if one is free and reports whether it did.
func (s *Semaphore) TryAcquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held >= s.size {
		return false
	}
	s.held++
	return true
}

// Release returns a permit. It panics on a release without an acquire.
func (s *Semaphore) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held == 0 {
		panic("fetch: semaphore released more than acquired")
	}
	s.held--
}

// Resize sets the number of permits.
func (s *Semaphore) Resize(size int) {
	s.mu.Lock()
	s.size = max(size, 0)
	s.mu.Unlock()
}

// Size and Held report the number of permits and how many are out.
func (s *Semaphore) Size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// Held reports how many permits are out.
func (s *Semaphore) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// byteBudget bounds the bytes of bodies held in memory. take never blocks:
// a reader that cannot take spools to disk instead. Safe for concurrent use.
type byteBudget struct {
	max  int64
	used atomic.Int64
	peak atomic.Int64
}

// take reserves n bytes if they fit and reports whether they did.
func (b *byteBudget) take(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			for p := b.peak.Load(); u+n > p && !b.peak.CompareAndSwap(p, u+n); p = b.peak.Load() {
			}
			return true
		}
	}
}

// give returns n bytes taken before.
func (b *byteBudget) give(n int64) {
	if n != 0 {
		b.used.Add(-n)
	}
}

// exhausted reports whether no byte is left: no new attempt is admitted.
func (b *byteBudget) exhausted() bool { return b.used.Load() >= b.max }

// DomainStats is a snapshot of one domain in the governor.
type DomainStats struct {
	Domain  string // the host
	Pattern string // the Domains entry that applies, "" for the default
	Limits  Limits
	// Level is the adaptive controller's fraction of the maximum; Rate and
	// Concurrency are the limits in force (Rate is +Inf when unlimited).
	Level       float64
	Rate        float64
	Concurrency int
	Baseline    time.Duration // the controller's latency baseline
	Raises      int
	Cuts        int
	LastChange  string // why the level last moved

	InFlight int
	Queued   int
	// Attempts counts finished attempts; OK those the controller counted
	// as healthy; Status429 and Status503 the overload answers; Failed the
	// other failures that counted against the domain.
	Attempts, OK, Status429, Status503, Failed int64
	// Pauses counts Retry-After pauses of the domain or of one (proxy,
	// domain) pair.
	Pauses int64
	// TokenWait is the total time tasks waited at the head of the domain's
	// queue before they got a token and a slot; Dispatched counts them.
	TokenWait  time.Duration
	Dispatched int64
	// PausedUntil is the end of a Retry-After pause of the whole domain.
	PausedUntil time.Time
}

// GovernorStats is a snapshot of the governor.
type GovernorStats struct {
	// Limit is the global semaphore's size now: the sum of the active
	// domains' limits, capped by Concurrency and the staggered admission;
	// InFlight the permits held.
	Limit, InFlight int
	// Admitted is the staggered start's admission count (Concurrency once
	// the ramp is over).
	Admitted int
	// Pending is the tasks held (queued, backing off or in flight);
	// Delayed those waiting out a retry backoff.
	Pending, Delayed int
	// BodyBytes and BodyBytesPeak are the body budget used now and at most;
	// BodyBudget its size. Spooled counts bodies written to disk.
	BodyBytes, BodyBytesPeak, BodyBudget int64
	Spooled                              int64
	Domains                              []DomainStats
}

// PoolStats describe one HTTP client's connection pool (one per proxy, or
// "direct").
type PoolStats struct {
	Proxy string
	// Size is the keep-alive pool size (the proxy's share of the
	// concurrency plus 20%).
	Size int
	// Open counts open connections now; Dials the connections made.
	Open, Dials int64
	// Busy and MaxBusy count requests in flight now and at most; Requests
	// the requests made; BusySum sums Busy as each request started, so
	// BusySum / Requests / Size is the mean utilisation seen by a request.
	Busy, MaxBusy, Requests, BusySum int64
}

// Utilisation is the mean share of the pool busy when a request started.
func (p PoolStats) Utilisation() float64 {
	if p.Requests == 0 || p.Size == 0 {
		return 0
	}
	return float64(p.BusySum) / float64(p.Requests) / float64(p.Size)
}
