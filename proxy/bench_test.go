package proxy

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkAcquireRelease measures one lease taken and returned, per
// strategy and pool size, from parallel goroutines (shared model).
func BenchmarkAcquireRelease(b *testing.B) {
	for _, n := range []int{10, 1000} {
		for _, s := range []Strategy{LRUWeighted, LRU, RoundRobin, Random, Weighted} {
			b.Run(fmt.Sprintf("%s/%d", s, n), func(b *testing.B) {
				p, err := New(testProxies(n), WithStrategy(s), seeded(1))
				if err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						l, err := p.Acquire(ctx, Request{Domain: "shop.example"})
						if err != nil {
							b.Fatal(err)
						}
						l.Release(ok)
					}
				})
			})
		}
	}
}

// BenchmarkExclusiveContention: 4× more requesters than proxies, each
// lease held for no time; measures hand-over through the wait queue.
func BenchmarkExclusiveContention(b *testing.B) {
	p, err := New(testProxies(8), WithModel(Exclusive), seeded(2))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l, err := p.Acquire(ctx, Request{Domain: "shop.example"})
			if err != nil {
				b.Fatal(err)
			}
			l.Release(ok)
		}
	})
}
