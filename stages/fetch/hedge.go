package fetch

import (
	"context"
	"errors"
	"math"
	"os"
	"time"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
)

// Hedging. When an attempt's lease runs late (the pool saw it outlive the
// typical latency of its (proxy, domain) pair by a wide margin, see
// proxy.WithSlowAttempt), the same request is sent once more through
// another proxy, and the first good answer wins; the other attempt is
// canceled. A blackholed proxy then costs a request its late margin, not
// the first-byte timeout.
//
// It is on by default, within bounds that make it cheap: only for
// idempotent requests (never a POST or PATCH without an idempotency key);
// only for domains without a rate limit (a duplicate there spends no
// politeness budget; a rate-limited domain's tokens belong to the
// governor, which is not asked for a second one); at most one hedge per
// attempt; and at most a tenth of the concurrency in hedges at once.
// Config.NoHedge turns it off.

// hedgeKey is the context key under which an attempt reports its lease.
type hedgeKey struct{}

// leaseNote carries the first lease an attempt took to the hedger.
type leaseNote chan *proxy.Lease

// noteLease tells a hedger waiting on ctx which lease the attempt took.
func noteLease(ctx context.Context, l *proxy.Lease) {
	if ch, ok := ctx.Value(hedgeKey{}).(leaseNote); ok {
		select {
		case ch <- l:
		default:
		}
	}
}

// isHedgeKey marks the context of a hedge attempt, for its span.
type isHedgeKey struct{}

// leaseSpan records in sp what the lease said of its proxy (probation,
// cap, late) and whether the attempt is a hedge.
func leaseSpan(ctx context.Context, l *proxy.Lease, sp *record.Span) {
	sp.Hedge, _ = ctx.Value(isHedgeKey{}).(bool)
	if l == nil {
		return
	}
	sp.Probation, sp.Cap = l.Probation(), l.Cap()
	select {
	case <-l.Late():
		sp.Late = true
	default:
	}
}

// hedgeOK reports whether an attempt of t may be hedged.
func (s *Stage) hedgeOK(t record.Task) bool {
	if s.cfg.NoHedge || s.cfg.Pool == nil || s.cfg.Pool.Len() < 2 || s.hedges == nil {
		return false
	}
	// A hedge sends the request twice: never for a POST or PATCH without
	// an idempotency key (see shape.go's retry rule).
	return math.IsInf(s.Limits(t.URL.Hostname()).MaxRate, 1) && s.shape.idempotent(t)
}

type attemptOut struct {
	res   attemptResult
	err   error
	hedge bool
}

// hedged makes one attempt of t, hedged on another proxy if it runs late.
// When the hedge wins, the first attempt is not canceled: it runs on to
// its own end in the background (canceled when the stage's run ends), so
// that its proxy is judged on what really happened to it — a slow proxy
// answers and counts as working, a blackhole times out and counts as
// failing. Its hedge slot is held until then, which bounds those.
func (s *Stage) hedged(ctx context.Context, t record.Task, n int, avoid []string, waitStart time.Time, allow func(string) bool) (attemptResult, error) {
	if !s.hedgeOK(t) {
		return s.attempt(ctx, t, n, avoid, waitStart, allow)
	}
	note := make(leaseNote, 1)
	outs := make(chan attemptOut, 2)
	go func() { // owner: hedged, or the background it hands the result to
		r, err := s.attempt(context.WithValue(ctx, hedgeKey{}, note), t, n, avoid, waitStart, allow)
		outs <- attemptOut{res: r, err: err}
	}()
	var first *proxy.Lease
	select {
	case first = <-note:
	case o := <-outs:
		return o.res, o.err
	}
	select {
	case o := <-outs:
		return o.res, o.err
	case <-first.Late():
	}
	select {
	case s.hedges <- struct{}{}:
	default: // too many hedges out: wait for the first attempt alone
		o := <-outs
		return o.res, o.err
	}
	hctx, cancelHedge := context.WithCancel(context.WithValue(ctx, isHedgeKey{}, true))
	tried := append(append([]string(nil), avoid...), first.Proxy.ID)
	go func() { // owner: hedged (firstGood waits for it on every path)
		r, err := s.attempt(hctx, t, n, tried, time.Now(), allow)
		outs <- attemptOut{res: r, err: err, hedge: true}
	}()
	return s.firstGood(outs, cancelHedge)
}

// firstGood returns the first successful of the two attempts' outcomes,
// else the first attempt's failure. It gives back what the other holds
// and the hedge slot, in the background when the first attempt is still
// running (see hedged).
func (s *Stage) firstGood(outs <-chan attemptOut, cancelHedge context.CancelFunc) (attemptResult, error) {
	a := <-outs
	if a.hedge && a.err == nil {
		s.bg.Add(1)
		go func() { // owner: the stage; run waits for it, after canceling
			defer s.bg.Done()
			s.discard(<-outs)
			cancelHedge()
			<-s.hedges
		}()
		return a.res, nil
	}
	cancelHedge()
	b := <-outs
	<-s.hedges
	first, hedge := a, b
	if a.hedge {
		first, hedge = b, a
	}
	switch {
	case a.err == nil:
		s.discard(b)
		return a.res, nil
	case b.err == nil:
		return b.res, nil
	}
	s.discard(hedge)
	return first.res, first.err
}

// errOvertaken ends, when the stage's run is over, the attempts a hedge
// overtook that are still running.
var errOvertaken = errors.New("abandoned at the end of the run: it ran late and a hedge answered")

// endedEarly classifies an attempt whose context ended: canceled, or, for
// an attempt a hedge overtook and the end of the run cut, a timeout (it
// had run far past its expected time without an answer; so its proxy is
// judged on it).
func endedEarly(ctx context.Context) error {
	if context.Cause(ctx) == errOvertaken {
		return failure.New(failure.Timeout, failure.ErrRetryable, errOvertaken)
	}
	return failure.New(failure.Canceled, failure.ErrPermanent, ctx.Err())
}

// discard gives back what a losing attempt holds.
func (s *Stage) discard(o attemptOut) {
	s.spool.budget.Give(o.res.held)
	s.ahead.release(o.res.ahead)
	s.spool.bodies.put(o.res.buf)
	if o.res.spool != nil {
		_ = os.Remove(o.res.spool.Path)
	}
}
