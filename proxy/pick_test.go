package proxy

import (
	"container/heap"
	"math/rand/v2"
	"testing"
	"time"
)

// popLRU and popLRUWeighted are the LRU picks as first written: they pop
// the heap in order and push back what they popped. The walks that
// replaced them must choose the very same member.
func popLRU(g *group, accept func(*entry) bool) *entry {
	var popped []*member
	var pick *entry
	for g.lru.Len() > 0 {
		m := heap.Pop(&g.lru).(*member)
		popped = append(popped, m)
		if accept(m.e) {
			pick = m.e
			break
		}
	}
	for _, m := range popped {
		heap.Push(&g.lru, m)
	}
	return pick
}

func popLRUWeighted(g *group, accept func(*entry) bool, weight func(*entry) float64, now time.Time) *entry {
	var popped []*member
	var best *entry
	bestScore := -1.0
	idle := func(e *entry) float64 { return float64(max(now.Sub(e.lastUse), 0)) + 1 }
	for g.lru.Len() > 0 {
		if best != nil && idle(g.lru[0].e) <= bestScore {
			break
		}
		m := heap.Pop(&g.lru).(*member)
		popped = append(popped, m)
		if !accept(m.e) {
			continue
		}
		if s := idle(m.e) * weight(m.e); s > bestScore {
			best, bestScore = m.e, s
		}
	}
	for _, m := range popped {
		heap.Push(&g.lru, m)
	}
	return best
}

// TestLRUWalksPickAsPops compares the LRU picks with the pop-based ones
// over random last uses (with many ties), weights (with ties) and
// acceptable sets.
func TestLRUWalksPickAsPops(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	now := newClock().Now()
	weights := []float64{0.05, 0.25, 0.5, 1}
	for round := range 3000 {
		n := 1 + rng.IntN(40)
		p, err := New(testProxies(n), seeded(uint64(round)))
		if err != nil {
			t.Fatal(err)
		}
		g := p.all
		w := map[*entry]float64{}
		ok := map[*entry]bool{}
		for _, e := range p.entries {
			e.lastUse = now.Add(-time.Duration(rng.IntN(5)) * time.Second)
			if rng.IntN(8) == 0 {
				e.lastUse = now.Add(time.Second) // a clock that went back
			}
			w[e] = weights[rng.IntN(len(weights))]
			ok[e] = rng.IntN(3) > 0
			e.fixHeaps()
		}
		accept := func(e *entry) bool { return ok[e] }
		weight := func(e *entry) float64 { return w[e] }
		if got, want := g.pickLRU(accept), popLRU(g, accept); got != want {
			t.Fatalf("round %d: pickLRU = %v, popping gives %v", round, got, want)
		}
		if got, want := g.pickLRUWeighted(accept, weight, now), popLRUWeighted(g, accept, weight, now); got != want {
			t.Fatalf("round %d: pickLRUWeighted = %v, popping gives %v", round, got, want)
		}
	}
}
