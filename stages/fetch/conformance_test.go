package fetch

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/flow/flowtest"
	"github.com/sluicehq/sluice/guard"
	"github.com/sluicehq/sluice/record"
)

// TestFlowConformance runs the stage contract's suite (flow/flowtest) on the
// fetch stage, fetching from a real server on loopback.
func TestFlowConformance(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, "<h1>%s</h1>", r.URL.Path)
	}))
	defer srv.Close()
	build := func(t *testing.T, trace func(record.Span)) flowtest.Built[flow.Processor[record.Task, record.Fetched]] {
		s, err := New(Config{
			Concurrency: 4, DomainRate: -1, MaxAttempts: 1, AttemptTimeout: 20 * time.Second,
			ConnectTimeout: 5 * time.Second, Policy: guard.Config{AllowLoopback: true}, Trace: trace,
		})
		if err != nil {
			t.Fatal(err)
		}
		return flowtest.Built[flow.Processor[record.Task, record.Fetched]]{Component: s.Flow(), Holds: s.Holds(), Close: s.Close}
	}
	flowtest.CheckStage(t, flowtest.Stage[record.Task, record.Fetched]{
		New: func(t *testing.T) flowtest.Built[flow.Processor[record.Task, record.Fetched]] {
			return build(t, nil)
		},
		// A span hook that panics, inside the attempt: the stage turns the
		// panic into the task's error.
		Panicking: func(t *testing.T) flowtest.Built[flow.Processor[record.Task, record.Fetched]] {
			return build(t, func(record.Span) { panic("trace hook broke") })
		},
		Input: func(i int) record.Task {
			raw := fmt.Sprintf("%s/product/%d", srv.URL, i)
			u, err := url.Parse(raw)
			if err != nil {
				panic(err)
			}
			return record.Task{Msg: record.Message{URL: raw}, URL: u, Origin: record.Origin{Offset: int64(i)}, Enqueued: time.Now()}
		},
		Index: func(f record.Fetched) int { return int(f.Task.Origin.Offset) },
		Err:   func(f record.Fetched) error { return f.Err },
	})
}
