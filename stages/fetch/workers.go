package fetch

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/governor"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
)

// The stage body: an intake goroutine moves tasks from the input into the
// governor (package governor), which decides when each attempt may start;
// Concurrency workers make the attempts it hands them and tell it how
// they went; finished tasks are passed on by the worker that finished
// them.

// item is one input inside the stage, the governor's job payload.
type item struct {
	f     record.Fetched // the task (f.Task) and what it has become so far
	tried []string       // proxy ids already tried
}

// job is one input as the governor holds it.
type job = governor.Job[*item]

// execFunc makes one attempt of j. allow, if not nil, must be passed to
// the pool as proxy.Request.Allow.
type execFunc func(ctx context.Context, j *job, allow func(id string) bool) (attemptResult, error)

// run runs the stage body. It returns when everything taken was passed
// on, or after ctx ended.
func (s *Stage) run(ctx context.Context, in flow.Inbox[record.Task], out flow.Outbox[record.Fetched]) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer s.bg.Wait() // attempts a hedge overtook (hedge.go), canceled just before
	defer cancel(errOvertaken)
	st := s.flow.Stats()
	send := func(f record.Fetched) {
		if f.Err != nil {
			st.AddError()
		}
		_ = out.Send(ctx, f) // fails only on the hard stop: the input stays unacknowledged
	}
	intake := make(chan *job)
	var wg sync.WaitGroup
	wg.Go(func() { // owner: run; exits when the input closes or ctx ends
		defer close(intake)
		s.intake(ctx, in, intake, send)
	})
	for range s.gov.Workers() {
		wg.Go(func() { // owner: run; exits when the governor closes Jobs
			for j := range s.gov.Jobs() {
				s.work(ctx, j, send)
			}
		})
	}
	s.gov.Run(ctx, intake, func(j *job) { send(canceled(j.Item.f, ctx)) })
	wg.Wait()
	return nil
}

// intake moves tasks from in to the governor. A task that is already an
// error, or that the URL policy refuses, is passed on at once: it never
// waits for a token, a slot or a proxy.
func (s *Stage) intake(ctx context.Context, in flow.Inbox[record.Task], intake chan<- *job, send func(record.Fetched)) {
	for {
		t, ok := in.Recv(ctx)
		if !ok {
			return
		}
		if !t.StillOwned() {
			s.flow.Stats().Disown() // a revoked partition's: its next owner reads it
			continue
		}
		if t.Err != nil || t.URL == nil {
			f := record.Fetched{Task: t, Started: s.cfg.Now(), Err: t.Err}
			if f.Err == nil {
				f.Err = failure.Errorf(failure.Internal, "task without a URL")
			}
			send(f)
			continue
		}
		if err := s.refuse(t); err != nil {
			// One attempt, refused before any network access.
			send(record.Fetched{Task: t, Started: s.cfg.Now(), Attempts: 1, Err: err})
			continue
		}
		if s.cfg.Allow != nil {
			if err := s.cfg.Allow(ctx, t.URL); err != nil {
				send(record.Fetched{Task: t, Started: s.cfg.Now(), Err: err})
				continue
			}
		}
		j := &job{Key: t.URL.Hostname(), Item: &item{f: record.Fetched{Task: t, Method: s.shape.method(t)}}}
		if t.Owned != nil { // an input that can be revoked
			j.Gone = func() bool { return !t.Owned() }
		}
		select {
		case intake <- j:
		case <-ctx.Done():
			send(canceled(record.Fetched{Task: t}, ctx))
			return
		}
	}
}

// errDisowned is the outcome of a task whose source no longer owns it.
var errDisowned = failure.New(failure.Canceled, failure.ErrPermanent, errors.New("input revoked from this member"))

func canceled(f record.Fetched, ctx context.Context) record.Fetched {
	f.Err = failure.New(failure.Canceled, failure.ErrPermanent, context.Cause(ctx))
	return f
}

// work makes one attempt of j and reports it; a finished task is passed on
// before the worker reports itself free, so a blocked output holds the
// worker (that is the backpressure).
func (s *Stage) work(ctx context.Context, j *job, send func(record.Fetched)) {
	it := j.Item
	if j.Dropped { // revoked while queued: let go without a token (Job.Gone)
		s.flow.Stats().Disown()
		s.gov.Release(ctx, 0)
		return
	}
	if !j.Park.IsZero() { // parked by the governor: no attempt (park.go)
		if it.f.Task.StillOwned() {
			send(s.parked(it.f, j.Park, j.ParkErr))
		} else {
			s.flow.Stats().Disown() // revoked: the next owner parks it again
		}
		s.gov.Release(ctx, 0)
		return
	}
	if !it.f.Task.StillOwned() {
		// Revoked while it waited for a token or a retry: no attempt, and
		// no outcome for the controller (class canceled).
		s.gov.Report(ctx, j, governor.Outcome{Class: failure.Canceled, Err: errDisowned})
		s.flow.Stats().Disown()
		s.gov.Release(ctx, 0)
		return
	}
	it.f.Started = j.Started
	res, err := s.safeExec(ctx, j, s.gov.Gate(j))
	o := governor.Outcome{Status: res.status, RetryAfter: res.retryAfter, Proxy: res.proxy,
		Latency: time.Duration(res.timings.FirstByteMS) * time.Millisecond, Class: failure.ClassOf(err), Err: err, Held: res.held,
		NoProxy: errors.Is(err, proxy.ErrNoneAllowed)}
	if !o.NoProxy || ctx.Err() != nil {
		it.f.Attempts = j.Attempt
		it.f.Proxy = res.proxy
		if res.proxy != "" && res.proxy != directID {
			it.tried = append(it.tried, res.proxy)
		}
	}
	attempt, u := j.Attempt, it.f.Task.URL
	v, backoff, ok := s.gov.Report(ctx, j, o) // j is the governor's again unless v is Finish
	if v != governor.Finish {
		s.ahead.release(res.ahead)
	}
	switch {
	case v == governor.Park:
		f := it.f
		f.Status = res.status
		send(s.parked(f, j.Park, err))
		s.gov.Release(ctx, res.held)
		return
	case v == governor.Retry && ok:
		s.cfg.Logger.Debug().Str("url", u.Redacted()).Str("proxy", res.proxy).Int("attempt", attempt).
			Str("class", string(o.Class)).Dur("backoff", backoff).Msg("retrying")
		return
	case v != governor.Finish:
		if !ok {
			// The hard stop came between the attempt and the report: the
			// task is in no one else's hands, so it is passed on as
			// canceled here.
			send(canceled(it.f, ctx))
		}
		return
	}
	f := it.f
	if err == nil {
		f.FinalURL, f.Status, f.Header, f.Body, f.Spool, f.Truncated, f.Timings = res.finalURL, res.status, res.header, res.body, res.spool, res.truncated, res.timings
		f.Recycle = s.spool.bodies.recycler(res.buf)
		f.Err = nil
	} else {
		f.Status, f.Err = res.status, err
	}
	f.Elapsed = s.cfg.Now().Sub(f.Started)
	send(f)
	s.ahead.release(res.ahead)
	s.gov.Release(ctx, res.held)
}

// safeExec runs exec, turning a panic into an internal error.
func (s *Stage) safeExec(ctx context.Context, j *job, allow func(string) bool) (res attemptResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = failure.Errorf(failure.Internal, "fetch panicked: %v", r)
		}
	}()
	return s.execFn(ctx, j, allow)
}
