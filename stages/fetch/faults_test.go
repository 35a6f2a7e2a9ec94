package fetch

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

// faultPoolOpts are quick health rules for the fault tests: short
// quarantines so that a healed proxy comes back within a test, and a
// short floor for late leases.
func faultPoolOpts() []proxy.Option {
	return []proxy.Option{
		proxy.WithHealth(proxy.HealthConfig{
			CooldownBase: 50 * time.Millisecond, CooldownMax: 200 * time.Millisecond,
			DomainCooldownBase: 50 * time.Millisecond, DomainCooldownMax: 200 * time.Millisecond,
		}),
		proxy.WithSlowAttempt(4, 100*time.Millisecond),
	}
}

// faultyFarm starts n farm proxies and a Faulty front before the first:
// the pool's p1 is the front, p2..pn+1... the others.
func faultyFarm(t *testing.T, n, firstIP int, fc testbed.FaultyConfig, opts ...proxy.Option) (*testbed.Faulty, *proxy.Pool) {
	t.Helper()
	farm, err := testbed.StartFarm(testbed.FarmConfig{N: n, FirstSourceIP: firstIP})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { farm.Close() })
	fc.Backend = farm.Proxy(0).Addr()
	front, err := testbed.StartFaulty(fc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { front.Close() })
	raws := []string{front.URL()}
	for i := 1; i < n; i++ {
		raws = append(raws, farm.Proxy(i).URL())
	}
	return front, poolOf(t, raws, append(faultPoolOpts(), opts...)...)
}

// faultConfig bounds the time to first byte well under the attempt.
func faultConfig(pool *proxy.Pool) Config {
	cfg := quickConfig(pool, 20)
	cfg.HeaderTimeout = 500 * time.Millisecond
	cfg.StaggerMax = -1
	return cfg
}

// TestOneBadProxy puts each failure mode on one proxy of five. Every
// input must come out right (retried through the others), the bad proxy
// must get a bounded share of the attempts, and once it heals it must be
// readmitted and carry traffic again.
func TestOneBadProxy(t *testing.T) {
	const n = 5
	for i, tc := range []struct {
		fault testbed.Fault
		flap  bool
	}{
		{fault: testbed.FaultBlackhole},
		{fault: testbed.FaultRefuse},
		{fault: testbed.FaultSlow},
		{fault: testbed.FaultReset},
		{fault: testbed.FaultGarbage},
		{flap: true},
	} {
		name := tc.fault.String()
		if tc.flap {
			name = "flap"
		}
		t.Run(name, func(t *testing.T) {
			site := startSite(t, testbed.SiteConfig{})
			front, pool := faultyFarm(t, n, 40+10*i, testbed.FaultyConfig{SlowDelay: 300 * time.Millisecond, ResetAfter: 300})
			cfg := faultConfig(pool)
			heal := func() {}
			if tc.flap {
				heal = front.Flap(20 * time.Millisecond)
			} else {
				if err := front.Set(tc.fault); err != nil {
					t.Fatal(err)
				}
				heal = func() { _ = front.Set(testbed.FaultNone) }
			}
			tasks := productTasks(t, site, 1, 300, "")
			requireAllOK(t, tasks, fetchAll(t, cfg, tasks))
			bad, total := proxyStats(pool, "p1"), int64(0)
			for _, s := range pool.Stats().Proxies {
				total += s.Leases
			}
			// The bad proxy's share: a few leases per slow start and
			// quarantine, never its fair fifth. A flapping proxy works
			// half the time: only its failures are bounded.
			failed := bad.Leases - bad.Outcomes["ok"]
			if limit := total / 10; failed > limit || !tc.flap && bad.Leases > limit {
				t.Errorf("bad proxy got %d of %d leases (%d failed), want at most %d: %+v", bad.Leases, total, failed, limit, bad)
			}
			t.Logf("%s: bad proxy %d of %d leases, outcomes %v, quarantines %d, late %d, catch cost %d",
				name, bad.Leases, total, bad.Outcomes, bad.Quarantines, bad.Late, bad.CatchCost)

			heal()
			okBefore := bad.Outcomes["ok"]
			for round := 0; ; round++ {
				if round == 200 {
					t.Fatalf("healed proxy not readmitted: %+v", proxyStats(pool, "p1"))
				}
				more := productTasks(t, site, 1000+100*round, 40, "")
				requireAllOK(t, more, fetchAll(t, cfg, more))
				if s := proxyStats(pool, "p1"); s.Outcomes["ok"]-okBefore >= 5 && s.State == proxy.Healthy {
					break
				}
				time.Sleep(20 * time.Millisecond) // let a quarantine run out
			}
		})
	}
}

