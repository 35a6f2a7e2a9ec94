package proxy

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/failure"
)

func counts(ids []string) map[string]int {
	m := map[string]int{}
	for _, id := range ids {
		m[id]++
	}
	return m
}

func TestRoundRobinIsEvenAndCyclic(t *testing.T) {
	const n, rounds = 10, 100
	p := newPool(t, n, WithStrategy(RoundRobin), seeded(1))
	var seq []string
	for range n * rounds {
		seq = append(seq, once(t, p, Request{Domain: "shop.example"}, ok))
	}
	for id, c := range counts(seq) {
		if c != rounds {
			t.Errorf("%s got %d leases, want exactly %d", id, c, rounds)
		}
	}
	for i := n; i < len(seq); i++ {
		if seq[i] != seq[i-n] {
			t.Fatalf("lease %d went to %s, lease %d to %s: not a fixed cycle", i, seq[i], i-n, seq[i-n])
		}
	}
}

func TestRoundRobinStartIsRandom(t *testing.T) {
	firsts := map[string]bool{}
	for seed := range uint64(20) {
		p := newPool(t, 10, WithStrategy(RoundRobin), seeded(seed))
		firsts[once(t, p, Request{Domain: "d"}, ok)] = true
	}
	if len(firsts) < 4 {
		t.Errorf("20 pools started on only %d distinct proxies: %v", len(firsts), firsts)
	}
}

func TestRoundRobinShuffledIsEvenAndReshuffles(t *testing.T) {
	const n, rounds = 8, 200
	p := newPool(t, n, WithStrategy(RoundRobinShuffled), seeded(2))
	var seq []string
	for range n * rounds {
		seq = append(seq, once(t, p, Request{Domain: "d"}, ok))
	}
	for id, c := range counts(seq) {
		// The first cycle starts at a random point, so a proxy may be one
		// lease ahead or behind at the ends.
		if c < rounds-1 || c > rounds+1 {
			t.Errorf("%s got %d leases, want %d±1", id, c, rounds)
		}
	}
	// No proxy is used twice before the others had their turn: between
	// two uses of a proxy lie at most 2n-2 leases and at least 1.
	last := map[string]int{}
	for i, id := range seq {
		if j, seen := last[id]; seen && (i-j > 2*n-1 || i == j+0) {
			t.Fatalf("%s reused after %d leases", id, i-j)
		}
		last[id] = i
	}
	// The order changes between cycles.
	orders := map[string]bool{}
	for i := n; i+n <= len(seq); i += n {
		orders[string(slices.Concat(toBytes(seq[i:i+n])...))] = true
	}
	if len(orders) < rounds/2 {
		t.Errorf("only %d distinct orders in %d cycles", len(orders), rounds)
	}
}

func toBytes(ids []string) [][]byte {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		out[i] = []byte(id + ",")
	}
	return out
}

func TestRandomIsUniform(t *testing.T) {
	const n, draws = 10, 20000
	p := newPool(t, n, WithStrategy(Random), seeded(3))
	var seq []string
	for range draws {
		seq = append(seq, once(t, p, Request{Domain: "d"}, ok))
	}
	c := counts(seq)
	if len(c) != n {
		t.Fatalf("only %d proxies drawn", len(c))
	}
	for id, k := range c {
		if k < draws/n*9/10 || k > draws/n*11/10 {
			t.Errorf("%s drawn %d times, want %d±10%%", id, k, draws/n)
		}
	}
}

// TestLRUNeverReusesWhileAnIdleOneIsOlder checks the LRU invariant at
// every lease, with leases held for random times: no idle proxy was last
// used before the one handed out.
func TestLRUNeverReusesWhileAnIdleOneIsOlder(t *testing.T) {
	for _, model := range []Model{Shared, Exclusive} {
		t.Run(model.String(), func(t *testing.T) {
			clk := newClock()
			p := newPool(t, 8, WithStrategy(LRU), WithModel(model), WithClock(clk.Now), seeded(4))
			rng := rand.New(rand.NewPCG(5, 6))
			var held []*Lease
			checked := 0
			for step := range 5000 {
				clk.Advance(time.Millisecond)
				if len(held) > 0 && (len(held) >= 6 || rng.IntN(2) == 0) {
					i := rng.IntN(len(held))
					held[i].Release(ok)
					held = slices.Delete(held, i, i+1)
					continue
				}
				before := p.Stats().Proxies
				l := take(t, p, Request{Domain: "d"})
				held = append(held, l)
				var got ProxyStats
				for _, s := range before {
					if s.ID == l.Proxy.ID {
						got = s
					}
				}
				for _, s := range before {
					if s.InFlight == 0 && s.ID != got.ID && s.LastUsed.Before(got.LastUsed) {
						t.Fatalf("step %d: leased %s (last used %v) while idle %s was older (%v)",
							step, got.ID, got.LastUsed, s.ID, s.LastUsed)
					}
				}
				if model == Exclusive && got.InFlight != 0 {
					t.Fatalf("step %d: exclusive lease on busy %s", step, got.ID)
				}
				checked++
			}
			for _, l := range held {
				l.Release(ok)
			}
			if checked < 1000 {
				t.Errorf("only %d leases checked", checked)
			}
		})
	}
}

