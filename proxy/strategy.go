package proxy

import (
	"container/heap"
	"math/rand/v2"
	"time"
)

// pick chooses a member of g that accept allows, by strategy s, or nil.
// weight is the success-rate weight in [MinWeight, 1]. Called under the
// pool's lock.
func (g *group) pick(s Strategy, accept func(*entry) bool, weight func(*entry) float64, now time.Time, rng *rand.Rand) *entry {
	switch s {
	case RoundRobin, RoundRobinShuffled:
		return g.pickRoundRobin(s == RoundRobinShuffled, accept, rng)
	case Random:
		return g.pickWeighted(accept, func(*entry) float64 { return 1 }, rng)
	case Weighted:
		return g.pickWeighted(accept, weight, rng)
	case LRU:
		return g.pickLRU(accept)
	default:
		return g.pickLRUWeighted(accept, weight, now)
	}
}

// pickRoundRobin walks the cycle from the cursor to the first acceptable
// member and moves the cursor past it. With shuffle, each time the cursor
// completes a cycle the order is shuffled anew.
func (g *group) pickRoundRobin(shuffle bool, accept func(*entry) bool, rng *rand.Rand) *entry {
	n := len(g.rr)
	for k := range n {
		pos := g.rrPos + k
		if pos >= n {
			pos -= n
		}
		m := g.members[g.rr[pos]]
		if !accept(m.e) {
			continue
		}
		g.rrPos += k + 1
		if g.rrPos >= n {
			g.rrPos -= n
			if shuffle {
				rng.Shuffle(n, func(i, j int) { g.rr[i], g.rr[j] = g.rr[j], g.rr[i] })
			}
		}
		return m.e
	}
	return nil
}

// candidates collects the acceptable members into g.scratch.
func (g *group) candidates(accept func(*entry) bool) []*member {
	c := g.scratch[:0]
	for _, m := range g.members {
		if accept(m.e) {
			c = append(c, m)
		}
	}
	g.scratch = c
	return c
}

// sampleTries bounds rejection sampling before the full scan.
const sampleTries = 32

// pickWeighted draws an acceptable member with probability proportional
// to its weight (at most 1). It first tries rejection sampling — a member
// drawn uniformly is kept with probability weight — which costs O(1) when
// most members are usable and healthy; after sampleTries misses it falls
// back to a scan of all members. Both draw from the same distribution.
func (g *group) pickWeighted(accept func(*entry) bool, weight func(*entry) float64, rng *rand.Rand) *entry {
	for range sampleTries {
		m := g.members[rng.IntN(len(g.members))]
		if rng.Float64() < weight(m.e) && accept(m.e) {
			return m.e
		}
	}
	c := g.candidates(accept)
	if len(c) == 0 {
		return nil
	}
	sum := 0.0
	for _, m := range c {
		sum += weight(m.e)
	}
	x := rng.Float64() * sum
	for _, m := range c {
		x -= weight(m.e)
		if x < 0 {
			return m.e
		}
	}
	return c[len(c)-1].e
}

// pickLRU pops the heap, oldest last use first, to the first acceptable
// member, then puts back what it popped.
func (g *group) pickLRU(accept func(*entry) bool) *entry {
	popped := g.scratch[:0]
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
	g.scratch = popped[:0]
	return pick
}

// pickLRUWeighted maximises idle time × weight. Since a weight is at most
// 1, no member idle for less than the best score can beat it: the heap is
// popped in order of idle time only until that bound is reached.
func (g *group) pickLRUWeighted(accept func(*entry) bool, weight func(*entry) float64, now time.Time) *entry {
	popped := g.scratch[:0]
	var best *entry
	bestScore := -1.0
	idle := func(e *entry) float64 {
		// One nanosecond more, so that equally fresh proxies still
		// compare by weight.
		return float64(max(now.Sub(e.lastUse), 0)) + 1
	}
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
	g.scratch = popped[:0]
	return best
}

// lruHeap orders members by last use, oldest first; ties by a random rank
// fixed at construction.
type lruHeap []*member

func (h lruHeap) Len() int { return len(h) }
func (h lruHeap) Less(i, j int) bool {
	a, b := h[i].e, h[j].e
	if !a.lastUse.Equal(b.lastUse) {
		return a.lastUse.Before(b.lastUse)
	}
	return a.rank < b.rank
}
func (h lruHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].i = i
	h[j].i = j
}
func (h *lruHeap) Push(x any) {
	m := x.(*member)
	m.i = len(*h)
	*h = append(*h, m)
}
func (h *lruHeap) Pop() any {
	old := *h
	m := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	m.i = -1
	return m
}
