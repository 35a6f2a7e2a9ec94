package fetch

import (
	"context"
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
// It is on by default, within bounds that make it cheap: only for domains
// without a rate limit (a duplicate there spends no politeness budget; a
// rate-limited domain's tokens belong to the governor, which is not asked
// for a second one), at most one hedge per attempt, and at most a tenth of
// the concurrency in hedges at once. Config.NoHedge turns it off.

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

// hedgeOK reports whether an attempt of t may be hedged.
func (s *Stage) hedgeOK(t record.Task) bool {
	if s.cfg.NoHedge || s.cfg.Pool == nil || s.cfg.Pool.Len() < 2 || s.hedges == nil {
		return false
	}
	return math.IsInf(s.Limits(t.URL.Hostname()).MaxRate, 1)
}

type attemptOut struct {
	res attemptResult
	err error
}

// hedged makes one attempt of t, hedged on another proxy if it runs late.
func (s *Stage) hedged(ctx context.Context, t record.Task, n int, avoid []string, waitStart time.Time, allow func(string) bool) (attemptResult, error) {
	if !s.hedgeOK(t) {
		return s.attempt(ctx, t, n, avoid, waitStart, allow)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	note := make(leaseNote, 1)
	outs := make(chan attemptOut, 2)
	ctx1, cancel1 := context.WithCancel(context.WithValue(ctx, hedgeKey{}, note))
	defer cancel1()
	go func() { // owner: hedged; it waits for this result on every path
		r, err := s.attempt(ctx1, t, n, avoid, waitStart, allow)
		outs <- attemptOut{r, err}
	}()
	var late <-chan struct{}
	var first *proxy.Lease
	select {
	case first = <-note:
		late = first.Late()
	case o := <-outs:
		return o.res, o.err
	}
	select {
	case o := <-outs:
		return o.res, o.err
	case <-late:
	}
	select {
	case s.hedges <- struct{}{}:
	default: // too many hedges out: wait for the first attempt alone
		o := <-outs
		return o.res, o.err
	}
	defer func() { <-s.hedges }()
	ctx2, cancel2 := context.WithCancel(ctx)
	defer cancel2()
	go func() { // owner: hedged; it waits for this result on every path
		r, err := s.attempt(ctx2, t, n, append(append([]string(nil), avoid...), first.Proxy.ID), time.Now(), allow)
		outs <- attemptOut{r, err}
	}()
	return s.firstGood(outs, cancel1, cancel2)
}

// firstGood returns the first successful of two attempts' outcomes, or
// the second failure; the loser is canceled and its body given back.
func (s *Stage) firstGood(outs <-chan attemptOut, cancels ...context.CancelFunc) (attemptResult, error) {
	a := <-outs
	if a.err == nil {
		for _, c := range cancels {
			c()
		}
		s.discard(<-outs)
		return a.res, nil
	}
	b := <-outs
	if b.err == nil || failure.ClassOf(a.err) == failure.Canceled {
		return b.res, b.err
	}
	s.discard(b)
	return a.res, a.err
}

// discard gives back what a losing attempt holds.
func (s *Stage) discard(o attemptOut) {
	s.spool.budget.give(o.res.held)
	if o.res.spool != nil {
		_ = os.Remove(o.res.spool.Path)
	}
}
