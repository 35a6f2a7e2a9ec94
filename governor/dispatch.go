package governor

import (
	"container/heap"
	"errors"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluicehq/sluice/failure"
)

// The HTTP statuses the governor reads as signals.
const (
	statusForbidden       = 403
	statusTooManyRequests = 429
	statusUnavailable     = 503
)

// proxySlot is one (proxy, domain) pair.
type proxySlot struct {
	bucket      *rate.Limiter
	pausedUntil time.Time
}

// domain is one domain's queue and limits.
type domain[T any] struct {
	name   string
	lim    Limits
	ctl    *Controller
	bucket *rate.Limiter // nil: unlimited rate
	limit  int           // concurrency in force

	queue       []*Job[T]
	inflight    int
	delayed     int  // jobs in the governor's backoff heap
	live        bool // in Governor.live
	pausedUntil time.Time
	pauseErr    error     // the error of the answer that last paused the domain or one of its (proxy, domain) pairs
	notBefore   time.Time // after a failed proxy lease
	leaseWait   time.Duration
	lastUsed    time.Time

	attempts, ok, s429, s503, failed, pauses, dispatched, parked, dropped int64
	tokenWait                                                             time.Duration
	start                                                                 float64 // the controller's level when the domain was made

	pm      sync.Mutex // guards proxies and the jobs' seen lists
	proxies map[string]*proxySlot
}

// The domain table is bounded by forgetting idle domains. A domain is
// idle when nothing of it is queued, in flight or backing off, no
// Retry-After pause of it or of one of its (proxy, domain) pairs is in
// force, its token buckets are full again (so a new entry, which starts
// with one token, is never more permissive than the one it replaces), and
// it was last used domainIdle ago (cutIdle when the adaptive controller
// had cut it below where it starts, so a site that pushed back is
// remembered longer). Idle domains are swept at most once per domainIdle,
// and whenever the table reaches sweepLen entries (maxIdleDomains at
// first, then a quarter more than what a sweep kept, so a table of busy
// domains is not scanned on every new one).
const (
	maxIdleDomains = 10000
	domainIdle     = time.Minute
	cutIdle        = 10 * time.Minute
)

// domainLocked returns the state of host, creating it.
func (g *Governor[T]) domainLocked(host string, now time.Time) *domain[T] {
	if d, ok := g.domains[host]; ok {
		return d
	}
	if len(g.domains) >= max(g.sweepLen, maxIdleDomains) || now.Sub(g.sweptAt) >= domainIdle {
		g.forgetIdleLocked(now)
	}
	lim := g.capOfLocked(host, limitsFor(matchDomain(g.cfg.Domains, host), &g.cfg, len(g.cfg.Proxies)), now)
	d := &domain[T]{name: host, lim: lim, ctl: newDomainController(g.cfg.Adaptive, lim),
		proxies: map[string]*proxySlot{}, lastUsed: now}
	d.start = d.ctl.Level()
	if !math.IsInf(lim.MaxRate, 1) {
		d.bucket = newBucket(lim.MaxRate, lim.Burst, now)
	}
	d.applyLevel(now)
	g.domains[host] = d
	return d
}

// forgetIdleLocked drops the idle domains (and the rate caps no domain
// and no recent CapRate keeps).
func (g *Governor[T]) forgetIdleLocked(now time.Time) {
	for k, d := range g.domains {
		if d.idle(now) {
			g.keepCapLocked(k, d.lastUsed)
			delete(g.domains, k)
		}
	}
	g.forgetCapsLocked(now)
	g.sweptAt = now
	g.sweepLen = len(g.domains) + maxIdleDomains/4
}

// idle reports whether d can be forgotten at now without loss: a domain
// made again from its limits would start no less careful than d is.
func (d *domain[T]) idle(now time.Time) bool {
	wait := domainIdle
	if d.ctl.Level() < d.start {
		wait = cutIdle
	}
	if d.live || d.inflight > 0 || d.delayed > 0 || len(d.queue) > 0 || now.Sub(d.lastUsed) < wait ||
		d.pausedUntil.After(now) || !full(d.bucket, now) {
		return false
	}
	d.pm.Lock()
	defer d.pm.Unlock()
	for _, s := range d.proxies {
		if s.pausedUntil.After(now) || !full(s.bucket, now) {
			return false
		}
	}
	return true
}

