package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/governor"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newMetrics(t *testing.T, cfg Config) *Metrics {
	t.Helper()
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// gather returns the registry's families by name.
func gather(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// value finds the sample of family name whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	t.Helper()
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func span(proxy, domain string, status int, class string, start time.Time, dur time.Duration) record.Span {
	return record.Span{
		Schema: 1, URL: "http://user:secret@" + domain + "/p?q=1", Domain: domain, Proxy: proxy, Attempt: 1,
		Enqueued: start.Add(-30 * time.Millisecond), WaitStart: start.Add(-20 * time.Millisecond), WaitEnd: start.Add(-5 * time.Millisecond),
		Start: start, End: start.Add(dur), Status: status, Bytes: 100, Error: class,
	}
}

func TestObserveSpan(t *testing.T) {
	m := newMetrics(t, Config{MaxDomains: 2})
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	m.ObserveSpan(span("p1", "a.example", 200, "", t0, 20*time.Millisecond))
	m.ObserveSpan(span("p1", "a.example", 429, "rate_limited", t0, 5*time.Millisecond))
	m.ObserveSpan(span("p2", "b.example", 0, "proxy_connect", t0, time.Millisecond))
	m.ObserveSpan(span("p2", "c.example", 503, "server_error", t0, time.Millisecond)) // past the domain cap
	m.ObserveSpan(span("p2", "d.example", 200, "", t0, time.Millisecond))             // also past it

	f := gather(t, m)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"sluice_proxy_requests_total", map[string]string{"proxy": "p1", "outcome": "ok"}, 1},
		{"sluice_proxy_requests_total", map[string]string{"proxy": "p1", "outcome": "rate_limited"}, 1},
		{"sluice_proxy_requests_total", map[string]string{"proxy": "p2", "outcome": "proxy_connect"}, 1},
		{"sluice_proxy_request_duration_seconds", map[string]string{"proxy": "p1"}, 2},
		{"sluice_proxy_lease_wait_seconds", map[string]string{"proxy": "p2"}, 3},
		{"sluice_proxy_response_bytes_total", map[string]string{"proxy": "p1"}, 200},
		{"sluice_domain_requests_total", map[string]string{"domain": "a.example", "code": "2xx"}, 1},
		{"sluice_domain_requests_total", map[string]string{"domain": "a.example", "code": "4xx"}, 1},
		{"sluice_domain_requests_total", map[string]string{"domain": "b.example", "code": "none"}, 1},
		{"sluice_domain_requests_total", map[string]string{"domain": Other, "code": "5xx"}, 1},
		{"sluice_domain_requests_total", map[string]string{"domain": Other, "code": "2xx"}, 1},
		{"sluice_domain_rate_limited_total", map[string]string{"domain": "a.example"}, 1},
		{"sluice_domain_token_wait_seconds", map[string]string{"domain": "a.example"}, 2},
	} {
		got, ok := value(t, f, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	// The latency landed in the right buckets: 20 ms is above 10 ms.
	h := f["sluice_proxy_request_duration_seconds"]
	for _, mm := range h.GetMetric() {
		if mm.GetLabel()[0].GetValue() != "p1" {
			continue
		}
		for _, b := range mm.GetHistogram().GetBucket() {
			if b.GetUpperBound() == 0.01 && b.GetCumulativeCount() != 1 {
				t.Errorf("p1 le=0.01 bucket = %d, want 1 (the 5 ms attempt)", b.GetCumulativeCount())
			}
			if b.GetUpperBound() == 0.025 && b.GetCumulativeCount() != 2 {
				t.Errorf("p1 le=0.025 bucket = %d, want 2", b.GetCumulativeCount())
			}
		}
	}
	assertNoSecrets(t, f)
}

// assertNoSecrets checks that no label value is a URL or holds the test's
// canary password.
func assertNoSecrets(t *testing.T, fams map[string]*dto.MetricFamily) {
	t.Helper()
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if v := l.GetValue(); strings.Contains(v, "://") || strings.Contains(v, "secret") || strings.Contains(v, "/") {
					t.Errorf("%s has label %s=%q: a URL or secret in a label", name, l.GetName(), v)
				}
			}
		}
	}
}

