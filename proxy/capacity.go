package proxy

import (
	"math"
	"time"
)

// capacity says how the per-proxy in-flight caps are derived: a proxy
// takes at most its share of the concurrency plus a margin, and a new or
// just-recovered proxy starts lower and earns the rest (slow start).
type capacity struct {
	concurrency int     // requests at once over the pool; 0: unknown (no cap)
	fixed       int     // WithMaxInFlight; 0: derived from concurrency
	margin      float64 // over the share
	start       int     // slow start's first cap; negative: no slow start
}

// full returns the cap of a proxy in a group of n proxies; 0 means none.
func (c capacity) full(n int) int {
	if c.fixed > 0 {
		return c.fixed
	}
	if c.concurrency <= 0 || n == 0 {
		return 0
	}
	share := (c.concurrency + n - 1) / n
	return share + int(math.Ceil(float64(share)*c.margin))
}

// first returns the cap a proxy starts with under a full cap of max.
func (c capacity) first(max int) int {
	if c.start < 0 {
		return max
	}
	return min(c.start, max)
}

// slowStart is one proxy's cap: cur grows by one with every success up to
// max, and falls back to the first cap on any failure, soft ones included.
// A max of 0 means no cap.
type slowStart struct {
	max, cur int
}

// admits reports whether a proxy with inFlight leases may take one more.
func (s *slowStart) admits(inFlight int) bool { return s.max == 0 || inFlight < s.cur }

// resize sets the full cap, keeping what was earned up to it.
func (s *slowStart) resize(max int, c capacity) {
	switch {
	case max == 0:
		s.cur = 0
	case s.max == 0 || s.cur == 0:
		s.cur = c.first(max)
	default:
		s.cur = min(s.cur, max)
	}
	s.max = max
}

func (s *slowStart) grow() {
	if s.max > 0 {
		s.cur = min(s.cur+1, s.max)
	}
}

func (s *slowStart) restart(c capacity) {
	if s.max > 0 {
		s.cur = c.first(s.max)
	}
}

// onProbation reports whether the proxy has not yet earned its full cap.
func (s *slowStart) onProbation() bool { return s.max > 0 && s.cur < s.max }

// resizeLocked derives every proxy's full cap from the configuration. A
// proxy's share is over the group it normally serves in (its partition,
// or the proxies in none).
func (p *Pool) resizeLocked() {
	for _, e := range p.entries {
		max := 0
		if !p.exclusive(e) {
			max = p.capCfg.full(len(e.home.members))
		}
		e.cap.resize(max, p.capCfg)
		p.reopenLocked(e)
	}
}

// typicalLocked is the latency an attempt through e on dom is expected to
// take: that of the pair, else the proxy's, else the pool's; 0 if nothing
// is known yet.
func (p *Pool) typicalLocked(e *entry, dom string) time.Duration {
	const enough = 3
	if dh := p.dhealth[dkey{e.idx, dom}]; dh != nil && dh.win.okN >= enough {
		return dh.win.latency()
	}
	if e.h.win.okN >= enough {
		return e.h.win.latency()
	}
	return time.Duration(p.latency)
}

// lateAfterLocked returns how long a lease through e on dom may run before
// it counts as a soft failure; 0 disables the check.
func (p *Pool) lateAfterLocked(e *entry, dom string) time.Duration {
	if p.cfg.slowFactor <= 0 {
		return 0
	}
	return max(time.Duration(p.cfg.slowFactor*float64(p.typicalLocked(e, dom))), p.cfg.slowMin)
}

// noteLatencyLocked folds a successful attempt's latency into the pool's
// moving average.
func (p *Pool) noteLatencyLocked(d time.Duration) {
	if d <= 0 {
		return
	}
	if p.latency == 0 {
		p.latency = float64(d)
		return
	}
	p.latency += 0.1 * (float64(d) - p.latency)
}
