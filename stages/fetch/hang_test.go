package fetch

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

// TestHangingDomainKeepsTheProxiesForTheOthers: one target accepts and
// never answers (testbed.SiteHang), another on the same plain-HTTP
// forward proxies is healthy. The hanging target is at fault, not the
// proxies that forward to it: its timeouts are held against its (proxy,
// domain) pairs, so no proxy is quarantined as a whole, no request finds
// the pool without a usable proxy, and no worker is held through the
// domain's cool-down: the domain's inputs end as timeouts within their
// attempts, and the healthy domain's all succeed at the first attempt.
func TestHangingDomainKeepsTheProxiesForTheOthers(t *testing.T) {
	listenOn(t, "127.0.2.1").Close()
	hang := startSite(t, testbed.SiteConfig{Addr: "127.0.2.1:0", Products: 60})
	hang.SetMode(testbed.SiteHang)
	ok := startSite(t, testbed.SiteConfig{Addr: "127.0.2.2:0", Products: 200})
	hangHost, okHost := hostOf(hang.URL()), hostOf(ok.URL())
	// A pair's quarantine outlasts the test (a minute, and the no-proxy
	// timeout is the default two): a request held for it would not end
	// within the run's bound. The proxies' own cool-downs are short.
	_, pool := newFarmPool(t, 4, 130, testbed.FarmConfig{},
		proxy.WithHealth(proxy.HealthConfig{
			CooldownBase: 50 * time.Millisecond, CooldownMax: 200 * time.Millisecond,
			DomainCooldownBase: time.Minute, DomainCooldownMax: time.Minute,
		}),
		proxy.WithSlowAttempt(4, 100*time.Millisecond))
	// The concurrency is within the proxies' slow-start caps (4 × 2
	// leases, a hedge included): a request can wait for a lease only
	// because of health, never because every proxy is busy.
	cfg := quickConfig(pool, 6)
	cfg.MaxAttempts = 3
	cfg.AttemptTimeout = 400 * time.Millisecond
	cfg.HeaderTimeout = 300 * time.Millisecond
	cfg.StaggerMax = -1
	// A retry after a quarantined-domain failure waits for the first of
	// the domain's quarantines to end, at most this long.
	cfg.MaxRetryAfter = 2 * time.Second

	// run fetches n URLs of each site, one hanging to three healthy,
	// interleaved, and checks every input ends: the healthy ones with
	// their page at the first attempt, the hanging ones as timeouts.
	run := func(phase string, from, n int) []record.Fetched {
		t.Helper()
		var ts []record.Task
		for i := from; i < from+n; i++ {
			ts = append(ts, newTask(t, hang.ProductURL(i), ""))
			for j := 0; j < 3; j++ {
				ts = append(ts, newTask(t, ok.ProductURL(3*i+j), ""))
			}
		}
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
		defer cancel()
		c := &collector{}
		runErr := runStage(ctx, s, ts, c)
		got := c.snapshot()
		if runErr != nil || len(got) != len(ts) {
			t.Fatalf("%s: %d results for %d inputs within the bound (%v); %s", phase, len(got), len(ts), runErr, pool.Describe())
		}
		classes := map[string]map[failure.Class]int{hangHost: {}, okHost: {}}
		for _, f := range got {
			host := f.Task.URL.Hostname()
			classes[host][failure.ClassOf(f.Err)]++
			if host == okHost && (f.Err != nil || f.Attempts != 1) {
				t.Errorf("%s: %s: %d attempts, error %v", phase, f.Task.URL, f.Attempts, f.Err)
			}
		}
		if classes[hangHost][failure.Timeout] != n {
			t.Errorf("%s: hanging domain's classes %v, want %d timeouts", phase, classes[hangHost], n)
		}
		t.Logf("%s: classes %v; %s", phase, classes, pool.Describe())
		return got
	}

	// Phase 1, the pairs of the hanging domain get quarantined. Watch the
	// pool meanwhile: no proxy may leave Healthy, and no request may find
	// no usable proxy (the no-proxy clock, which the watchdog reports as
	// "all proxies quarantined").
	stop := make(chan struct{})
	watched := make(chan map[string]int, 1)
	go func() {
		seen := map[string]int{}
		defer func() { watched <- seen }()
		for {
			st := pool.Stats()
			for _, p := range st.Proxies {
				if p.State != proxy.Healthy {
					seen[p.ID+" "+string(p.State)]++
				}
			}
			if !st.StuckSince.IsZero() {
				seen["stuck"]++
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	run("phase 1", 1, 30)
	close(stop)
	if seen := <-watched; len(seen) > 0 {
		t.Errorf("while it ran the pool saw (samples) %v: want every proxy healthy, none stuck", seen)
	}
	st := pool.Stats()
	if st.NoProxy != 0 || st.WaitTimeouts != 0 {
		t.Errorf("no_proxy %d, wait timeouts %d", st.NoProxy, st.WaitTimeouts)
	}
	for _, p := range st.Proxies {
		if p.Quarantines != 0 {
			t.Errorf("%s quarantined %d times: %+v", p.ID, p.Quarantines, p)
		}
	}

	// Phase 2, while those quarantines last: the hanging domain's inputs
	// fail at once without reaching the site, and no lease waits at all
	// (a lease granted after a wait adds to its proxy's LeaseWait).
	waited := map[string]time.Duration{}
	for _, p := range st.Proxies {
		waited[p.ID] = p.LeaseWait
	}
	hung := hang.Stats().Requests
	got := run("phase 2", 31, 20)
	st = pool.Stats()
	// Each failed at once, and was tried again only when the domain's
	// quarantine ended (here: capped at MaxRetryAfter), so its three
	// attempts span at least two such waits, not a few milliseconds.
	for _, f := range got {
		if f.Task.URL.Hostname() == hangHost && (f.Attempts != 3 || f.Elapsed < 3900*time.Millisecond) {
			t.Errorf("phase 2: %s: %d attempts over %v, want 3 over at least 2 × MaxRetryAfter", f.Task.URL, f.Attempts, f.Elapsed)
		}
	}
	for _, p := range st.Proxies {
		if p.Quarantines != 0 || p.LeaseWait != waited[p.ID] {
			t.Errorf("phase 2: %s quarantined %d times, waited %v for leases: %+v", p.ID, p.Quarantines, p.LeaseWait-waited[p.ID], p)
		}
	}
	if n := hang.Stats().Requests - hung; n != 0 {
		t.Errorf("phase 2: the hanging site got %d requests through quarantined pairs", n)
	}
	if st.NoProxy != 0 || st.DomainQuarantined < 20 {
		t.Errorf("no_proxy %d, domain quarantined %d: want 0 and at least 20", st.NoProxy, st.DomainQuarantined)
	}
}
