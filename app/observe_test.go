package app

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
	"github.com/sluicehq/sluice/watchdog"
)

// TestMetricsDuringRun scrapes /metrics while a demo-like run is under
// way and after it: mid-run the stage queue-depth gauges and the live
// per-proxy and connection gauges are there; at the end the per-proxy
// request counts sum to the run's requests (leased by the pool, and seen
// by the site).
func TestMetricsDuringRun(t *testing.T) {
	const pages, nproxies = 400, 5
	w := startWorld(t, testbed.SiteConfig{Products: pages}, nproxies)
	// Slow proxies keep the run going while it is scraped; they are made
	// fast again afterwards.
	for i := range nproxies {
		w.farm.Proxy(i).SetLatency(200 * time.Millisecond)
	}
	cfg := w.job(t, pages, 8, nil)
	// The counts below must match the site's exactly: a hedge (sent when a
	// slowed proxy's lease runs late) is a second lease for the same page,
	// so hedging is off here (TestOneBadProxy and the hedge tests cover it).
	cfg.Fetch.NoHedge = true
	o := withMetrics(t, &cfg)
	done := runInBackground(context.Background(), cfg)

	var mid map[string]float64
	waitUntil(t, "50 requests counted mid-run", func() bool {
		fams, err := scrape(context.Background(), o.addr())
		if err != nil {
			t.Fatal(err)
		}
		mid = sumBy(fams, "sluice_proxy_requests_total", "proxy")
		if total(mid) < 50 {
			return false
		}
		if v, _ := gaugeOf(fams, "sluice_pipeline_running", nil); v != 1 {
			t.Errorf("sluice_pipeline_running = %v mid-run", v)
		}
		for _, stage := range []string{"source", "fetch", "parse", "sink"} {
			if _, ok := gaugeOf(fams, "sluice_stage_queue_depth", map[string]string{"stage": stage}); !ok {
				t.Errorf("no sluice_stage_queue_depth for stage %s", stage)
			}
			if _, ok := gaugeOf(fams, "sluice_stage_in_flight", map[string]string{"stage": stage}); !ok {
				t.Errorf("no sluice_stage_in_flight for stage %s", stage)
			}
		}
		// The source read everything at once; the slow fetch stage's queue
		// holds what it could not take yet.
		if d, _ := gaugeOf(fams, "sluice_stage_queue_depth", map[string]string{"stage": "fetch"}); d < 1 {
			t.Errorf("fetch queue depth %v mid-run, want at least 1", d)
		}
		if c, _ := gaugeOf(fams, "sluice_stage_queue_capacity", map[string]string{"stage": "fetch"}); c != 16 {
			t.Errorf("fetch queue capacity %v, want 16", c)
		}
		if n := total(sumBy(fams, "sluice_proxy_requests_in_flight", "proxy")); n < 1 || n > 8 {
			t.Errorf("%v requests in flight, want 1..8", n)
		}
		if n := total(sumBy(fams, "sluice_conn_pool_open", "proxy")); n < 1 {
			t.Errorf("%v pooled connections open mid-run", n)
		}
		if v, _ := gaugeOf(fams, "sluice_fetch_inputs", map[string]string{"state": "request"}); v < 1 {
			t.Errorf("fetch inputs in requests = %v", v)
		}
		return true
	})
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + o.addr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "sink: ok") {
		t.Errorf("/readyz mid-run: %d %s", resp.StatusCode, body)
	}
	for i := range nproxies {
		w.farm.Proxy(i).SetLatency(0)
	}
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}

	fams, err := scrape(context.Background(), o.addr())
	if err != nil {
		t.Fatal(err)
	}
	byProxy := sumBy(fams, "sluice_proxy_requests_total", "proxy")
	var leased int64
	for _, v := range res.sum.PerProxy {
		leased += v
	}
	site := w.site.Stats().Requests
	t.Logf("per-proxy requests %v: sum %.0f; leased %d; site saw %d; mid-run sum was %.0f", byProxy, total(byProxy), leased, site, total(mid))
	if len(byProxy) != nproxies || total(byProxy) != pages || leased != pages || site != pages {
		t.Errorf("per-proxy counts %v sum to %.0f; want %d proxies summing to %d = leased %d = site %d",
			byProxy, total(byProxy), nproxies, pages, leased, site)
	}
	if ok, _ := gaugeOf(fams, "sluice_outputs_total", map[string]string{"outcome": "ok"}); ok != pages {
		t.Errorf("sluice_outputs_total{ok} = %v, want %d", ok, pages)
	}
	if v, _ := gaugeOf(fams, "sluice_pipeline_running", nil); v != 0 {
		t.Errorf("sluice_pipeline_running = %v after the run", v)
	}
}

