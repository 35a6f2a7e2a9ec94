// Package flow is sluice's stage contract, built on the interfaces of
// github.com/reugn/go-streams: typed sources, stages and sinks joined by
// bounded buffers, with an orderly drain and per-stage gauges.
//
// A pipeline is a chain Source → Stage … → Sink. Every stage owns a buffered
// input channel (its queue, of a configured capacity) and an unbuffered
// output; Connect joins an output to the next input. A full queue blocks the
// sender, all the way back to the source, which then stops reading: nothing
// is dropped to relieve pressure.
//
// Draining: when the source's stop context ends it stops reading and closes
// its output; each stage finishes what it holds, then closes its output; Run
// returns when the sink has finished. When the hard context ends, the
// connections between stages switch to discarding, so every goroutine still
// exits; discarded elements are never acknowledged (they are counted in
// Stats.Dropped) and an at-least-once source delivers them again.
//
// go-streams passes `any`; this package is the only place that converts, so
// stage authors work with typed Inbox and Outbox values.
package flow

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/reugn/go-streams"
)

// Stats are the live gauges and counters of one stage. Safe for concurrent
// use; the pipeline updates them, monitoring reads them.
type Stats struct {
	Name     string
	Capacity int // capacity of the stage's input queue (0 for a source)

	queue     func() int
	inFlight  atomic.Int64
	processed atomic.Uint64
	errs      atomic.Uint64
	dropped   atomic.Uint64
}

// Queue is the number of elements waiting in the stage's input queue.
func (s *Stats) Queue() int {
	if s.queue == nil {
		return 0
	}
	return s.queue()
}

// InFlight is the number of elements the stage has taken from its queue and
// not yet passed on (or, for a sink, not yet made durable).
func (s *Stats) InFlight() int64 { return s.inFlight.Load() }

// Processed is the number of elements the stage has passed on or written.
func (s *Stats) Processed() uint64 { return s.processed.Load() }

// Errors is the number of elements the stage passed on as failures.
func (s *Stats) Errors() uint64 { return s.errs.Load() }

// Dropped is the number of elements discarded after the hard context ended.
func (s *Stats) Dropped() uint64 { return s.dropped.Load() }

// AddError counts an element that the stage passes on as a failure.
func (s *Stats) AddError() { s.errs.Add(1) }

// Done records that n elements taken by a sink are durable.
func (s *Stats) Done(n int) {
	s.inFlight.Add(-int64(n))
	s.processed.Add(uint64(n))
}

// Component is a part of a pipeline that Run can start: a *Source, *Stage,
// *Map or *Sink.
type Component interface {
	Stats() *Stats
	// start runs the component; fail, called when it fails, stops the
	// sources of the pipeline.
	start(hard, soft context.Context, fail func()) <-chan error
}

// Producer is anything with a typed output: a *Source[T], or a stage whose
// output is T.
type Producer[T any] interface {
	streams.Outlet
	Component
	producer(T)
	link(streams.Inlet)
}

// Consumer is anything with a typed input: a stage whose input is T, or a
// *Sink[T].
type Consumer[T any] interface {
	streams.Inlet
	Component
	consumer(T)
	stats() *Stats
}

// Connect joins from's output to to's input. The elements move once Run
// starts the pipeline. Each output may be connected once.
func Connect[T any](from Producer[T], to Consumer[T]) {
	from.link(to)
}

// outlet is the shared output half of sources and stages.
type outlet struct {
	out  chan any
	next streams.Inlet
	st   *Stats
}

func (o *outlet) link(in streams.Inlet) {
	if o.next != nil {
		panic("flow: output connected twice")
	}
	o.next = in
}

// Out returns the output channel (go-streams' Outlet).
func (o *outlet) Out() <-chan any { return o.out }

// transmit moves elements from the output to the next input until the
// output closes, then closes the next input. Once hard ends it discards
// instead of blocking, so that upstream goroutines can always finish.
func (o *outlet) transmit(hard context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	if o.next == nil {
		for range o.out {
			o.st.dropped.Add(1)
		}
		return
	}
	in := o.next.In()
	defer close(in)
	for e := range o.out {
		select {
		case in <- e:
		case <-hard.Done():
			o.st.dropped.Add(1)
		}
	}
}

// Via connects the output to f and returns f (go-streams' Source and Flow).
func (o *outlet) Via(f streams.Flow) streams.Flow {
	o.link(f)
	return f
}

