// Package flow is sluice's stage contract, built on the interfaces of
// github.com/reugn/go-streams: typed sources, stages and sinks joined by
// bounded buffers, with an orderly drain, a hard abort and per-stage gauges.
//
// A pipeline is a chain Source → Stage … → Sink, written the go-streams way
// inside Stream:
//
//	err := flow.Stream(hard, soft, src, func(s streams.Source) {
//		s.Via(fetch).Via(parse).To(sink)
//	})
//
// Stream starts the source; each Via starts the stage it is given and the
// connection to it; To starts the sink and blocks until the sink has
// finished (go-streams' AwaitCompletion). Connecting an output to an input
// of another element type panics at the Via, before anything flows. Connect
// and Run do the same for components listed rather than chained.
//
// Every stage owns a buffered input channel (its queue, of a configured
// capacity) and an unbuffered output; a connection moves elements from an
// output to the next queue. A full queue blocks the sender, all the way back
// to the source, which then stops reading: nothing is dropped to relieve
// pressure.
//
// Draining: when the source's stop context (soft) ends it stops reading and
// closes its output; each stage finishes what it holds, then closes its
// output; the pipeline has finished when the sink has. When the hard context
// ends, the connections between stages switch to discarding, stages stop
// waiting, and every goroutine exits; discarded elements are never
// acknowledged (they are counted in Stats.Dropped) and an at-least-once
// source delivers them again. A component that panics or fails ends soft for
// the sources, so the rest drains, and its error is returned.
//
// go-streams passes `any`; this package is the only place that converts, so
// stage authors work with typed Inbox, Outbox and Emit values. What a `chan
// any` edge costs per element, against a typed channel, is measured in
// edge_bench_test.go and written up in docs/architecture.md.
package flow

