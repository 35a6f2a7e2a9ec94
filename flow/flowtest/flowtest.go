// Package flowtest is the conformance suite of the flow stage contract.
// Every source, stage and sink of sluice runs it from its tests, with
// CheckSource, CheckStage or CheckSink, and each check holds the same way
// for all of them:
//
//   - orderly drain: with a finite input, Run returns nil once every input
//     has come out exactly once, and nothing is left in flight or dropped;
//   - soft stop: ending the soft context stops the input, and everything
//     read is still passed on;
//   - hard abort: ending the hard context ends every goroutine (goleak),
//     and every input read ends delivered or counted as dropped;
//   - a panic in the stage's work becomes an error: Run's, or the error
//     the output of that input carries;
//   - backpressure: while the output does not move, the stage accepts no
//     more than its queue and what it says it holds;
//   - nothing lost: in every case, no input comes out twice, and for every
//     hop what went in came out or was counted as dropped.
//
// The package imports testing, so only tests import it; the production
// binary never links it (testbed's deps test checks that).
package flowtest

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reugn/go-streams"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/flow"
)

// How much input the checks use.
const (
	drainN    = 200 // inputs of the drain and panic checks
	softAfter = 40  // outputs before the soft stop
	hardAfter = 20  // outputs before the hard abort
)

// Built is a component made for one check.
type Built[C any] struct {
	// Component is the source, stage or sink under test.
	Component C
	// Holds is the most inputs the component takes in beyond its input
	// queue while its output does not move: workers, batches, hand-offs.
	// The backpressure check allows the queue plus Holds.
	Holds int
	// Close, if not nil, is called once Run has returned, before the check
	// for leaked goroutines (idle connections, say).
	Close func() error
}

// Source describes a source under test.
type Source[Out any] struct {
	// New builds a fresh source that reads n inputs, numbered from 0, and
	// stops; with n < 0 it reads without end until its stop context ends.
	New func(t *testing.T, n int) Built[*flow.Source[Out]]
	// Panicking builds a fresh source that panics while reading.
	Panicking func(t *testing.T) Built[*flow.Source[Out]]
	// Index returns the number of the input out was made from.
	Index func(out Out) int
	// Streaming says the source never ends by itself (a Kafka consumer):
	// the drain check ends its soft context once all n inputs came out.
	Streaming bool
}

// Stage describes a stage under test (a *flow.Stage or *flow.Map).
type Stage[In, Out any] struct {
	// New builds a fresh stage.
	New func(t *testing.T) Built[flow.Processor[In, Out]]
	// Panicking builds a fresh stage whose work panics on some or all of
	// the inputs Input makes.
	Panicking func(t *testing.T) Built[flow.Processor[In, Out]]
	// Input makes input number i.
	Input func(i int) In
	// Index returns the number of the input out was made from.
	Index func(out Out) int
	// Err returns the error out carries, if the stage passes failures on
	// as outputs; nil means it does not.
	Err func(out Out) error
}

// Sink describes a sink under test. What a sink puts out is its
// acknowledgements: an input is out once it is acknowledged.
type Sink[In any] struct {
	// New builds a fresh sink writing to a store of its own. When stall is
	// not nil, every write to the store blocks until stall is closed.
	New func(t *testing.T, stall <-chan struct{}) Built[*flow.Sink[In]]
	// Panicking builds a fresh sink that panics while writing.
	Panicking func(t *testing.T) Built[*flow.Sink[In]]
	// Input makes input number i, whose acknowledgement, once the sink has
	// made it durable, is ack.
	Input func(i int, ack func()) In
}

// ledger records which inputs came out, and how often.
type ledger struct {
	mu    sync.Mutex
	seen  map[int]int
	total int
	dups  []int
	at    map[int]func() // called when the total reaches the key
}

func newLedger() *ledger { return &ledger{seen: map[int]int{}, at: map[int]func(){}} }

// when calls fn once the ledger holds n entries.
func (l *ledger) when(n int, fn func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at[n] = fn
}

func (l *ledger) add(i int) {
	l.mu.Lock()
	l.seen[i]++
	if l.seen[i] == 2 {
		l.dups = append(l.dups, i)
	}
	l.total++
	fn := l.at[l.total]
	l.mu.Unlock()
	if fn != nil {
		fn()
	}
}

