package proxy

import (
	"slices"
	"time"
)

// choice is one request's search for a proxy, under the pool's lock.
type choice struct {
	p      *Pool
	req    Request
	dom    string
	g      *group
	now    time.Time
	denied map[*entry]bool // refused by req.Allow
}

// tryLocked picks a proxy for req, or returns nil if none is usable now;
// refused reports that some were usable but req.Allow refused them.
func (p *Pool) tryLocked(req Request, dom string, g *group, now time.Time) (l *Lease, refused bool) {
	if len(g.members) == 0 {
		return nil, false
	}
	c := &choice{p: p, req: req, dom: dom, g: g, now: now}
	sticky := req.Session != "" && p.cfg.model != Rotating
	var key string
	if sticky {
		key = g.name + "\x00" + req.Session
		if l, wait, refused := c.session(key); l != nil || wait {
			return l, refused
		}
	}
	if g.open == 0 {
		return nil, false // what pick would find, at no cost
	}
	e := c.pick(sticky)
	if e == nil {
		return nil, len(c.denied) > 0
	}
	_, pp, pd := p.usableLocked(e, dom, now)
	var b *binding
	if sticky && !e.rotating {
		b = p.sess.bind(key, req.Session, g.name, e, now, p.cfg.stickyTTL, p.cfg.maxSessions)
	}
	return p.newLeaseLocked(e, req, dom, pp, pd, b, now), false
}

// allow asks req.Allow about e, remembering a refusal.
func (c *choice) allow(e *entry) bool {
	if c.req.Allow == nil || c.req.Allow(e.p.ID) {
		return true
	}
	if c.denied == nil {
		c.denied = map[*entry]bool{}
	}
	c.denied[e] = true
	return false
}

// session serves a request whose session is bound: a lease on its proxy,
// or wait=true when the request must wait for that proxy (refused: Allow
// refused it). With neither, the binding is gone and a new proxy is to be
// picked.
func (c *choice) session(key string) (l *Lease, wait, refused bool) {
	p, now := c.p, c.now
	b := p.sess.lookup(key)
	if b == nil {
		return nil, false, false
	}
	e := b.e
	if ok, pp, pd := p.usableLocked(e, c.dom, now); ok && now.Before(b.expires) {
		if !c.allow(e) {
			return nil, true, true // the session keeps its proxy: wait for it
		}
		return p.newLeaseLocked(e, c.req, c.dom, pp, pd, b, now), true, false
	}
	if now.Before(b.expires) && p.healthyLocked(e, c.dom, now) {
		return nil, true, false // its proxy is busy: wait for it
	}
	p.sess.unbind(b) // expired, or its proxy failed: move
	return nil, false, false
}

// pick runs up to three passes: first honour Avoid and, for a new session
// binding, prefer proxies no other session holds and that are not
// rotating; then skip only the proxy tried last; then take any usable
// proxy.
func (c *choice) pick(sticky bool) *entry {
	req, p := c.req, c.p
	var last string
	if len(req.Avoid) > 0 {
		last = req.Avoid[len(req.Avoid)-1]
	}
	strat := p.strategyFor(c.dom)
	for pass := 0; pass < 3; pass++ {
		if pass > 0 && len(req.Avoid) == 0 && !sticky {
			break
		}
		if pass == 1 && last == "" {
			continue
		}
		accept := func(e *entry) bool { return c.accept(e, pass, sticky, last) }
		e := c.g.pick(strat, accept, c.weight, c.now, p.cfg.rng)
		for e != nil && !c.allow(e) {
			e = c.g.pick(strat, accept, c.weight, c.now, p.cfg.rng)
		}
		if e != nil {
			return e
		}
	}
	return nil
}

// accept is the filter of one pass of pick.
func (c *choice) accept(e *entry, pass int, sticky bool, last string) bool {
	if c.denied[e] {
		return false
	}
	switch pass {
	case 0:
		if slices.Contains(c.req.Avoid, e.p.ID) || sticky && (e.bound > 0 || e.rotating) {
			return false
		}
	case 1:
		if e.p.ID == last {
			return false
		}
	}
	ok, _, _ := c.p.usableLocked(e, c.dom, c.now)
	return ok
}

// weight is the success-rate weight of e on the request's domain.
func (c *choice) weight(e *entry) float64 {
	w := e.h.win.smoothed()
	if dh := c.p.dhealth[dkey{e.idx, c.dom}]; dh != nil {
		w *= dh.win.smoothed()
	}
	return max(w, c.p.cfg.health.MinWeight)
}

// usableLocked reports whether e may take a lease on dom now, and which
// probes the lease would be: neither it nor the pair is quarantined or
// already probing, and it is below its in-flight cap.
func (p *Pool) usableLocked(e *entry, dom string, now time.Time) (ok, probeP, probeD bool) {
	if !p.openLocked(e) { // first: it costs no map look-up
		return false, false, false
	}
	return p.healthUsableLocked(e, dom, now)
}

// openLocked reports whether e's cap (or, under the Exclusive model, its
// being idle) lets it take one more lease, whatever its health.
func (p *Pool) openLocked(e *entry) bool {
	return !(p.exclusive(e) && e.inFlight > 0) && e.cap.admits(e.inFlight)
}

// reopenLocked counts e in its groups' open members, or not, after its
// leases in flight or its cap changed: every change to either must call
// it before the lock is let go or a proxy is picked.
func (p *Pool) reopenLocked(e *entry) {
	o := p.openLocked(e)
	if o == e.open {
		return
	}
	e.open = o
	d := 1
	if !o {
		d = -1
	}
	for _, m := range e.members {
		m.g.open += d
	}
}

// healthUsableLocked is usableLocked without the caps: whether the health
// of e and of e on dom lets it take a lease at all.
func (p *Pool) healthUsableLocked(e *entry, dom string, now time.Time) (ok, probeP, probeD bool) {
	switch e.h.state(now) {
	case Quarantined:
		return false, false, false
	case Probation:
		if e.h.probing {
			return false, false, false
		}
		probeP = true
	}
	if dh := p.dhealth[dkey{e.idx, dom}]; dh != nil && !e.rotating {
		switch dh.state(now) {
		case Quarantined:
			return false, false, false
		case Probation:
			if dh.probing {
				return false, false, false
			}
			probeD = true
		}
	}
	return true, probeP, probeD
}

// proxyUsableLocked reports whether the health of e itself, whatever
// its health on any domain, lets it take a lease.
func (p *Pool) proxyUsableLocked(e *entry, now time.Time) bool {
	switch e.h.state(now) {
	case Quarantined:
		return false
	case Probation:
		return !e.h.probing
	}
	return true
}

// healthyLocked reports whether e, and e on dom, are healthy.
func (p *Pool) healthyLocked(e *entry, dom string, now time.Time) bool {
	if e.h.state(now) != Healthy {
		return false
	}
	if dh := p.dhealth[dkey{e.idx, dom}]; dh != nil && !e.rotating {
		return dh.state(now) == Healthy
	}
	return true
}