// TestAllProxiesDownEndsAsNoProxy: with every proxy blackholed and a file
// as input, the run must end: every input comes out, as no_proxy once the
// no-proxy timeout passed (or as the timeouts of the attempts made before).
func TestAllProxiesDownEndsAsNoProxy(t *testing.T) {
	site := startSite(t, testbed.SiteConfig{})
	f1, pool1 := faultyFarm(t, 1, 110, testbed.FaultyConfig{})
	f2, _ := faultyFarm(t, 1, 111, testbed.FaultyConfig{})
	for _, f := range []*testbed.Faulty{f1, f2} {
		if err := f.Set(testbed.FaultBlackhole); err != nil {
			t.Fatal(err)
		}
	}
	_ = pool1
	pool := poolOf(t, []string{f1.URL(), f2.URL()}, append(faultPoolOpts(), proxy.WithNoProxyTimeout(300*time.Millisecond))...)
	cfg := faultConfig(pool)
	tasks := productTasks(t, site, 1, 50, "")
	got := fetchAll(t, cfg, tasks)
	if len(got) != len(tasks) {
		t.Fatalf("%d results for %d inputs", len(got), len(tasks))
	}
	classes := map[failure.Class]int{}
	for _, f := range got {
		classes[failure.ClassOf(f.Err)]++
	}
	if classes[failure.NoProxy] == 0 || classes[failure.NoProxy]+classes[failure.Timeout] != len(tasks) {
		t.Errorf("classes %v: want every input no_proxy or timeout, some no_proxy", classes)
	}
	st := pool.Stats()
	if st.NoProxy == 0 || st.StuckSince.IsZero() {
		t.Errorf("pool stats %+v", st)
	}
	if f1.Accepted()+f2.Accepted() > 20 {
		t.Errorf("blackholes got %d connections for 50 inputs", f1.Accepted()+f2.Accepted())
	}
	t.Logf("classes %v; %s", classes, pool.Describe())
}

// TestAllProxiesDownWaitsThenResumes is the streaming case: with no
// no-proxy timeout the stage waits while every proxy is down, passes on
// nothing it could not fetch, and resumes when one proxy comes back.
func TestAllProxiesDownWaitsThenResumes(t *testing.T) {
	site := startSite(t, testbed.SiteConfig{})
	f1, _ := faultyFarm(t, 1, 112, testbed.FaultyConfig{})
	f2, _ := faultyFarm(t, 1, 113, testbed.FaultyConfig{})
	for _, f := range []*testbed.Faulty{f1, f2} {
		if err := f.Set(testbed.FaultBlackhole); err != nil {
			t.Fatal(err)
		}
	}
	pool := poolOf(t, []string{f1.URL(), f2.URL()}, append(faultPoolOpts(), proxy.WithNoProxyTimeout(-1))...)
	cfg := faultConfig(pool)
	cfg.MaxAttempts = 10
	tasks := productTasks(t, site, 1, 30, "")
	done := make(chan []record.Fetched, 1)
	go func() { done <- fetchAll(t, cfg, tasks) }()
	// Wait until the pool has found no usable proxy, then a little more.
	for pool.Stats().StuckSince.IsZero() {
		select {
		case got := <-done:
			t.Fatalf("run ended with every proxy down: %d results", len(got))
		case <-time.After(10 * time.Millisecond):
		}
	}
	select {
	case got := <-done:
		t.Fatalf("run ended with every proxy down: %d results", len(got))
	case <-time.After(300 * time.Millisecond):
	}
	if err := f2.Set(testbed.FaultNone); err != nil {
		t.Fatal(err)
	}
	got := <-done
	if len(got) != len(tasks) {
		t.Fatalf("%d results for %d inputs", len(got), len(tasks))
	}
	okN := 0
	for _, f := range got {
		if f.Err == nil {
			okN++
		} else if c := failure.ClassOf(f.Err); c == failure.NoProxy {
			t.Errorf("%s: no_proxy with no no-proxy timeout", f.Task.Msg.URL)
		}
	}
	if okN < len(tasks)-2 {
		t.Errorf("%d of %d fetched after the proxy came back", okN, len(tasks))
	}
	t.Logf("%d of %d ok; %s", okN, len(tasks), pool.Describe())
}

