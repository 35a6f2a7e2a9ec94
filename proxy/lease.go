package proxy

import (
	"sync"
	"time"

	"github.com/sluicehq/sluice/failure"
)

// Lease is the right to use one proxy for one attempt. The holder must
// call Release exactly once (defer it); later calls do nothing. A lease is
// valid while the context given to Acquire lives: when it ends the pool
// takes the lease back (as if released with class canceled), so a holder
// that panics or is abandoned never keeps a proxy.
type Lease struct {
	// Proxy is the leased proxy. Use it for this attempt only: the next
	// attempt asks the pool again, which checks health at that moment.
	Proxy *Proxy

	id      uint64
	pool    *Pool
	e       *entry
	req     Request
	dom     string
	granted time.Time
	probeP  bool // a probation probe for the proxy
	probeD  bool // a probation probe for the proxy on this domain
	slow    bool // the proxy's cap was below its maximum when granted
	capAt   int  // the proxy's cap when granted (0: no cap)
	bound   *binding
	late    chan struct{}
	timer   *time.Timer // marks the lease late; set before the lease is handed out, never changed
	isLate  bool        // guarded by the pool's lock
	done    bool        // released; guarded by the pool's lock
	once    sync.Once

	// The context watch, set after the lease is handed out. Its own lock,
	// not the pool's: taking and returning a lease then costs the pool's
	// lock once each (it is the pool's busiest lock at high concurrency).
	stopMu sync.Mutex
	stop   func() bool // ends the context watch; guarded by stopMu
}

// Late returns a channel closed when the lease has run far longer than
// attempts through its proxy on its domain usually take (see
// WithSlowAttempt): the pool has counted it as a soft failure of the
// proxy, and the holder may hedge the attempt on another proxy. It is
// never closed when the check is disabled.
func (l *Lease) Late() <-chan struct{} { return l.late }

// Probation reports whether the proxy was on probation when the lease was
// granted: a probation probe, or its cap still below its maximum (slow
// start). Cap is the proxy's cap at that moment (0: no cap). Both are
// fixed at the grant and safe to read from any goroutine.
func (l *Lease) Probation() bool { return l.probeP || l.probeD || l.slow }

// Cap returns the proxy's cap when the lease was granted; see Probation.
func (l *Lease) Cap() int { return l.capAt }

// Release returns the lease with the attempt's outcome. Safe to call from
// any goroutine; only the first call counts.
func (l *Lease) Release(o Outcome) {
	l.once.Do(func() {
		l.stopMu.Lock()
		stop := l.stop
		l.stopMu.Unlock()
		if stop != nil {
			stop()
		}
		if l.timer != nil {
			l.timer.Stop() // a late mark that fires anyway finds the lease done
		}
		l.pool.release(l, o)
	})
}

func (p *Pool) newLeaseLocked(e *entry, req Request, dom string, probeP, probeD bool, b *binding, now time.Time) *Lease {
	p.nextID++
	l := &Lease{Proxy: e.p, id: p.nextID, pool: p, e: e, req: req, dom: dom, granted: now,
		probeP: probeP, probeD: probeD, slow: e.cap.onProbation(), capAt: e.cap.cur, bound: b, late: make(chan struct{})}
	l.req.Avoid = nil // not kept: the registry shows no more than it needs
	l.req.Allow = nil
	e.inFlight++
	p.reopenLocked(e)
	e.leases++
	e.sinceOK++
	e.lastUse = now
	e.fixHeaps()
	if probeP {
		e.h.probing = true
	}
	if probeD {
		p.dhealth[dkey{e.idx, dom}].probing = true
	}
	if d := p.lateAfterLocked(e, dom); d > 0 {
		l.timer = time.AfterFunc(d, func() { p.markLate(l) })
	}
	p.leases[l.id] = l
	p.acquired++
	return l
}

