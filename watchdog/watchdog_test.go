package watchdog

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/governor"
	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/record"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func stages(states ...StageState) []StageState { return states }

func TestDiagnose(t *testing.T) {
	const after = 30 * time.Second
	still := 40 * time.Second
	proxies := func(q ...bool) func() []metrics.ProxyState {
		return func() []metrics.ProxyState {
			out := make([]metrics.ProxyState, len(q))
			for i, b := range q {
				out[i] = metrics.ProxyState{ID: "p" + string(rune('1'+i)), Quarantined: b}
			}
			return out
		}
	}
	act := func(a governor.Activity) func() governor.Activity { return func() governor.Activity { return a } }
	failing := func(pairs ...string) window {
		w := newWindow()
		for i := 0; i+1 < len(pairs); i += 2 {
			w.add(record.Span{Proxy: pairs[i], Domain: "shop.example", Error: pairs[i+1]})
		}
		return w
	}
	busy := stages(
		StageState{Name: "source", Processed: 100, StillFor: still},
		StageState{Name: "fetch", Queue: 10, Capacity: 64, InFlight: 8, StillFor: still},
		StageState{Name: "parse", Capacity: 4, StillFor: still},
		StageState{Name: "sink", Capacity: 256, StillFor: still},
	)
	for _, c := range []struct {
		name    string
		snap    Snapshot
		cause   string
		summary []string // substrings of the summary
		idle    bool
	}{
		{
			name: "sink holds outputs and writes none",
			snap: Snapshot{Stages: stages(
				StageState{Name: "source", Processed: 900, StillFor: still},
				StageState{Name: "fetch", Queue: 64, Capacity: 64, InFlight: 32, StillFor: still},
				StageState{Name: "parse", Queue: 4, Capacity: 4, InFlight: 2, StillFor: still},
				StageState{Name: "sink", Queue: 256, Capacity: 256, InFlight: 256, StillFor: still},
			)},
			cause: CauseSinkBlocked, summary: []string{"sink blocked", "holds 512 outputs", "256/256"},
		},
		{
			name:  "every proxy quarantined",
			snap:  Snapshot{Stages: busy, Sources: metrics.Sources{Fetch: act(governor.Activity{Workers: 8, LeaseWait: 8}), Proxies: proxies(true, true, true)}},
			cause: CauseProxiesQuarantined, summary: []string{"all 3 proxies are quarantined", "p1; p2; p3", "8 inputs wait"},
		},
		{
			name:  "lease wait with some proxies up",
			snap:  Snapshot{Stages: busy, Sources: metrics.Sources{Fetch: act(governor.Activity{Workers: 8, LeaseWait: 3}), Proxies: proxies(true, false)}},
			cause: CauseLeaseWait, summary: []string{"3 inputs wait for a proxy lease", "1 of 2 proxies quarantined"},
		},
		{
			name: "every attempt fails at the proxies",
			snap: Snapshot{Stages: busy, Sources: metrics.Sources{Fetch: act(governor.Activity{Workers: 8, Backoff: 8}), Proxies: proxies(false, false, false)},
				Window: failing("p1", "proxy_connect", "p2", "proxy_connect", "p3", "proxy_connect", "p1", "proxy_connect")},
			cause: CauseProxiesFailing, summary: []string{"all 3 proxies failing", "p1: proxy_connect ×2", "p3: proxy_connect ×1"},
		},
		{
			name:  "every attempt fails at the target",
			snap:  Snapshot{Stages: busy, Window: failing("p1", "rate_limited", "p2", "rate_limited", "p1", "server_error")},
			cause: CauseTargetFailing, summary: []string{"failed at the target", "shop.example: rate_limited ×2, server_error ×1"},
		},
		{
			name: "waiting for one domain's tokens",
			snap: Snapshot{Stages: busy, Sources: metrics.Sources{
				Fetch:   act(governor.Activity{Workers: 8, TokenWait: map[string]int{"slow.example": 7, "other.example": 1}}),
				Domains: func() []governor.DomainStats { return []governor.DomainStats{{Domain: "slow.example", Rate: 0.5}} },
			}},
			cause: CauseDomainTokens, summary: []string{"8 of 8 fetch workers wait for rate-limit tokens", "7 of them for slow.example (rate 0.5/s)"},
		},
		{
			name: "waiting for one domain's tokens, asked by name",
			snap: Snapshot{Stages: busy, Sources: metrics.Sources{
				Fetch: act(governor.Activity{Workers: 8, TokenWait: map[string]int{"slow.example": 7, "other.example": 1}}),
				DomainsOf: func(hosts []string) []governor.DomainStats {
					if len(hosts) != 1 || hosts[0] != "slow.example" {
						return nil
					}
					return []governor.DomainStats{{Domain: "slow.example", Rate: 0.5}}
				},
			}},
			cause: CauseDomainTokens, summary: []string{"7 of them for slow.example (rate 0.5/s)"},
		},
		{
			name: "requests hang",
			snap: Snapshot{Since: 45 * time.Second, Stages: busy,
				Sources: metrics.Sources{Fetch: act(governor.Activity{Workers: 8, Requests: map[string]int{"p1": 5, "p2": 3}})}},
			cause: CauseRequestsHanging, summary: []string{"8 requests in flight have had no answer for 45s", "p1 ×5, p2 ×3"},
		},
		{
			name: "parse cannot hand on",
			snap: Snapshot{Stages: stages(
				StageState{Name: "source", StillFor: still},
				StageState{Name: "fetch", Queue: 64, Capacity: 64, InFlight: 8, StillFor: still},
				StageState{Name: "parse", Queue: 4, Capacity: 4, InFlight: 4, StillFor: still},
				StageState{Name: "sink", Capacity: 256, StillFor: still},
			)},
			cause: CauseDownstreamBlocked, summary: []string{"the parse queue is full (4/4)"},
		},
		{
			name: "bad input only",
			snap: Snapshot{Stages: busy, Window: func() window {
				w := newWindow()
				w.outputs["bad_input"] = 12
				return w
			}()},
			cause: CauseFailing, summary: []string{"every output", "bad_input ×12"},
		},
		{
			name: "nothing to read",
			snap: Snapshot{Stages: stages(
				StageState{Name: "source", Processed: 42, StillFor: still},
				StageState{Name: "fetch", Capacity: 64, StillFor: still},
				StageState{Name: "sink", Capacity: 256, StillFor: still},
			)},
			cause: CauseSourceEmpty, summary: []string{"read nothing new for 40s", "42 read"}, idle: true,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.snap.After = after
			if c.snap.Since == 0 {
				c.snap.Since = still
			}
			d := Diagnose(c.snap)
			if d.Cause != c.cause || d.Idle != c.idle {
				t.Fatalf("cause %s (idle %v), want %s (idle %v): %s", d.Cause, d.Idle, c.cause, c.idle, d.Summary)
			}
			for _, s := range c.summary {
				if !strings.Contains(d.Summary, s) {
					t.Errorf("summary %q lacks %q", d.Summary, s)
				}
			}
			if len(d.Stages) != len(c.snap.Stages) {
				t.Errorf("%d stage lines for %d stages", len(d.Stages), len(c.snap.Stages))
			}
		})
	}
}