// TestWrongCredentialsEverywhereStopsEarly: when every proxy refuses our
// credentials before any worked, every input ends at once as proxy_auth,
// with a handful of attempts in all.
func TestWrongCredentialsEverywhereStopsEarly(t *testing.T) {
	site := startSite(t, testbed.SiteConfig{})
	farm, err := testbed.StartFarm(testbed.FarmConfig{N: 2, FirstSourceIP: 114, User: "u", Pass: "right"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { farm.Close() })
	raws := []string{withPassword(t, farm.Proxy(0).URL(), "wrong"), withPassword(t, farm.Proxy(1).URL(), "wrong")}
	pool := poolOf(t, raws, faultPoolOpts()...)
	tasks := productTasks(t, site, 1, 40, "")
	got := fetchAll(t, faultConfig(pool), tasks)
	if len(got) != len(tasks) {
		t.Fatalf("%d results for %d inputs", len(got), len(tasks))
	}
	for _, f := range got {
		requireClass(t, f, failure.ProxyAuth)
	}
	if st := pool.Stats(); !st.AuthFailed || st.Acquired > 10 {
		t.Errorf("pool stats: auth failed %v, %d leases for %d inputs", st.AuthFailed, st.Acquired, len(tasks))
	}
	if req := farm.Proxy(0).Requests() + farm.Proxy(1).Requests(); req > 10 {
		t.Errorf("%d requests reached the proxies", req)
	}
}

// TestWrongCredentialsRealProxies: the same with microsocks and tinyproxy
// (source .ci/setup-proxies.sh).
func TestWrongCredentialsRealProxies(t *testing.T) {
	socks, _ := envProxy(t, "SLUICE_TEST_SOCKS5_AUTH")
	tiny, _ := envProxy(t, "SLUICE_TEST_TINYPROXY")
	site := startSite(t, testbed.SiteConfig{})
	pool := poolOf(t, []string{withPassword(t, socks, "wrong-password"), withPassword(t, tiny, "wrong-password")}, faultPoolOpts()...)
	tasks := productTasks(t, site, 1, 4, "")
	got := fetchAll(t, faultConfig(pool), tasks)
	if len(got) != len(tasks) {
		t.Fatalf("%d results for %d inputs", len(got), len(tasks))
	}
	for _, f := range got {
		requireClass(t, f, failure.ProxyAuth)
	}
	if st := pool.Stats(); !st.AuthFailed {
		t.Errorf("pool does not say every proxy refused our credentials: %s", pool.Describe())
	}
	t.Log(pool.Describe())
}

// TestWrongCredentialsAfterSuccess: a proxy that worked and then refuses
// our credentials is quarantined; inputs still end bounded, as
// proxy_auth or no_proxy, never unfinished.
func TestWrongCredentialsAfterSuccess(t *testing.T) {
	site := startSite(t, testbed.SiteConfig{})
	tiny, _ := envProxy(t, "SLUICE_TEST_TINYPROXY")
	farm, err := testbed.StartFarm(testbed.FarmConfig{N: 1, FirstSourceIP: 116, User: "u", Pass: "right"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { farm.Close() })
	// p1 works, p2 (tinyproxy) refuses: not every proxy refused.
	pool := poolOf(t, []string{farm.Proxy(0).URL(), withPassword(t, tiny, "wrong-password")},
		append(faultPoolOpts(), proxy.WithNoProxyTimeout(200*time.Millisecond))...)
	tasks := productTasks(t, site, 1, 20, "")
	requireAllOK(t, tasks, fetchAll(t, faultConfig(pool), tasks))
	if s := proxyStats(pool, "p2"); !s.AuthFailed || s.Leases > 5 {
		t.Errorf("refusing proxy: %+v", s)
	}
	if pool.Stats().AuthFailed {
		t.Error("pool says every proxy refused")
	}
	_ = fmt.Sprint()
}
