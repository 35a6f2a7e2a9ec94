package sink

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/record"
)

// TestReadyAfterFailedWrite: once a write has failed, the sink says so.
func TestReadyAfterFailedWrite(t *testing.T) {
	j, err := NewJSONL(JSONLConfig{Writer: failWriter{}, BatchSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Ready(); err != nil {
		t.Fatalf("Ready before any write: %v", err)
	}
	if err := feed(t, j, []record.Output{{Result: &record.Result{URL: "http://a.example/"}}}); err == nil {
		t.Fatal("the failing writer did not fail the run")
	}
	if err := j.Ready(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Ready after a failed write: %v", err)
	}
}

// blockingWriter blocks every write until release is closed, as a stuck
// disk or a consumer that stopped reading would.
type blockingWriter struct{ release chan struct{} }

func (b blockingWriter) Write(p []byte) (int, error) {
	<-b.release
	return len(p), nil
}

// TestReadyWhileWriteIsStuck: a batch write that has not returned for
// StuckAfter makes the sink not ready; once it returns the sink is ready.
func TestReadyWhileWriteIsStuck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := blockingWriter{release: make(chan struct{})}
		j, err := NewJSONL(JSONLConfig{Writer: w, BatchSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		src := flow.NewSource("feed", func(stop context.Context, emit flow.Emit[record.Output]) error {
			return emit(record.Output{Result: &record.Result{URL: "http://a.example/"}})
		})
		flow.Connect[record.Output](src, j.Sink())
		done := make(chan error, 1)
		go func() { done <- flow.Run(context.Background(), context.Background(), src, j.Sink()) }()
		synctest.Wait() // the write is blocked
		time.Sleep(StuckAfter - time.Second)
		if err := j.Ready(); err != nil {
			t.Errorf("Ready before StuckAfter: %v", err)
		}
		time.Sleep(2 * time.Second)
		if err := j.Ready(); err == nil || !strings.Contains(err.Error(), "has not returned for 11s") {
			t.Errorf("Ready after StuckAfter: %v", err)
		}
		close(w.release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err := j.Ready(); err != nil {
			t.Errorf("Ready after the write returned: %v", err)
		}
	})
}