func TestStageLines(t *testing.T) {
	d := Diagnose(Snapshot{
		Since: time.Minute, After: 30 * time.Second,
		Stages: stages(
			StageState{Name: "source", Processed: 900, StillFor: time.Minute},
			StageState{Name: "fetch", Queue: 64, Capacity: 64, InFlight: 32, StillFor: time.Minute},
			StageState{Name: "parse", Queue: 1, Capacity: 4, InFlight: 2, StillFor: time.Second},
			StageState{Name: "sink", Queue: 3, Capacity: 256, InFlight: 256, StillFor: time.Minute},
		),
		Sources: metrics.Sources{Fetch: func() governor.Activity {
			return governor.Activity{Workers: 32, InFlight: 32, TokenWait: map[string]int{"a": 4}, LeaseWait: 2,
				Requests: map[string]int{"p1": 6}, Backoff: 1, Handover: 19}
		}},
	})
	want := map[string]string{
		"source": "read 900; blocked: the fetch queue is full (64/64)",
		"fetch":  "queue 64/64, 32 in flight: 4 waiting for tokens (a ×4), 2 waiting for a proxy, 6 in requests (p1 ×6), 1 backing off, 19 waiting for parse to take them, passed nothing on for 1m0s",
		"parse":  "queue 1/4, 2 in flight, passed nothing on for 1s",
		"sink":   "queue 3/256, holds 256, last write 1m0s ago",
	}
	for _, st := range d.Stages {
		if st.Waiting != want[st.Name] {
			t.Errorf("%s:\n got %q\nwant %q", st.Name, st.Waiting, want[st.Name])
		}
	}
}

