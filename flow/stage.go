package flow

import (
	"context"
	"fmt"
	"reflect"

	"github.com/reugn/go-streams"
	gsflow "github.com/reugn/go-streams/flow"
)

// Source produces elements of type T. It implements go-streams' Source.
type Source[T any] struct {
	node
	outlet
	run func(stop context.Context, emit Emit[T]) error
}

var _ streams.Source = (*Source[int])(nil)

// NewSource returns a source that calls run once it is started. run reads
// until its input ends or stop ends, emitting each element; emit blocks
// while downstream is full and fails only once the hard context ends. The
// output is closed when run returns; a panic in run becomes its error.
func NewSource[T any](name string, run func(stop context.Context, emit Emit[T]) error) *Source[T] {
	s := &Source[T]{node: node{st: &Stats{Name: name}}, run: run}
	s.outlet = newOutlet[T](s)
	return s
}

// Stats returns the source's gauges.
func (s *Source[T]) Stats() *Stats { return s.st }
func (s *Source[T]) producer(T)    {}

func (s *Source[T]) start(hard, soft context.Context, fail func()) <-chan error {
	emit := func(v T) error {
		select {
		case s.out <- v:
			s.st.processed.Add(1)
			return nil
		case <-hard.Done():
			s.st.dropped.Add(1)
			return hard.Err()
		}
	}
	return runGuarded(func() error { return s.run(soft, emit) }, nil, s.st, s.out, fail)
}

// Stage transforms In into Out with a function that owns its own
// concurrency (the fetch stage, say). It implements go-streams' Flow.
type Stage[In, Out any] struct {
	node
	outlet
	in  chan any
	run func(ctx context.Context, in Inbox[In], out Outbox[Out]) error
}

var _ Processor[int, int] = (*Stage[int, int])(nil)

// NewStage returns a stage with an input queue of the given capacity (at
// least 1). run is called once with the hard context; it must read in until
// Recv reports false and return after every element it took was sent on.
// The output is closed when run returns. A panic in run becomes its error;
// goroutines that run starts must guard themselves.
func NewStage[In, Out any](name string, capacity int, run func(ctx context.Context, in Inbox[In], out Outbox[Out]) error) *Stage[In, Out] {
	checkCap(name, capacity)
	in := make(chan any, capacity)
	s := &Stage[In, Out]{node: node{st: newStats(name, capacity, in)}, in: in, run: run}
	s.outlet = newOutlet[Out](s)
	return s
}

// In returns the input queue (go-streams' Inlet).
func (s *Stage[In, Out]) In() chan<- any { return s.in }

// Stats returns the stage's gauges.
func (s *Stage[In, Out]) Stats() *Stats        { return s.st }
func (s *Stage[In, Out]) producer(Out)         {}
func (s *Stage[In, Out]) consumer(In)          {}
func (s *Stage[In, Out]) inType() reflect.Type { return reflect.TypeFor[In]() }
func (s *Stage[In, Out]) start(hard, _ context.Context, fail func()) <-chan error {
	in := Inbox[In]{ch: s.in, st: s.st}
	out := Outbox[Out]{ch: s.out, st: s.st}
	return runGuarded(func() error { return s.run(hard, in, out) }, s.in, s.st, s.out, fail)
}

// Map applies a function to every element on a fixed number of workers,
// with go-streams' Map. It suits CPU-bound work such as parsing. The
// function must not block on I/O and should handle its own failures,
// returning an Out for every In; a panic in it fails the stage (the element
// counts as dropped and Run returns the panic as an error), the others
// carry on. Output order is not preserved.
//
// go-streams' Map workers block on their output without a context, so the
// stage keeps its output drained: the feeder and the forwarder around the
// library's Map watch the hard context; after it ends, the queue and the
// Map's output are discarded (counted as dropped) and every worker exits
// once its current call returns.
type Map[In, Out any] struct {
	node
	outlet
	in      chan any
	workers int
	fn      func(In) Out
}

var _ Processor[int, int] = (*Map[int, int])(nil)

// NewMap returns a Map stage with an input queue of the given capacity and
// the given number of workers (both at least 1). It starts nothing.
func NewMap[In, Out any](name string, capacity, workers int, fn func(In) Out) *Map[In, Out] {
	checkCap(name, capacity)
	checkCap(name+" workers", workers)
	in := make(chan any, capacity)
	m := &Map[In, Out]{node: node{st: newStats(name, capacity, in)}, in: in, workers: workers, fn: fn}
	m.outlet = newOutlet[Out](m)
	return m
}

