package fetch

import (
	"context"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

// BenchmarkOneBadProxyInTen measures the case: ten local proxies
// adding 20 ms each, 2,000 catalog URLs per run at concurrency 100, with
// all ten good, and with one of them a blackhole (accepts, never
// answers), with and without hedging. Compare the urls/s figures: with
// one bad proxy in ten the run should keep at least 80% of the all-good
// throughput.
//
//	go test -run XXX -bench OneBadProxyInTen -benchtime 3x ./stages/fetch/
func BenchmarkOneBadProxyInTen(b *testing.B) {
	const proxies, urls, concurrency = 10, 2000, 100
	site, err := testbed.StartSite(testbed.SiteConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer site.Close()
	farm, err := testbed.StartFarm(testbed.FarmConfig{N: proxies, FirstSourceIP: 150})
	if err != nil {
		b.Fatal(err)
	}
	defer farm.Close()
	for i := range proxies {
		farm.Proxy(i).SetLatency(20 * time.Millisecond)
	}
	front, err := testbed.StartFaulty(testbed.FaultyConfig{Backend: farm.Proxy(0).Addr()})
	if err != nil {
		b.Fatal(err)
	}
	defer front.Close()
	tasks := make([]record.Task, urls)
	for i := range tasks {
		raw := site.ProductURL(i + 1)
		u, _ := url.Parse(raw)
		tasks[i] = record.Task{Msg: record.Message{URL: raw}, URL: u}
	}
	for _, bc := range []struct {
		name    string
		fault   testbed.Fault
		noHedge bool
	}{
		{"all-good", testbed.FaultNone, false},
		{"one-blackhole", testbed.FaultBlackhole, false},
		{"one-blackhole-no-hedge", testbed.FaultBlackhole, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if err := front.Set(bc.fault); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			var elapsed time.Duration
			for range b.N {
				raws := []string{front.URL()}
				for i := 1; i < proxies; i++ {
					raws = append(raws, farm.Proxy(i).URL())
				}
				var ps []*proxy.Proxy
				for i, raw := range raws {
					p, err := proxy.Parse("p"+string(rune('0'+i)), raw)
					if err != nil {
						b.Fatal(err)
					}
					ps = append(ps, p)
				}
				pool, err := proxy.New(ps)
				if err != nil {
					b.Fatal(err)
				}
				cfg := Config{Concurrency: concurrency, DomainRate: -1, Pool: pool, Policy: testPolicy,
					StaggerMax: -1, BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond, NoHedge: bc.noHedge}
				start := time.Now()
				n, failed := benchRun(b, cfg, tasks)
				elapsed += time.Since(start)
				if n != urls || failed != 0 {
					b.Fatalf("%d results, %d failed, for %d URLs", n, failed, urls)
				}
			}
			b.ReportMetric(float64(urls*b.N)/elapsed.Seconds(), "urls/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// benchRun fetches tasks through a fresh stage and counts the results.
func benchRun(b *testing.B, cfg Config, tasks []record.Task) (n, failed int) {
	st, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	src := flow.NewSource("tasks", func(stop context.Context, emit flow.Emit[record.Task]) error {
		for _, tk := range tasks {
			if err := emit(tk); err != nil {
				return err
			}
		}
		return nil
	})
	var mu sync.Mutex
	sink := flow.NewSink("count", 64, func(ctx context.Context, in flow.Inbox[record.Fetched]) error {
		for {
			f, ok := in.Recv(ctx)
			if !ok {
				return nil
			}
			mu.Lock()
			n++
			if f.Err != nil {
				failed++
			}
			mu.Unlock()
		}
	})
	flow.Connect(src, st.Flow())
	flow.Connect(st.Flow(), sink)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := flow.Run(ctx, ctx, src, st.Flow(), sink); err != nil {
		b.Fatalf("run: %v", err)
	}
	return n, failed
}
