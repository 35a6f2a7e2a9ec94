package proxy

import (
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

// pickLRU returns the acceptable member of oldest last use (ties by
// rank): the first the heap would pop. It walks the heap's tree without
// changing it, and skips every subtree whose root comes after the best
// member found so far, as all of that subtree does.
func (g *group) pickLRU(accept func(*entry) bool) *entry {
	var best *member
	stack := append(g.stack[:0], 0)
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if i >= len(g.lru) {
			continue
		}
		m := g.lru[i]
		if best != nil && !before(m.e, best.e) {
			continue
		}
		if accept(m.e) {
			best = m // its subtree comes after it
			continue
		}
		stack = append(stack, 2*i+2, 2*i+1)
	}
	g.stack = stack
	if best == nil {
		return nil
	}
	return best.e
}

// pickLRUWeighted maximises idle time × weight, ties going to the member
// the heap would pop first. Since a weight is at most 1, no member idle
// for less than the best score can beat it, nor can any member of its
// subtree (idle for no longer): the heap's tree is walked, without
// changing it, skipping those subtrees.
func (g *group) pickLRUWeighted(accept func(*entry) bool, weight func(*entry) float64, now time.Time) *entry {
	var best *entry
	bestScore := -1.0
	idle := func(e *entry) float64 {
		// One nanosecond more, so that equally fresh proxies still
		// compare by weight.
		return float64(max(now.Sub(e.lastUse), 0)) + 1
	}
	stack := append(g.stack[:0], 0)
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if i >= len(g.lru) {
			continue
		}
		e := g.lru[i].e
		id := idle(e)
		if best != nil && id < bestScore {
			continue
		}
		stack = append(stack, 2*i+2, 2*i+1)
		if !accept(e) {
			continue
		}
		if s := id * weight(e); s > bestScore || s == bestScore && before(e, best) {
			best, bestScore = e, s
		}
	}
	g.stack = stack
	return best
}

// before reports whether a comes before b in the LRU heap's order.
func before(a, b *entry) bool {
	if !a.lastUse.Equal(b.lastUse) {
		return a.lastUse.Before(b.lastUse)
	}
	return a.rank < b.rank
}

// lruHeap orders members by last use, oldest first; ties by a random rank
// fixed at construction.
type lruHeap []*member

func (h lruHeap) Len() int           { return len(h) }
func (h lruHeap) Less(i, j int) bool { return before(h[i].e, h[j].e) }
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
