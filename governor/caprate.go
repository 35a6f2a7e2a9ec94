package governor

import (
	"context"
	"math"
	"time"
)

// CapRate caps host's rate at r requests per second, below whatever its
// limits allow, from now on: for a site that asks to be crawled slowly
// (robots.txt's Crawl-delay). The domain's concurrency is capped to
// match (one request in flight per request per second, at least 1). A
// cap only ever lowers a rate; r <= 0 is ignored. The caps are bounded
// like the domain table (past maxIdleDomains hosts they start over).
// Safe for concurrent use.
func (g *Governor[T]) CapRate(host string, r float64) {
	if r <= 0 || math.IsNaN(r) {
		return
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.caps == nil || len(g.caps) >= maxIdleDomains {
		g.caps = map[string]float64{}
	}
	g.caps[host] = r
	if d, ok := g.domains[host]; ok {
		d.lim = capLimits(d.lim, r)
		if d.bucket == nil {
			d.bucket = newBucket(d.lim.MaxRate, d.lim.Burst, now)
		}
		d.applyLevel(now)
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
func (g *Governor[T]) capOfLocked(host string, lim Limits) Limits {
	if r, ok := g.caps[host]; ok {
		return capLimits(lim, r)
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
	b := g.domainLocked(host, g.now()).bucket
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
