package sink

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/flow/flowtest"
	"github.com/sluicehq/sluice/record"
)

// stallWriter blocks every write until stall is closed (a full disk, a
// reader that stopped reading).
type stallWriter struct {
	stall <-chan struct{}
	w     io.Writer
}

func (s stallWriter) Write(p []byte) (int, error) {
	if s.stall != nil {
		<-s.stall
	}
	return s.w.Write(p)
}

// TestJSONLFlowConforms runs the stage contract's suite (flow/flowtest) on
// the JSONL sink; the sink suite in conformance_test.go checks what it
// writes.
func TestJSONLFlowConforms(t *testing.T) {
	build := func(t *testing.T, cfg JSONLConfig) flowtest.Built[*flow.Sink[record.Output]] {
		cfg.BatchSize, cfg.QueueSize, cfg.FlushInterval = 8, 4, 2*time.Millisecond
		j, err := NewJSONL(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return flowtest.Built[*flow.Sink[record.Output]]{Component: j.Sink(), Holds: j.BatchSize()}
	}
	flowtest.CheckSink(t, flowtest.Sink[record.Output]{
		New: func(t *testing.T, stall <-chan struct{}) flowtest.Built[*flow.Sink[record.Output]] {
			return build(t, JSONLConfig{Writer: stallWriter{stall, io.Discard}})
		},
		Panicking: func(t *testing.T) flowtest.Built[*flow.Sink[record.Output]] {
			return build(t, JSONLConfig{Writer: io.Discard, OnDone: func(record.Output) { panic("hook broke") }})
		},
		Input: func(i int, ack func()) record.Output {
			u := fmt.Sprintf("http://shop.test/product/%d", i)
			return record.Output{Ack: ack, Result: &record.Result{Schema: record.SchemaVersion, URL: u, Status: 200,
				Fields: map[string]*string{}, Links: []string{}}}
		},
	})
}
