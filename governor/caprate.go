package governor

import (
	"context"
	"math"
	"slices"
	"time"
)

// CapRate caps host's rate at r requests per second, below whatever its
// limits allow, from now on: for a site that asks to be crawled slowly
// (robots.txt's Crawl-delay). The domain's concurrency is capped to
// match (one request in flight per request per second, at least 1). A
// cap only ever lowers a rate; r <= 0 is ignored. A cap outlives its
// domain's entry: it is kept capIdle (24 h, robots.txt's default life)
// after the host was last seen, and at most maxCaps caps are kept (past
// it, those seen longest ago go first). Safe for concurrent use.
func (g *Governor[T]) CapRate(host string, r float64) {
	if r <= 0 || math.IsNaN(r) {
		return
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.caps == nil {
		g.caps = map[string]*rateCap{}
	}
	if c, ok := g.caps[host]; ok {
		c.rate, c.seen = min(c.rate, r), now
	} else {
		if len(g.caps) >= maxCaps {
			g.forgetCapsLocked(now)
		}
		g.caps[host] = &rateCap{rate: r, seen: now}
	}
	if d, ok := g.domains[host]; ok {
		d.lim = capLimits(d.lim, r)
		if d.bucket == nil {
			d.bucket = newBucket(d.lim.MaxRate, d.lim.Burst, now)
		}
		d.applyLevel(now)
	}
}

// rateCap is one host's cap and when the host was last seen.
type rateCap struct {
	rate float64
	seen time.Time
}

// The bounds of the caps table (see CapRate).
const (
	capIdle = 24 * time.Hour
	maxCaps = 100000
)

// keepCapLocked notes that host, whose domain entry goes, was last used
// at seen: its cap, if any, lives on from there.
func (g *Governor[T]) keepCapLocked(host string, seen time.Time) {
	if c, ok := g.caps[host]; ok && seen.After(c.seen) {
		c.seen = seen
	}
}

// forgetCapsLocked drops the caps of hosts with no domain entry that were
// last seen capIdle ago; if the table is still full, those seen longest
// ago go, down to three quarters of maxCaps.
func (g *Governor[T]) forgetCapsLocked(now time.Time) {
	var old []string
	for h, c := range g.caps {
		if _, live := g.domains[h]; live {
			continue
		}
		if now.Sub(c.seen) >= capIdle {
			delete(g.caps, h)
		} else {
			old = append(old, h)
		}
	}
	if len(g.caps) < maxCaps {
		return
	}
	slices.SortFunc(old, func(a, b string) int { return g.caps[a].seen.Compare(g.caps[b].seen) })
	for _, h := range old[:min(len(old), len(g.caps)-maxCaps*3/4)] {
		delete(g.caps, h)
	}
}

// capLimits lowers l's rate (and concurrency) to r when r is lower.
func capLimits(l Limits, r float64) Limits {
	if r >= l.MaxRate {
		return l
	}
	l.MaxRate, l.RateFrom = r, "crawl-delay"
	l.MaxConcurrency = max(1, min(l.MaxConcurrency, int(math.Ceil(r))))
	return l
}

// capOfLocked applies host's cap, if any, to lim.
func (g *Governor[T]) capOfLocked(host string, lim Limits, now time.Time) Limits {
	if c, ok := g.caps[host]; ok {
		c.seen = now
		return capLimits(lim, c.rate)
	}
	return lim
}

// Take waits for a token of host's bucket, for a request made outside
// the queue (robots.txt, a sitemap), so that it counts against the
// host's rate like any other. It does not take a worker or a slot of the
// global limit. It blocks until the token or ctx's end (its error).
// Safe for concurrent use.
func (g *Governor[T]) Take(ctx context.Context, host string) error {
	g.mu.Lock()
	d := g.domainLocked(host, g.now())
	d.lastUsed = g.now()
	b := d.bucket
	g.mu.Unlock()
	if b == nil {
		return nil
	}
	r := b.ReserveN(g.now(), 1)
	if !r.OK() {
		return nil
	}
	if d := r.DelayFrom(g.now()); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			r.Cancel()
			return ctx.Err()
		}
	}
	return nil
}