func TestObserveOutput(t *testing.T) {
	m := newMetrics(t, Config{})
	m.ObserveOutput(record.Output{Result: &record.Result{}})
	m.ObserveOutput(record.Output{Result: &record.Result{Error: &record.Error{Class: "timeout"}}})
	m.ObserveOutput(record.Output{Dead: &record.DeadLetter{}})
	m.Stalled("sink_blocked")
	f := gather(t, m)
	for outcome, want := range map[string]float64{"ok": 1, "timeout": 1, "dead_letter": 1} {
		if got, _ := value(t, f, "sluice_outputs_total", map[string]string{"outcome": outcome}); got != want {
			t.Errorf("outputs{%s} = %v, want %v", outcome, got, want)
		}
	}
	if got, _ := value(t, f, "sluice_stalled", nil); got != 1 {
		t.Errorf("sluice_stalled = %v, want 1", got)
	}
	if got, _ := value(t, f, "sluice_stalls_total", map[string]string{"cause": "sink_blocked"}); got != 1 {
		t.Errorf("stalls{sink_blocked} = %v, want 1", got)
	}
	m.Recovered()
	if got, _ := value(t, gather(t, m), "sluice_stalled", nil); got != 0 {
		t.Errorf("sluice_stalled after recovery = %v, want 0", got)
	}
}

