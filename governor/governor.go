// Package governor decides when a fetch attempt may start. It holds the
// jobs handed to it in one FIFO queue per domain (and, while they wait out
// a retry backoff, in a timer heap), and one dispatcher (Run) hands a job
// to an idle worker only when everything it needs is there at once: a
// free worker, a permit of the global semaphore, body budget, a free slot
// under the domain's adaptive concurrency limit, a token of the domain's
// bucket, no Retry-After pause, and a (proxy, domain) bucket with a token.
// So a worker never waits for a token, a domain without one never holds a
// worker, and a stalled domain holds at most its own limit. Domains with
// work are served round-robin.
//
// The governor knows host keys, proxy ids and Outcomes, not HTTP: the
// fetch stage owns the workers and the attempt, takes jobs from Jobs,
// and tells the governor how each went with Report.
//
// Locks: Governor.mu, then domain.pm. A proxy pool calls the (proxy,
// domain) gate (Gate) with its own lock held, and the gate takes only
// domain.pm, so neither lock is ever held while calling the pool.
package governor

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluicehq/sluice/failure"
)

// Outcome is how one attempt went, as the governor sees it.
type Outcome struct {
	// Status is the target's HTTP status; 0 when no answer arrived.
	Status int
	// RetryAfter is the answer's Retry-After delay; 0 when none.
	RetryAfter time.Duration
	// Latency is the time to the first response byte.
	Latency time.Duration
	// Proxy is the id of the proxy the attempt went through ("" or the
	// caller's id for direct connections).
	Proxy string
	// Class is the failure's class, "" on success; when empty and Err is
	// set, it is failure.ClassOf(Err).
	Class failure.Class
	// Err is the attempt's classified error, nil on success. Its kind
	// (failure.ErrRetryable, ErrProxy ...) decides whether to retry.
	Err error
	// Held is the body budget the attempt's body holds (see Budget).
	// Report gives it back for a job that is not finished; the worker
	// gives it back through Release after passing a finished job on.
	Held int64
	// NoProxy reports that the attempt was not made: no proxy's (proxy,
	// domain) gate let it through. The job waits for a token again.
	NoProxy bool
}

func (o Outcome) class() failure.Class {
	if o.Class == "" && o.Err != nil {
		return failure.ClassOf(o.Err)
	}
	return o.Class
}

// Verdict is what becomes of a job after an attempt.
type Verdict int

const (
	// Finish: the job is done (success or final failure); the worker
	// passes it on, then calls Release.
	Finish Verdict = iota
	// Retry: the governor holds the job through a backoff and dispatches
	// it again; the worker is free.
	Retry
	// NotReady: no attempt was made (Outcome.NoProxy); the job is back at
	// the head of its domain's queue; the worker is free.
	NotReady
	// Park: the job cannot be attempted within Config.ParkAfter (a long
	// Retry-After, say); it is done here, to be parked until Job.Park.
	// The worker passes it on, then calls Release, as for Finish.
	Park
)

// Job is one item inside the governor. Item and Key are the caller's;
// the other exported fields are the governor's, readable by the worker
// that holds the job.
type Job[T any] struct {
	// Item is the caller's payload.
	Item T
	// Key is the host the job's domain is found by.
	Key string
	// Attempt counts the attempts started, this one included.
	Attempt int
	// Queued is when the job last joined its domain's queue: the start of
	// its wait for a token.
	Queued time.Time
	// Started is when the job was first dispatched.
	Started time.Time
	// Delay is the backoff before the next attempt, after Retry.
	Delay time.Duration
	// Park, when not zero, is when a parked job may be tried again. A job
	// handed to a worker with Park set is not to be attempted: the worker
	// passes it on as parked and calls Release.
	Park time.Time
	// ParkErr, for a job parked without an attempt because its domain
	// was paused, is the error of the answer that paused it; nil if none.
	ParkErr error
	// Gone, if set, reports that the job is no longer wanted (its input
	// was revoked from this process). A queued job for which it reports
	// true is handed to a worker with Dropped set as soon as it reaches
	// the head of its domain's queue: it takes no token and no slot of its
	// domain, so the inputs of a revoked partition do not spend the
	// domain's rate. The governor calls it under its lock: it must be
	// cheap and must not call the governor.
	Gone func() bool
	// Dropped: the job is handed over only to be let go (see Gone). The
	// worker must not attempt it, and calls Release.
	Dropped bool

	dom     *domain[T]
	readyAt time.Time         // end of the retry backoff
	epoch   uint64            // the controller's epoch at dispatch
	res     *rate.Reservation // the domain token, returned if no proxy can take it
	seen    []string          // proxies the gate was asked about, under dom.pm
	index   int               // in the delayed heap
	waiting time.Time         // when the job last began to wait in its domain's queue (not reset by NotReady)
}

// Governor is the scheduler. Build it with New; run its dispatcher with
// Run and its workers on Jobs. Its methods are safe for concurrent use.
type Governor[T any] struct {
	cfg    Config
	now    func() time.Time
	rnd    func() float64
	budget *Budget
	sem    *Semaphore
	jobs   chan *Job[T]
	events chan event[T]

	mu       sync.Mutex // guards everything below
	domains  map[string]*domain[T]
	live     []*domain[T] // domains with queued or in-flight work
	rr       int
	delayed  jobHeap[T]
	pending  int // queued + delayed + in flight
	free     int // idle workers
	started  bool
	admitted int
	next     time.Time           // next staggered admission
	caps     map[string]*rateCap // rate caps per host (CapRate)
	sweptAt  time.Time           // last sweep of idle domains
	sweepLen int                 // table size that asks for the next sweep
}

