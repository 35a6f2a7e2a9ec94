package fetch

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
)

// The governor schedules attempts. It holds the tasks taken from the
// stage's input in one FIFO queue per domain (and, while they wait out a
// retry backoff, in a timer heap), and one dispatcher goroutine hands an
// attempt to an idle worker only when everything it needs is there at
// once: a free worker, a permit of the global semaphore, body budget, a
// free slot under the domain's adaptive concurrency limit, a token of the
// domain's bucket, no Retry-After pause, and a (proxy, domain) bucket with
// a token. So a worker never waits for a token, a domain without one
// never holds a worker, and a stalled domain holds at most its own limit.
// Domains with work are served round-robin.
//
// Locks: governor.mu, then domainState.pm. The proxy pool calls the
// (proxy, domain) gate with its own lock held, and the gate takes only
// domainState.pm, so neither lock is ever held while calling the pool.

// execFunc makes one attempt of j. allow, if not nil, must be passed to
// the pool as proxy.Request.Allow.
type execFunc func(ctx context.Context, j *job, allow func(id string) bool) (attemptResult, error)

// job is one task inside the governor.
type job struct {
	task    record.Task
	dom     *domainState
	f       record.Fetched    // what the task has become so far
	tried   []string          // proxy ids already tried
	attempt int               // attempts started
	readyAt time.Time         // end of the retry backoff
	queued  time.Time         // when it joined its domain's queue
	epoch   uint64            // the controller's epoch at dispatch
	res     *rate.Reservation // the domain token, returned if no proxy can take it
	index   int               // in the delayed heap
}

type eventKind int

const (
	evFinished eventKind = iota // the task is done; the worker passes it on
	evRetry                     // the attempt failed; back off and retry
	evNotReady                  // no proxy had a token: requeue, no attempt made
	evFreed                     // the worker passed a finished task on
)

// event is what a worker tells the dispatcher.
type event struct {
	kind eventKind
	job  *job
	res  attemptResult
	err  error
	seen []string // proxies the gate was asked about
	at   time.Time
}

// proxySlot is one (proxy, domain) pair.
type proxySlot struct {
	bucket      *rate.Limiter
	pausedUntil time.Time
}

// domainState is one domain's queue and limits.
type domainState struct {
	name   string
	lim    Limits
	ctl    *Controller
	bucket *rate.Limiter // nil: unlimited rate
	limit  int           // concurrency in force

	queue       []*job
	inflight    int
	delayed     int  // jobs in the governor's backoff heap
	live        bool // in governor.live
	pausedUntil time.Time
	notBefore   time.Time // after a failed proxy lease
	leaseWait   time.Duration
	lastUsed    time.Time

	attempts, ok, s429, s503, failed, pauses, dispatched int64
	tokenWait                                            time.Duration

	pm      sync.Mutex // guards proxies
	proxies map[string]*proxySlot
}

// governor is the scheduler behind a Stage. See the comment at the top.
type governor struct {
	cfg      *Config
	now      func() time.Time
	rnd      func() float64
	exec     execFunc
	proxyIDs []string // the pool's proxies, fixed at start
	workers  int
	sem      *Semaphore
	budget   *byteBudget
	spooled  func() int64
	// refuse, if set, is the URL policy's verdict on a task, asked before
	// the task joins its domain's queue: a refused task never waits for a
	// token, a slot or a proxy.
	refuse func(record.Task) error

	mu       sync.Mutex // guards everything below
	domains  map[string]*domainState
	live     []*domainState // domains with queued or in-flight work
	rr       int
	delayed  jobHeap
	pending  int // queued + delayed + in flight
	free     int // idle workers
	started  bool
	admitted int
	next     time.Time // next staggered admission
}

// maxIdleDomains bounds the domain map: past it, domains idle for a
// minute, with nothing queued, backing off or paused, are forgotten.
const maxIdleDomains = 10000

func newGovernor(cfg *Config, exec execFunc, proxyIDs []string, budget *byteBudget, spooled func() int64) *governor {
	g := &governor{
		cfg: cfg, now: cfg.Now, rnd: rand.Float64, exec: exec, proxyIDs: proxyIDs,
		workers: cfg.Concurrency, sem: NewSemaphore(0), budget: budget, spooled: spooled,
		domains: map[string]*domainState{},
	}
	return g
}

