package proxy

import (
	"container/list"
	"context"
	"time"

	"github.com/sluicehq/sluice/failure"
)

// waiter is one Acquire waiting for a proxy.
type waiter struct {
	req   Request
	dom   string
	g     *group
	key   *waitKey // of (g, dom)
	plain bool     // no session, nothing to avoid, no Allow
	start time.Time
	ch    chan grant // buffered 1: dispatch never blocks
	elem  *list.Element
}

// waitKey is what the waiters for one (group, domain) pair share, so that
// a pass over the waiters looks nothing up. It lives while such waiters
// do; the pool's lock guards it.
type waitKey struct {
	groupDomain
	n     int // waiters for the pair
	plain int // of them, plain ones
	// blocked is the dispatch pass (see Pool.pass) in which a plain waiter
	// for the pair went unserved.
	blocked uint64
}

// grant is what a waiter gets: a lease, or the error that ends its wait.
type grant struct {
	l   *Lease
	err error
}

// enqueueLocked queues a request that found no usable proxy.
func (p *Pool) enqueueLocked(req Request, dom string, g *group, now time.Time) *waiter {
	plain := req.Session == "" && len(req.Avoid) == 0 && req.Allow == nil
	gd := groupDomain{g, dom}
	k := p.waitKeys[gd]
	if k == nil {
		if p.waitKeys == nil {
			p.waitKeys = map[groupDomain]*waitKey{}
		}
		if k = p.spareKey; k != nil {
			p.spareKey = nil
			*k = waitKey{groupDomain: gd}
		} else {
			k = &waitKey{groupDomain: gd}
		}
		p.waitKeys[gd] = k
	}
	k.n++
	if !plain {
		p.nonPlain++
	} else if k.plain++; k.plain == 1 {
		p.plainKeys++
	}
	w := &waiter{req: req, dom: dom, g: g, key: k, plain: plain, start: now, ch: make(chan grant, 1)}
	w.elem = p.waiters.PushBack(w)
	p.armLocked(now)
	return w
}

// removeLocked takes w out of the queue.
func (p *Pool) removeLocked(w *waiter) {
	p.waiters.Remove(w.elem)
	w.elem = nil
	k := w.key
	if !w.plain {
		p.nonPlain--
	} else if k.plain--; k.plain == 0 {
		p.plainKeys--
	}
	if k.n--; k.n == 0 {
		delete(p.waitKeys, k.groupDomain)
		p.spareKey = k // no waiter refers to it: the next pair may
	}
}

// await waits for w's grant, ctx's end or the max wait.
func (p *Pool) await(ctx context.Context, w *waiter) (*Lease, error) {
	var deadline <-chan time.Time
	if p.cfg.maxWait > 0 {
		t := time.NewTimer(p.cfg.maxWait)
		defer t.Stop()
		deadline = t.C
	}
	var err error
	select {
	case g := <-w.ch:
		if g.err != nil {
			return nil, g.err
		}
		return p.watch(ctx, g.l)
	case <-ctx.Done():
		err = ctx.Err()
	case <-deadline:
		err = ErrNoProxy
	}
	p.mu.Lock()
	if w.elem != nil {
		p.removeLocked(w)
		if err == ErrNoProxy {
			p.timeouts++
		}
		p.armLocked(p.cfg.now())
		p.mu.Unlock()
		return nil, err
	}
	p.mu.Unlock()
	// A grant came as we gave up: hand a lease back unused.
	if g := <-w.ch; g.l != nil {
		g.l.Release(Outcome{Class: failure.Canceled})
	}
	return nil, err
}

// dispatchLocked serves waiting requests in arrival order, and fails
// those for which no proxy has been usable too long.
func (p *Pool) dispatchLocked(now time.Time) {
	if p.waiters.Len() == 0 {
		p.stopTimerLocked()
		return
	}
	// A plain request (no session, nothing to avoid) that cannot be served
	// means no later plain request for the same group and domain can be.
	// Once every pair with plain waiters is so blocked and no other waiter
	// is left, the rest of the queue is all skipped: the pass ends.
	p.pass++
	pass := p.pass
	others, blocked := p.nonPlain, 0 // non-plain waiters ahead; pairs blocked
	for el := p.waiters.Front(); el != nil; {
		next := el.Next()
		w := el.Value.(*waiter)
		switch {
		case w.plain && w.key.blocked == pass:
		case p.serveLocked(w, now):
		case w.plain:
			w.key.blocked = pass
			blocked++
		}
		if !w.plain {
			others--
		}
		if others == 0 && blocked == p.plainKeys {
			break
		}
		el = next
	}
	p.armLocked(now)
}

// serveLocked grants w a lease, or ends its wait with an error, and
// reports whether it did either.
func (p *Pool) serveLocked(w *waiter, now time.Time) bool {
	var g grant
	if l, _ := p.tryLocked(w.req, w.dom, w.g, now); l != nil {
		p.grantedLocked(l, now.Sub(w.start))
		g.l = l
	} else if g.err = p.stuckLocked(w.g, w.dom, now); g.err == nil {
		return false
	} else {
		p.countFailLocked(g.err)
	}
	p.removeLocked(w)
	w.ch <- g
	return true
}

type groupDomain struct {
	g   *group
	dom string
}

