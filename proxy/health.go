package proxy

import (
	"slices"
	"time"

	"github.com/sluicehq/sluice/failure"
)

// State is where a proxy (or a proxy on one domain) stands.
type State string

// The states. A quarantined proxy gets no lease; when its cool-down ends
// it is on probation and gets one lease at a time (light traffic) until a
// probe succeeds, which makes it healthy again, or fails, which sends it
// back into quarantine for twice as long.
const (
	Healthy     State = "healthy"
	Quarantined State = "quarantined"
	Probation   State = "probation"
)

// effect is what an outcome says about a proxy, or about a proxy on a
// domain.
type effect int

const (
	none   effect = iota // says nothing (canceled, a local DNS failure, …)
	good                 // it worked
	bad                  // it failed
	severe               // it failed in a way that will not fix itself soon: quarantine now
)

// effects maps an outcome to what it says about the proxy and about the
// proxy on the request's domain. A proxy that delivered a target's answer
// worked, even if the answer is an error; a ban signal (403, 429, captcha)
// or a timeout is held against the proxy on that domain only, so a proxy
// banned by one site stays usable for the others.
func effects(o Outcome) (proxyEff, domainEff effect) {
	switch o.Class {
	case "":
		return good, good
	case failure.ProxyConnect:
		return bad, none
	case failure.ProxyAuth:
		return severe, none
	case failure.ProxyProtocol:
		if o.Upstream {
			// The proxy answered that it could not reach the target: the
			// proxy is fine, the path from it to this domain is not.
			return none, bad
		}
		return bad, none
	case failure.Blocked, failure.RateLimited:
		return good, bad
	case failure.Timeout, failure.TLS:
		return none, bad
	case failure.ServerError, failure.ClientError, failure.TooLarge, failure.Redirects, failure.Protocol:
		return good, good
	default: // canceled, internal, dns, connect, policy, bad_input, parse, unknown
		return none, none
	}
}

// window is a ring of the last outcomes: success and latency. Its
// slices grow as outcomes come, up to size, so the many (proxy, domain)
// pairs that see a few outcomes hold a few.
type window struct {
	ok     []bool
	lat    []time.Duration
	size   int
	next   int
	n      int
	okN    int
	latSum time.Duration // over successful outcomes in the window
}

func newWindow(size int) window { return window{size: size} }

func (w *window) add(ok bool, lat time.Duration) {
	if w.n == w.size { // drop the oldest
		if w.ok[w.next] {
			w.okN--
			w.latSum -= w.lat[w.next]
		}
		w.ok[w.next], w.lat[w.next] = ok, lat
	} else { // filling: next == n
		w.n++
		w.ok, w.lat = append(w.ok, ok), append(w.lat, lat)
	}
	if ok {
		w.okN++
		w.latSum += lat
	}
	w.next = (w.next + 1) % w.size
}

func (w *window) reset() {
	w.ok, w.lat = w.ok[:0], w.lat[:0]
	w.next, w.n, w.okN, w.latSum = 0, 0, 0, 0
}

// rate is the raw success rate; 0 with no samples.
func (w *window) rate() float64 {
	if w.n == 0 {
		return 0
	}
	return float64(w.okN) / float64(w.n)
}

// smoothed is the success rate with one success added: a proxy with no
// samples counts as healthy (1) until it fails, proxies that never failed
// weigh the same whatever their number of samples, and one that always
// fails tends to 0 rather than sitting at it.
func (w *window) smoothed() float64 { return float64(w.okN+1) / float64(w.n+1) }

func (w *window) latency() time.Duration {
	if w.okN == 0 {
		return 0
	}
	return w.latSum / time.Duration(w.okN)
}

// health is the state machine of one proxy, or of one proxy on a domain.
// It is guarded by the pool's lock.
type health struct {
	win         window
	consecFail  int
	consecOK    int
	strikes     int       // quarantines since the last full recovery
	until       time.Time // zero: healthy; else quarantined until, then on probation
	since       time.Time // start of the current quarantine
	probing     bool      // a probe lease is out
	quarantines int64
	soft        int64         // leases that ran late (see WithSlowAttempt)
	last        time.Time     // last outcome recorded
	cause       failure.Class // the class of the outcome that began the current or last quarantine
}

func newHealth(size int) health { return health{win: newWindow(size)} }

func (h *health) state(now time.Time) State {
	switch {
	case h.until.IsZero():
		return Healthy
	case now.Before(h.until):
		return Quarantined
	default:
		return Probation
	}
}

// cooldown is the rule for one level (proxy or domain).
type cooldown struct{ base, max time.Duration }

