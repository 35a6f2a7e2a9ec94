package fetch

import (
	"context"
	"testing"
)

// TestReadAhead: a known length is reserved as it is, an unknown one as
// one read unit, never more than the bound; a reservation that does not
// fit waits, and gives up with its context, holding nothing; a nil
// readAhead bounds nothing.
func TestReadAhead(t *testing.T) {
	ctx := t.Context()
	ra := newReadAhead(100 << 10)
	for _, tc := range []struct{ size, want int64 }{{0, 0}, {1000, 1000}, {-1, readChunk}, {1 << 20, 100 << 10}} {
		got, err := ra.reserve(ctx, tc.size)
		if err != nil || got != tc.want {
			t.Errorf("reserve(%d) = %d, %v; want %d", tc.size, got, err, tc.want)
		}
		ra.release(got)
	}
	held, err := ra.reserve(ctx, 90<<10)
	if err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if n, err := ra.reserve(canceled, 20<<10); err == nil || n != 0 {
		t.Errorf("reserve over the bound with a canceled context = %d, %v; want 0 and an error", n, err)
	}
	done := make(chan int64)
	go func() { // owner: the test, which receives from done below
		n, _ := ra.reserve(ctx, 20<<10)
		done <- n
	}()
	ra.release(held) // makes room for the waiter
	if n := <-done; n != 20<<10 {
		t.Errorf("waiter reserved %d", n)
	}
	ra.release(20 << 10)
	if !ra.sem.TryAcquire(100 << 10) {
		t.Error("the whole bound is not free after every release")
	}
	var none *readAhead
	if n, err := none.reserve(ctx, 1<<30); n != 0 || err != nil {
		t.Errorf("nil readAhead reserved %d, %v", n, err)
	}
	none.release(5)
	if newReadAhead(-1) != nil {
		t.Error("a negative bound is not none")
	}
}
