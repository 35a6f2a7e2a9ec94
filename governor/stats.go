package governor

import (
	"sort"
	"time"
)

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
	// Parked counts the domain's tasks handed back as parked
	// (Config.ParkAfter).
	Parked int64
	// Dropped counts the domain's queued jobs let go unattempted because
	// they were no longer wanted (Job.Gone).
	Dropped int64
}

// Stats is a snapshot of the governor.
type Stats struct {
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
// "direct"), as the fetch stage measures them.
type PoolStats struct {
	Proxy string
	// Size is the keep-alive pool size (the proxy's share of the
	// concurrency plus 20%).
	Size int
	// Open counts open connections now, in use or idle; Idle is Open
	// less Busy (never negative): kept-alive connections waiting for a
	// request; Dials counts the connections made.
	Open, Idle, Dials int64
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

// Activity is a snapshot of what the fetch stage's inputs are doing right
// now, for live gauges and the stall watchdog. Maps hold only keys with a
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

// Waiting returns the jobs queued per domain (only domains with some) and
// the jobs backing off.
func (g *Governor[T]) Waiting() (queued map[string]int, backoff int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, d := range g.live {
		if len(d.queue) > 0 {
			if queued == nil {
				queued = map[string]int{}
			}
			queued[d.name] += len(d.queue)
		}
	}
	return queued, len(g.delayed)
}

// Stats returns a snapshot; domains are sorted by name. Spooled is left
// to the caller, which spools.
func (g *Governor[T]) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := Stats{
		Limit: g.sem.Size(), InFlight: g.sem.Held(), Admitted: g.admitted,
		Pending: g.pending, Delayed: len(g.delayed),
		BodyBytes: g.budget.Used(), BodyBytesPeak: g.budget.Peak(), BodyBudget: g.budget.Max(),
	}
	for _, d := range g.domains {
		st.Domains = append(st.Domains, d.statsLocked())
	}
	sort.Slice(st.Domains, func(a, b int) bool { return st.Domains[a].Domain < st.Domains[b].Domain })
	return st
}

// StatsOf returns the snapshots of the named hosts that have a domain
// entry, in the order given: Stats' Domains for a few hosts, at a cost
// that does not grow with the table.
func (g *Governor[T]) StatsOf(hosts []string) []DomainStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]DomainStats, 0, len(hosts))
	for _, h := range hosts {
		if d, ok := g.domains[h]; ok {
			out = append(out, d.statsLocked())
		}
	}
	return out
}

func (d *domain[T]) statsLocked() DomainStats {
	return DomainStats{
		Domain: d.name, Pattern: d.lim.Pattern, Limits: d.lim,
		Level: d.ctl.Level(), Rate: d.rate(), Concurrency: d.limit, Baseline: d.ctl.Baseline(),
		Raises: d.ctl.raises, Cuts: d.ctl.cuts, LastChange: d.ctl.reason,
		InFlight: d.inflight, Queued: len(d.queue),
		Attempts: d.attempts, OK: d.ok, Status429: d.s429, Status503: d.s503, Failed: d.failed,
		Pauses: d.pauses, TokenWait: d.tokenWait, Dispatched: d.dispatched, PausedUntil: d.pausedUntil,
		Parked: d.parked, Dropped: d.dropped,
	}
}

// Entries counts the governor's per-key state, for bounds checks and the
// sluice_state_entries gauge.
type Entries struct {
	// Domains counts domain entries: their queue, buckets, controller
	// and counters. Idle ones are forgotten (see Governor.Entries).
	Domains int
	// ProxySlots counts (proxy, domain) buckets over every domain: at most
	// Domains × the pool's proxies.
	ProxySlots int
	// Caps counts the rate caps (CapRate) kept, with or without a domain.
	Caps int
}

// Entries returns the sizes of the governor's tables. A domain with
// nothing queued, in flight or backing off, no pause in force and full
// buckets is forgotten a minute after its last use (ten when the
// adaptive controller had cut it), so the table holds the domains used in
// the last minute or two, plus those paused or cut; a domain seen again
// starts afresh from its limits, as careful as a new one.
func (g *Governor[T]) Entries() Entries {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := Entries{Domains: len(g.domains), Caps: len(g.caps)}
	for _, d := range g.domains {
		d.pm.Lock()
		e.ProxySlots += len(d.proxies)
		d.pm.Unlock()
	}
	return e
}
