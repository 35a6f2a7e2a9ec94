package fetch

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

// TestDisownedTasksAreDropped: tasks whose source no longer owns them
// (record.Task.Owned false: a revoked Kafka partition) are dropped before
// any attempt, whether that is seen when the stage takes them or when a
// worker is about to start: no request, no output, no ack; they count as
// disowned (and dropped), so every hop still adds up.
func TestDisownedTasksAreDropped(t *testing.T) {
	site := startSite(t, testbed.SiteConfig{})
	_, pool := newFarmPool(t, 1, 230, testbed.FarmConfig{})
	tasks := productTasks(t, site, 1, 90, "")
	var acked atomic.Int64
	for i := range tasks {
		tasks[i].Ack = func() { acked.Add(1) }
		var calls atomic.Int64
		switch i % 3 {
		case 1: // revoked before the stage took it
			tasks[i].Owned = func() bool { return false }
		case 2: // revoked while it waited for a worker
			tasks[i].Owned = func() bool { return calls.Add(1) == 1 }
		}
	}
	st, err := New(quickConfig(pool, 4))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	src := flow.NewSource("tasks", func(stop context.Context, emit flow.Emit[record.Task]) error {
		for _, tk := range tasks {
			if err := emit(tk); err != nil {
				return err
			}
		}
		return nil
	})
	var mu sync.Mutex
	var out []record.Fetched
	sink := flow.NewSink("collect", 16, func(ctx context.Context, in flow.Inbox[record.Fetched]) error {
		for {
			f, ok := in.Recv(ctx)
			if !ok {
				return nil
			}
			mu.Lock()
			out = append(out, f)
			mu.Unlock()
		}
	})
	flow.Connect(src, st.Flow())
	flow.Connect(st.Flow(), sink)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := flow.Run(ctx, ctx, src, st.Flow(), sink); err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, f := range out {
		if f.Err != nil {
			t.Errorf("%s: %v", f.Task.Msg.URL, f.Err)
		}
	}
	fs := st.Flow().Stats()
	if len(out) != 30 || fs.Disowned() != 60 || fs.Dropped() != 60 || fs.InFlight() != 0 {
		t.Fatalf("%d passed on, %d disowned, %d dropped, %d in flight; want 30, 60, 60, 0", len(out), fs.Disowned(), fs.Dropped(), fs.InFlight())
	}
	if up := src.Stats().Processed(); up != fs.Processed()+fs.Dropped() {
		t.Fatalf("source passed on %d, fetch passed on %d and dropped %d", up, fs.Processed(), fs.Dropped())
	}
	if n := site.Stats().Requests; n != 30 {
		t.Fatalf("the site saw %d requests, want 30 (none for disowned tasks)", n)
	}
	if acked.Load() != 0 {
		t.Fatalf("%d acks from the fetch stage", acked.Load())
	}
}
