package fetch

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

func productTasks(t *testing.T, site *testbed.Site, from, n int, session string) []record.Task {
	var out []record.Task
	for id := from; id < from+n; id++ {
		out = append(out, newTask(t, site.ProductURL(id), session))
	}
	return out
}

func TestPoolSizesAreTheShareOfConcurrencyPlus20Percent(t *testing.T) {
	for _, tc := range []struct {
		model       proxy.Model
		proxies     int
		concurrency int
		want        int
	}{
		{proxy.Shared, 4, 10, 4},     // share 3, +1
		{proxy.Shared, 1, 100, 120},  // share 100, +20
		{proxy.Shared, 10, 32, 5},    // share 4, +1
		{proxy.Exclusive, 4, 10, 2},  // one request at a time, +1
		{proxy.Shared, 200, 100, 2},  // share 1, +1
		{proxy.Rotating, 2, 50, 30},  // share 25, +5
		{proxy.Shared, 3, 1000, 401}, // share 334, +67
	} {
		ps := make([]*proxy.Proxy, tc.proxies)
		for i := range ps {
			ps[i], _ = proxy.Parse(fmt.Sprintf("p%d", i+1), fmt.Sprintf("http://127.0.0.1:%d", 30000+i))
		}
		pool, err := proxy.New(ps, proxy.WithModel(tc.model))
		if err != nil {
			t.Fatal(err)
		}
		st, err := New(Config{Concurrency: tc.concurrency, Pool: pool})
		if err != nil {
			t.Fatal(err)
		}
		for id, c := range st.clients {
			tr := c.Transport.(*http.Transport)
			if tr.MaxIdleConnsPerHost != tc.want || tr.MaxIdleConns != tc.want {
				t.Errorf("%v, %d proxies, concurrency %d: %s pool %d/%d, want %d",
					tc.model, tc.proxies, tc.concurrency, id, tr.MaxIdleConnsPerHost, tr.MaxIdleConns, tc.want)
			}
			if tr.DisableKeepAlives {
				t.Errorf("%s: keep-alive disabled on a plain proxy", id)
			}
		}
		st.Close()
	}
}

// TestKilledProxyIsQuarantinedAndRecovers kills one of four farm proxies
// mid-run: it is quarantined within a few failures, gets no traffic while
// quarantined (even once it is back up), returns after its cool-down, and
// no request is lost at any point.
func TestKilledProxyIsQuarantinedAndRecovers(t *testing.T) {
	const n, concurrency, threshold = 4, 4, 3
	clk := newClock()
	site := startSite(t, testbed.SiteConfig{})
	farm, pool := newFarmPool(t, n, 40, testbed.FarmConfig{},
		proxy.WithStrategy(proxy.RoundRobin), proxy.WithClock(clk.Now),
		proxy.WithHealth(proxy.HealthConfig{FailThreshold: threshold}))
	src := srcOf(farm)
	cfg := quickConfig(pool, concurrency)
	next := 1
	phase := func(name string, count int) {
		t.Helper()
		tasks := productTasks(t, site, next, count, "")
		next += count
		got := fetchAll(t, cfg, tasks)
		requireAllOK(t, tasks, got)
		t.Logf("%s: %d/%d ok, site by IP %v", name, len(got), count, site.Stats().ByIP)
	}

	phase("all up", 40)
	if ips := site.Stats().ByIP; len(ips) != n || ips[src["p2"]] != 10 {
		t.Fatalf("round-robin over 4 proxies: site saw %v", ips)
	}

	farm.Proxy(1).Kill()
	phase("p2 killed", 80)
	s := proxyStats(pool, "p2")
	if s.State != proxy.Quarantined {
		t.Fatalf("killed proxy is %v: %+v", s.State, s)
	}
	// Quarantined within a few failures: the threshold, plus at most the
	// attempts already in flight on it when it crossed.
	if f := s.Outcomes[string(failure.ProxyConnect)]; f < threshold || f > threshold+concurrency-1 {
		t.Errorf("killed proxy failed %d times before quarantine, want %d..%d", f, threshold, threshold+concurrency-1)
	}

	// Back up, but still in quarantine: not a single request reaches it.
	if err := farm.Proxy(1).Revive(); err != nil {
		t.Fatal(err)
	}
	leases, reqs, seen := s.Leases, farm.Proxy(1).Requests(), site.Stats().ByIP[src["p2"]]
	phase("p2 revived, still quarantined", 80)
	if got := proxyStats(pool, "p2"); got.Leases != leases || got.State != proxy.Quarantined {
		t.Errorf("quarantined proxy got %d leases", got.Leases-leases)
	}
	if got := farm.Proxy(1).Requests(); got != reqs {
		t.Errorf("quarantined proxy received %d requests", got-reqs)
	}
	if got := site.Stats().ByIP[src["p2"]]; got != seen {
		t.Errorf("site saw %d requests from the quarantined proxy", got-seen)
	}

	// Cool-down over: a probe succeeds and it takes its share again.
	clk.Advance(proxyStats(pool, "p2").QuarantinedUntil.Sub(clk.Now()))
	phase("cool-down over", 80)
	if got := proxyStats(pool, "p2"); got.State != proxy.Healthy {
		t.Errorf("recovered proxy is %v", got.State)
	}
	// Its round-robin share is 80/4; while its first probe is out the
	// cursor passes it by, so allow for a few skipped turns.
	if got := site.Stats().ByIP[src["p2"]] - seen; got < 80/n/2 {
		t.Errorf("recovered proxy served %d of 80 requests, want about %d", got, 80/n)
	}
}

