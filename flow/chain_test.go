package flow

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/reugn/go-streams"
	gsflow "github.com/reugn/go-streams/flow"
)

func ints(n int) *Source[int] {
	return NewSource("ints", func(stop context.Context, emit Emit[int]) error {
		for i := 0; i < n && stop.Err() == nil; i++ {
			if err := emit(i); err != nil {
				return nil
			}
		}
		return nil
	})
}

func collectInto[T any](mu *sync.Mutex, got *[]T) *Sink[T] {
	var s *Sink[T]
	s = NewSink("collect", 4, func(ctx context.Context, in Inbox[T]) error {
		for {
			v, ok := in.Recv(ctx)
			if !ok {
				return nil
			}
			mu.Lock()
			*got = append(*got, v)
			mu.Unlock()
			s.Stats().Done(1)
		}
	})
	return s
}

// TestStreamChain: the chain written with Via and To runs every stage,
// typed inside, and To returns once the sink has finished.
func TestStreamChain(t *testing.T) {
	src := ints(500)
	format := NewMap("format", 4, 3, func(v int) string { return fmt.Sprint(v) })
	length := NewStage("length", 4, func(ctx context.Context, in Inbox[string], out Outbox[int]) error {
		for {
			v, ok := in.Recv(ctx)
			if !ok {
				return nil
			}
			if err := out.Send(ctx, len(v)); err != nil {
				return nil
			}
		}
	})
	var mu sync.Mutex
	var got []int
	sink := collectInto(&mu, &got)
	toReturned := false
	err := Stream(context.Background(), context.Background(), src, func(s streams.Source) {
		s.Via(format).Via(length).To(sink)
		toReturned = true
		// To blocked until the sink finished: everything is there.
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 500 {
			t.Errorf("To returned with %d of 500 elements written", len(got))
		}
	})
	if err != nil || !toReturned {
		t.Fatalf("Stream: %v (To returned: %v)", err, toReturned)
	}
	sum := 0
	for _, n := range got {
		sum += n
	}
	if want := 10 + 90*2 + 400*3; sum != want {
		t.Fatalf("sum of lengths %d, want %d", sum, want)
	}
}

// TestStreamMisconnected: connecting an output to an input of another type
// fails at the Via, before anything flows; what was already started stops
// and Stream returns an error instead of panicking.
func TestStreamMisconnected(t *testing.T) {
	src := ints(1 << 30)
	strs := NewStage("strings", 1, func(ctx context.Context, in Inbox[string], out Outbox[string]) error {
		t.Error("a stage of the wrong type ran")
		return nil
	})
	err := Stream(context.Background(), context.Background(), src, func(s streams.Source) {
		s.Via(strs)
	})
	if err == nil || !strings.Contains(err.Error(), "ints emits int but strings takes string") {
		t.Fatalf("Stream: %v, want the type mismatch", err)
	}
}

// TestStreamForeignFlow: a go-streams operator cannot join a chain, whose
// stages need the contexts; the chain fails cleanly.
func TestStreamForeignFlow(t *testing.T) {
	pt := gsflow.NewPassThrough()
	defer close(pt.In()) // ends the pass-through's goroutine
	go func() {          // and drain it
		for range pt.Out() {
		}
	}()
	err := Stream(context.Background(), context.Background(), ints(10), func(s streams.Source) {
		s.Via(pt)
	})
	if err == nil || !strings.Contains(err.Error(), "not a flow stage") {
		t.Fatalf("Stream: %v, want a refusal", err)
	}
}

// TestStreamUnfinishedChain: a chain that does not end in a sink is an
// error, and what its last stage emits is discarded so that it finishes.
func TestStreamUnfinishedChain(t *testing.T) {
	double := NewMap("double", 2, 1, func(v int) int { return 2 * v })
	err := Stream(context.Background(), context.Background(), ints(20), func(s streams.Source) {
		s.Via(double)
	})
	if err == nil || !strings.Contains(err.Error(), "double: output not connected") {
		t.Fatalf("Stream: %v, want the dangling output", err)
	}
}

// TestToOutsideStream: To needs a running chain.
func TestToOutsideStream(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "not running") {
			t.Fatalf("recovered %v, want a panic about a chain not running", r)
		}
	}()
	var mu sync.Mutex
	var got []int
	NewMap("m", 1, 1, func(v int) int { return v }).To(collectInto(&mu, &got))
}

// TestMapPanicBecomesError: a panic in a Map's function fails the stage
// with an error; the other elements carry on, the panicked one counts as
// dropped, and the source stops.
func TestMapPanicBecomesError(t *testing.T) {
	src := ints(1 << 30)
	boom := NewMap("boom", 4, 2, func(v int) int {
		if v == 7 {
			panic("seven")
		}
		return v
	})
	var mu sync.Mutex
	var got []int
	sink := collectInto(&mu, &got)
	err := Stream(context.Background(), context.Background(), src, func(s streams.Source) {
		s.Via(boom).To(sink)
	})
	if err == nil || !strings.Contains(err.Error(), "boom: panic: seven") {
		t.Fatalf("Stream: %v, want the Map's panic", err)
	}
	st := boom.Stats()
	if st.Dropped() != 1 || st.InFlight() != 0 || uint64(len(got)) != st.Processed() || src.Stats().Processed() != st.Processed()+1 {
		t.Fatalf("source passed on %d; map passed on %d, dropped %d, holds %d; sink got %d",
			src.Stats().Processed(), st.Processed(), st.Dropped(), st.InFlight(), len(got))
	}
}

// TestMapHardAbort: with the sink stalled, a hard abort ends the Map's
// feeder, workers and forwarder (goleak in TestMain checks), and every
// element is delivered or dropped.
func TestMapHardAbort(t *testing.T) {
	hard, abort := context.WithCancel(context.Background())
	src := ints(1 << 30)
	m := NewMap("m", 3, 4, func(v int) int { return v })
	var n int
	stuck := NewSink("stuck", 2, func(ctx context.Context, in Inbox[int]) error {
		for {
			if _, ok := in.Recv(ctx); !ok {
				return nil
			}
			if n++; n == 1 {
				abort()
			}
			<-ctx.Done()
		}
	})
	if err := Stream(hard, context.Background(), src, func(s streams.Source) { s.Via(m).To(stuck) }); err != nil {
		t.Fatal(err)
	}
	if up, st := src.Stats(), m.Stats(); up.Processed() != st.Processed()+st.Dropped() || st.Processed() != stuck.Stats().Dropped() {
		t.Fatalf("source %d; map passed on %d dropped %d; sink dropped %d", up.Processed(), st.Processed(), st.Dropped(), stuck.Stats().Dropped())
	}
}

// TestRunStartsWhatIsConnected: Run starts components connected to those
// it is given, and reports a component run twice.
func TestRunStartsWhatIsConnected(t *testing.T) {
	src := ints(50)
	m := NewMap("m", 1, 1, func(v int) int { return v })
	var mu sync.Mutex
	var got []int
	sink := collectInto(&mu, &got)
	Connect[int](src, m)
	Connect[int](m, sink)
	if err := Run(context.Background(), context.Background(), src); err != nil {
		t.Fatal(err)
	}
	if len(got) != 50 {
		t.Fatalf("got %d of 50", len(got))
	}
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("a second run of the same source did not panic")
		}
	}()
	_ = Run(context.Background(), context.Background(), src)
}
