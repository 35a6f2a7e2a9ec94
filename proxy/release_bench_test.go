package proxy

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// BenchmarkReleaseWithWaiters has the shape of the comparison benchmark
// at c=1000: 1,000 goroutines take and return leases on 20 proxies for
// one domain, the caps (30 each, from a concurrency of 500 with the
// default margin) leaving about 150 of them waiting at any time (the
// "waiting" metric is the mean, sampled). One op is one Acquire and its
// Release; the holder yields once while it holds the lease.
func BenchmarkReleaseWithWaiters(b *testing.B) {
	p, err := New(testProxies(20), WithConcurrency(500), seeded(3))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	req := Request{Domain: "shop.example"}
	stop := make(chan struct{})
	waiting := sampleWaiting(p, stop)
	b.ReportAllocs()
	b.SetParallelism((1000 + 1) / 2) // × GOMAXPROCS goroutines; 1,000 on 2 cores
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l, err := p.Acquire(ctx, req)
			if err != nil {
				b.Error(err)
				return
			}
			runtime.Gosched() // hold the lease while the others run
			l.Release(ok)
		}
	})
	b.StopTimer()
	close(stop)
	b.ReportMetric(float64(<-waiting), "waiting")
}

// sampleWaiting reports, once stop is closed, the mean number of requests
// waiting in p, sampled every millisecond.
func sampleWaiting(p *Pool, stop <-chan struct{}) <-chan int {
	out := make(chan int, 1)
	go func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		sum, n := 0, 0
		for {
			select {
			case <-t.C:
				p.mu.Lock()
				sum += p.waiters.Len()
				p.mu.Unlock()
				n++
			case <-stop:
				out <- sum / max(n, 1)
				return
			}
		}
	}()
	return out
}

// BenchmarkDispatch measures one Release while n plain requests wait on
// 20 proxies at their cap: the release serves the first waiter, and the
// others stay queued. It runs on one goroutine: the served waiter's
// lease is taken from its channel and a new waiter joins the queue.
func BenchmarkDispatch(b *testing.B) {
	for _, n := range []int{0, 10, 150, 1000} {
		b.Run(fmt.Sprintf("waiters=%d", n), func(b *testing.B) {
			p, err := New(testProxies(20), WithMaxInFlight(2), WithSlowStart(-1), seeded(4))
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			req := Request{Domain: "shop.example"}
			var held []*Lease
			for range 40 {
				l, err := p.Acquire(ctx, req)
				if err != nil {
					b.Fatal(err)
				}
				held = append(held, l)
			}
			enqueue := func() *waiter {
				p.mu.Lock()
				defer p.mu.Unlock()
				return p.enqueueLocked(req, "shop.example", p.groupFor("shop.example"), p.cfg.now())
			}
			var queue []*waiter
			for range n + 1 {
				queue = append(queue, enqueue())
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				k := i % len(held)
				held[k].Release(ok)
				w := queue[0]
				queue = queue[1:]
				g := <-w.ch
				if g.l == nil {
					b.Fatal(g.err)
				}
				held[k] = g.l
				queue = append(queue, enqueue())
			}
			b.StopTimer()
			p.mu.Lock()
			for el := p.waiters.Front(); el != nil; el = p.waiters.Front() {
				p.removeLocked(el.Value.(*waiter))
			}
			p.stopTimerLocked()
			p.mu.Unlock()
			for _, l := range held {
				l.Release(ok)
			}
		})
	}
}