// full reports whether b (nil: unlimited) holds its whole burst at now.
func full(b *rate.Limiter, now time.Time) bool {
	return b == nil || b.TokensAt(now) >= float64(b.Burst())
}

// newDomainController starts a domain with a known per-IP limit at
// cfg.Start and any other at its maximum: nothing is protected by holding
// it back, and 429/503 and latency still cut it.
func newDomainController(cfg Adaptive, lim Limits) *Controller {
	if lim.PerIPPerMinute > 0 {
		return NewController(cfg)
	}
	return NewControllerAt(cfg, 1)
}

// applyLevel sets the domain's rate and concurrency from its level.
func (d *domain[T]) applyLevel(now time.Time) {
	lvl := d.ctl.Level()
	d.limit = max(1, int(math.Round(lvl*float64(d.lim.MaxConcurrency))))
	if d.bucket != nil {
		d.bucket.SetLimitAt(now, rate.Limit(lvl*d.lim.MaxRate))
	}
}

func (d *domain[T]) rate() float64 {
	if d.bucket == nil {
		return math.Inf(1)
	}
	return float64(d.bucket.Limit())
}

// newBucket returns a token bucket holding one token: room to catch up
// builds only as time passes, so nothing opens with a burst.
func newBucket(r float64, burst int, now time.Time) *rate.Limiter {
	b := rate.NewLimiter(rate.Limit(r), burst)
	if burst > 1 {
		b.ReserveN(now, burst-1)
	}
	return b
}

// slotLocked returns the (proxy, domain) slot of id, creating it.
func (d *domain[T]) slotLocked(id string, now time.Time) *proxySlot {
	s := d.proxies[id]
	if s == nil {
		s = &proxySlot{bucket: newBucket(d.lim.ProxyRate, d.lim.ProxyBurst, now)}
		d.proxies[id] = s
	}
	return s
}

// readyAt returns when the slot can take a request: now or earlier if
// it can at now.
func (s *proxySlot) readyAt(now time.Time) time.Time {
	t := now
	if tok := s.bucket.TokensAt(now); tok < 1 {
		t = now.Add(tokenDelay(1-tok, float64(s.bucket.Limit())))
	}
	if s.pausedUntil.After(t) {
		t = s.pausedUntil
	}
	return t
}

// tokenDelay is how long a bucket at r tokens/s takes to gain missing
// tokens, rounded up to the microsecond so a timer set to it finds the
// token there.
func tokenDelay(missing, r float64) time.Duration {
	if r <= 0 {
		return time.Hour
	}
	d := time.Duration(math.Ceil(missing / r * 1e6))
	return (d + 1) * time.Microsecond
}

// readyAt reports whether the domain can start an attempt at now. If not,
// it returns when it might (zero: only after an event, such as an attempt
// of the domain finishing).
func (g *Governor[T]) readyAt(d *domain[T], now time.Time) (bool, time.Time) {
	if len(d.queue) == 0 || d.inflight >= d.limit {
		return false, time.Time{}
	}
	t := d.pausedUntil
	if d.notBefore.After(t) {
		t = d.notBefore
	}
	if t.After(now) {
		return false, t
	}
	if d.bucket != nil {
		if tok := d.bucket.TokensAt(now); tok < 1 {
			return false, now.Add(tokenDelay(1-tok, float64(d.bucket.Limit())))
		}
	}
	if d.lim.ProxyRate > 0 && len(g.cfg.Proxies) > 0 {
		return g.proxyReadyAt(d, now)
	}
	return true, time.Time{}
}

// proxyReadyAt reports whether one of the pool's proxies may take a
// request of d at now, or when the first may.
func (g *Governor[T]) proxyReadyAt(d *domain[T], now time.Time) (bool, time.Time) {
	d.pm.Lock()
	defer d.pm.Unlock()
	var first time.Time
	for _, id := range g.cfg.Proxies {
		s := d.proxies[id]
		if s == nil {
			return true, time.Time{}
		}
		at := s.readyAt(now)
		if !at.After(now) {
			return true, time.Time{}
		}
		first = earliest(first, at)
	}
	return false, first
}

// addLocked takes a new job into its domain's queue.
func (g *Governor[T]) addLocked(j *Job[T], now time.Time) {
	d := g.domainLocked(j.Key, now)
	j.dom = d
	j.Queued, j.waiting = now, now
	d.queue = append(d.queue, j)
	d.lastUsed = now
	g.pending++
	g.liveLocked(d)
}