func (l *ledger) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// noDuplicates fails t if any input came out twice.
func (l *ledger) noDuplicates(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.dups) > 0 {
		t.Errorf("inputs came out more than once: %v", head(l.dups))
	}
}

// exactly fails t unless inputs 0..n-1 each came out once, and nothing else.
func (l *ledger) exactly(t *testing.T, n int) {
	t.Helper()
	l.noDuplicates(t)
	l.mu.Lock()
	defer l.mu.Unlock()
	var missing, stray []int
	for i := range n {
		if l.seen[i] == 0 {
			missing = append(missing, i)
		}
	}
	for i := range l.seen {
		if i < 0 || i >= n {
			stray = append(stray, i)
		}
	}
	if len(missing) > 0 || len(stray) > 0 {
		t.Errorf("of %d inputs, missing %v; unknown outputs %v", n, head(missing), head(stray))
	}
}

func head(xs []int) []int {
	if len(xs) > 10 {
		return xs[:10]
	}
	return xs
}

// feeder is a source of In made by input, n of them (n < 0: until stop).
func feeder[In any](n int, input func(int) In) *flow.Source[In] {
	return flow.NewSource("feeder", func(stop context.Context, emit flow.Emit[In]) error {
		for i := 0; n < 0 || i < n; i++ {
			if stop.Err() != nil {
				return nil
			}
			if err := emit(input(i)); err != nil {
				return nil
			}
		}
		return nil
	})
}

// collector is a sink recording what comes out in led, by index. With gate
// set it takes nothing before gate is closed. What it takes after the hard
// context ended is not recorded (it counts as dropped).
func collector[Out any](led *ledger, index func(Out) int, gate <-chan struct{}) *flow.Sink[Out] {
	var s *flow.Sink[Out]
	s = flow.NewSink("collector", 1, func(ctx context.Context, in flow.Inbox[Out]) error {
		if gate != nil {
			select {
			case <-gate:
			case <-ctx.Done():
				return nil
			}
		}
		for {
			v, ok := in.Recv(ctx)
			if !ok || ctx.Err() != nil {
				return nil
			}
			s.Stats().Done(1)
			led.add(index(v))
		}
	})
	return s
}

// hop checks that what up passed on, down passed on or dropped, and that
// down holds nothing.
func hop(t *testing.T, up, down *flow.Stats) {
	t.Helper()
	if up.Processed() != down.Processed()+down.Dropped() {
		t.Errorf("%s passed on %d; %s passed on %d and dropped %d: %d vanished", up.Name, up.Processed(),
			down.Name, down.Processed(), down.Dropped(), int64(up.Processed())-int64(down.Processed()+down.Dropped()))
	}
	if n := down.InFlight(); n != 0 {
		t.Errorf("%s holds %d after the run", down.Name, n)
	}
}

func clean(t *testing.T, sts ...*flow.Stats) {
	t.Helper()
	for _, st := range sts {
		if st.Dropped() != 0 || st.InFlight() != 0 {
			t.Errorf("%s: dropped %d, in flight %d after an orderly run", st.Name, st.Dropped(), st.InFlight())
		}
	}
}

func closeBuilt[C any](t *testing.T, b Built[C]) {
	t.Helper()
	if b.Close != nil {
		if err := b.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
}

// still waits until count has moved and then not moved for a while: the
// pipeline is blocked. It asserts nothing about time; it gives up after
// some thousand rounds, so that a stage that never starts or never blocks
// fails its check instead of hanging the test.
func still(count func() uint64) uint64 {
	// First let it start (a Kafka consumer joins its group first).
	for wait := 0; count() == 0 && wait < 6000; wait++ {
		time.Sleep(10 * time.Millisecond)
	}
	prev, same := count(), 0
	for rounds := 0; same < 25 && rounds < 5000; rounds++ {
		for range 50 {
			runtime.Gosched()
		}
		time.Sleep(time.Millisecond)
		if cur := count(); cur == prev {
			same++
		} else {
			prev, same = cur, 0
		}
	}
	return prev
}

func wantPanicError(t *testing.T, err error) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), "panic") {
		t.Fatalf("Run: %v, want the panic as an error", err)
	}
}

