package flow

import (
	"context"

	"github.com/reugn/go-streams"
	gsflow "github.com/reugn/go-streams/flow"
)

// Source produces elements of type T. It implements go-streams' Source.
type Source[T any] struct {
	outlet
	run func(stop context.Context, emit Emit[T]) error
}

var _ streams.Source = (*Source[int])(nil)

// NewSource returns a source that calls run once Run starts it. run reads
// until its input ends or stop ends, emitting each element; emit blocks
// while downstream is full and fails only once the hard context ends. The
// output is closed when run returns.
func NewSource[T any](name string, run func(stop context.Context, emit Emit[T]) error) *Source[T] {
	out := make(chan any)
	return &Source[T]{outlet: outlet{out: out, st: &Stats{Name: name}}, run: run}
}

// Stats returns the source's gauges.
func (s *Source[T]) Stats() *Stats { return s.st }
func (s *Source[T]) producer(T)    {}

func (s *Source[T]) start(hard, soft context.Context, _ func()) <-chan error {
	emit := func(v T) error {
		select {
		case s.out <- v:
			s.st.processed.Add(1)
			return nil
		case <-hard.Done():
			return hard.Err()
		}
	}
	return runGuarded(func() error { return s.run(soft, emit) }, nil, s.st, s.out, nil)
}

// Stage transforms In into Out with a function that owns its own
// concurrency (the fetch stage, say). It implements go-streams' Flow.
type Stage[In, Out any] struct {
	outlet
	in  chan any
	run func(ctx context.Context, in Inbox[In], out Outbox[Out]) error
}

var _ streams.Flow = (*Stage[int, int])(nil)

// NewStage returns a stage with an input queue of the given capacity (at
// least 1). run is called once with the hard context; it must read in until
// Recv reports false and return after every element it took was sent on.
// The output is closed when run returns.
func NewStage[In, Out any](name string, capacity int, run func(ctx context.Context, in Inbox[In], out Outbox[Out]) error) *Stage[In, Out] {
	checkCap(name, capacity)
	in := make(chan any, capacity)
	return &Stage[In, Out]{
		outlet: outlet{out: make(chan any), st: newStats(name, capacity, in)},
		in:     in,
		run:    run,
	}
}

// In returns the input queue (go-streams' Inlet).
func (s *Stage[In, Out]) In() chan<- any { return s.in }

// To connects the output to a sink and waits for it (go-streams' Flow).
// Within sluice use Connect and Run instead.
func (s *Stage[In, Out]) To(sink streams.Sink) {
	s.link(sink)
	sink.AwaitCompletion()
}

// Stats returns the stage's gauges.
func (s *Stage[In, Out]) Stats() *Stats { return s.st }
func (s *Stage[In, Out]) stats() *Stats { return s.st }
func (s *Stage[In, Out]) producer(Out)  {}
func (s *Stage[In, Out]) consumer(In)   {}
func (s *Stage[In, Out]) start(hard, _ context.Context, fail func()) <-chan error {
	in := Inbox[In]{ch: s.in, st: s.st}
	out := Outbox[Out]{ch: s.out, st: s.st}
	return runGuarded(func() error { return s.run(hard, in, out) }, s.in, s.st, s.out, fail)
}

// Map applies a function to every element with a fixed number of workers,
// using go-streams' Map. It suits CPU-bound work such as parsing. The
// function must not block on I/O and must handle its own failures: it
// returns an Out for every In. Output order is not preserved.
type Map[In, Out any] struct {
	outlet
	in      chan any
	workers int
	fn      func(In) Out
}

var _ streams.Flow = (*Map[int, int])(nil)

// NewMap returns a Map stage with an input queue of the given capacity and
// the given number of workers (both at least 1).
func NewMap[In, Out any](name string, capacity, workers int, fn func(In) Out) *Map[In, Out] {
	checkCap(name, capacity)
	checkCap(name+" workers", workers)
	in := make(chan any, capacity)
	return &Map[In, Out]{
		outlet:  outlet{out: nil, st: newStats(name, capacity, in)},
		in:      in,
		workers: workers,
		fn:      fn,
	}
}

// In returns the input queue (go-streams' Inlet).
func (m *Map[In, Out]) In() chan<- any { return m.in }

// Out returns the output channel; valid once Run started the stage.
func (m *Map[In, Out]) Out() <-chan any { return m.out }

// To connects the output to a sink and waits for it (go-streams' Flow).
func (m *Map[In, Out]) To(sink streams.Sink) {
	m.link(sink)
	sink.AwaitCompletion()
}

// Stats returns the stage's gauges.
func (m *Map[In, Out]) Stats() *Stats { return m.st }
func (m *Map[In, Out]) stats() *Stats { return m.st }
func (m *Map[In, Out]) producer(Out)  {}
func (m *Map[In, Out]) consumer(In)   {}

// start builds the go-streams Map (whose workers start at construction) and
// feeds it from the input queue. The Map's workers block only on its
// output, which transmit always drains, so they exit once the queue closes.
func (m *Map[In, Out]) start(_, _ context.Context, _ func()) <-chan error {
	st := m.st
	gm := gsflow.NewMap(func(v In) Out {
		st.inFlight.Add(1)
		defer func() {
			st.inFlight.Add(-1)
			st.processed.Add(1)
		}()
		return m.fn(v)
	}, m.workers)
	m.out = make(chan any)
	done := make(chan error, 1)
	go func() {
		for e := range m.in {
			gm.In() <- e
		}
		close(gm.In())
	}()
	go func() {
		for e := range gm.Out() {
			m.out <- e
		}
		close(m.out)
		done <- nil
	}()
	return done
}

// Sink consumes elements of type T. It implements go-streams' Sink.
type Sink[T any] struct {
	in   chan any
	st   *Stats
	run  func(ctx context.Context, in Inbox[T]) error
	done chan struct{}
}

var _ streams.Sink = (*Sink[int])(nil)

// NewSink returns a sink with an input queue of the given capacity. run is
// called once with the hard context; it must read until Recv reports false,
// and call Stats().Done for elements once they are durable.
func NewSink[T any](name string, capacity int, run func(ctx context.Context, in Inbox[T]) error) *Sink[T] {
	checkCap(name, capacity)
	in := make(chan any, capacity)
	return &Sink[T]{in: in, st: newStats(name, capacity, in), run: run, done: make(chan struct{})}
}

// In returns the input queue (go-streams' Inlet).
func (s *Sink[T]) In() chan<- any { return s.in }

// AwaitCompletion blocks until the sink's run has returned.
func (s *Sink[T]) AwaitCompletion() { <-s.done }

// Stats returns the sink's gauges.
func (s *Sink[T]) Stats() *Stats { return s.st }
func (s *Sink[T]) stats() *Stats { return s.st }
func (s *Sink[T]) consumer(T)    {}
func (s *Sink[T]) start(hard, _ context.Context, fail func()) <-chan error {
	in := Inbox[T]{ch: s.in, st: s.st}
	res := make(chan error, 1)
	inner := runGuarded(func() error { return s.run(hard, in) }, s.in, s.st, nil, fail)
	go func() {
		err := <-inner
		close(s.done)
		res <- err
	}()
	return res
}