// In returns the input queue (go-streams' Inlet).
func (m *Map[In, Out]) In() chan<- any { return m.in }

// Workers returns the number of workers.
func (m *Map[In, Out]) Workers() int { return m.workers }

// Stats returns the stage's gauges.
func (m *Map[In, Out]) Stats() *Stats        { return m.st }
func (m *Map[In, Out]) producer(Out)         {}
func (m *Map[In, Out]) consumer(In)          {}
func (m *Map[In, Out]) inType() reflect.Type { return reflect.TypeFor[In]() }

// mapped is what a worker of go-streams' Map returns: the value, or the
// panic of the function.
type mapped[Out any] struct {
	v   Out
	err error
}

// start builds the go-streams Map (whose workers start at construction),
// feeds it from the input queue and forwards its output. An element counts
// as in flight from when the feeder takes it until the forwarder has sent
// it on or dropped it.
func (m *Map[In, Out]) start(hard, _ context.Context, fail func()) <-chan error {
	st := m.st
	gm := gsflow.NewMap(func(v In) (r mapped[Out]) {
		defer func() {
			if p := recover(); p != nil {
				r.err = fmt.Errorf("panic: %v", p)
			}
		}()
		r.v = m.fn(v)
		return r
	}, m.workers)
	go func() { // feeder; owner: the stage; ends when the queue is closed
		for e := range m.in {
			st.inFlight.Add(1)
			select {
			case gm.In() <- e:
				continue
			case <-hard.Done():
			}
			// Aborted: let the workers finish, discard the rest.
			st.inFlight.Add(-1)
			st.dropped.Add(1)
			close(gm.In())
			for range m.in {
				st.dropped.Add(1)
			}
			return
		}
		close(gm.In())
	}()
	res := make(chan error, 1)
	go func() { // forwarder; owner: the stage; ends when the Map's workers have
		var err error
		for e := range gm.Out() {
			r := e.(mapped[Out])
			if r.err != nil {
				if err == nil {
					err = r.err
					fail()
				}
				st.inFlight.Add(-1)
				st.dropped.Add(1)
				continue
			}
			select {
			case m.out <- r.v:
				st.inFlight.Add(-1)
				st.processed.Add(1)
			case <-hard.Done():
				st.inFlight.Add(-1)
				st.dropped.Add(1)
			}
		}
		close(m.out)
		res <- err
	}()
	return res
}

// Sink consumes elements of type T. It implements go-streams' Sink.
type Sink[T any] struct {
	node
	in   chan any
	run  func(ctx context.Context, in Inbox[T]) error
	done chan struct{}
}

var _ streams.Sink = (*Sink[int])(nil)

// NewSink returns a sink with an input queue of the given capacity. run is
// called once with the hard context; it must read until Recv reports false,
// and call Stats().Done for elements once they are durable. Elements it
// holds when it returns count as dropped. A panic in run becomes its error.
func NewSink[T any](name string, capacity int, run func(ctx context.Context, in Inbox[T]) error) *Sink[T] {
	checkCap(name, capacity)
	in := make(chan any, capacity)
	return &Sink[T]{node: node{st: newStats(name, capacity, in)}, in: in, run: run, done: make(chan struct{})}
}

// In returns the input queue (go-streams' Inlet).
func (s *Sink[T]) In() chan<- any { return s.in }

// AwaitCompletion blocks until the sink has been started and its run has
// returned (go-streams' Sink).
func (s *Sink[T]) AwaitCompletion() { <-s.done }

// Stats returns the sink's gauges.
func (s *Sink[T]) Stats() *Stats        { return s.st }
func (s *Sink[T]) consumer(T)           {}
func (s *Sink[T]) inType() reflect.Type { return reflect.TypeFor[T]() }
func (s *Sink[T]) start(hard, _ context.Context, fail func()) <-chan error {
	in := Inbox[T]{ch: s.in, st: s.st}
	res := make(chan error, 1)
	inner := runGuarded(func() error { return s.run(hard, in) }, s.in, s.st, nil, fail)
	go func() { // owner: the run; ends when the sink's run does
		err := <-inner
		close(s.done)
		res <- err
	}()
	return res
}