func noLeaks(t *testing.T, before goleak.Option) {
	t.Helper()
	if err := goleak.Find(before); err != nil {
		t.Errorf("goroutines left after the run: %v", err)
	}
}

// CheckStage runs the conformance suite on a stage, between a feeder
// source and a collecting sink of the suite's own.
func CheckStage[In, Out any](t *testing.T, s Stage[In, Out]) {
	t.Helper()
	run := func(hard, soft context.Context, b Built[flow.Processor[In, Out]], n int, led *ledger, gate <-chan struct{}) (*flow.Source[In], *flow.Sink[Out], error) {
		src := feeder(n, s.Input)
		col := collector(led, s.Index, gate)
		err := flow.Stream(hard, soft, src, func(in streams.Source) { in.Via(b.Component).To(col) })
		closeBuilt(t, b)
		return src, col, err
	}

	t.Run("orderly drain", func(t *testing.T) {
		b := s.New(t)
		led := newLedger()
		src, col, err := run(context.Background(), context.Background(), b, drainN, led, nil)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		led.exactly(t, drainN)
		hop(t, src.Stats(), b.Component.Stats())
		hop(t, b.Component.Stats(), col.Stats())
		clean(t, b.Component.Stats(), col.Stats())
	})

	t.Run("soft stop drains", func(t *testing.T) {
		b := s.New(t)
		soft, stop := context.WithCancel(context.Background())
		defer stop()
		led := newLedger()
		led.when(softAfter, stop)
		src, col, err := run(context.Background(), soft, b, -1, led, nil)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		led.noDuplicates(t)
		if read := src.Stats().Processed(); uint64(led.count()) != read {
			t.Errorf("read %d inputs, %d came out", read, led.count())
		}
		hop(t, src.Stats(), b.Component.Stats())
		hop(t, b.Component.Stats(), col.Stats())
		clean(t, b.Component.Stats(), col.Stats())
	})

	t.Run("hard abort ends every goroutine and loses nothing", func(t *testing.T) {
		before := goleak.IgnoreCurrent()
		b := s.New(t)
		hard, abort := context.WithCancel(context.Background())
		defer abort()
		led := newLedger()
		led.when(hardAfter, abort)
		src, col, err := run(hard, context.Background(), b, -1, led, nil)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		led.noDuplicates(t)
		hop(t, src.Stats(), b.Component.Stats())
		hop(t, b.Component.Stats(), col.Stats())
		noLeaks(t, before)
	})

	t.Run("a panic becomes an error", func(t *testing.T) {
		before := goleak.IgnoreCurrent()
		b := s.Panicking(t)
		led := newLedger()
		var errs []string
		index := s.Index
		if s.Err != nil {
			var mu sync.Mutex
			index = func(o Out) int {
				if err := s.Err(o); err != nil && strings.Contains(err.Error(), "panic") {
					mu.Lock()
					errs = append(errs, err.Error())
					mu.Unlock()
				}
				return s.Index(o)
			}
		}
		src := feeder(drainN, s.Input)
		col := collector(led, index, nil)
		err := flow.Stream(context.Background(), context.Background(), src, func(in streams.Source) { in.Via(b.Component).To(col) })
		closeBuilt(t, b)
		switch {
		case err != nil:
			wantPanicError(t, err)
			led.noDuplicates(t)
		case len(errs) > 0:
			// The stage turned each panic into an error result.
			led.exactly(t, drainN)
		default:
			t.Fatalf("Run returned nil and no output carries the panic")
		}
		hop(t, src.Stats(), b.Component.Stats())
		hop(t, b.Component.Stats(), col.Stats())
		noLeaks(t, before)
	})

	t.Run("a full output blocks the input", func(t *testing.T) {
		b := s.New(t)
		soft, stop := context.WithCancel(context.Background())
		defer stop()
		gate := make(chan struct{})
		led := newLedger()
		src := feeder(-1, s.Input)
		col := collector(led, s.Index, gate)
		done := make(chan error, 1)
		go func() { // owner: this test; ends with the run
			done <- flow.Stream(context.Background(), soft, src, func(in streams.Source) { in.Via(b.Component).To(col) })
		}()
		taken := still(src.Stats().Processed)
		// Two hand-offs (feeder → stage, stage → collector) hold one each.
		bound := 1 + b.Component.Stats().Capacity + b.Holds + 1 + col.Stats().Capacity
		if taken > uint64(bound) {
			t.Errorf("the stage took %d inputs while its output was blocked; bound %d", taken, bound)
		}
		if taken == 0 {
			t.Errorf("nothing was read")
		}
		stop()
		close(gate)
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		closeBuilt(t, b)
		led.noDuplicates(t)
		if read := src.Stats().Processed(); uint64(led.count()) != read {
			t.Errorf("read %d inputs, %d came out after the output moved again", read, led.count())
		}
		clean(t, b.Component.Stats(), col.Stats())
	})
}