// syncBuffer is a log sink safe for the watchdog's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// TestRunTiming drives the watchdog's clock with synctest: a stall is
// reported once After has passed without a success, repeated every After,
// and ends with a "progress resumed" line when a success arrives.
func TestRunTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := flow.NewSource("source", func(context.Context, flow.Emit[int]) error { return nil })
		sink := flow.NewSink("sink", 4, func(context.Context, flow.Inbox[int]) error { return nil })
		sink.In() <- 1 // one output held, never written
		var logs syncBuffer
		var stalls, recoveries int
		w, err := New(Config{
			After: 10 * time.Second, Interval: time.Second,
			Sources:   metrics.Sources{Stages: []*flow.Stats{src.Stats(), sink.Stats()}},
			Logger:    zerolog.New(&logs),
			OnStall:   func(Diagnosis) { stalls++ },
			OnRecover: func() { recoveries++ },
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- w.Run(ctx) }()

		time.Sleep(9500 * time.Millisecond)
		synctest.Wait()
		if n := len(logs.lines(t)); n != 0 {
			t.Fatalf("%d reports before After passed", n)
		}
		time.Sleep(time.Second) // 10.5 s
		synctest.Wait()
		lines := logs.lines(t)
		if len(lines) != 1 || lines[0]["cause"] != CauseSinkBlocked || lines[0]["level"] != "warn" || stalls != 1 {
			t.Fatalf("after 10.5 s: stalls %d, lines %v", stalls, lines)
		}
		if !strings.Contains(lines[0]["sink"].(string), "queue 1/4") {
			t.Errorf("sink line %q", lines[0]["sink"])
		}
		time.Sleep(9 * time.Second) // 19.5 s: not yet repeated
		synctest.Wait()
		if n := len(logs.lines(t)); n != 1 {
			t.Fatalf("%d reports at 19.5 s, want 1", n)
		}
		time.Sleep(time.Second) // 20.5 s: repeated, OnStall not called again
		synctest.Wait()
		if n := len(logs.lines(t)); n != 2 || stalls != 1 {
			t.Fatalf("at 20.5 s: %d reports, %d stalls; want 2 and 1", n, stalls)
		}
		w.ObserveOutput(record.Output{Result: &record.Result{}})
		time.Sleep(time.Second)
		synctest.Wait()
		lines = logs.lines(t)
		if last := lines[len(lines)-1]; last["message"] != "progress resumed" || recoveries != 1 {
			t.Fatalf("after a success: %v, recoveries %d", last, recoveries)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		close(sink.In())
	})
}

// TestIdleIsInfo checks that a pipeline with nothing to do is reported as
// idle, at info level, without OnStall.
func TestIdleIsInfo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := flow.NewSource("source", func(context.Context, flow.Emit[int]) error { return nil })
		var logs syncBuffer
		stalled := false
		w, err := New(Config{After: 5 * time.Second, Sources: metrics.Sources{Stages: []*flow.Stats{src.Stats()}},
			Logger: zerolog.New(&logs), OnStall: func(Diagnosis) { stalled = true }})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- w.Run(ctx) }()
		time.Sleep(6 * time.Second)
		synctest.Wait()
		cancel()
		<-done
		lines := logs.lines(t)
		if len(lines) != 1 || lines[0]["level"] != "info" || lines[0]["cause"] != CauseSourceEmpty || stalled {
			t.Fatalf("idle report: %v (stalled %v)", lines, stalled)
		}
	})
}

func TestConfig(t *testing.T) {
	if _, err := New(Config{After: -time.Second}); err == nil {
		t.Error("negative After accepted")
	}
	w, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if w.cfg.After != 30*time.Second || w.cfg.Interval != 3*time.Second {
		t.Errorf("defaults: after %v interval %v", w.cfg.After, w.cfg.Interval)
	}
}

// TestWindowBounded feeds more distinct proxies and classes than the
// window admits: its maps stay bounded.
func TestWindowBounded(t *testing.T) {
	w := newWindow()
	for i := range 3 * maxWindowKeys {
		s := strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("y", i/26)
		w.add(record.Span{Proxy: s, Domain: s, Error: s})
	}
	if len(w.byProxy) > maxWindowKeys+1 || len(w.byDomain) > maxWindowKeys+1 || len(w.byClass) > maxWindowKeys+1 {
		t.Errorf("window grew past its bound: %d proxies, %d domains, %d classes", len(w.byProxy), len(w.byDomain), len(w.byClass))
	}
	if w.attempts != 3*maxWindowKeys || w.failed != 3*maxWindowKeys {
		t.Errorf("counted %d attempts, %d failed", w.attempts, w.failed)
	}
}