// TestStickySessionsKeepTheirAddressAtTheSite: three sessions of 5, 10
// and 20 requests, interleaved, through six proxies under round-robin
// (which alone would spread every session over all six). The site must
// see exactly three client addresses with exactly those counts. When a
// session's proxy dies, the session moves, once, to a proxy of its own.
func TestStickySessionsKeepTheirAddressAtTheSite(t *testing.T) {
	clk := newClock()
	site := startSite(t, testbed.SiteConfig{})
	farm, pool := newFarmPool(t, 6, 50, testbed.FarmConfig{},
		proxy.WithStrategy(proxy.RoundRobin), proxy.WithClock(clk.Now))
	src := srcOf(farm)
	sizes := map[string]int{"s1": 5, "s2": 10, "s3": 20}
	var tasks []record.Task
	id := 1
	for i := range 20 {
		for _, s := range []string{"s1", "s2", "s3"} {
			if i < sizes[s] {
				tasks = append(tasks, newTask(t, site.ProductURL(id), s))
				id++
			}
		}
	}
	got := fetchAll(t, quickConfig(pool, 3), tasks)
	requireAllOK(t, tasks, got)

	proxyOf := map[string]string{}
	for _, f := range got {
		s := f.Task.Msg.Session
		if p, seen := proxyOf[s]; seen && p != f.Proxy {
			t.Fatalf("session %s used %s and %s", s, p, f.Proxy)
		}
		proxyOf[s] = f.Proxy
	}
	want := map[string]int64{}
	for s, p := range proxyOf {
		want[src[p]] = int64(sizes[s])
	}
	if ips := site.Stats().ByIP; len(want) != 3 || !maps.Equal(ips, want) {
		t.Fatalf("site saw %v, want one address per session: %v (sessions on %v)", ips, want, proxyOf)
	}

	// s3's proxy dies: s3 moves to another proxy and stays there.
	old := proxyOf["s3"]
	farm.Proxy(index(old)).Kill()
	more := productTasks(t, site, id, 20, "s3")
	got = fetchAll(t, quickConfig(pool, 3), more)
	requireAllOK(t, more, got)
	moved := got[0].Proxy
	for _, f := range got {
		if f.Proxy != moved {
			t.Fatalf("after the failure s3 used %s and %s", moved, f.Proxy)
		}
	}
	if moved == old || moved == proxyOf["s1"] || moved == proxyOf["s2"] {
		t.Fatalf("s3 moved from %s to %s (s1 on %s, s2 on %s)", old, moved, proxyOf["s1"], proxyOf["s2"])
	}
	ips := site.Stats().ByIP
	if ips[src[old]] != 20 || ips[src[moved]] != 20 {
		t.Errorf("site saw %v: want 20 from the dead proxy's address, then 20 from %s", ips, src[moved])
	}

	// Past the TTL, s1 is bound anew (and keeps that binding).
	before := sessionOf(pool, "s1")
	clk.Advance(11 * 60e9)
	again := productTasks(t, site, id+20, 5, "s1")
	got = fetchAll(t, quickConfig(pool, 2), again)
	requireAllOK(t, again, got)
	after := sessionOf(pool, "s1")
	if !after.Since.After(before.Since) {
		t.Errorf("s1 binding not renewed after its TTL: %+v → %+v", before, after)
	}
	for _, f := range got {
		if f.Proxy != after.Proxy {
			t.Errorf("s1 after renewal used %s, bound to %s", f.Proxy, after.Proxy)
		}
	}
}

func sessionOf(pool *proxy.Pool, s string) proxy.SessionInfo {
	for _, si := range pool.Sessions() {
		if si.Session == s {
			return si
		}
	}
	return proxy.SessionInfo{}
}

func index(id string) int {
	var i int
	fmt.Sscanf(id, "p%d", &i)
	return i - 1
}

// TestDomainPartitionsAtTheSite: two domains (the same catalog on two
// loopback addresses) and six proxies split between them. Each site must
// see only the addresses of its own partition, and all of them.
func TestDomainPartitionsAtTheSite(t *testing.T) {
	for name, opts := range map[string][]proxy.Option{
		"by config": {proxy.WithPartition("127.0.1.1", "p1", "p2", "p3"), proxy.WithPartition("127.0.1.2", "p4", "p5", "p6")},
		"even":      {proxy.WithEvenPartitions("127.0.1.1", "127.0.1.2")},
	} {
		t.Run(name, func(t *testing.T) {
			a := startSite(t, testbed.SiteConfig{Addr: "127.0.1.1:0"})
			b := startSite(t, testbed.SiteConfig{Addr: "127.0.1.2:0"})
			farm, pool := newFarmPool(t, 6, 60, testbed.FarmConfig{}, append(opts, proxy.WithStrategy(proxy.RoundRobin))...)
			src := srcOf(farm)
			var tasks []record.Task
			for i := 1; i <= 60; i++ {
				tasks = append(tasks, newTask(t, a.ProductURL(i), ""), newTask(t, b.ProductURL(i), ""))
			}
			got := fetchAll(t, quickConfig(pool, 4), tasks)
			requireAllOK(t, tasks, got)
			for site, ids := range map[*testbed.Site][]string{a: {"p1", "p2", "p3"}, b: {"p4", "p5", "p6"}} {
				var want []string
				for _, id := range ids {
					want = append(want, src[id])
				}
				slices.Sort(want)
				ips := site.Stats().ByIP
				if !slices.Equal(keys(ips), want) {
					t.Errorf("%s saw %v, want its partition %v", site.URL(), ips, want)
				}
				for _, ip := range want {
					if ips[ip] != 20 {
						t.Errorf("%s: %s sent %d of 60, want 20 (round-robin)", site.URL(), ip, ips[ip])
					}
				}
			}
		})
	}
}
