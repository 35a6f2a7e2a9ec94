package proxy

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sluicehq/sluice/failure"
)

// Request says what a lease is for.
type Request struct {
	// Domain is the target's host name: partitions, per-domain strategies
	// and per-domain health key on it.
	Domain string
	// URL is shown in the lease registry; pass it redacted.
	URL string
	// Session, if not empty, asks for a sticky proxy: every request of a
	// session goes through the same proxy until the binding's TTL ends or
	// the proxy fails, then the session moves to another one. Ignored
	// under the Rotating model.
	Session string
	// Avoid lists proxy ids to skip while another proxy is usable: the
	// ones a retried request already tried, the last tried last. When
	// every usable proxy is listed, the last one is still skipped if
	// another is usable.
	Avoid []string
	// Allow, if set, is asked about the proxy (by id) the pool is about to
	// lease, as the last step; it reports whether the caller may use that
	// proxy now. A true answer commits: the caller has charged the proxy
	// (the fetch governor takes a token from its (proxy, domain) bucket),
	// so the pool leases that very proxy. A false answer skips it and the
	// pool picks again among the others. When usable proxies exist but
	// Allow refuses them all, Acquire returns ErrNoneAllowed at once
	// instead of waiting. Allow is called with the pool's lock held: it
	// must be quick and must not call back into the pool.
	Allow func(id string) bool
}

// Outcome is what a lease holder reports when it returns the lease.
type Outcome struct {
	// Class is the failure class of the attempt, "" on success.
	Class failure.Class
	// Status is the HTTP status received, 0 if none.
	Status int
	// Latency is how long the attempt took.
	Latency time.Duration
	// Upstream says the proxy itself answered that it could not reach the
	// target (a 502/504 from an HTTP proxy, a SOCKS reply error): held
	// against the proxy on this domain, not against the proxy.
	Upstream bool
}

// Errors of Acquire, besides the context's.
var (
	// ErrEmpty: the pool has no proxies.
	ErrEmpty = errors.New("proxy pool is empty")
	// ErrNoProxy: no proxy became usable for the request within the
	// pool's max wait (see WithMaxWait).
	ErrNoProxy = errors.New("no usable proxy")
	// ErrNoneUsable: no proxy serving the request has been usable (all
	// quarantined) for the pool's no-proxy timeout (see
	// WithNoProxyTimeout). It wraps ErrNoProxy.
	ErrNoneUsable = fmt.Errorf("%w: every proxy has been quarantined for the no-proxy timeout", ErrNoProxy)
	// ErrAuth: every proxy of the pool refused our credentials and none
	// has ever worked: a configuration error, no attempt is worth making.
	ErrAuth = errors.New("every proxy refused our credentials")
	// ErrNoneAllowed: Request.Allow refused every usable proxy.
	ErrNoneAllowed = errors.New("no proxy allowed for this request now")
	// ErrDomainQuarantined: the proxies serving the request are fine, but
	// each is quarantined on the request's domain (or has its probe out
	// there): the target failed, not the proxies. Acquire returns it at
	// once, as a *DomainError, rather than hold the caller for the
	// cool-down.
	ErrDomainQuarantined = errors.New("every proxy is quarantined on this domain")
)

// DomainError is ErrDomainQuarantined with its details.
type DomainError struct {
	Domain string
	// Class is the failure class that last quarantined one of the
	// domain's (proxy, domain) pairs ("" if not known).
	Class failure.Class
	// Until is when the first of those quarantines ends (zero: a probe
	// is out).
	Until time.Time
}

func (e *DomainError) Error() string {
	msg := ErrDomainQuarantined.Error() + " (" + e.Domain
	if e.Class != "" {
		msg += ", after " + string(e.Class)
	}
	return msg + ")"
}

func (e *DomainError) Unwrap() error { return ErrDomainQuarantined }