import (
	"context"
	"errors"
	"fmt"
	"reflect"
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
	disowned  atomic.Uint64
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

// Processed is the number of elements the stage has passed on or written
// (for a source: emitted).
func (s *Stats) Processed() uint64 { return s.processed.Load() }

// Errors is the number of elements the stage passed on as failures.
func (s *Stats) Errors() uint64 { return s.errs.Load() }

// Dropped is the number of elements discarded after the hard context ended,
// or lost with a stage that failed: taken (or on their way in) and never
// passed on or made durable; for a source, the element whose emit failed.
// None of them was acknowledged. Once the pipeline has finished, for every
// stage the upstream's Processed is the stage's Processed plus Dropped.
func (s *Stats) Dropped() uint64 { return s.dropped.Load() }

// Disowned is the part of Dropped that the stage let go because its source
// no longer owned the input (see Disown).
func (s *Stats) Disowned() uint64 { return s.disowned.Load() }

// Disown records that the stage let go of an element it took because the
// source no longer owns the input (record.Task.Owned: a Kafka partition
// revoked in a rebalance): it was neither passed on nor acknowledged, and
// the source's group delivers it again to the partition's next owner. It
// counts as dropped, so every hop still adds up.
func (s *Stats) Disown() {
	s.inFlight.Add(-1)
	s.dropped.Add(1)
	s.disowned.Add(1)
}

// AddError counts an element that the stage passes on as a failure.
func (s *Stats) AddError() { s.errs.Add(1) }

// Done records that n elements taken by a sink are durable.
func (s *Stats) Done(n int) {
	s.inFlight.Add(-int64(n))
	s.processed.Add(uint64(n))
}

// dropHeld counts whatever the stage still holds as dropped; called once
// the stage has finished, when nothing it holds can move any more.
func (s *Stats) dropHeld() {
	if n := s.inFlight.Swap(0); n > 0 {
		s.dropped.Add(uint64(n))
	}
}

// Component is a part of a pipeline that Run can start: a *Source, *Stage,
// *Map or *Sink.
type Component interface {
	Stats() *Stats
	nodePtr() *node
	// start runs the component; fail, called when it fails, ends soft for
	// the sources of the pipeline.
	start(hard, soft context.Context, fail func()) <-chan error
}

// Producer is anything with a typed output: a *Source[T], or a stage whose
// output is T.
type Producer[T any] interface {
	streams.Outlet
	Component
	producer(T)
	outletPtr() *outlet
}

// Consumer is anything with a typed input: a stage whose input is T, or a
// *Sink[T].
type Consumer[T any] interface {
	streams.Inlet
	Component
	consumer(T)
	inType() reflect.Type
}

// Processor is a stage that turns In into Out: a *Stage or a *Map. It is a
// go-streams Flow.
type Processor[In, Out any] interface {
	streams.Flow
	Consumer[In]
	Producer[Out]
}

// inlet is what an output can be connected to: any Consumer.
type inlet interface {
	streams.Inlet
	Component
	inType() reflect.Type
}

// node is what every component has: its gauges, its name, and the run it
// was started in.
type node struct {
	st  *Stats
	run *run // set when started; read and written only by the goroutine building the run
}

func (p *node) nodePtr() *node { return p }

// Connect joins from's output to to's input, like from.Via(to) with the
// types checked at compile time. Before Run, the elements move once Run
// starts the pipeline. Each output may be connected once.
func Connect[T any](from Producer[T], to Consumer[T]) {
	from.outletPtr().link(to)
}

// outlet is the shared output half of sources and stages.
type outlet struct {
	out   chan any
	elem  reflect.Type // the element type of out
	owner Component
	next  inlet
	moved bool // its connection has been started
}

func newOutlet[T any](owner Component) outlet {
	return outlet{out: make(chan any), elem: reflect.TypeFor[T](), owner: owner}
}

func (o *outlet) outletPtr() *outlet { return o }

// link connects the output to in, checking the element types. When the
// owner is already running, in is started in the same run, and the
// connection with it.
func (o *outlet) link(in inlet) {
	name := o.owner.Stats().Name
	if o.next != nil {
		panic(fmt.Sprintf("flow: output of %s connected twice", name))
	}
	if in.inType() != o.elem {
		panic(fmt.Sprintf("flow: %s emits %v but %s takes %v", name, o.elem, in.Stats().Name, in.inType()))
	}
	o.next = in
	if r := o.owner.nodePtr().run; r != nil {
		r.add(in)
		r.move(o)
	}
}

// Out returns the output channel (go-streams' Outlet).
func (o *outlet) Out() <-chan any { return o.out }

// Via connects the output to f, starts f if the owner is running, and
// returns f (go-streams' Source and Flow). f must be a flow stage (a
// *Stage or *Map) taking this output's element type; otherwise Via panics.
func (o *outlet) Via(f streams.Flow) streams.Flow {
	in, ok := f.(inlet)
	if !ok {
		panic(fmt.Sprintf("flow: %s.Via(%T): not a flow stage", o.owner.Stats().Name, f))
	}
	o.link(in)
	return f
}

// To connects the output to sink, starts it and blocks until it has
// finished (go-streams' Flow.To). It must be called within Stream, on a
// running chain; sink must be a flow *Sink taking this output's element
// type. Otherwise To panics.
func (o *outlet) To(sink streams.Sink) {
	in, ok := sink.(inlet)
	if !ok {
		panic(fmt.Sprintf("flow: %s.To(%T): not a flow sink", o.owner.Stats().Name, sink))
	}
	if o.owner.nodePtr().run == nil {
		panic(fmt.Sprintf("flow: %s.To: the chain is not running (build it inside Stream)", o.owner.Stats().Name))
	}
	o.link(in)
	sink.AwaitCompletion()
}

// transmit moves elements from the output to the next input until the
// output closes, then closes the next input. Once hard ends it discards
// instead of blocking, so that upstream goroutines can always finish; a
// discarded element counts as dropped by the next stage, so that for every
// stage what its upstream passed on is what it passed on, dropped or
// holds. An output connected to nothing is discarded, counted by its owner.
func (o *outlet) transmit(hard context.Context) {
	if o.next == nil {
		st := o.owner.Stats()
		for range o.out {
			st.dropped.Add(1)
		}
		return
	}
	st := o.next.Stats()
	in := o.next.In()
	defer close(in)
	for e := range o.out {
		select {
		case in <- e:
		case <-hard.Done():
			st.dropped.Add(1)
		}
	}
}

// run is one execution of a pipeline: the contexts its components share,
// the components started so far, and the connections between them. Its
// fields are used only by the goroutine that builds the run (Run, Stream),
// except for the WaitGroup.
type run struct {
	hard, soft context.Context
	fail       func() // ends soft
	comps      []Component
	results    []<-chan error
	outlets    []*outlet
	wiring     []error
	moving     sync.WaitGroup // the connections
}

func newRun(hard, soft context.Context) (*run, func()) {
	soft, failed := context.WithCancel(soft)
	return &run{hard: hard, soft: soft, fail: failed}, failed
}

// add starts c in the run, unless it already runs in it.
func (r *run) add(c Component) {
	p := c.nodePtr()
	switch p.run {
	case r:
		return
	case nil:
	default:
		panic(fmt.Sprintf("flow: %s is already running", c.Stats().Name))
	}
	p.run = r
	r.comps = append(r.comps, c)
	r.results = append(r.results, c.start(r.hard, r.soft, r.fail))
	if h, ok := c.(interface{ outletPtr() *outlet }); ok {
		r.outlets = append(r.outlets, h.outletPtr())
	}
}

// move starts the connection from o to its next input.
func (r *run) move(o *outlet) {
	if o.moved {
		return
	}
	o.moved = true
	r.moving.Add(1)
	go func() { // owner: the run; ends when o's owner has closed its output
		defer r.moving.Done()
		o.transmit(r.hard)
	}()
}

// settle starts everything connected to a running component and every
// connection not yet started; an output connected to nothing is a wiring
// error, and is discarded so that its owner can finish.
func (r *run) settle() {
	for i := 0; i < len(r.outlets); i++ { // r.outlets grows as add starts more
		o := r.outlets[i]
		if o.next != nil {
			r.add(o.next)
		} else if !o.moved {
			r.wiring = append(r.wiring, fmt.Errorf("%s: output not connected", o.owner.Stats().Name))
			r.fail()
		}
		r.move(o)
	}
}

// wait blocks until every component and connection has finished and
// returns the components' errors joined.
func (r *run) wait() error {
	errs := make([]error, len(r.comps))
	var done sync.WaitGroup
	for i, ch := range r.results {
		done.Add(1)
		go func() { // owner: wait; ends when component i does
			defer done.Done()
			if err := <-ch; err != nil {
				errs[i] = fmt.Errorf("%s: %w", r.comps[i].Stats().Name, err)
				r.fail()
			}
		}()
	}
	done.Wait()
	r.moving.Wait()
	return errors.Join(append(r.wiring, errs...)...)
}

// Run starts every component and the connections made between them with
// Connect (and whatever those connect to), and blocks until all have
// finished: when the sources have stopped (soft ended, or their input ran
// out) and everything they produced is written, or after hard ended and
// everything in flight was discarded. It returns the components' errors
// joined. Each component may be run once.
//
// A component that fails ends soft for the others: the sources stop
// reading and the pipeline drains, so that a dead sink does not leave a
// source reading input that nothing will acknowledge.
func Run(hard, soft context.Context, comps ...Component) error {
	r, failed := newRun(hard, soft)
	defer failed()
	for _, c := range comps {
		r.add(c)
	}
	r.settle()
	return r.wait()
}

// Stream runs src and the chain that wire builds from it with go-streams'
// Via and To, and blocks until everything has finished, as Run does. src is
// started before wire is called; wire should end the chain with To, which
// blocks until the sink has finished. A panic in wire (a misconnected
// chain, say) aborts whatever it started and is returned as an error.
func Stream[T any](hard, soft context.Context, src *Source[T], wire func(streams.Source)) (err error) {
	hard, abort := context.WithCancel(hard)
	defer abort()
	r, failed := newRun(hard, soft)
	defer failed()
	r.add(src)
	func() {
		defer func() {
			if p := recover(); p != nil {
				r.wiring = append(r.wiring, fmt.Errorf("chain: %v", p))
				abort()
				failed()
			}
		}()
		wire(src)
	}()
	r.settle()
	return r.wait()
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

// Outbox is a stage's typed view of its output.
type Outbox[T any] struct {
	ch chan<- any
	st *Stats
}

// Send blocks until the next stage takes v or ctx ends; either way one
// element stops counting as in flight. On error the element was not passed
// on and counts as dropped.
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
// until hard ends; then the element counts as dropped and Emit returns the
// hard context's error.
type Emit[T any] func(T) error

func checkCap(name string, n int) {
	if n < 1 {
		panic(fmt.Sprintf("flow: %s: buffer capacity must be at least 1, got %d", name, n))
	}
}

func newStats(name string, capacity int, ch chan any) *Stats {
	return &Stats{Name: name, Capacity: capacity, queue: func() int { return len(ch) }}
}

// runGuarded runs fn on a goroutine of its own, turning a panic into an
// error. When fn has returned or panicked, it calls fail on an error, so
// that the sources stop; it discards whatever is left in drain (if not
// nil) and what the stage still held, counting both as dropped in st, so
// upstream can always finish; then it closes out (if not nil) and reports
// the error.
func runGuarded(fn func() error, drain <-chan any, st *Stats, out chan any, fail func()) <-chan error {
	res := make(chan error, 1)
	go func() { // owner: the run; ends when fn does and drain is closed
		var err error
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
			}
			if err != nil {
				fail()
			}
			if drain != nil {
				for range drain {
					st.dropped.Add(1)
				}
			}
			st.dropHeld()
			if out != nil {
				close(out)
			}
			res <- err
		}()
		err = fn()
	}()
	return res
}