// markLate marks a lease that outlived its expected time. Unless its
// proxy delivered a timely answer since the lease was granted (then the
// proxy works and the lease's target is what hangs), it is a soft failure
// of the proxy: the proxy's cap falls back to the first one, so a proxy
// that swallows requests gets few more until it answers.
func (p *Pool) markLate(l *Lease) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l.done || l.isLate {
		return
	}
	l.isLate = true
	if !p.answeredSinceLocked(l) {
		l.e.cap.restart(p.capCfg)
		p.reopenLocked(l.e)
		l.e.h.soft++
	}
	close(l.late)
}

// answeredSinceLocked reports whether l's proxy delivered a timely answer
// (to any lease) since l was granted.
func (p *Pool) answeredSinceLocked(l *Lease) bool { return l.e.timely.After(l.granted) }

// grantedLocked accounts for the wait of a lease just granted.
func (p *Pool) grantedLocked(l *Lease, wait time.Duration) {
	l.e.waitSum += wait
	l.e.waitMax = max(l.e.waitMax, wait)
}

// release applies an outcome and serves waiters.
func (p *Pool) release(l *Lease, o Outcome) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.now()
	e := l.e
	l.done = true
	delete(p.leases, l.id)
	e.inFlight--
	cls := o.Class
	if cls == "" {
		cls = "ok"
	}
	if len(e.outcomes) < 64 || e.outcomes[cls] > 0 {
		e.outcomes[cls]++
	}
	pe, de := effects(o)
	p.recordProxyLocked(l, o, pe, now)
	if de != none || l.probeD {
		p.recordDomainLocked(l, o, de, now)
	}
	if b := l.bound; b != nil && (pe == bad || pe == severe || de == bad) {
		p.sess.unbindIf(b) // the session moves on its next request
	}
	e.lastUse = now
	e.fixHeaps()
	p.reopenLocked(e) // after inFlight and the cap changed
	p.dispatchLocked(now)
}

// recordProxyLocked applies an outcome to the proxy's health and cap.
func (p *Pool) recordProxyLocked(l *Lease, o Outcome, pe effect, now time.Time) {
	e, hc := l.e, &p.cfg.health
	if l.probeP {
		e.h.probing = false
	}
	before := e.h.quarantines
	e.h.record(pe, o.Latency, l.probeP, l.granted, now, hc, cooldown{hc.CooldownBase, hc.CooldownMax}, p.cfg.rng.Float64())
	switch {
	case pe == good:
		e.everOK = true
		e.sinceOK = 0
		if !l.isLate {
			e.timely = now
		}
		e.cap.grow()
		p.noteLatencyLocked(o.Latency)
		p.clearStuckLocked(e)
	case pe == bad || pe == severe || o.Class == failure.Timeout && !l.isLate && !p.answeredSinceLocked(l):
		// A timeout says nothing sure about the proxy (the target may be
		// slow) but is reason enough not to send it more yet, unless the
		// proxy answered others meanwhile: then the target hangs.
		e.cap.restart(p.capCfg)
	}
	if o.Class == failure.ProxyAuth {
		e.authFailed = true
	}
	if e.h.quarantines > before {
		e.catchCost = e.sinceOK
		e.cap.restart(p.capCfg)
	}
}

// recordDomainLocked applies an outcome to the proxy's health on the
// lease's domain.
func (p *Pool) recordDomainLocked(l *Lease, o Outcome, de effect, now time.Time) {
	e, hc := l.e, &p.cfg.health
	dh := p.domainHealthLocked(e, l.dom, now)
	if l.probeD {
		dh.probing = false
	}
	if e.rotating {
		// A ban hits one exit IP of a rotating endpoint, not the
		// endpoint: count it, never quarantine on it.
		if de != none {
			dh.win.add(de == good, o.Latency)
			dh.last = now
		}
		return
	}
	before := dh.quarantines
	dh.record(de, o.Latency, l.probeD, l.granted, now, hc, cooldown{hc.DomainCooldownBase, hc.DomainCooldownMax}, p.cfg.rng.Float64())
	if dh.until.After(p.domainUntil) {
		p.domainUntil = dh.until
	}
	if dh.quarantines > before {
		dh.cause = o.Class
	}
}