// TestSlowProxyStandsOut slows one farm proxy: first by 300 ms (its
// requests succeed, slowly), then past the attempt timeout (its requests
// time out and are retried elsewhere). Its latency histogram and success
// rate stand apart from the other proxies', and every page still ends
// correct.
func TestSlowProxyStandsOut(t *testing.T) {
	const pages, nproxies = 1000, 5 // long enough for p2, capped at its share, to see both latencies
	w := startWorld(t, testbed.SiteConfig{Products: pages}, nproxies)
	slow := w.farm.Proxy(1) // p2
	slow.SetLatency(300 * time.Millisecond)
	cfg := w.job(t, pages, 10, nil)
	cfg.Fetch.AttemptTimeout = 2 * time.Second
	cfg.Fetch.BackoffBase = 10 * time.Millisecond
	o := withMetrics(t, &cfg)
	done := runInBackground(context.Background(), cfg)
	waitUntil(t, "p2 to serve 5 requests", func() bool { return slow.Requests() >= 5 })
	slow.SetLatency(5 * time.Second)
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	fams, err := scrape(context.Background(), o.addr())
	if err != nil {
		t.Fatal(err)
	}

	type stat struct {
		count, under250ms uint64
		ok, all           float64
	}
	stats := map[string]*stat{}
	for _, m := range fams["sluice_proxy_request_duration_seconds"].GetMetric() {
		id := m.GetLabel()[0].GetValue()
		s := &stat{count: m.GetHistogram().GetSampleCount()}
		for _, b := range m.GetHistogram().GetBucket() {
			if b.GetUpperBound() == 0.25 {
				s.under250ms = b.GetCumulativeCount()
			}
		}
		stats[id] = s
	}
	for _, m := range fams["sluice_proxy_requests_total"].GetMetric() {
		var id, outcome string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "proxy":
				id = l.GetValue()
			case "outcome":
				outcome = l.GetValue()
			}
		}
		if s := stats[id]; s != nil {
			s.all += m.GetCounter().GetValue()
			if outcome == "ok" {
				s.ok += m.GetCounter().GetValue()
			}
		}
	}
	if len(stats) != nproxies {
		t.Fatalf("histograms for %d proxies, want %d", len(stats), nproxies)
	}
	for id, s := range stats {
		t.Logf("%s: %d attempts, %d under 250 ms, success rate %.2f", id, s.count, s.under250ms, s.ok/s.all)
	}
	p2 := stats["p2"]
	if p2.count == 0 || p2.under250ms != 0 {
		t.Errorf("p2: %d attempts, %d of them under 250 ms; want all of them slower", p2.count, p2.under250ms)
	}
	if rate := p2.ok / p2.all; rate <= 0 || rate >= 0.9 {
		t.Errorf("p2 success rate %.2f, want some successes and under 0.9", rate)
	}
	if to, _ := gaugeOf(fams, "sluice_proxy_requests_total", map[string]string{"proxy": "p2", "outcome": "timeout"}); to < 1 {
		t.Errorf("p2 timeouts = %v", to)
	}
	for id, s := range stats {
		if id == "p2" {
			continue
		}
		if 2*s.under250ms <= s.count {
			t.Errorf("%s: only %d of %d attempts under 250 ms; its median should be well below p2's", id, s.under250ms, s.count)
		}
		if rate := s.ok / s.all; rate < 0.9 {
			t.Errorf("%s success rate %.2f, want at least 0.9", id, rate)
		}
	}
	v, err := VerifyFile(cfg.Out, pages)
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK() || v.Correct != pages {
		t.Errorf("results: %+v", v)
	}
}

// stallCatcher collects the watchdog's first diagnosis.
func stallCatcher() (func(watchdog.Diagnosis), <-chan watchdog.Diagnosis) {
	ch := make(chan watchdog.Diagnosis, 1)
	return func(d watchdog.Diagnosis) {
		select {
		case ch <- d:
		default:
		}
	}, ch
}

