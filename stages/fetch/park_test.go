package fetch

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/record"
)

// With ParkAfter, a site answering 429 with a Retry-After longer than it
// is asked once: that task and the ones queued behind it come out parked
// until the pause ends, carrying the 429's class; a task already parked
// MaxParks times comes out as an error of that class instead.
func TestParkedTasksComeOutParked(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	cfg := quickConfig(nil, 1)
	cfg.ParkAfter, cfg.MaxParks = time.Second, 3
	var tasks []record.Task
	for i, p := range []string{"/a", "/b", "/c", "/d"} {
		tk := newTask(t, srv.URL+p, "")
		if i == 3 {
			tk.Parks = 3 // its budget is spent
		}
		tasks = append(tasks, tk)
	}
	before := time.Now()
	got := fetchAll(t, cfg, tasks)
	if len(got) != len(tasks) {
		t.Fatalf("%d out, want %d", len(got), len(tasks))
	}
	parked, spent := 0, 0
	for _, f := range got {
		switch {
		case f.Task.Parks == 3:
			spent++
			if !f.Parked.IsZero() || failure.ClassOf(f.Err) != failure.RateLimited || failure.Retryable(f.Err) {
				t.Errorf("%s over its budget: parked %v, err %v; want a final rate_limited error", f.Task.URL, f.Parked, f.Err)
			}
		default:
			parked++
			if d := f.Parked.Sub(before); d < 119*time.Second || d > 125*time.Second {
				t.Errorf("%s parked until now+%v, want the 429's time + 120 s", f.Task.URL, d)
			}
			if failure.ClassOf(f.Err) != failure.RateLimited {
				t.Errorf("%s parked with error %v, want class rate_limited", f.Task.URL, f.Err)
			}
		}
	}
	if parked != 3 || spent != 1 {
		t.Fatalf("%d parked and %d over budget, want 3 and 1", parked, spent)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("the paused site got %d requests, want 1", n)
	}
}