// CheckSource runs the conformance suite on a source, into a collecting
// sink of the suite's own.
func CheckSource[Out any](t *testing.T, s Source[Out]) {
	t.Helper()
	run := func(hard, soft context.Context, b Built[*flow.Source[Out]], led *ledger, gate <-chan struct{}) (*flow.Sink[Out], error) {
		col := collector(led, s.Index, gate)
		err := flow.Stream(hard, soft, b.Component, func(streams.Source) { b.Component.To(col) })
		closeBuilt(t, b)
		return col, err
	}

	t.Run("orderly drain", func(t *testing.T) {
		b := s.New(t, drainN)
		led := newLedger()
		soft, stop := context.WithCancel(context.Background())
		defer stop()
		if s.Streaming {
			led.when(drainN, stop)
		}
		col, err := run(context.Background(), soft, b, led, nil)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		led.exactly(t, drainN)
		hop(t, b.Component.Stats(), col.Stats())
		clean(t, b.Component.Stats(), col.Stats())
	})

	t.Run("soft stop drains", func(t *testing.T) {
		b := s.New(t, -1)
		soft, stop := context.WithCancel(context.Background())
		defer stop()
		led := newLedger()
		led.when(softAfter, stop)
		col, err := run(context.Background(), soft, b, led, nil)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		led.noDuplicates(t)
		if read := b.Component.Stats().Processed(); uint64(led.count()) != read {
			t.Errorf("read %d inputs, %d came out", read, led.count())
		}
		hop(t, b.Component.Stats(), col.Stats())
		clean(t, b.Component.Stats(), col.Stats())
	})

	t.Run("hard abort ends every goroutine and loses nothing", func(t *testing.T) {
		before := goleak.IgnoreCurrent()
		b := s.New(t, -1)
		hard, abort := context.WithCancel(context.Background())
		defer abort()
		led := newLedger()
		led.when(hardAfter, abort)
		col, err := run(hard, context.Background(), b, led, nil)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		led.noDuplicates(t)
		hop(t, b.Component.Stats(), col.Stats())
		noLeaks(t, before)
	})

	t.Run("a panic becomes an error", func(t *testing.T) {
		before := goleak.IgnoreCurrent()
		b := s.Panicking(t)
		led := newLedger()
		col, err := run(context.Background(), context.Background(), b, led, nil)
		wantPanicError(t, err)
		led.noDuplicates(t)
		hop(t, b.Component.Stats(), col.Stats())
		noLeaks(t, before)
	})

	t.Run("a full output blocks the input", func(t *testing.T) {
		b := s.New(t, -1)
		soft, stop := context.WithCancel(context.Background())
		defer stop()
		gate := make(chan struct{})
		led := newLedger()
		col := collector(led, s.Index, gate)
		done := make(chan error, 1)
		go func() { // owner: this test; ends with the run
			done <- flow.Stream(context.Background(), soft, b.Component, func(streams.Source) { b.Component.To(col) })
		}()
		taken := still(b.Component.Stats().Processed)
		// One hand-off (source → collector) holds one.
		bound := b.Holds + 1 + col.Stats().Capacity
		if taken > uint64(bound) {
			t.Errorf("the source emitted %d while its output was blocked; bound %d", taken, bound)
		}
		if taken == 0 {
			t.Errorf("nothing was read")
		}
		stop()
		close(gate)
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		closeBuilt(t, b)
		led.noDuplicates(t)
		if read := b.Component.Stats().Processed(); uint64(led.count()) != read {
			t.Errorf("read %d inputs, %d came out after the output moved again", read, led.count())
		}
		clean(t, b.Component.Stats(), col.Stats())
	})
}

