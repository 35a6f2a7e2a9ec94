package governor

import (
	"math"
	"testing"
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