// Run starts every component and the connections between them, and blocks
// until all have finished: when the source has stopped (soft ended, or its
// input ran out) and everything it produced is written, or after hard ended
// and everything in flight was discarded. It returns the components' errors
// joined. Each component may be run once.
//
// A component that fails ends soft for the others: the sources stop
// reading and the pipeline drains, so that a dead sink does not leave a
// source reading input that nothing will acknowledge.
func Run(hard, soft context.Context, comps ...Component) error {
	soft, failed := context.WithCancel(soft)
	defer failed()
	var wg sync.WaitGroup
	errCh := make([]<-chan error, 0, len(comps))
	for _, c := range comps {
		errCh = append(errCh, c.start(hard, soft, failed))
		if o := outletOf(c); o != nil {
			wg.Add(1)
			go o.transmit(hard, &wg)
		}
	}
	errs := make([]error, len(comps))
	var done sync.WaitGroup
	for i, ch := range errCh {
		done.Add(1)
		go func() { // owner: Run; ends when component i does
			defer done.Done()
			if err := <-ch; err != nil {
				errs[i] = fmt.Errorf("%s: %w", comps[i].Stats().Name, err)
				failed()
			}
		}()
	}
	done.Wait()
	wg.Wait()
	return errors.Join(errs...)
}

type hasOutlet interface{ outletPtr() *outlet }

func (o *outlet) outletPtr() *outlet { return o }

func outletOf(c Component) *outlet {
	if h, ok := c.(hasOutlet); ok {
		return h.outletPtr()
	}
	return nil
}

// Inbox is a stage's typed view of its input queue.
type Inbox[T any] struct {
	ch <-chan any
	st *Stats
}

// Recv blocks until an element arrives (ok = true), the input is closed and
// empty, or ctx ends (ok = false). A received element counts as in flight
// until it is passed on with Outbox.Send or marked done with Stats.Done.
func (i Inbox[T]) Recv(ctx context.Context) (v T, ok bool) {
	v, st := i.RecvBefore(ctx, nil)
	return v, st == Got
}

// Outbox is a stage's typed view of its output.
type Outbox[T any] struct {
	ch chan<- any
	st *Stats
}

// Send blocks until the next stage takes v or ctx ends; on success one
// element stops counting as in flight. On error the element was not passed on.
func (o Outbox[T]) Send(ctx context.Context, v T) error {
	select {
	case o.ch <- v:
		o.st.inFlight.Add(-1)
		o.st.processed.Add(1)
		return nil
	case <-ctx.Done():
		o.st.inFlight.Add(-1)
		o.st.dropped.Add(1)
		return ctx.Err()
	}
}

// Emit is a source's typed output. It blocks while the next queue is full,
// until hard ends.
type Emit[T any] func(T) error

func checkCap(name string, n int) {
	if n < 1 {
		panic(fmt.Sprintf("flow: %s: buffer capacity must be at least 1, got %d", name, n))
	}
}

func newStats(name string, capacity int, ch chan any) *Stats {
	return &Stats{Name: name, Capacity: capacity, queue: func() int { return len(ch) }}
}

// runGuarded runs fn, turning a panic into an error. When fn has returned
// or panicked, it calls fail (if not nil) on an error, so that the sources
// stop; it discards whatever is left in drain (if not nil), counting it as
// dropped in st, so upstream can always finish; then it closes out (if not
// nil) and reports the error.
func runGuarded(fn func() error, drain <-chan any, st *Stats, out chan any, fail func()) <-chan error {
	res := make(chan error, 1)
	go func() {
		var err error
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
			}
			if err != nil && fail != nil {
				fail()
			}
			if drain != nil {
				for range drain {
					st.dropped.Add(1)
				}
			}
			if out != nil {
				close(out)
			}
			res <- err
		}()
		err = fn()
	}()
	return res
}

// RecvStatus says how RecvBefore ended.
type RecvStatus int

// The ways RecvBefore ends.
const (
	Got      RecvStatus = iota // an element arrived
	Closed                     // the input is closed and empty
	TimedOut                   // the timer fired first
	Canceled                   // ctx ended first
)

// RecvBefore is Recv with a timer: it also returns, with TimedOut, when
// timer fires. A nil timer never fires.
func (i Inbox[T]) RecvBefore(ctx context.Context, timer <-chan time.Time) (v T, st RecvStatus) {
	select {
	case e, open := <-i.ch:
		if !open {
			return v, Closed
		}
		i.st.inFlight.Add(1)
		return e.(T), Got
	case <-timer:
		return v, TimedOut
	case <-ctx.Done():
		return v, Canceled
	}
}