func (g *Governor[T]) liveLocked(d *domain[T]) {
	if !d.live {
		d.live = true
		g.live = append(g.live, d)
	}
}

// interval draws one staggered-start interval from [StaggerMin,
// StaggerMax], scaled down when the workers would otherwise take longer
// than Ramp to be admitted, so the whole ramp is bounded however many
// workers there are.
func (g *Governor[T]) interval() time.Duration {
	lo, hi := float64(g.cfg.StaggerMin), float64(g.cfg.StaggerMax)
	if steps := float64(g.cfg.Concurrency - 1); steps > 0 && steps*hi > float64(g.cfg.Ramp) {
		scale := float64(g.cfg.Ramp) / (steps * hi)
		lo, hi = lo*scale, hi*scale
	}
	return time.Duration(lo + g.rnd()*(hi-lo))
}

// admitLocked advances the staggered start and returns the next admission
// (zero: none pending).
func (g *Governor[T]) admitLocked(now time.Time) time.Time {
	workers := g.cfg.Concurrency
	if g.cfg.StaggerMax < 0 {
		g.admitted = workers
		return time.Time{}
	}
	if !g.started {
		if g.pending == 0 {
			return time.Time{}
		}
		g.started, g.admitted, g.next = true, 1, now.Add(g.interval())
	}
	for g.admitted < workers && !now.Before(g.next) {
		g.admitted++
		g.next = g.next.Add(g.interval())
	}
	if g.admitted >= workers {
		return time.Time{}
	}
	return g.next
}

// dispatchLocked starts every attempt that can start at now, sending each
// job on jobs (which has room: one slot per worker), and returns when the
// dispatcher should look again if no event comes first (zero: never).
func (g *Governor[T]) dispatchLocked(now time.Time) time.Time {
	g.undelayLocked(now)
	wake := g.admitLocked(now)
	if len(g.delayed) > 0 {
		wake = earliest(wake, g.delayed[0].readyAt)
	}
	g.dropLocked()
	if g.cfg.ParkAfter > 0 {
		wake = earliest(wake, g.parkLocked(now))
	}
	g.sizeLocked()
	for g.free > 0 && !g.budget.Exhausted() && g.sem.TryAcquire() {
		d, w := g.pickLocked(now)
		wake = earliest(wake, w)
		if d == nil {
			g.sem.Release()
			break
		}
		g.startLocked(d, now)
	}
	return wake
}

// dropLocked hands to idle workers, as dropped, the jobs at the heads of
// the domains' queues that are no longer wanted (Job.Gone), without a
// token. A dropped job behind a wanted one waits its turn, then goes at
// once.
func (g *Governor[T]) dropLocked() {
	for _, d := range g.live {
		for g.free > 0 && len(d.queue) > 0 && d.queue[0].Gone != nil && d.queue[0].Gone() {
			j := d.queue[0]
			d.queue[0] = nil
			d.queue = d.queue[1:]
			j.Dropped = true
			d.dropped++
			g.pending--
			g.free--
			g.jobs <- j
		}
	}
}

// parkLocked hands to idle workers, as parked, the queued jobs that
// cannot start within ParkAfter: all of a domain's when it is blocked
// (paused, or every proxy paused) past then, due when it unblocks; and
// any that has waited ParkAfter in its queue, due ParkAfter from now.
// It returns when the next waiting job passes ParkAfter (zero: none, or
// no worker is idle, and a freed worker wakes the dispatcher anyway).
func (g *Governor[T]) parkLocked(now time.Time) time.Time {
	var wake time.Time
	horizon := now.Add(g.cfg.ParkAfter)
	for _, d := range g.live {
		if len(d.queue) == 0 || g.free == 0 {
			continue
		}
		due := g.blockedUntil(d, now)
		kept := d.queue[:0]
		for _, j := range d.queue {
			switch {
			case g.free == 0:
				kept = append(kept, j)
			case due.After(horizon):
				j.ParkErr = d.pauseErr
				g.parkJobLocked(j, due)
			case !now.Before(j.waiting.Add(g.cfg.ParkAfter)):
				g.parkJobLocked(j, horizon)
			default:
				kept = append(kept, j)
				wake = earliest(wake, j.waiting.Add(g.cfg.ParkAfter))
			}
		}
		clear(d.queue[len(kept):])
		d.queue = kept
	}
	return wake
}

