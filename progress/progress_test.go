package progress

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/flow"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLine(t *testing.T) {
	for _, c := range []struct {
		c    Counts
		rate float64
		want string
	}{
		{Counts{Done: 1234, Errors: 3, Total: 3000}, 512.34, "[############>                 ]  1234/3000   41%  512.3/s  3 errors  ETA 3s"},
		{Counts{Done: 0, Total: 10}, 0, "[>                             ]  0/10    0%  0.0/s  0 errors"},
		{Counts{Done: 10, Total: 10}, 4, "[##############################]  10/10  100%  4.0/s  0 errors  ETA 0s"},
		{Counts{Done: 12, Total: 10}, 4, "[##############################]  12/10  100%  4.0/s  0 errors  ETA 0s"},
		{Counts{Done: 77, Errors: 1}, 2.5, "77 done  2.5/s  1 errors"},
	} {
		if got := Line(c.c, c.rate, 30); got != c.want {
			t.Errorf("Line(%+v, %v):\n got %q\nwant %q", c.c, c.rate, got, c.want)
		}
	}
}

func TestETA(t *testing.T) {
	if d, ok := ETA(Counts{Done: 100, Total: 1100}, 50); !ok || d != 20*time.Second {
		t.Errorf("ETA = %v %v, want 20s", d, ok)
	}
	if _, ok := ETA(Counts{Done: 100}, 50); ok {
		t.Error("ETA without a total")
	}
	if _, ok := ETA(Counts{Done: 100, Total: 200}, 0); ok {
		t.Error("ETA at rate 0")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStatsLines runs the reporter on a fake clock: one line per interval,
// with the rate over the recent window and the queue depths.
func TestStatsLines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var done atomic.Int64
		st := flow.NewStage("fetch", 8, func(context.Context, flow.Inbox[int], flow.Outbox[int]) error { return nil })
		st.In() <- 1
		st.In() <- 2
		var logs syncBuffer
		r, err := New(Config{
			Counts:   func() Counts { return Counts{Done: done.Load(), Errors: 2, Total: 1000} },
			Stages:   []*flow.Stats{st.Stats()},
			Logger:   zerolog.New(&logs),
			Interval: 10 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		finished := make(chan error)
		go func() { finished <- r.Run(ctx) }()
		// 20 inputs per second for 25 s.
		for range 25 {
			time.Sleep(time.Second)
			done.Add(20)
		}
		synctest.Wait()
		cancel()
		if err := <-finished; err != nil {
			t.Fatal(err)
		}
		var lines []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			lines = append(lines, m)
		}
		if len(lines) != 2 {
			t.Fatalf("%d lines in 25 s at a 10 s interval, want 2: %v", len(lines), lines)
		}
		second := lines[1]
		// At 20 s, 380 or 400 inputs are done (the tick at 10 s and at 20 s
		// may each come before or after that second's increment), so the
		// rate over the last 10 s is 20/s give or take one increment.
		if d := second["done"].(float64); d < 380 || d > 400 {
			t.Errorf("done = %v", d)
		}
		var rate float64
		if _, err := fmt.Sscanf(second["rate"].(string), "%f/s", &rate); err != nil || rate < 18 || rate > 22 {
			t.Errorf("rate = %v (%v), want 18–22/s", second["rate"], err)
		}
		if second["total"].(float64) != 1000 || second["errors"].(float64) != 2 || second["queues"] != "fetch 2/8" {
			t.Errorf("line = %v", second)
		}
		if _, ok := second["eta"]; !ok {
			t.Errorf("no eta in %v", second)
		}
		close(st.In())
	})
}

// TestBarAndLogs draws the bar and writes log lines through Writer: every
// log line starts on a cleared line and the bar is redrawn after it.
func TestBarAndLogs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var term syncBuffer
		var done atomic.Int64
		r, err := New(Config{Counts: func() Counts { return Counts{Done: done.Load(), Total: 100} }, Bar: true, Out: &term, Width: 10})
		if err != nil {
			t.Fatal(err)
		}
		log := r.Writer(&term)
		ctx, cancel := context.WithCancel(context.Background())
		finished := make(chan error)
		go func() { finished <- r.Run(ctx) }()
		time.Sleep(time.Second)
		done.Store(50)
		time.Sleep(300 * time.Millisecond)
		synctest.Wait()
		if _, err := io.WriteString(log, "a log line\n"); err != nil {
			t.Fatal(err)
		}
		done.Store(100)
		cancel()
		if err := <-finished; err != nil {
			t.Fatal(err)
		}
		out := term.String()
		if !strings.Contains(out, "\r\x1b[K[#####>    ]  50/100   50%") {
			t.Errorf("no half-way bar in %q", out)
		}
		if !strings.Contains(out, "\r\x1b[Ka log line\n[#####>    ]  50/100") {
			t.Errorf("log line not framed by a cleared line and a redraw: %q", out)
		}
		if !strings.Contains(out, "\r\x1b[K[##########]  100/100  100%") || !strings.HasSuffix(out, "ETA 0s\n") {
			t.Errorf("final bar missing or its line not ended: %q", out)
		}
	})
}

func TestConfigErrors(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("no Counts accepted")
	}
	if _, err := New(Config{Counts: func() Counts { return Counts{} }, Bar: true}); err == nil {
		t.Error("a bar without Out accepted")
	}
	r, err := New(Config{Counts: func() Counts { return Counts{} }})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if r.Writer(&b) != io.Writer(&b) {
		t.Error("Writer without a bar should return its argument")
	}
}