// event is what a worker tells the dispatcher.
type event[T any] struct {
	verdict Verdict
	freed   bool // a worker passed a finished job on
	job     *Job[T]
	out     Outcome
	at      time.Time
}

// New validates cfg, applies its defaults and returns a governor. It
// starts nothing.
func New[T any](cfg Config) (*Governor[T], error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	g := &Governor[T]{cfg: cfg, now: cfg.Now, rnd: cfg.Rand, budget: &Budget{max: cfg.BodyBudget}, sem: NewSemaphore(0),
		jobs: make(chan *Job[T], cfg.Concurrency), events: make(chan event[T], 2*cfg.Concurrency),
		domains: map[string]*domain[T]{}}
	if g.rnd == nil {
		g.rnd = rand.Float64
	}
	return g, nil
}

// Budget is the body budget: readers take from it, and what a finished
// job holds is given back through Release.
func (g *Governor[T]) Budget() *Budget { return g.budget }

// Workers is the number of workers the caller must run on Jobs
// (Config.Concurrency).
func (g *Governor[T]) Workers() int { return g.cfg.Concurrency }

// Pending is the most jobs the governor holds (Config.Pending).
func (g *Governor[T]) Pending() int { return g.cfg.Pending }

// Jobs delivers the dispatched jobs, one at a time to each idle worker.
// Run closes it when it returns.
func (g *Governor[T]) Jobs() <-chan *Job[T] { return g.jobs }

// Limits returns the limits the governor applies to host at full level.
func (g *Governor[T]) Limits(host string) Limits {
	return limitsFor(matchDomain(g.cfg.Domains, host), &g.cfg, len(g.cfg.Proxies))
}

// Gate returns the proxy-pool Allow function for j's attempt: it takes a
// token from the (proxy, domain) bucket of the proxy the pool is about to
// lease, unless that pair is paused or out of tokens. Nil when j's domain
// has no per-proxy buckets. Call it only while holding j.
func (g *Governor[T]) Gate(j *Job[T]) func(id string) bool {
	d := j.dom
	if d.lim.ProxyRate <= 0 {
		return nil
	}
	return func(id string) bool {
		now := g.now()
		d.pm.Lock()
		defer d.pm.Unlock()
		j.seen = append(j.seen, id)
		s := d.slotLocked(id, now)
		if s.pausedUntil.After(now) {
			return false
		}
		return s.bucket.AllowN(now, 1)
	}
}

// Report tells the governor how j's attempt went and returns what becomes
// of j, and for Retry the backoff before the next attempt (for Park, j.Park
// says until when). For Retry and
// NotReady the governor takes j back (and o.Held of the budget): the
// caller must not touch j again; ok is false if ctx ended first, and then
// j is in no one else's hands: the worker passes it on as canceled. For
// Finish and Park the worker passes j on and then calls Release. It blocks only
// until the dispatcher takes the report, or ctx ends.
func (g *Governor[T]) Report(ctx context.Context, j *Job[T], o Outcome) (v Verdict, backoff time.Duration, ok bool) {
	now := g.now()
	v = g.verdict(ctx, j, o, now)
	backoff = j.Delay
	ev := event[T]{verdict: v, job: j, out: o, at: now}
	if v != Finish && v != Park {
		g.budget.Give(o.Held)
		if ctx.Err() != nil {
			return v, backoff, false
		}
	}
	select {
	case g.events <- ev:
		return v, backoff, true
	case <-ctx.Done():
		return v, backoff, v == Finish || v == Park
	}
}

// verdict decides j's fate after o, setting its backoff for a retry.
func (g *Governor[T]) verdict(ctx context.Context, j *Job[T], o Outcome, now time.Time) Verdict {
	switch {
	case o.NoProxy && ctx.Err() == nil:
		return NotReady
	case o.Err == nil, !failure.Retryable(o.Err), j.Attempt >= g.cfg.MaxAttempts, ctx.Err() != nil:
		return Finish
	}
	delay := Backoff(g.cfg.BackoffBase, g.cfg.BackoffMax, j.Attempt, g.cfg.Jitter, g.rnd)
	if o.RetryAfter > 0 {
		delay = max(delay, min(o.RetryAfter, g.cfg.MaxRetryAfter))
	}
	if g.cfg.ParkAfter > 0 && delay > g.cfg.ParkAfter {
		j.Park = now.Add(delay)
		return Park
	}
	j.Delay, j.readyAt = delay, now.Add(delay)
	return Retry
}

// Release returns held bytes of the body budget and the worker to the
// governor, after the worker passed a finished job on.
func (g *Governor[T]) Release(ctx context.Context, held int64) {
	g.budget.Give(held)
	select {
	case g.events <- event[T]{freed: true}:
	case <-ctx.Done():
	}
}

// Run is the dispatcher: it takes jobs from intake into their domains'
// queues and hands them to workers on Jobs, until intake is closed and
// every job was finished and released, or ctx ends. It closes Jobs when
// it returns; abandon is called for each job still held after ctx ended.
func (g *Governor[T]) Run(ctx context.Context, intake <-chan *Job[T], abandon func(*Job[T])) {
	defer close(g.jobs)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	g.mu.Lock()
	g.free = g.cfg.Concurrency
	g.mu.Unlock()
	open := true
	for {
		g.mu.Lock()
		now := g.now()
		wake := g.dispatchLocked(now)
		done := !open && g.pending == 0 && g.free == g.cfg.Concurrency
		take := open && g.pending < g.cfg.Pending
		g.mu.Unlock()
		if done {
			return
		}
		var in <-chan *Job[T]
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
		case ev := <-g.events:
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
