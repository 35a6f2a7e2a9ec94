package governor_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/dnscache"
	"github.com/sluicehq/sluice/governor"
	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

// stateHosts is how many distinct hosts TestStateBounded drives.
const stateHosts = 100_000

// shiftClock is the real clock plus an offset the test moves forward: the
// token buckets and timers run in real time, and the test makes idle
// time pass at once.
type shiftClock struct{ off atomic.Int64 }

func (c *shiftClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *shiftClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// TestStateBounded drives 100,000 distinct hosts through the governor,
// a proxy pool of 10, the DNS cache (each host resolved by the testbed's
// DNS server to a 127.0.0.0/8 address) and the metrics, in process and
// at full speed, with new hosts arriving at 100 per (simulated) second.
// Every per-host table stays under its bound while they come, and once
// idle time passes one new host's arrival leaves almost nothing. It logs
// the tables' sizes and the heap and RSS after the run.
func TestStateBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 hosts: not in -short")
	}
	n := stateHosts
	if raceEnabled {
		n = stateHosts / 5 // the bounds are the same; the race detector is slow
	}
	answers := make(map[string][][]netip.Addr, n+1)
	host := func(i int) string { return fmt.Sprintf("h%d.state.test", i) }
	for i := range n + 1 {
		answers[host(i)] = [][]netip.Addr{{netip.AddrFrom4([4]byte{127, byte(1 + i>>16), byte(i >> 8), byte(i)})}}
	}
	srv, err := testbed.StartDNS(testbed.DNSConfig{Answers: answers, TTL: 300})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	clk := &shiftClock{}
	var ids []string
	var ps []*proxy.Proxy
	for i := range 10 {
		p, err := proxy.Parse(fmt.Sprintf("p%d", i+1), fmt.Sprintf("http://127.0.0.%d:9", i+2))
		if err != nil {
			t.Fatal(err)
		}
		ps, ids = append(ps, p), append(ids, p.ID)
	}
	const workers = 64
	pool, err := proxy.New(ps, proxy.WithClock(clk.Now), proxy.WithConcurrency(workers))
	if err != nil {
		t.Fatal(err)
	}
	dns := dnscache.New(dnscache.Config{Servers: []string{srv.Addr()}, ResolvConf: "/nonexistent"}, clk.Now)
	m, err := metrics.New(metrics.Config{Registry: prometheus.NewRegistry(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	g, err := governor.New[int](governor.Config{Concurrency: workers, StaggerMax: -1, Now: clk.Now, Proxies: ids,
		Domains: []governor.Domain{{Domain: "*", PerIPPerMinute: 600}}})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	intake := make(chan *governor.Job[int])
	done := make(chan int, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for j := range g.Jobs() {
				l, err := pool.Acquire(ctx, proxy.Request{Domain: j.Key, Allow: g.Gate(j)})
				if err != nil {
					v, _, _ := g.Report(ctx, j, governor.Outcome{NoProxy: true, Err: err})
					if v == governor.Finish {
						t.Errorf("%s: %v", j.Key, err)
						g.Release(ctx, 0)
						done <- j.Item
					}
					continue
				}
				start := clk.Now()
				addrs, err := dns.LookupHost(ctx, j.Key)
				if err != nil || len(addrs) != 1 || !addrs[0].IsLoopback() {
					t.Errorf("%s resolved to %v, %v", j.Key, addrs, err)
				}
				l.Release(proxy.Outcome{Status: 200, Latency: time.Millisecond})
				m.ObserveSpan(record.Span{Schema: 1, Domain: j.Key, Proxy: l.Proxy.ID, Attempt: 1, Status: 200,
					WaitStart: j.Queued, WaitEnd: start, Start: start, End: clk.Now(), Bytes: 60 << 10})
				g.Report(ctx, j, governor.Outcome{Status: 200, Latency: time.Millisecond, Proxy: l.Proxy.ID})
				g.Release(ctx, 0)
				done <- j.Item
			}
		})
	}
	wg.Go(func() { g.Run(ctx, intake, func(*governor.Job[int]) {}) })

	type peaks struct{ domains, slots, health, dns, labels int }
	var peak peaks
	measure := func() {
		e, pe := g.Entries(), pool.Entries()
		peak.domains, peak.slots = max(peak.domains, e.Domains), max(peak.slots, e.ProxySlots)
		peak.health, peak.dns = max(peak.health, pe.DomainHealth), max(peak.dns, dns.Len())
		peak.labels = max(peak.labels, domainLabels(t, m))
	}
	feed := func(from, to int) {
		go func() { // owner: feed, which takes every job's end below
			for i := from; i < to; i++ {
				select {
				case intake <- &governor.Job[int]{Key: host(i), Item: i}:
				case <-ctx.Done():
					return
				}
				if i%100 == 99 {
					clk.Advance(time.Second) // 100 new hosts a second
				}
			}
		}()
		for i := from; i < to; i++ {
			<-done
			if i%5000 == 0 {
				measure()
			}
		}
	}
	begin := time.Now()
	feed(0, n)
	measure()
	took := time.Since(begin)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("%d hosts in %v (%.0f hosts/s, 10 proxies, %d workers); peaks: governor domains %d, (proxy, domain) slots %d, "+
		"pool domain health %d, DNS names %d, domain labels %d; heap in use %.1f MB, RSS %.1f MB",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), workers, peak.domains, peak.slots,
		peak.health, peak.dns, peak.labels, float64(ms.HeapInuse)/1e6, rssMB())

	// While hosts come at 100/s: the governor keeps about two minutes of
	// them, the pool ten minutes' worth (one lease each), the DNS cache
	// and the labels their caps.
	for _, b := range []struct {
		what      string
		got, want int
	}{
		{"governor domains", peak.domains, min(n, 2*60*100+10000/4)},
		{"(proxy, domain) slots", peak.slots, len(ids) * min(n, 2*60*100+10000/4)},
		{"pool domain health", peak.health, min(n, 11*60*100+100000/4)},
		{"DNS names", peak.dns, 10000},
		{"domain labels", peak.labels, 51},
	} {
		if b.got > b.want {
			t.Errorf("%s peaked at %d, bound %d", b.what, b.got, b.want)
		}
	}

	// Idle time passes; the next host finds the tables all but empty.
	clk.Advance(11 * time.Minute)
	feed(n, n+1)
	e, pe := g.Entries(), pool.Entries()
	t.Logf("after 11 idle minutes and one new host: governor %+v, pool %+v, DNS names %d", e, pe, dns.Len())
	if e.Domains != 1 || e.ProxySlots > 1 || pe.DomainHealth != 1 || dns.Len() != 1 {
		t.Errorf("after idle time: governor %+v, pool %+v, DNS %d; want one entry each", e, pe, dns.Len())
	}
	close(intake)
	wg.Wait()
}

