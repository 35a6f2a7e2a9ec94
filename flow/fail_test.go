package flow

import (
	"context"
	"errors"
	"testing"
)

// TestRunFailureStopsSources: when the sink fails, the source's stop
// context ends, so a source that would read forever returns and Run
// reports the sink's error.
func TestRunFailureStopsSources(t *testing.T) {
	src := NewSource("endless", func(stop context.Context, emit Emit[int]) error {
		for i := 0; ; i++ {
			if stop.Err() != nil {
				return nil
			}
			if err := emit(i); err != nil {
				return nil
			}
		}
	})
	broken := errors.New("disk full")
	sink := NewSink("sink", 4, func(ctx context.Context, in Inbox[int]) error {
		for n := 0; ; n++ {
			if _, ok := in.Recv(ctx); !ok {
				return nil
			}
			if n == 10 {
				return broken
			}
		}
	})
	Connect[int](src, sink)
	err := Run(context.Background(), context.Background(), src, sink)
	if !errors.Is(err, broken) {
		t.Fatalf("Run: %v, want the sink's error", err)
	}
}