// armLocked sets the timer to dispatch again when the first quarantine
// that blocks a waiter ends, or when a group's no-proxy timeout passes.
func (p *Pool) armLocked(now time.Time) {
	var at time.Time
	for gd := range p.waitKeys { // in any order: at is the earliest
		at = earliestAfter(now, at, p.quarantineEndLocked(gd.g, gd.dom, now))
		if !gd.g.stuckSince.IsZero() && p.cfg.noProxyTimeout > 0 {
			at = earliestAfter(now, at, gd.g.stuckSince.Add(p.cfg.noProxyTimeout))
		}
	}
	if at.IsZero() {
		p.stopTimerLocked()
		return
	}
	if p.timer != nil && p.timerAt.Equal(at) {
		return
	}
	p.stopTimerLocked()
	p.timerAt = at
	p.timer = time.AfterFunc(max(at.Sub(now), 0), p.onTimer)
}

// earliestAfter returns the earlier of at and t, ignoring a zero t; a t
// not after now counts as now.
func earliestAfter(now, at, t time.Time) time.Time {
	if t.IsZero() {
		return at
	}
	if t.Before(now) {
		t = now
	}
	if at.IsZero() || t.Before(at) {
		return t
	}
	return at
}

// quarantineEndLocked returns the first future end of a quarantine of a
// proxy of g, or of one on dom; zero if none.
func (p *Pool) quarantineEndLocked(g *group, dom string, now time.Time) time.Time {
	var at time.Time
	doms := p.domainUntil.After(now) // else no pair is quarantined: look none up
	for _, m := range g.members {
		e := m.e
		if t := e.h.until; t.After(now) && (at.IsZero() || t.Before(at)) {
			at = t
		}
		if !doms {
			continue
		}
		if t := p.untilDomainLocked(e, dom); t.After(now) && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	return at
}

// domainQuarantineEndLocked returns the first future end of a
// quarantine of a proxy of g on dom; zero if none.
func (p *Pool) domainQuarantineEndLocked(g *group, dom string, now time.Time) time.Time {
	var at time.Time
	if !p.domainUntil.After(now) {
		return at
	}
	for _, m := range g.members {
		if t := p.untilDomainLocked(m.e, dom); t.After(now) && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	return at
}

// domainCauseLocked returns the class that last quarantined a proxy of g
// on dom; "" if none is known.
func (p *Pool) domainCauseLocked(g *group, dom string) failure.Class {
	var cls failure.Class
	var at time.Time
	for _, m := range g.members {
		if dh := p.dhealth[dkey{m.e.idx, dom}]; dh != nil && dh.cause != "" && !dh.since.Before(at) {
			cls, at = dh.cause, dh.since
		}
	}
	return cls
}

func (p *Pool) untilDomainLocked(e *entry, dom string) time.Time {
	if dh := p.dhealth[dkey{e.idx, dom}]; dh != nil && !e.rotating {
		return dh.until
	}
	return time.Time{}
}

func (p *Pool) stopTimerLocked() {
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
		p.timerAt = time.Time{}
	}
}

func (p *Pool) onTimer() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timer = nil
	p.timerAt = time.Time{}
	p.dispatchLocked(p.cfg.now())
}

// aliveFor is how recent a timely answer must be for a proxy to count as
// alive (see stuckLocked).
const aliveFor = time.Minute

// stuckLocked says whether a request for dom on g that found no proxy
// must fail rather than wait: ErrAuth when every proxy of the pool refused
// our credentials before any worked; a *DomainError at once when a proxy
// of g is usable and alive (it gave a timely answer within aliveFor) but
// each is quarantined on dom (or probing it): the domain failed, not the
// proxies, so the request does not wait for the domain's cool-down, and
// g's no-proxy clock does not start. A proxy that answers nothing (a
// blackhole: through a plain-HTTP proxy its timeouts look like the
// target's) fails every domain and proves no one alive. ErrNoneUsable
// when no proxy of g has been usable (each quarantined, or on probation
// with its probe out) for the no-proxy timeout. It starts g's no-proxy
// clock.
func (p *Pool) stuckLocked(g *group, dom string, now time.Time) error {
	if p.authFailedLocked() {
		return ErrAuth
	}
	var de *DomainError
	for _, m := range g.members {
		if ok, _, _ := p.healthUsableLocked(m.e, dom, now); ok {
			return nil // only busy or at its cap: wait
		}
		if de == nil && p.proxyUsableLocked(m.e, now) && now.Sub(m.e.timely) < aliveFor {
			de = &DomainError{Domain: dom}
		}
	}
	if de != nil {
		de.Until = p.domainQuarantineEndLocked(g, dom, now)
		de.Class = p.domainCauseLocked(g, dom)
		return de
	}
	if g.stuckSince.IsZero() {
		g.stuckSince = now
	}
	if p.cfg.noProxyTimeout > 0 && now.Sub(g.stuckSince) >= p.cfg.noProxyTimeout {
		return ErrNoneUsable
	}
	return nil
}

// clearStuckLocked stops the no-proxy clock of every group of e, after e
// worked.
func (p *Pool) clearStuckLocked(e *entry) {
	for _, m := range e.members {
		m.g.stuckSince = time.Time{}
	}
}

// authFailedLocked reports whether every proxy refused our credentials
// and none has ever worked.
func (p *Pool) authFailedLocked() bool {
	for _, e := range p.entries {
		if !e.authFailed || e.everOK {
			return false
		}
	}
	return len(p.entries) > 0
}