// domainLabels counts the domain label values of the metrics.
func domainLabels(t *testing.T, m *metrics.Metrics) int {
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range fams {
		if f.GetName() != "sluice_domain_requests_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "domain" {
					seen[l.GetValue()] = true
				}
			}
		}
	}
	return len(seen)
}

// rssMB is this process's resident set size, from /proc (0 elsewhere).
func rssMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var kb float64
		if _, err := fmt.Sscanf(sc.Text(), "VmRSS: %f kB", &kb); err == nil {
			return kb / 1024
		}
	}
	return 0
}

// TestStateEntryCost measures the heap one entry of each per-host table
// costs, filling each alone with 20,000 hosts: the figures behind the
// memory budget in docs/capacity.md.
func TestStateEntryCost(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a measurement: not in -short or under the race detector")
	}
	const n = 20000
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	per := func(before uint64) float64 { return float64(int64(heap())-int64(before)) / n }
	clk := &shiftClock{}

	g, err := governor.New[int](governor.Config{Concurrency: 64, Now: clk.Now, Proxies: []string{"p1"},
		Domains: []governor.Domain{{Domain: "*", PerIPPerMinute: 600}}})
	if err != nil {
		t.Fatal(err)
	}
	b := heap()
	for i := range n {
		if err := g.Take(t.Context(), fmt.Sprintf("h%d.cost.test", i)); err != nil {
			t.Fatal(err)
		}
	}
	domain := per(b)
	b = heap()
	for i := range n {
		g.CapRate(fmt.Sprintf("c%d.cost.test", i), 0.5)
	}
	caps := per(b)

	ps := []*proxy.Proxy{}
	for i := range 10 {
		p, err := proxy.Parse(fmt.Sprintf("p%d", i+1), fmt.Sprintf("http://127.0.0.%d:9", i+2))
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	pool, err := proxy.New(ps, proxy.WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	b = heap()
	for i := range n {
		l, err := pool.Acquire(t.Context(), proxy.Request{Domain: fmt.Sprintf("h%d.cost.test", i)})
		if err != nil {
			t.Fatal(err)
		}
		l.Release(proxy.Outcome{Status: 200, Latency: time.Millisecond})
	}
	health := per(b)
	b = heap()
	for i := range n {
		l, err := pool.Acquire(t.Context(), proxy.Request{Domain: "h0.cost.test", Session: fmt.Sprintf("s%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		l.Release(proxy.Outcome{Status: 200, Latency: time.Millisecond})
	}
	sessions := per(b)

	answers := map[string][][]netip.Addr{}
	for i := range n {
		answers[fmt.Sprintf("h%d.cost.test", i)] = [][]netip.Addr{{netip.AddrFrom4([4]byte{127, 0, byte(i >> 8), byte(i)})}}
	}
	srv, err := testbed.StartDNS(testbed.DNSConfig{Answers: answers, TTL: 300})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dns := dnscache.New(dnscache.Config{Servers: []string{srv.Addr()}, ResolvConf: "/nonexistent", MaxEntries: n}, clk.Now)
	for i := range 100 { // warm up the resolver's own buffers
		_, _ = dns.LookupHost(t.Context(), fmt.Sprintf("h%d.cost.test", i))
	}
	b = heap()
	for i := 100; i < n+100; i++ {
		_, _ = dns.LookupHost(t.Context(), fmt.Sprintf("h%d.cost.test", i%n))
	}
	name := per(b)
	t.Logf("heap per entry: governor domain (bucket, controller; no (proxy, domain) bucket yet) %.0f B, rate cap %.0f B, "+
		"pool (proxy, domain) health %.0f B (one outcome), sticky session %.0f B, DNS name %.0f B",
		domain, caps, health, sessions, name)
	runtime.KeepAlive(g)
	runtime.KeepAlive(pool)
	runtime.KeepAlive(dns)
}