func TestLiveSources(t *testing.T) {
	m := newMetrics(t, Config{})
	// A real stage with a queue of 5 holding 3 elements.
	st := flow.NewStage("fetch", 5, func(context.Context, flow.Inbox[int], flow.Outbox[int]) error { return nil })
	for i := range 3 {
		st.In() <- i
	}
	src := Sources{
		Stages: []*flow.Stats{st.Stats()},
		Fetch: func() governor.Activity {
			return governor.Activity{Workers: 8, InFlight: 6, TokenWait: map[string]int{"a.example": 2}, LeaseWait: 1,
				Requests: map[string]int{"p1": 2}, DomainRequests: map[string]int{"a.example": 2}, Backoff: 1}
		},
		Domains: func() []governor.DomainStats {
			return []governor.DomainStats{{Domain: "a.example", Rate: 2.5, Limits: governor.Limits{Burst: 1}, Concurrency: 8}}
		},
		Conns: func() []governor.PoolStats {
			return []governor.PoolStats{{Proxy: "p1", Open: 3, Busy: 2, Idle: 1, Size: 4, Dials: 7}, {Proxy: "p2", Size: 4}}
		},
		Proxies:   func() []ProxyState { return []ProxyState{{ID: "p1"}, {ID: "p2", Quarantined: true}} },
		FDsNeeded: 40,
		Kafka: func() KafkaState {
			return KafkaState{Partitions: []PartitionState{{Topic: "urls", Partition: 3, Committed: 120, Lag: 45}},
				Writes: map[string]uint64{"results": 9}, DeadLetters: 2}
		},
	}
	if got, _ := value(t, gather(t, m), "sluice_pipeline_running", nil); got != 0 {
		t.Errorf("running before Attach = %v", got)
	}
	// The span makes a.example a known domain, so its limits are shown.
	m.ObserveSpan(span("p1", "a.example", 200, "", time.Now(), time.Millisecond))
	m.Attach(src)
	f := gather(t, m)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"sluice_pipeline_running", nil, 1},
		{"sluice_stage_queue_depth", map[string]string{"stage": "fetch"}, 3},
		{"sluice_stage_queue_capacity", map[string]string{"stage": "fetch"}, 5},
		{"sluice_fetch_workers", nil, 8},
		{"sluice_fetch_inputs", map[string]string{"state": "token_wait"}, 2},
		{"sluice_fetch_inputs", map[string]string{"state": "lease_wait"}, 1},
		{"sluice_fetch_inputs", map[string]string{"state": "request"}, 2},
		{"sluice_fetch_inputs", map[string]string{"state": "backoff"}, 1},
		{"sluice_proxy_requests_in_flight", map[string]string{"proxy": "p1"}, 2},
		{"sluice_proxy_requests_in_flight", map[string]string{"proxy": "p2"}, 0},
		{"sluice_proxy_quarantined", map[string]string{"proxy": "p2"}, 1},
		{"sluice_proxy_quarantined", map[string]string{"proxy": "p1"}, 0},
		{"sluice_domain_requests_in_flight", map[string]string{"domain": "a.example"}, 2},
		{"sluice_domain_token_waiters", map[string]string{"domain": "a.example"}, 2},
		{"sluice_domain_rate_limit", map[string]string{"domain": "a.example"}, 2.5},
		{"sluice_domain_concurrency_limit", map[string]string{"domain": "a.example"}, 8},
		{"sluice_conn_pool_open", map[string]string{"proxy": "p1"}, 3},
		{"sluice_conn_pool_idle", map[string]string{"proxy": "p1"}, 1},
		{"sluice_conn_pool_in_use", map[string]string{"proxy": "p1"}, 2},
		{"sluice_conn_pool_capacity", map[string]string{"proxy": "p1"}, 4},
		{"sluice_conn_pool_utilization_ratio", map[string]string{"proxy": "p1"}, 0.5},
		{"sluice_conn_pool_dials_total", map[string]string{"proxy": "p1"}, 7},
		{"sluice_fds_needed", nil, 40},
		{"sluice_kafka_committed_offset", map[string]string{"topic": "urls", "partition": "3"}, 120},
		{"sluice_kafka_lag", map[string]string{"topic": "urls", "partition": "3"}, 45},
		{"sluice_kafka_writes_total", map[string]string{"topic": "results"}, 9},
		{"sluice_kafka_dead_letters_total", nil, 2},
	} {
		got, ok := value(t, f, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if open, ok := value(t, f, "sluice_fds_open", nil); !ok || open < 1 {
		t.Errorf("sluice_fds_open = %v (found %v), want at least 1", open, ok)
	}
	if lim, ok := value(t, f, "sluice_fds_limit", nil); !ok || lim < 1 {
		t.Errorf("sluice_fds_limit = %v (found %v)", lim, ok)
	}
	m.Detach()
	f = gather(t, m)
	if _, ok := value(t, f, "sluice_stage_queue_depth", map[string]string{"stage": "fetch"}); ok {
		t.Error("queue depth still reported after Detach")
	}
	// Drain the stage's queue so nothing is left referenced.
	close(st.In())
}

func TestConfigErrors(t *testing.T) {
	if _, err := New(Config{MaxDomains: -1}); err == nil {
		t.Error("negative MaxDomains accepted")
	}
	reg := prometheus.NewRegistry()
	if _, err := New(Config{Registry: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Registry: reg}); err == nil {
		t.Error("registering twice in one registry did not fail")
	}
	// The default registry has the Go and process collectors.
	m, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := gather(t, m)["go_goroutines"]; !ok {
		t.Error("default registry lacks the Go collector")
	}
}

func TestServer(t *testing.T) {
	for _, pprofOn := range []bool{false, true} {
		m := newMetrics(t, Config{})
		srv, err := Listen(ServerConfig{Addr: "127.0.0.1:0", Gatherer: m.Registry(), Pprof: pprofOn})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx) }()
		client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}
		get := func(path string) (int, string) {
			t.Helper()
			resp, err := client.Get("http://" + srv.Addr() + path)
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			if err != nil {
				t.Fatal(err)
			}
			return resp.StatusCode, string(b)
		}
		m.ObserveSpan(span("p1", "a.example", 200, "", time.Now(), time.Millisecond))
		if code, body := get("/metrics"); code != 200 || !strings.Contains(body, `sluice_proxy_requests_total{outcome="ok",proxy="p1"} 1`) {
			t.Errorf("/metrics: %d\n%s", code, body)
		}
		if code, body := get("/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
			t.Errorf("/healthz: %d %q", code, body)
		}
		if code, _ := get("/readyz"); code != http.StatusServiceUnavailable {
			t.Errorf("/readyz with no checks: %d, want 503", code)
		}
		srv.SetCheck("sink", func(context.Context) error { return nil })
		if code, body := get("/readyz"); code != 200 || !strings.Contains(body, "sink: ok") {
			t.Errorf("/readyz with a passing check: %d %q", code, body)
		}
		srv.SetCheck("source", func(context.Context) error { return io.ErrUnexpectedEOF })
		if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "source: unexpected EOF") {
			t.Errorf("/readyz with a failing check: %d %q", code, body)
		}
		srv.SetCheck("source", nil)
		if code, _ := get("/readyz"); code != 200 {
			t.Errorf("/readyz after removing the failing check: %d", code)
		}
		code, _ := get("/debug/pprof/")
		if pprofOn && code != 200 || !pprofOn && code != 404 {
			t.Errorf("pprof %v: /debug/pprof/ answered %d", pprofOn, code)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		client.CloseIdleConnections()
	}
}

