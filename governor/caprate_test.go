package governor

import (
	"context"
	"math"
	"testing"
	"testing/synctest"
	"time"
)

// TestCapRate: a cap lowers a domain's rate and concurrency, whether the
// domain is known already or comes later; it never raises one.
func TestCapRate(t *testing.T) {
	now := time.Unix(0, 0)
	g, err := New[int](Config{DomainRate: -1, Concurrency: 16, Domains: []Domain{{Domain: "slow.example", Rate: 0.5}}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	known := g.domainLocked("known.example", now)
	g.mu.Unlock()
	if !math.IsInf(known.rate(), 1) {
		t.Fatalf("unlimited domain at %v", known.rate())
	}
	g.CapRate("known.example", 2)
	g.CapRate("later.example", 4)
	g.CapRate("slow.example", 10) // higher than its rate: no change
	g.mu.Lock()
	defer g.mu.Unlock()
	later := g.domainLocked("later.example", now)
	slow := g.domainLocked("slow.example", now)
	for _, c := range []struct {
		d    *domain[int]
		rate float64
		conc int
	}{{known, 2, 2}, {later, 4, 4}, {slow, 0.5, 1}} {
		if c.d.lim.MaxRate != c.rate || c.d.lim.MaxConcurrency != c.conc || c.d.rate() != c.rate {
			t.Errorf("%s: rate %v (bucket %v), concurrency %d; want %v, %d", c.d.name, c.d.lim.MaxRate, c.d.rate(), c.d.lim.MaxConcurrency, c.rate, c.conc)
		}
	}
}

// TestTake: a request outside the queue takes a token of its host's
// bucket: at 1/s, the second waits a second; an unlimited host never
// waits; a canceled wait returns the context's error.
func TestTake(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, err := New[int](Config{DomainRate: 1, Concurrency: 4})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		start := time.Now()
		for range 3 {
			if err := g.Take(ctx, "a.example"); err != nil {
				t.Fatal(err)
			}
		}
		if got := time.Since(start); got != 2*time.Second {
			t.Errorf("three tokens at 1/s took %v, want 2s", got)
		}
		g.CapRate("b.example", 0.5)
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_ = g.Take(ctx, "b.example")
		if err := g.Take(cctx, "b.example"); err == nil {
			t.Error("a wait past its context returned no error")
		}
		u, err := New[int](Config{DomainRate: -1})
		if err != nil {
			t.Fatal(err)
		}
		before := time.Now()
		for range 100 {
			_ = u.Take(ctx, "c.example")
		}
		if time.Since(before) != 0 {
			t.Error("an unlimited host waited")
		}
	})
}