// blockedUntil returns until when d can start nothing whatever its
// tokens: its Retry-After pause, its wait for a proxy, and, with
// per-proxy buckets, the first of its proxies to be free again.
func (g *Governor[T]) blockedUntil(d *domain[T], now time.Time) time.Time {
	t := d.pausedUntil
	if d.notBefore.After(t) {
		t = d.notBefore
	}
	if d.lim.ProxyRate > 0 && len(g.cfg.Proxies) > 0 {
		if ok, at := g.proxyReadyAt(d, now); !ok && at.After(t) {
			t = at
		}
	}
	return t
}

// parkJobLocked hands j, taken out of its queue, to an idle worker as
// parked until due.
func (g *Governor[T]) parkJobLocked(j *Job[T], due time.Time) {
	j.Park = due
	j.dom.parked++
	g.pending--
	g.free--
	g.jobs <- j
}

// undelayLocked moves the jobs whose backoff is over to the head of their
// domains' queues.
func (g *Governor[T]) undelayLocked(now time.Time) {
	for len(g.delayed) > 0 && !g.delayed[0].readyAt.After(now) {
		j := heap.Pop(&g.delayed).(*Job[T])
		j.dom.delayed--
		j.Queued, j.waiting = now, now
		j.dom.queue = append([]*Job[T]{j}, j.dom.queue...)
		g.liveLocked(j.dom)
	}
}

// sizeLocked drops idle domains from the live list and sizes the
// semaphore: the sum of the live domains' limits, capped by the workers
// and the staggered admission.
func (g *Governor[T]) sizeLocked() {
	sum, kept := 0, g.live[:0]
	for _, d := range g.live {
		if len(d.queue) == 0 && d.inflight == 0 {
			d.live = false
			continue
		}
		kept = append(kept, d)
		sum += d.limit
	}
	clear(g.live[len(kept):])
	g.live = kept
	g.sem.Resize(min(sum, g.cfg.Concurrency, g.admitted))
}

// startLocked hands the head of d's queue to a worker.
func (g *Governor[T]) startLocked(d *domain[T], now time.Time) {
	j := d.queue[0]
	d.queue[0] = nil
	d.queue = d.queue[1:]
	if d.bucket != nil {
		j.res = d.bucket.ReserveN(now, 1)
	}
	if j.Started.IsZero() {
		j.Started = now
	}
	d.tokenWait += now.Sub(j.Queued)
	d.dispatched++
	j.epoch = d.ctl.Epoch()
	j.Attempt++
	j.seen = j.seen[:0]
	d.inflight++
	d.lastUsed = now
	g.free--
	g.jobs <- j
}

// pickLocked returns the next ready domain in round-robin order, or nil
// and the earliest time one may be ready.
func (g *Governor[T]) pickLocked(now time.Time) (*domain[T], time.Time) {
	var wake time.Time
	n := len(g.live)
	for i := range n {
		k := (g.rr + i) % n
		d := g.live[k]
		ok, at := g.readyAt(d, now)
		if ok {
			g.rr = (k + 1) % n
			return d, time.Time{}
		}
		wake = earliest(wake, at)
	}
	return nil, wake
}

func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

// handleLocked applies a worker's event.
func (g *Governor[T]) handleLocked(ev event[T]) {
	if ev.freed {
		g.free++
		return
	}
	j, d, now := ev.job, ev.job.dom, ev.at
	d.inflight--
	d.lastUsed = now
	g.sem.Release()
	if ev.verdict == NotReady {
		g.requeueLocked(j, now)
		return
	}
	d.leaseWait = 0
	d.attempts++
	g.observeLocked(d, j, ev.out, now)
	g.pauseLocked(d, ev.out, now)
	switch ev.verdict {
	case Retry:
		heap.Push(&g.delayed, j)
		d.delayed++
		g.free++
	case Park:
		d.parked++
		g.pending--
	case Finish:
		g.pending--
	}
}

// requeueLocked puts back a job no proxy could take: its domain token is
// returned, and the domain waits for a proxy.
func (g *Governor[T]) requeueLocked(j *Job[T], now time.Time) {
	d := j.dom
	if j.res != nil {
		j.res.CancelAt(now)
		j.res = nil
	}
	j.Attempt--
	d.dispatched--
	j.Queued = now
	d.queue = append([]*Job[T]{j}, d.queue...)
	d.pm.Lock()
	seen := j.seen
	d.pm.Unlock()
	g.notReadyLocked(d, seen, now)
	g.free++
}