// simulate leases `draws` times, releasing each with success at the rate
// given for its proxy, and returns the leases per proxy.
func simulate(t *testing.T, p *Pool, clk *manualClock, rates map[string]float64, draws int, seed uint64) map[string]int {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed+1))
	var seq []string
	for range draws {
		if clk != nil {
			clk.Advance(10 * time.Millisecond)
		}
		l := take(t, p, Request{Domain: "d"})
		o := ok
		if rng.Float64() >= rates[l.Proxy.ID] {
			o = Outcome{Class: failure.ProxyConnect}
		}
		l.Release(o)
		seq = append(seq, l.Proxy.ID)
	}
	return counts(seq)
}

func TestWeightedFavoursHealthyAndProbesWeak(t *testing.T) {
	p := newPool(t, 4, WithStrategy(Weighted), noQuarant, seeded(7))
	const draws = 8000
	c := simulate(t, p, nil, map[string]float64{"p1": 0.95, "p2": 0.6, "p3": 0.2, "p4": 0}, draws, 8)
	t.Logf("leases: %v", c)
	if !(float64(c["p1"]) > 1.3*float64(c["p2"]) && float64(c["p2"]) > 1.8*float64(c["p3"]) && c["p3"] > c["p4"]) {
		t.Errorf("leases do not follow health: %v", c)
	}
	// Weak proxies keep light traffic, so they can show they recovered;
	// the dead one gets at least its MinWeight share (5%) / sum of weights.
	if c["p3"] < draws/20 || c["p4"] < draws/100 {
		t.Errorf("weak proxies starved: %v", c)
	}
}

func TestLRUWeightedFavoursHealthyAndProbesWeak(t *testing.T) {
	clk := newClock()
	p := newPool(t, 4, noQuarant, WithClock(clk.Now), seeded(9))
	const draws = 8000
	c := simulate(t, p, clk, map[string]float64{"p1": 0.95, "p2": 0.6, "p3": 0.2, "p4": 0}, draws, 10)
	t.Logf("leases: %v", c)
	if !(c["p1"] > c["p2"] && c["p2"] > c["p3"] && c["p3"] > c["p4"]) {
		t.Errorf("leases do not follow health: %v", c)
	}
	if c["p4"] < draws/100 {
		t.Errorf("dead proxy never probed: %v", c)
	}
}

func TestLRUWeightedIsLRUAmongEquals(t *testing.T) {
	clk := newClock()
	const n = 6
	p := newPool(t, n, WithClock(clk.Now), seeded(11))
	var seq []string
	for range 60 * n {
		clk.Advance(time.Millisecond)
		seq = append(seq, once(t, p, Request{Domain: "d"}, ok))
	}
	// All healthy and equal: every proxy gets its turn before any repeats.
	for i := n; i < len(seq); i++ {
		if seq[i] != seq[i-n] {
			t.Fatalf("lease %d: %s, lease %d: %s; equal proxies should rotate in LRU order", i, seq[i], i-n, seq[i-n])
		}
	}
}

func TestStrategyPerDomain(t *testing.T) {
	p := newPool(t, 5, WithStrategy(Random), WithDomainStrategy("rr.example", RoundRobin), seeded(12))
	var rr, rnd []string
	for range 100 {
		rr = append(rr, once(t, p, Request{Domain: "www.RR.example"}, ok))
		rnd = append(rnd, once(t, p, Request{Domain: "other.example"}, ok))
	}
	for i := 5; i < len(rr); i++ {
		if rr[i] != rr[i-5] {
			t.Fatalf("round-robin domain not cyclic at %d: %v", i, rr[:i+1])
		}
	}
	cyclic := true
	for i := 5; i < len(rnd); i++ {
		cyclic = cyclic && rnd[i] == rnd[i-5]
	}
	if cyclic {
		t.Error("random domain drew a perfect cycle")
	}
}

func TestAvoidIsSoft(t *testing.T) {
	p := newPool(t, 3, seeded(13))
	for range 20 {
		if id := once(t, p, Request{Domain: "d", Avoid: []string{"p1", "p2"}}, ok); id != "p3" {
			t.Fatalf("leased %s though p3 was not avoided", id)
		}
	}
	// Everything avoided: still served, but not by the proxy tried last
	// while another one is usable.
	for range 20 {
		if id := once(t, p, Request{Domain: "d", Avoid: []string{"p3", "p1", "p2"}}, ok); id == "p2" {
			t.Fatal("leased the proxy tried last though others were usable")
		}
	}
	one := newPool(t, 1, seeded(14))
	if id := once(t, one, Request{Domain: "d", Avoid: []string{"p1"}}, ok); id != "p1" {
		t.Fatalf("single proxy, avoided: %s", id)
	}
}
