package fetch

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/governor"
	"github.com/sluicehq/sluice/testbed"
)

// These tests run the fetch stage against the real test world: catalog
// sites on distinct loopback addresses (one per "domain") and a farm of
// forward proxies that each dial out from their own source IP.

func hostOf(rawURL string) string {
	h := strings.TrimPrefix(rawURL, "http://")
	return h[:strings.LastIndexByte(h, ':')]
}

// listenOn listens on ip:0, skipping the test where the address cannot
// be bound (all of 127.0.0.0/8 is local on Linux, not everywhere).
func listenOn(t *testing.T, ip string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Skipf("cannot listen on %s (needs all of 127.0.0.0/8 on loopback): %v", ip, err)
	}
	return ln
}

// productURLs interleaves the product pages of several sites, n each.
func productURLs(n int, sites ...*testbed.Site) []string {
	var out []string
	for i := 1; i <= n; i++ {
		for _, s := range sites {
			out = append(out, s.ProductURL(i))
		}
	}
	return out
}

func TestThreeDomainsStayWithinTheirPerIPLimits(t *testing.T) {
	// 120, 180 and 300 a minute per IP, seen over a 3 s window. With the
	// default safety 0.7 a proxy may be late by over a second before the
	// site's count could be passed, so a busy machine cannot fail this.
	const window = 3 * time.Second
	doms := []struct {
		ip    string
		limit int // requests per IP per window
	}{{"127.0.1.1", 6}, {"127.0.1.2", 9}, {"127.0.1.3", 15}}
	listenOn(t, doms[0].ip).Close()
	const proxies, pages = 6, 30
	var sites []*testbed.Site
	var domains []governor.Domain
	for _, d := range doms {
		// The sites do not enforce their limit: they count, so the test
		// sees what the governor would have sent past it.
		sites = append(sites, startSite(t, testbed.SiteConfig{Addr: d.ip + ":0", Products: pages, Window: window}))
		domains = append(domains, governor.Domain{Domain: d.ip, PerIPPerMinute: float64(d.limit) * float64(time.Minute/window), Window: window})
	}
	_, pool := newFarmPool(t, proxies, 0, testbed.FarmConfig{})
	s, err := New(Config{Policy: testPolicy, Concurrency: 16, Pool: pool, Domains: domains, Adaptive: governor.Adaptive{Window: 10}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c := &collector{}
	if err := runStage(ctx, s, tasks(t, productURLs(pages, sites...)...), c); err != nil {
		t.Fatal(err)
	}
	got := c.snapshot()
	if len(got) != 3*pages {
		t.Fatalf("%d results, want %d", len(got), 3*pages)
	}
	for _, f := range got {
		if f.Err != nil || f.Status != 200 || !strings.Contains(string(f.Body), "<h1>Product ") {
			t.Errorf("%s: status %d, error %v", f.Task.URL, f.Status, f.Err)
		}
	}
	for i, d := range doms {
		st := sites[i].Stats()
		if len(st.ByIP) != proxies {
			t.Errorf("%s saw %d client IPs, want %d", d.ip, len(st.ByIP), proxies)
		}
		for ip, n := range st.MaxPerIPPerMinute {
			if n > int64(d.limit) {
				t.Errorf("%s: %s sent %d requests in one %v window, over the limit %d", d.ip, ip, n, window, d.limit)
			}
		}
		t.Logf("%s (limit %d per IP per %v): busiest windows %v", d.ip, d.limit, window, st.MaxPerIPPerMinute)
	}
	var reqs int64
	for _, p := range s.Pools() {
		reqs += p.Requests
		if p.Size != 4 || p.Dials < 1 || p.MaxBusy > int64(p.Size) {
			t.Errorf("pool %s: size %d, %d dials, at most %d busy; want size 4 (16/6 rounded up, +20%%)", p.Proxy, p.Size, p.Dials, p.MaxBusy)
		}
	}
	if reqs != 3*pages {
		t.Errorf("the pools carried %d requests, want %d", reqs, 3*pages)
	}
}

// notifier is a collector that signals when n results of a host arrived.
func waitFor(c *collector, host string, n int, ctx context.Context) bool {
	for ctx.Err() == nil {
		k := 0
		for _, f := range c.snapshot() {
			if f.Task.URL.Hostname() == host {
				k++
			}
		}
		if k >= n {
			return true
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	return false
}

func TestDomainAnsweringOnly429DoesNotSlowTheOthers(t *testing.T) {
	listenOn(t, "127.0.1.4").Close()
	var xRequests atomic.Int64
	x := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		xRequests.Add(1)
		w.Header().Set("Retry-After", "30")
		http.Error(w, "slow down", http.StatusTooManyRequests)
	}))
	x.Listener = listenOn(t, "127.0.1.5")
	x.Start()
	defer x.Close()
	y := startSite(t, testbed.SiteConfig{Addr: "127.0.1.4:0", Products: 30})
	_, pool := newFarmPool(t, 4, 0, testbed.FarmConfig{})
	xHost, yHost := hostOf(x.URL), hostOf(y.URL())

	s, err := New(Config{Policy: testPolicy, Concurrency: 4, Pool: pool, MaxAttempts: 3,
		Domains: []governor.Domain{{Domain: xHost, Rate: 5}, {Domain: yHost, Rate: 20}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Every task of the 429 domain comes first.
	var urls []string
	for i := 1; i <= 20; i++ {
		urls = append(urls, fmt.Sprintf("%s/product/%d", x.URL, i))
	}
	for i := 1; i <= 30; i++ {
		urls = append(urls, y.ProductURL(i))
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c := &collector{}
	done := make(chan error, 1)
	go func() { done <- runStage(ctx, s, tasks(t, urls...), c) }()
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	ok := waitFor(c, yHost, 30, wctx)
	wcancel()
	g := s.Governor()
	cancel() // the 429 domain is paused for 30s: stop here
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatalf("the other domain did not finish: %d results", len(c.snapshot()))
	}
	got := c.snapshot()
	yDone := 0
	for _, f := range got {
		switch f.Task.URL.Hostname() {
		case yHost:
			yDone++
			if f.Err != nil {
				t.Errorf("%s: %v", f.Task.URL, f.Err)
			}
		case xHost:
			if yDone < 30 {
				t.Errorf("a 429 domain result came out before the other domain finished: %v", f.Err)
			}
		}
	}
	// The 429 domain was paused by its first answers: a handful of
	// requests, not 20 tasks × 3 attempts.
	if n := xRequests.Load(); n > 4 {
		t.Errorf("the 429 domain got %d requests despite Retry-After: 30", n)
	}
	for _, d := range g.Domains {
		switch d.Domain {
		case yHost:
			if d.Cuts != 0 || d.Status429 != 0 {
				t.Errorf("the healthy domain was cut %d times (429s %d)", d.Cuts, d.Status429)
			}
		case xHost:
			if d.Status429 == 0 || d.Cuts == 0 || d.PausedUntil.IsZero() || d.Queued+int(g.Delayed) == 0 {
				t.Errorf("429 domain: %d × 429, %d cuts, paused until %v, %d queued: want it cut, paused and holding its tasks", d.Status429, d.Cuts, d.PausedUntil, d.Queued)
			}
		}
	}
}

func TestStalledDomainDoesNotStallTheOthers(t *testing.T) {
	listenOn(t, "127.0.1.6").Close()
	var inFlight, peak atomic.Int64
	release := make(chan struct{})
	x := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		select { // never answers
		case <-r.Context().Done():
		case <-release:
		}
	}))
	x.Listener = listenOn(t, "127.0.1.6")
	x.Start()
	defer x.Close()
	defer close(release)
	y := startSite(t, testbed.SiteConfig{Addr: "127.0.1.7:0", Products: 40})
	xHost, yHost := hostOf(x.URL), hostOf(y.URL())

	s, err := New(Config{Policy: testPolicy, Concurrency: 4, AttemptTimeout: 5 * time.Minute,
		Domains: []governor.Domain{{Domain: xHost, Rate: 50, Concurrency: 2}, {Domain: yHost, Rate: 50}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var urls []string
	for i := 1; i <= 10; i++ {
		urls = append(urls, fmt.Sprintf("%s/product/%d", x.URL, i))
	}
	for i := 1; i <= 40; i++ {
		urls = append(urls, y.ProductURL(i))
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c := &collector{}
	done := make(chan error, 1)
	go func() { done <- runStage(ctx, s, tasks(t, urls...), c) }()
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	ok := waitFor(c, yHost, 40, wctx)
	wcancel()
	g := s.Governor()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatalf("the other domain did not finish while one stalled: %d results", len(c.snapshot()))
	}
	for _, f := range c.snapshot() {
		if f.Task.URL.Hostname() == yHost && f.Err != nil {
			t.Errorf("%s: %v", f.Task.URL, f.Err)
		}
	}
	if p := peak.Load(); p < 1 || p > 2 {
		t.Errorf("the stalled domain had %d requests in flight at most, want 1..2 (its limit)", p)
	}
	for _, d := range g.Domains {
		if d.Domain == xHost && (d.InFlight < 1 || d.InFlight > d.Concurrency || d.Queued < 8) {
			t.Errorf("stalled domain: %d in flight (limit %d), %d queued", d.InFlight, d.Concurrency, d.Queued)
		}
	}
}

func TestLargeBodiesSpoolToDisk(t *testing.T) {
	site := startSite(t, testbed.SiteConfig{Products: 6, PageBytes: 64 << 10})
	dir := t.TempDir()
	s, err := New(Config{Policy: testPolicy, Concurrency: 2, DomainRate: -1, SpoolThreshold: 16 << 10, SpoolDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	if err := runStage(t.Context(), s, tasks(t, productURLs(6, site)...), c); err != nil {
		t.Fatal(err)
	}
	got := c.snapshot()
	if len(got) != 6 {
		t.Fatalf("%d results, want 6", len(got))
	}
	for _, f := range got {
		if f.Err != nil || f.Spool == nil || f.Body != nil || f.Spool.Size != 64<<10 {
			t.Fatalf("%s: error %v, spool %+v, %d bytes in memory; want a 64 KiB spooled body", f.Task.URL, f.Err, f.Spool, len(f.Body))
		}
		if !strings.HasPrefix(f.Spool.Path, dir) {
			t.Errorf("spooled to %s, outside the spool dir %s", f.Spool.Path, dir)
		}
	}
	if g := s.Governor(); g.Spooled != 6 || g.BodyBytesPeak > 16<<10+readChunk {
		t.Errorf("%d spooled, body budget peak %d; want 6 and at most the threshold plus a chunk", g.Spooled, g.BodyBytesPeak)
	}
	f := got[0]
	path := f.Spool.Path
	if err := f.LoadBody(); err != nil {
		t.Fatal(err)
	}
	want := testbed.ExpectedProduct(mustID(t, f.Task.URL.Path)).Name
	if len(f.Body) != 64<<10 || !strings.Contains(string(f.Body), want) {
		t.Errorf("loaded %d bytes without %q", len(f.Body), want)
	}
	if _, err := os.Stat(path); err == nil {
		t.Errorf("%s still there after LoadBody", path)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("Close left %v in the spool dir", left)
	}
}

func TestSmallBodiesStayInMemoryWithinTheBudget(t *testing.T) {
	site := startSite(t, testbed.SiteConfig{Products: 4, PageBytes: 4 << 10})
	s, err := New(Config{Policy: testPolicy, Concurrency: 2, DomainRate: -1, SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := &collector{}
	if err := runStage(t.Context(), s, tasks(t, productURLs(4, site)...), c); err != nil {
		t.Fatal(err)
	}
	for _, f := range c.snapshot() {
		if f.Err != nil || f.Spool != nil || len(f.Body) != 4<<10 {
			t.Errorf("%s: error %v, spool %+v, %d bytes; want 4 KiB in memory", f.Task.URL, f.Err, f.Spool, len(f.Body))
		}
	}
	if g := s.Governor(); g.BodyBytes != 0 || g.BodyBytesPeak < 4<<10 {
		t.Errorf("body budget now %d, peak %d: want 0 and at least one body", g.BodyBytes, g.BodyBytesPeak)
	}
}

func mustID(t *testing.T, p string) int {
	t.Helper()
	var id int
	if _, err := fmt.Sscanf(p, "/product/%d", &id); err != nil {
		t.Fatal(err)
	}
	return id
}