// CheckSink runs the conformance suite on a sink, fed by a source of the
// suite's own. An input is out once it is acknowledged.
func CheckSink[In any](t *testing.T, s Sink[In]) {
	t.Helper()
	// input makes input i acknowledged into led.
	input := func(led *ledger) func(int) In {
		return func(i int) In { return s.Input(i, func() { led.add(i) }) }
	}
	run := func(hard, soft context.Context, b Built[*flow.Sink[In]], n int, led *ledger) (*flow.Source[In], error) {
		src := feeder(n, input(led))
		err := flow.Stream(hard, soft, src, func(streams.Source) { src.To(b.Component) })
		closeBuilt(t, b)
		return src, err
	}

	t.Run("orderly drain", func(t *testing.T) {
		b := s.New(t, nil)
		led := newLedger()
		src, err := run(context.Background(), context.Background(), b, drainN, led)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		led.exactly(t, drainN)
		hop(t, src.Stats(), b.Component.Stats())
		clean(t, b.Component.Stats())
		if n := b.Component.Stats().Processed(); n != drainN {
			t.Errorf("the sink wrote %d of %d", n, drainN)
		}
	})

	t.Run("soft stop drains", func(t *testing.T) {
		b := s.New(t, nil)
		soft, stop := context.WithCancel(context.Background())
		defer stop()
		led := newLedger()
		led.when(softAfter, stop)
		src, err := run(context.Background(), soft, b, -1, led)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		led.noDuplicates(t)
		if read := src.Stats().Processed(); uint64(led.count()) != read {
			t.Errorf("fed %d inputs, %d acknowledged", read, led.count())
		}
		hop(t, src.Stats(), b.Component.Stats())
		clean(t, b.Component.Stats())
	})

	t.Run("hard abort ends every goroutine and loses nothing", func(t *testing.T) {
		before := goleak.IgnoreCurrent()
		b := s.New(t, nil)
		hard, abort := context.WithCancel(context.Background())
		defer abort()
		led := newLedger()
		led.when(hardAfter, abort)
		src, err := run(hard, context.Background(), b, -1, led)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		led.noDuplicates(t)
		hop(t, src.Stats(), b.Component.Stats())
		if acked, written := uint64(led.count()), b.Component.Stats().Processed(); acked != written {
			t.Errorf("%d acknowledged, %d written", acked, written)
		}
		noLeaks(t, before)
	})

	t.Run("a panic becomes an error", func(t *testing.T) {
		before := goleak.IgnoreCurrent()
		b := s.Panicking(t)
		led := newLedger()
		src, err := run(context.Background(), context.Background(), b, drainN, led)
		wantPanicError(t, err)
		led.noDuplicates(t)
		hop(t, src.Stats(), b.Component.Stats())
		noLeaks(t, before)
	})

	t.Run("a full output blocks the input", func(t *testing.T) {
		stall := make(chan struct{})
		b := s.New(t, stall)
		soft, stop := context.WithCancel(context.Background())
		defer stop()
		led := newLedger()
		src := feeder(-1, input(led))
		done := make(chan error, 1)
		go func() { // owner: this test; ends with the run
			done <- flow.Stream(context.Background(), soft, src, func(streams.Source) { src.To(b.Component) })
		}()
		taken := still(src.Stats().Processed)
		// One hand-off (feeder → sink) holds one.
		bound := 1 + b.Component.Stats().Capacity + b.Holds
		if taken > uint64(bound) {
			t.Errorf("the sink took %d inputs while its store was blocked; bound %d", taken, bound)
		}
		if taken == 0 {
			t.Errorf("nothing was fed")
		}
		stop()
		close(stall)
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		closeBuilt(t, b)
		led.noDuplicates(t)
		if read := src.Stats().Processed(); uint64(led.count()) != read {
			t.Errorf("fed %d inputs, %d acknowledged after the store moved again", read, led.count())
		}
		clean(t, b.Component.Stats())
	})
}