// domainLocked returns the state of host, creating it.
func (g *governor) domainLocked(host string, now time.Time) *domainState {
	if d, ok := g.domains[host]; ok {
		return d
	}
	if len(g.domains) >= maxIdleDomains {
		for k, d := range g.domains {
			if !d.live && d.inflight == 0 && d.delayed == 0 && now.Sub(d.lastUsed) > time.Minute && now.After(d.pausedUntil) {
				delete(g.domains, k)
			}
		}
	}
	lim := limitsFor(matchDomain(g.cfg.Domains, host), g.cfg, len(g.proxyIDs))
	d := &domainState{name: host, lim: lim, ctl: newDomainController(g.cfg.Adaptive, lim),
		proxies: map[string]*proxySlot{}, lastUsed: now}
	if !math.IsInf(lim.MaxRate, 1) {
		d.bucket = newBucket(lim.MaxRate, lim.Burst, now)
	}
	d.applyLevel(now)
	g.domains[host] = d
	return d
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
func (d *domainState) applyLevel(now time.Time) {
	lvl := d.ctl.Level()
	d.limit = max(1, int(math.Round(lvl*float64(d.lim.MaxConcurrency))))
	if d.bucket != nil {
		d.bucket.SetLimitAt(now, rate.Limit(lvl*d.lim.MaxRate))
	}
}

func (d *domainState) rate() float64 {
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
func (d *domainState) slotLocked(id string, now time.Time) *proxySlot {
	s := d.proxies[id]
	if s == nil {
		s = &proxySlot{bucket: newBucket(d.lim.ProxyRate, d.lim.ProxyBurst, now)}
		d.proxies[id] = s
	}
	return s
}

// slotReady returns when the slot can take a request: now or earlier if
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
func (g *governor) readyAt(d *domainState, now time.Time) (bool, time.Time) {
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
	if d.lim.ProxyRate > 0 && len(g.proxyIDs) > 0 {
		d.pm.Lock()
		defer d.pm.Unlock()
		var earliest time.Time
		for _, id := range g.proxyIDs {
			s := d.proxies[id]
			if s == nil {
				return true, time.Time{}
			}
			at := s.readyAt(now)
			if !at.After(now) {
				return true, time.Time{}
			}
			if earliest.IsZero() || at.Before(earliest) {
				earliest = at
			}
		}
		return false, earliest
	}
	return true, time.Time{}
}

// gate returns the proxy.Request.Allow function for one attempt of d: it
// takes a token from the (proxy, domain) bucket of the proxy the pool is
// about to lease, unless that pair is paused or out of tokens. seen
// collects the ids asked about. Nil when d has no per-proxy buckets.
func (g *governor) gate(d *domainState, seen *[]string) func(string) bool {
	if d.lim.ProxyRate <= 0 {
		return nil
	}
	return func(id string) bool {
		now := g.now()
		d.pm.Lock()
		defer d.pm.Unlock()
		*seen = append(*seen, id)
		s := d.slotLocked(id, now)
		if s.pausedUntil.After(now) {
			return false
		}
		return s.bucket.AllowN(now, 1)
	}
}

// add takes a new task into its domain's queue.
func (g *governor) addLocked(j *job, now time.Time) {
	d := g.domainLocked(j.task.URL.Hostname(), now)
	j.dom = d
	j.queued = now
	d.queue = append(d.queue, j)
	d.lastUsed = now
	g.pending++
	g.liveLocked(d)
}

func (g *governor) liveLocked(d *domainState) {
	if !d.live {
		d.live = true
		g.live = append(g.live, d)
	}
}

// interval draws one staggered-start interval from [StaggerMin,
// StaggerMax], scaled down when the workers would otherwise take longer
// than Ramp to be admitted, so the whole ramp is bounded however many
// workers there are.
func (g *governor) interval() time.Duration {
	lo, hi := float64(g.cfg.StaggerMin), float64(g.cfg.StaggerMax)
	if steps := float64(g.workers - 1); steps > 0 && steps*hi > float64(g.cfg.Ramp) {
		scale := float64(g.cfg.Ramp) / (steps * hi)
		lo, hi = lo*scale, hi*scale
	}
	return time.Duration(lo + g.rnd()*(hi-lo))
}

// admitLocked advances the staggered start and returns the next admission
// (zero: none pending).
func (g *governor) admitLocked(now time.Time) time.Time {
	if g.cfg.StaggerMax < 0 {
		g.admitted = g.workers
		return time.Time{}
	}
	if !g.started {
		if g.pending == 0 {
			return time.Time{}
		}
		g.started, g.admitted, g.next = true, 1, now.Add(g.interval())
	}
	for g.admitted < g.workers && !now.Before(g.next) {
		g.admitted++
		g.next = g.next.Add(g.interval())
	}
	if g.admitted >= g.workers {
		return time.Time{}
	}
	return g.next
}

// dispatchLocked starts every attempt that can start at now, sending each
// job on jobs (which has room: one slot per worker), and returns when the
// dispatcher should look again if no event comes first (zero: never).
func (g *governor) dispatchLocked(now time.Time, jobs chan<- *job) time.Time {
	for len(g.delayed) > 0 && !g.delayed[0].readyAt.After(now) {
		j := heap.Pop(&g.delayed).(*job)
		j.dom.delayed--
		j.queued = now
		j.dom.queue = append([]*job{j}, j.dom.queue...)
		g.liveLocked(j.dom)
	}
	wake := g.admitLocked(now)
	if len(g.delayed) > 0 {
		wake = earliest(wake, g.delayed[0].readyAt)
	}
	// Drop idle domains from the live list and size the semaphore.
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
	g.sem.Resize(min(sum, g.workers, g.admitted))

	for g.free > 0 && !g.budget.exhausted() && g.sem.TryAcquire() {
		d, w := g.pickLocked(now)
		wake = earliest(wake, w)
		if d == nil {
			g.sem.Release()
			break
		}
		j := d.queue[0]
		d.queue[0] = nil
		d.queue = d.queue[1:]
		if d.bucket != nil {
			j.res = d.bucket.ReserveN(now, 1)
		}
		if j.f.Started.IsZero() {
			j.f.Started = now
		}
		d.tokenWait += now.Sub(j.queued)
		d.dispatched++
		j.epoch = d.ctl.Epoch()
		j.attempt++
		d.inflight++
		d.lastUsed = now
		g.free--
		jobs <- j
	}
	return wake
}

// pickLocked returns the next ready domain in round-robin order, or nil
// and the earliest time one may be ready.
func (g *governor) pickLocked(now time.Time) (*domainState, time.Time) {
	var wake time.Time
	n := len(g.live)
	for i := 0; i < n; i++ {
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
func (g *governor) handleLocked(ev event) {
	if ev.kind == evFreed {
		g.free++
		return
	}
	j, d, now := ev.job, ev.job.dom, ev.at
	d.inflight--
	g.sem.Release()
	if ev.kind == evNotReady {
		if j.res != nil {
			j.res.CancelAt(now)
		}
		j.attempt--
		d.dispatched--
		j.queued = now
		d.queue = append([]*job{j}, d.queue...)
		g.notReadyLocked(d, ev.seen, now)
		g.free++
		return
	}
	d.leaseWait = 0
	d.attempts++
	sig, counts := signalOf(ev.res, ev.err)
	if counts {
		switch {
		case ev.res.status == http.StatusTooManyRequests:
			d.s429++
		case ev.res.status == http.StatusServiceUnavailable:
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
	g.pauseLocked(d, ev.res, now)
	switch ev.kind {
	case evRetry:
		heap.Push(&g.delayed, j)
		d.delayed++
		g.free++
	case evFinished:
		g.pending--
	}
}

// pauseLocked honours a Retry-After on 429 (that proxy for that domain,
// or the domain when direct) and 503 (the domain).
func (g *governor) pauseLocked(d *domainState, res attemptResult, now time.Time) {
	if res.retryAfter <= 0 || res.status != http.StatusTooManyRequests && res.status != http.StatusServiceUnavailable {
		return
	}
	until := now.Add(min(res.retryAfter, g.cfg.MaxRetryAfter))
	d.pauses++
	if res.status == http.StatusTooManyRequests && res.proxy != "" && res.proxy != directID && d.lim.ProxyRate > 0 {
		d.pm.Lock()
		s := d.slotLocked(res.proxy, now)
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
func (g *governor) notReadyLocked(d *domainState, seen []string, now time.Time) {
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
func signalOf(res attemptResult, err error) (s Signal, counts bool) {
	lat := time.Duration(res.timings.FirstByteMS) * time.Millisecond
	switch {
	case err == nil:
		return Signal{OK: true, Latency: lat, HasLatency: true}, true
	case errors.Is(err, failure.ErrProxy), failure.ClassOf(err) == failure.Canceled:
		return Signal{}, false
	case res.status == http.StatusTooManyRequests || res.status == http.StatusServiceUnavailable:
		return Signal{Overload: true, Latency: lat, HasLatency: true}, true
	case res.status >= 500 || res.status == http.StatusForbidden:
		return Signal{Latency: lat, HasLatency: true}, true
	case res.status > 0:
		return Signal{OK: true, Latency: lat, HasLatency: true}, true
	}
	switch failure.ClassOf(err) {
	case failure.Timeout, failure.Connect, failure.Protocol, failure.TLS:
		return Signal{}, true // the site did not answer properly
	}
	return Signal{}, false // refused before the site was reached (policy, DNS, ...)
}

// abandonLocked empties the governor after the hard stop and returns the
// tasks it held.
func (g *governor) abandonLocked() []*job {
	var out []*job
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

// loop is the dispatcher: it owns the scheduling decisions until the
// input is closed and every task has been passed on, or ctx ends. It
// closes jobs when it returns; abandon is called for each task still held
// after ctx ended.
func (g *governor) loop(ctx context.Context, intake <-chan *job, jobs chan<- *job, events <-chan event, abandon func(*job)) {
	defer close(jobs)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	g.mu.Lock()
	g.free = g.workers
	g.mu.Unlock()
	open := true
	for {
		g.mu.Lock()
		now := g.now()
		wake := g.dispatchLocked(now, jobs)
		done := !open && g.pending == 0 && g.free == g.workers
		take := open && g.pending < g.cfg.Pending
		g.mu.Unlock()
		if done {
			return
		}
		var in <-chan *job
		if take {
			in = intake
		}
		var tick <-chan time.Time
		if !wake.IsZero() {
			timer.Reset(max(wake.Sub(now), 0))
			tick = timer.C
		}
		select {
		case j, ok := <-in:
			if !ok {
				open = false
				continue
			}
			g.mu.Lock()
			g.addLocked(j, g.now())
			g.mu.Unlock()
		case ev := <-events:
			g.mu.Lock()
			g.handleLocked(ev)
			g.mu.Unlock()
		case <-tick:
		case <-ctx.Done():
			g.mu.Lock()
			left := g.abandonLocked()
			g.mu.Unlock()
			for _, j := range left {
				abandon(j)
			}
			return
		}
	}
}

// waiting returns the tasks queued per domain (only domains with some)
// and the tasks backing off.
func (g *governor) waiting() (queued map[string]int, backoff int) {
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

// Stats returns a snapshot; domains are sorted by name.
func (g *governor) Stats() GovernorStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := GovernorStats{
		Limit: g.sem.Size(), InFlight: g.sem.Held(), Admitted: g.admitted,
		Pending: g.pending, Delayed: len(g.delayed),
		BodyBytes: g.budget.used.Load(), BodyBytesPeak: g.budget.peak.Load(), BodyBudget: g.budget.max,
	}
	if g.spooled != nil {
		st.Spooled = g.spooled()
	}
	for _, d := range g.domains {
		st.Domains = append(st.Domains, DomainStats{
			Domain: d.name, Pattern: d.lim.Pattern, Limits: d.lim,
			Level: d.ctl.Level(), Rate: d.rate(), Concurrency: d.limit, Baseline: d.ctl.Baseline(),
			Raises: d.ctl.raises, Cuts: d.ctl.cuts, LastChange: d.ctl.reason,
			InFlight: d.inflight, Queued: len(d.queue),
			Attempts: d.attempts, OK: d.ok, Status429: d.s429, Status503: d.s503, Failed: d.failed,
			Pauses: d.pauses, TokenWait: d.tokenWait, Dispatched: d.dispatched, PausedUntil: d.pausedUntil,
		})
	}
	sort.Slice(st.Domains, func(a, b int) bool { return st.Domains[a].Domain < st.Domains[b].Domain })
	return st
}

// jobHeap orders jobs by readyAt.
type jobHeap []*job

func (h jobHeap) Len() int           { return len(h) }
func (h jobHeap) Less(a, b int) bool { return h[a].readyAt.Before(h[b].readyAt) }
func (h jobHeap) Swap(a, b int) {
	h[a], h[b] = h[b], h[a]
	h[a].index, h[b].index = a, b
}
func (h *jobHeap) Push(x any) {
	j := x.(*job)
	j.index = len(*h)
	*h = append(*h, j)
}
func (h *jobHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return j
}

// runWorkers runs the stage body: an intake goroutine that moves tasks
// from the input into the governor, Concurrency workers that make the
// attempts the dispatcher hands them, and the dispatcher itself. It
// returns when everything taken was passed on, or after ctx ended.
func (g *governor) run(ctx context.Context, in flow.Inbox[record.Task], out flow.Outbox[record.Fetched], st *flow.Stats) {
	intake := make(chan *job)
	jobs := make(chan *job, g.workers)
	events := make(chan event, 2*g.workers)
	send := func(f record.Fetched) {
		if f.Err != nil {
			st.AddError()
		}
		_ = out.Send(ctx, f) // fails only on the hard stop: the input stays unacknowledged
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // owner: run; exits when the input closes or ctx ends
		defer wg.Done()
		defer close(intake)
		for {
			t, ok := in.Recv(ctx)
			if !ok {
				return
			}
			if t.Err != nil || t.URL == nil {
				f := record.Fetched{Task: t, Started: g.now(), Err: t.Err}
				if f.Err == nil {
					f.Err = failure.Errorf(failure.Internal, "task without a URL")
				}
				send(f)
				continue
			}
			if g.refuse != nil {
				if err := g.refuse(t); err != nil {
					// One attempt, refused before any network access.
					send(record.Fetched{Task: t, Started: g.now(), Attempts: 1, Err: err})
					continue
				}
			}
			select {
			case intake <- &job{task: t, f: record.Fetched{Task: t}}:
			case <-ctx.Done():
				send(canceled(record.Fetched{Task: t}, ctx))
				return
			}
		}
	}()
	for range g.workers {
		wg.Add(1)
		go func() { // owner: run; exits when the dispatcher closes jobs
			defer wg.Done()
			for j := range jobs {
				g.work(ctx, j, events, send)
			}
		}()
	}
	g.loop(ctx, intake, jobs, events, func(j *job) { send(canceled(j.f, ctx)) })
	wg.Wait()
}

func canceled(f record.Fetched, ctx context.Context) record.Fetched {
	f.Err = failure.New(failure.Canceled, failure.ErrPermanent, context.Cause(ctx))
	return f
}

// work makes one attempt of j and reports it; a finished task is passed on
// before the worker reports itself free, so a blocked output holds the
// worker (that is the backpressure).
func (g *governor) work(ctx context.Context, j *job, events chan<- event, send func(record.Fetched)) {
	var seen []string
	res, err := g.safeExec(ctx, j, g.gate(j.dom, &seen))
	now := g.now()
	ev := event{job: j, res: res, err: err, seen: seen, at: now}
	switch {
	case errors.Is(err, proxy.ErrNoneAllowed) && ctx.Err() == nil:
		ev.kind = evNotReady
	case err == nil:
		ev.kind = evFinished
	case !failure.Retryable(err) || j.attempt >= g.cfg.MaxAttempts || ctx.Err() != nil:
		ev.kind = evFinished
	default:
		ev.kind = evRetry
		delay := Backoff(g.cfg.BackoffBase, g.cfg.BackoffMax, j.attempt, g.cfg.Jitter, g.rnd)
		if res.retryAfter > 0 {
			delay = max(delay, min(res.retryAfter, g.cfg.MaxRetryAfter))
		}
		j.readyAt = now.Add(delay)
		g.cfg.Logger.Debug().Str("url", j.task.URL.Redacted()).Str("proxy", res.proxy).Int("attempt", j.attempt).
			Str("class", string(failure.ClassOf(err))).Dur("backoff", delay).Msg("retrying")
	}
	if ev.kind != evNotReady {
		j.f.Attempts = j.attempt
		j.f.Proxy = res.proxy
		if res.proxy != "" && res.proxy != directID {
			j.tried = append(j.tried, res.proxy)
		}
	}
	if ev.kind == evFinished {
		f := j.f
		if err == nil {
			f.FinalURL, f.Status, f.Header, f.Body, f.Spool, f.Truncated, f.Timings = res.finalURL, res.status, res.header, res.body, res.spool, res.truncated, res.timings
			f.Err = nil
		} else {
			f.Status, f.Err = res.status, err
		}
		f.Elapsed = now.Sub(f.Started)
		select {
		case events <- ev:
		case <-ctx.Done():
		}
		send(f)
		g.budget.give(res.held)
		select {
		case events <- event{kind: evFreed}:
		case <-ctx.Done():
		}
		return
	}
	g.budget.give(res.held)
	if ctx.Err() == nil {
		select {
		case events <- ev:
			return
		case <-ctx.Done():
		}
	}
	// The hard stop came between the attempt and the report: the task is
	// in no one else's hands, so it is passed on as canceled here.
	send(canceled(j.f, ctx))
}

// safeExec runs exec, turning a panic into an internal error.
func (g *governor) safeExec(ctx context.Context, j *job, allow func(string) bool) (res attemptResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = failure.Errorf(failure.Internal, "fetch panicked: %v", r)
		}
	}()
	return g.exec(ctx, j, allow)
}

// String describes a domain's limits in one line, for logs.
func (l Limits) String() string {
	return fmt.Sprintf("max rate %.2f/s (%s, burst %d), max concurrency %d, per proxy %.3f/s (burst %d)",
		l.MaxRate, l.RateFrom, l.Burst, l.MaxConcurrency, l.ProxyRate, l.ProxyBurst)
}