// observeLocked counts the outcome and feeds the controller.
func (g *Governor[T]) observeLocked(d *domain[T], j *Job[T], o Outcome, now time.Time) {
	sig, counts := signalOf(o)
	if !counts {
		return
	}
	switch {
	case o.Status == statusTooManyRequests:
		d.s429++
	case o.Status == statusUnavailable:
		d.s503++
	case !sig.OK:
		d.failed++
	default:
		d.ok++
	}
	sig.Epoch, sig.At = j.epoch, now
	if d.ctl.Observe(sig) {
		d.applyLevel(now)
	}
}

// pauseLocked honours a Retry-After on 429 (that proxy for that domain,
// or the domain when direct) and 503 (the domain).
func (g *Governor[T]) pauseLocked(d *domain[T], o Outcome, now time.Time) {
	if o.RetryAfter <= 0 || o.Status != statusTooManyRequests && o.Status != statusUnavailable {
		return
	}
	until := now.Add(min(o.RetryAfter, g.cfg.MaxRetryAfter))
	d.pauses++
	d.pauseErr = o.Err
	if o.Status == statusTooManyRequests && o.Proxy != "" && d.lim.ProxyRate > 0 {
		d.pm.Lock()
		s := d.slotLocked(o.Proxy, now)
		if until.After(s.pausedUntil) {
			s.pausedUntil = until
		}
		d.pm.Unlock()
		return
	}
	if until.After(d.pausedUntil) {
		d.pausedUntil = until
	}
}

// notReadyLocked makes d wait for a proxy after the pool found none whose
// bucket had a token: until the first of the proxies it offered has one,
// or, if they all had (the pool refused them for its own reasons), for a
// doubling wait of 10 ms up to 1 s.
func (g *Governor[T]) notReadyLocked(d *domain[T], seen []string, now time.Time) {
	var at time.Time
	d.pm.Lock()
	for _, id := range seen {
		at = earliest(at, d.slotLocked(id, now).readyAt(now))
	}
	d.pm.Unlock()
	if at.After(now) {
		d.notBefore, d.leaseWait = at, 0
		return
	}
	d.leaseWait = min(max(2*d.leaseWait, 10*time.Millisecond), time.Second)
	d.notBefore = now.Add(d.leaseWait)
}

// signalOf turns an attempt's outcome into a controller signal; counts is
// false for outcomes that say nothing about the site (a proxy's failure,
// a canceled run).
func signalOf(o Outcome) (s Signal, counts bool) {
	lat := o.Latency
	class := o.class()
	switch {
	case o.Err == nil:
		return Signal{OK: true, Latency: lat, HasLatency: true}, true
	case errors.Is(o.Err, failure.ErrProxy), class == failure.Canceled:
		return Signal{}, false
	case o.Status == statusTooManyRequests || o.Status == statusUnavailable:
		return Signal{Overload: true, Latency: lat, HasLatency: true}, true
	case o.Status >= 500 || o.Status == statusForbidden:
		return Signal{Latency: lat, HasLatency: true}, true
	case o.Status > 0:
		return Signal{OK: true, Latency: lat, HasLatency: true}, true
	}
	switch class {
	case failure.Timeout, failure.Connect, failure.Protocol, failure.TLS:
		return Signal{}, true // the site did not answer properly
	}
	return Signal{}, false // refused before the site was reached (policy, DNS, ...)
}

// abandonLocked empties the governor after the hard stop and returns the
// jobs it held.
func (g *Governor[T]) abandonLocked() []*Job[T] {
	var out []*Job[T]
	for _, d := range g.domains {
		out = append(out, d.queue...)
		d.queue = nil
	}
	for _, j := range g.delayed {
		j.dom.delayed--
		out = append(out, j)
	}
	g.delayed = nil
	g.pending -= len(out)
	return out
}

// jobHeap orders jobs by readyAt.
type jobHeap[T any] []*Job[T]

func (h jobHeap[T]) Len() int           { return len(h) }
func (h jobHeap[T]) Less(a, b int) bool { return h[a].readyAt.Before(h[b].readyAt) }
func (h jobHeap[T]) Swap(a, b int) {
	h[a], h[b] = h[b], h[a]
	h[a].index, h[b].index = a, b
}
func (h *jobHeap[T]) Push(x any) {
	j := x.(*Job[T])
	j.index = len(*h)
	*h = append(*h, j)
}
func (h *jobHeap[T]) Pop() any {
	old := *h
	j := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return j
}