// TestWatchdogAllProxiesDead kills every proxy of the farm: the watchdog
// names the proxies as the cause, and logs it.
func TestWatchdogAllProxiesDead(t *testing.T) {
	w := startWorld(t, testbed.SiteConfig{Products: 40}, 3)
	for i := range 3 {
		w.farm.Proxy(i).Kill()
	}
	var logs syncBuffer
	cfg := w.job(t, 40, 4, &logs)
	cfg.Observe.StallAfter = time.Second
	onStall, stalls := stallCatcher()
	cfg.Observe.OnStall = onStall
	o := withMetrics(t, &cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := runInBackground(ctx, cfg)

	var d watchdog.Diagnosis
	select {
	case d = <-stalls:
	case res := <-done:
		t.Fatalf("run ended before the watchdog spoke: %+v", res)
	case <-time.After(90 * time.Second):
		t.Fatal("no stall reported")
	}
	t.Logf("diagnosis: %s: %s", d.Cause, d.Summary)
	// Depending on where the governor's retries stand when the watchdog
	// looks, the dead proxies show as failing every attempt or, once the
	// pool has quarantined them all, as quarantined: either names them.
	switch {
	case d.Cause == watchdog.CauseProxiesFailing && strings.Contains(d.Summary, "all 3 proxies failing") && strings.Contains(d.Summary, "proxy_connect"):
	case d.Cause == watchdog.CauseProxiesQuarantined && strings.Contains(d.Summary, "all 3 proxies are quarantined"):
	default:
		t.Errorf("diagnosis %s: %q; want the proxies named", d.Cause, d.Summary)
	}
	fams, err := scrape(context.Background(), o.addr())
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := gaugeOf(fams, "sluice_stalls_total", map[string]string{"cause": d.Cause}); v != 1 {
		t.Errorf("sluice_stalls_total{cause=%s} = %v", d.Cause, v)
	}
	if v, _ := gaugeOf(fams, "sluice_stalled", nil); v != 1 {
		t.Errorf("sluice_stalled = %v", v)
	}
	cancel()
	<-done
	if !strings.Contains(logs.String(), `"cause":"`+d.Cause+`"`) || !strings.Contains(logs.String(), `"level":"warn"`) {
		t.Errorf("the log lacks the warning:\n%s", logs.String())
	}
}

// TestWatchdogSinkBlocked writes the results into a pipe that nobody
// reads, as a stuck disk or consumer would: the watchdog names the sink.
// Once the pipe is read, the run completes with every result.
func TestWatchdogSinkBlocked(t *testing.T) {
	const pages = 2000
	w := startWorld(t, testbed.SiteConfig{Products: pages}, 2)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	var logs syncBuffer
	cfg := w.job(t, pages, 8, &logs)
	cfg.Out, cfg.OutWriter = "-", pw
	cfg.Observe.StallAfter = time.Second
	onStall, stalls := stallCatcher()
	cfg.Observe.OnStall = onStall
	done := runInBackground(context.Background(), cfg)

	var d watchdog.Diagnosis
	select {
	case d = <-stalls:
	case res := <-done:
		t.Fatalf("run ended before the watchdog spoke: %+v", res)
	case <-time.After(90 * time.Second):
		t.Fatal("no stall reported")
	}
	t.Logf("diagnosis: %s: %s", d.Cause, d.Summary)
	for _, st := range d.Stages {
		t.Logf("  %s: %s", st.Name, st.Waiting)
	}
	if d.Cause != watchdog.CauseSinkBlocked || !strings.Contains(d.Summary, "sink blocked") {
		t.Errorf("diagnosis %s: %q; want the sink named", d.Cause, d.Summary)
	}
	// Unblock: read the pipe; every page arrives, correct.
	read := make(chan []string, 1)
	go func() {
		var lines []string
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		read <- lines
	}()
	res := <-done
	pw.Close()
	lines := <-read
	if res.err != nil {
		t.Fatal(res.err)
	}
	v, err := verifyResults(strings.NewReader(strings.Join(lines, "\n")), pages)
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK() || v.Correct != pages {
		t.Errorf("after unblocking: %+v", v)
	}
	if !strings.Contains(logs.String(), `"cause":"sink_blocked"`) {
		t.Errorf("the log lacks the warning:\n%s", logs.String())
	}
}

// TestTraceFile runs with --trace: one span per attempt, with the wait
// start, the request phases and the proxy id, never credentials.
func TestTraceFile(t *testing.T) {
	w := startWorld(t, testbed.SiteConfig{Products: 30}, 3)
	w.farm.Proxy(2).SetFailure(testbed.Fail502)
	cfg := w.job(t, 30, 4, nil)
	cfg.Fetch.BackoffBase = 5 * time.Millisecond
	cfg.Observe.Trace = filepath.Join(t.TempDir(), "trace.jsonl")
	sum, err := runJob(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, cfg.Observe.Trace)
	var leased int64
	for _, v := range sum.PerProxy {
		leased += v
	}
	if int64(len(lines)) != leased || sum.Spans != leased {
		t.Fatalf("%d spans in the trace (%d counted), %d attempts leased", len(lines), sum.Spans, leased)
	}
	failed := 0
	for _, l := range lines {
		var sp record.Span
		if err := json.Unmarshal([]byte(l), &sp); err != nil {
			t.Fatal(err)
		}
		if sp.WaitStart.IsZero() || sp.WaitEnd.Before(sp.WaitStart) || sp.Start.Before(sp.WaitEnd) || sp.End.Before(sp.Start) {
			t.Errorf("phases out of order: %s", l)
		}
		if sp.Proxy == "p3" {
			failed++
			if sp.Error != "proxy_protocol" || sp.Status != 502 {
				t.Errorf("p3 span: %s", l)
			}
		}
		if strings.Contains(l, "127.0.0.1:"+strings.Split(w.farm.Proxy(0).Addr(), ":")[1]) {
			t.Errorf("a proxy address in the trace: %s", l)
		}
	}
	if failed == 0 {
		t.Error("no failed attempt through p3 in the trace")
	}
}

// TestMetricsFailingProxy kills one farm proxy while the others are slow:
// mid-run the pool gauges show it quarantined with what it cost before it
// was caught, and the others carrying the requests in flight.
func TestMetricsFailingProxy(t *testing.T) {
	const pages, nproxies = 300, 4
	w := startWorld(t, testbed.SiteConfig{Products: pages}, nproxies)
	w.farm.Proxy(0).Kill() // p1
	for i := 1; i < nproxies; i++ {
		w.farm.Proxy(i).SetLatency(100 * time.Millisecond)
	}
	cfg := w.job(t, pages, 6, nil)
	o := withMetrics(t, &cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := runInBackground(ctx, cfg)

	dead := map[string]string{"proxy": "p1"}
	waitUntil(t, "p1 quarantined and the others busy", func() bool {
		fams, err := scrape(context.Background(), o.addr())
		if err != nil {
			t.Fatal(err)
		}
		q, _ := gaugeOf(fams, "sluice_proxy_quarantined", dead)
		n, _ := gaugeOf(fams, "sluice_proxy_quarantines_total", dead)
		cost, _ := gaugeOf(fams, "sluice_proxy_catch_cost", dead)
		inFlight := sumBy(fams, "sluice_proxy_requests_in_flight", "proxy")
		usable, ok := gaugeOf(fams, "sluice_pool_usable_proxies", nil)
		if q != 1 || n < 1 || cost < 1 || inFlight["p1"] != 0 || total(inFlight) < 1 || !ok || usable != nproxies-1 {
			return false
		}
		t.Logf("p1: quarantines %v, catch cost %v; in flight %v; usable %v", n, cost, inFlight, usable)
		for i := 2; i <= nproxies; i++ {
			id := map[string]string{"proxy": fmt.Sprintf("p%d", i)}
			if v, _ := gaugeOf(fams, "sluice_proxy_quarantines_total", id); v != 0 {
				t.Errorf("p%d quarantined %v times", i, v)
			}
			if v, ok := gaugeOf(fams, "sluice_proxy_cap_max", id); !ok || v < 1 {
				t.Errorf("p%d cap max %v (found %v)", i, v, ok)
			}
			if _, ok := gaugeOf(fams, "sluice_proxy_probation", id); !ok {
				t.Errorf("no sluice_proxy_probation for p%d", i)
			}
		}
		if v, ok := gaugeOf(fams, "sluice_pool_no_proxy_seconds", nil); !ok || v != 0 {
			t.Errorf("sluice_pool_no_proxy_seconds = %v (found %v) with proxies usable", v, ok)
		}
		return true
	})
	for i := 1; i < nproxies; i++ {
		w.farm.Proxy(i).SetLatency(0)
	}
	if res := <-done; res.err != nil {
		t.Fatal(res.err)
	}
}