// Pool hands out leases on proxies under a model and strategies, and
// learns from their outcomes. Build it with New; it starts nothing and
// needs no closing (its timers stop when nothing waits). All methods are
// safe for concurrent use.
//
// Its state lives in four parts, each in its own file, all guarded by the
// one lock mu: health (health.go, per proxy and per (proxy, domain)), the
// strategies over groups of proxies (strategy.go, group.go), sticky
// sessions (session.go) and leases with their per-proxy caps (lease.go,
// capacity.go); waiters.go serves the requests that wait.
type Pool struct {
	cfg     config
	proxies []*Proxy

	mu       sync.Mutex // guards everything below
	entries  []*entry
	groups   map[string]*group   // partitions by domain key
	parts    domainTable[*group] // the same, matched against a host
	rest     *group              // proxies in no partition; nil if none
	all      *group
	dhealth  map[dkey]*domainHealth
	sess     sessions
	leases   map[uint64]*Lease
	nextID   uint64
	waiters  list.List // of *waiter, first come first served
	timer    *time.Timer
	timerAt  time.Time
	acquired int64
	timeouts int64
	noProxy  int64   // Acquire calls failed with ErrNoneUsable or ErrAuth
	domainQ  int64   // Acquire calls failed with ErrDomainQuarantined
	latency  float64 // EWMA of successful latencies over the pool, ns; 0: none yet
	capCfg   capacity

	// The waiters by (group, domain) pair; how many are not plain; the
	// pairs with plain ones; the count of dispatch passes (see
	// dispatchLocked); the last key forgotten, for reuse, so that a queue
	// that empties and fills again costs no allocation.
	waitKeys  map[groupDomain]*waitKey
	nonPlain  int
	plainKeys int
	pass      uint64
	spareKey  *waitKey

	// domainUntil is the latest end of a (proxy, domain) quarantine yet:
	// none is in force after it.
	domainUntil time.Time

	// dhealthSwept is the last sweep of dhealth; dhealthNext the size
	// that asks for the next eviction (see domainHealthLocked).
	dhealthSwept time.Time
	dhealthNext  int
}

// entry is one proxy's mutable state.
type entry struct {
	p        *Proxy
	idx      int
	rank     int // random tie-break among equally idle proxies
	rotating bool
	h        health
	cap      slowStart
	inFlight int
	lastUse  time.Time
	members  []*member
	home     *group // its partition, or the rest, or all
	bound    int    // sessions bound to it
	leases   int64
	outcomes map[failure.Class]int64
	waitSum  time.Duration
	waitMax  time.Duration
	// sinceOK counts leases granted since the last success; catchCost is
	// its value when the proxy was last quarantined: what it cost before
	// it was caught.
	sinceOK, catchCost int64
	authFailed, everOK bool
	// open: the proxy is counted in its groups' open members (see
	// reopenLocked).
	open bool
	// timely is when the proxy last delivered an answer that was not late:
	// a proxy that did so since a lease was granted is alive, so that
	// lease running late or timing out is its target's doing.
	timely time.Time
}

// New returns a pool over proxies configured by opts. It checks the ids
// are unique and the partitions consistent, and starts nothing.
func New(proxies []*Proxy, opts ...Option) (*Pool, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("proxy pool: %w", err)
	}
	p := &Pool{
		cfg: cfg, proxies: slices.Clone(proxies),
		groups: map[string]*group{}, dhealth: map[dkey]*domainHealth{},
		sess: newSessions(), leases: map[uint64]*Lease{},
		capCfg: capacity{concurrency: cfg.concurrency, fixed: cfg.maxInFlight, margin: cfg.capMargin, start: cfg.slowStart},
	}
	byID := map[string]*entry{}
	now := cfg.now()
	ranks := cfg.rng.Perm(len(proxies))
	for i, px := range proxies {
		if px == nil || px.URL == nil || px.ID == "" {
			return nil, fmt.Errorf("proxy pool: proxy %d has no id or URL", i+1)
		}
		if byID[px.ID] != nil {
			return nil, fmt.Errorf("proxy pool: proxy id %s used twice", px.ID)
		}
		e := &entry{
			p: px, idx: i, rank: ranks[i], rotating: px.Rotating || cfg.model == Rotating,
			h: newHealth(cfg.health.Window), lastUse: now, outcomes: map[failure.Class]int64{},
		}
		p.entries = append(p.entries, e)
		byID[px.ID] = e
	}
	if err := p.buildGroups(byID); err != nil {
		return nil, fmt.Errorf("proxy pool: %w", err)
	}
	p.resizeLocked()
	return p, nil
}