// record applies one outcome. probe says the lease was a probation probe;
// granted is when its lease was granted; draw is a uniform [0,1) number
// for the jitter.
func (h *health) record(e effect, lat time.Duration, probe bool, granted, now time.Time, hc *HealthConfig, cd cooldown, draw float64) {
	if e == none {
		return
	}
	h.last = now
	ok := e == good
	if !h.until.IsZero() {
		// Quarantined or on probation: only a probe decides. Outcomes of
		// leases granted before the quarantine began are stale.
		if !probe || granted.Before(h.since) {
			return
		}
		if ok {
			h.until, h.since = time.Time{}, time.Time{}
			h.win.reset()
			h.win.add(true, lat)
			h.consecFail, h.consecOK = 0, 1
			return
		}
		h.quarantine(now, hc, cd, draw)
		return
	}
	h.win.add(ok, lat)
	if ok {
		h.consecFail = 0
		h.consecOK++
		if h.consecOK >= hc.RecoverAfter {
			h.strikes = 0
		}
		return
	}
	h.consecOK = 0
	h.consecFail++
	switch {
	case e == severe,
		hc.FailThreshold > 0 && h.consecFail >= hc.FailThreshold,
		hc.MinSuccessRate > 0 && h.win.n >= hc.MinSamples && h.win.rate() < hc.MinSuccessRate:
		h.quarantine(now, hc, cd, draw)
	}
}

// quarantine starts a cool-down: base doubled per strike, capped, jittered.
func (h *health) quarantine(now time.Time, hc *HealthConfig, cd cooldown, draw float64) {
	h.strikes++
	h.quarantines++
	d := cd.base
	for i := 1; i < h.strikes && d < cd.max; i++ {
		d *= 2
	}
	d = min(d, cd.max)
	d = time.Duration(float64(d) * (1 + hc.Jitter*(2*draw-1)))
	h.since = now
	h.until = now.Add(max(d, time.Nanosecond))
	h.win.reset()
	h.consecFail, h.consecOK = 0, 0
}

// dkey identifies a proxy on a domain.
type dkey struct {
	idx    int
	domain string
}

type domainHealth struct {
	health
}

// The (proxy, domain) health table is bounded two ways. An entry with
// no probe out and no quarantine in force that saw no outcome for
// domainHealthIdle (plus DomainCooldownMax while it remembers past
// quarantines, so a pair banned again soon still gets the doubled
// cool-down) is forgotten by a sweep, run at most once per
// domainHealthSweep when an entry is made; and when the table reaches
// HealthConfig.MaxDomainEntries, the older half of such entries goes
// whatever their age, those with no past quarantine first. An entry in
// quarantine or with a probe out is never forgotten: past the cap the
// table grows by those alone, and only while their quarantine lasts. A
// forgotten pair comes back healthy with no samples, as a pair never seen
// does.
const (
	domainHealthIdle  = 10 * time.Minute
	domainHealthSweep = time.Minute
)

// domainHealthLocked returns the (proxy, domain) entry, creating it and
// evicting idle or old entries as above.
func (p *Pool) domainHealthLocked(e *entry, dom string, now time.Time) *domainHealth {
	k := dkey{e.idx, dom}
	if dh := p.dhealth[k]; dh != nil {
		return dh
	}
	switch {
	case len(p.dhealth) >= max(p.dhealthNext, p.cfg.health.MaxDomainEntries):
		p.evictDomainHealthLocked(now, 0)
	case now.Sub(p.dhealthSwept) >= domainHealthSweep:
		p.evictDomainHealthLocked(now, domainHealthIdle)
	}
	dh := &domainHealth{health: newHealth(p.cfg.health.Window)}
	dh.last = now
	p.dhealth[k] = dh
	return dh
}

// evictDomainHealthLocked forgets the entries idle for at least idle,
// with no probe out and out of quarantine. With idle 0 (the table is
// full), it forgets the older half of them instead, so the scan is paid
// once per many insertions.
func (p *Pool) evictDomainHealthLocked(now time.Time, idle time.Duration) {
	type aged struct {
		k      dkey
		struck bool
		last   time.Time
	}
	var cands []aged
	for k, dh := range p.dhealth {
		if dh.probing || dh.state(now) == Quarantined {
			continue
		}
		wait := idle
		if dh.strikes > 0 {
			wait += p.cfg.health.DomainCooldownMax
		}
		switch {
		case idle > 0 && now.Sub(dh.last) >= wait:
			delete(p.dhealth, k)
		case idle == 0:
			cands = append(cands, aged{k, dh.strikes > 0, dh.last})
		}
	}
	slices.SortFunc(cands, func(a, b aged) int {
		if a.struck != b.struck {
			if a.struck {
				return 1
			}
			return -1
		}
		return a.last.Compare(b.last)
	})
	for _, c := range cands[:(len(cands)+1)/2] {
		delete(p.dhealth, c.k)
	}
	p.dhealthSwept = now
	p.dhealthNext = len(p.dhealth) + max(p.cfg.health.MaxDomainEntries/4, 1)
}