func TestListenErrors(t *testing.T) {
	m := newMetrics(t, Config{})
	if _, err := Listen(ServerConfig{Addr: "127.0.0.1:0"}); err == nil {
		t.Error("Listen without a gatherer succeeded")
	}
	if _, err := Listen(ServerConfig{Addr: "256.0.0.1:1", Gatherer: m.Registry()}); err == nil {
		t.Error("Listen on a bad address succeeded")
	}
	srv, err := Listen(ServerConfig{Addr: "127.0.0.1:0", Gatherer: m.Registry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("Close of an unserved server: %v", err)
	}
}

// TestPoolSource reads a real pool: p1 fails until the pool quarantines
// it, p2 holds a lease; without a Fetch source the in-flight gauge comes
// from the pool.
func TestPoolSource(t *testing.T) {
	var list []*proxy.Proxy
	for i, u := range []string{"http://127.0.0.1:9", "http://127.0.0.1:10"} {
		p, err := proxy.Parse(fmt.Sprintf("p%d", i+1), u)
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, p)
	}
	pool, err := proxy.New(list)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	only := func(id string) func(string) bool { return func(s string) bool { return s == id } }
	quarantined := func() bool { return pool.Stats().Proxies[0].State == proxy.Quarantined }
	for n := 0; !quarantined(); n++ {
		if n == 100 {
			t.Fatal("p1 not quarantined after 100 failures")
		}
		l, err := pool.Acquire(ctx, proxy.Request{Domain: "a.example", URL: "http://a.example/", Allow: only("p1")})
		if err != nil {
			t.Fatal(err)
		}
		l.Release(proxy.Outcome{Class: failure.ProxyConnect})
	}
	held, err := pool.Acquire(ctx, proxy.Request{Domain: "a.example", URL: "http://a.example/", Allow: only("p2")})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release(proxy.Outcome{})
	st := pool.Stats()
	m := newMetrics(t, Config{})
	m.Attach(Sources{Pool: pool.Stats})
	f := gather(t, m)
	p1, p2 := map[string]string{"proxy": "p1"}, map[string]string{"proxy": "p2"}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"sluice_proxy_quarantines_total", p1, 1},
		{"sluice_proxy_catch_cost", p1, float64(st.Proxies[0].CatchCost)},
		{"sluice_proxy_requests_in_flight", p1, 0},
		{"sluice_proxy_requests_in_flight", p2, 1},
		{"sluice_proxy_quarantines_total", p2, 0},
		{"sluice_proxy_cap", p2, float64(st.Proxies[1].Cap)},
		{"sluice_proxy_cap_max", p2, float64(st.Proxies[1].CapMax)},
		{"sluice_proxy_probation", p2, bit(st.Proxies[1].SlowStart)},
		{"sluice_proxy_late_total", p2, 0},
		{"sluice_proxy_auth_failed", p1, 0},
		{"sluice_pool_usable_proxies", nil, 1},
		{"sluice_pool_no_proxy_seconds", nil, 0},
	} {
		got, ok := value(t, f, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if st.Proxies[0].CatchCost < 1 {
		t.Errorf("p1 catch cost %d, want at least 1", st.Proxies[0].CatchCost)
	}
	t.Logf("p1 caught after %d attempts", st.Proxies[0].CatchCost)
}