// Proxies returns the pool's proxies in their original order.
func (p *Pool) Proxies() []*Proxy { return slices.Clone(p.proxies) }

// Len returns the number of proxies.
func (p *Pool) Len() int { return len(p.proxies) }

// Model returns the pool's model.
func (p *Pool) Model() Model { return p.cfg.model }

// SetConcurrency tells the pool how many requests run at once in total,
// from which each proxy's in-flight cap is derived (see WithConcurrency);
// the fetch stage calls it with its own concurrency. It does nothing when
// WithMaxInFlight fixed the cap, or under the Exclusive model.
func (p *Pool) SetConcurrency(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.capCfg.concurrency = max(n, 0)
	p.resizeLocked()
}

// groupFor returns the group serving a (normalized) domain.
func (p *Pool) groupFor(dom string) *group {
	if _, g, ok := p.parts.match(dom); ok {
		return g
	}
	if p.rest != nil {
		return p.rest
	}
	return p.all
}

func (p *Pool) strategyFor(dom string) Strategy {
	if _, s, ok := p.cfg.domainStrat.match(dom); ok {
		return s
	}
	return p.cfg.strategy
}

// Acquire leases a proxy for req, checking health now. If no proxy is
// usable (all quarantined or at their in-flight cap, or all busy under the
// Exclusive model, or the session's proxy busy) it waits, first come first
// served, until one is, until ctx ends (returning ctx's error) or until the
// max wait passes (ErrNoProxy). It fails at once with ErrNoneUsable once
// no proxy serving req has been usable for the no-proxy timeout, and with
// ErrAuth when every proxy refused our credentials before any worked. The
// lease is taken back when ctx ends; see Lease.
func (p *Pool) Acquire(ctx context.Context, req Request) (*Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(p.entries) == 0 {
		return nil, ErrEmpty
	}
	dom := normDomain(req.Domain)
	p.mu.Lock()
	now := p.cfg.now()
	g := p.groupFor(dom)
	l, refused := p.tryLocked(req, dom, g, now)
	if l != nil {
		p.grantedLocked(l, 0)
		p.mu.Unlock()
		return p.watch(ctx, l)
	}
	if refused {
		p.mu.Unlock()
		return nil, ErrNoneAllowed
	}
	if err := p.stuckLocked(g, dom, now); err != nil {
		p.countFailLocked(err)
		p.mu.Unlock()
		return nil, err
	}
	w := p.enqueueLocked(req, dom, g, now)
	p.mu.Unlock()
	return p.await(ctx, w)
}

// watch makes the pool take l back when ctx ends, and returns l. When ctx
// has already ended, no caller may hold l: it is handed back at once and
// watch returns ctx's error instead.
func (p *Pool) watch(ctx context.Context, l *Lease) (*Lease, error) {
	if ctx.Done() == nil {
		return l, nil
	}
	stop := context.AfterFunc(ctx, func() { l.Release(Outcome{Class: failure.Canceled}) })
	l.stopMu.Lock()
	l.stop = stop
	l.stopMu.Unlock()
	if err := ctx.Err(); err != nil {
		l.Release(Outcome{Class: failure.Canceled})
		return nil, err
	}
	return l, nil
}

// countFailLocked counts an Acquire failed by stuckLocked's err.
func (p *Pool) countFailLocked(err error) {
	if errors.Is(err, ErrDomainQuarantined) {
		p.domainQ++
	} else {
		p.noProxy++
	}
}

func (p *Pool) exclusive(e *entry) bool { return p.cfg.model == Exclusive && !e.rotating }
