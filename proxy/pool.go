package proxy

import (
	"container/heap"
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
	// ErrNoneAllowed: Request.Allow refused every usable proxy.
	ErrNoneAllowed = errors.New("no proxy allowed for this request now")
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
	bound   *binding
	stop    func() bool
	once    sync.Once
}

// Release returns the lease with the attempt's outcome. Safe to call from
// any goroutine; only the first call counts.
func (l *Lease) Release(o Outcome) {
	l.once.Do(func() {
		l.pool.mu.Lock()
		stop := l.stop
		l.pool.mu.Unlock()
		if stop != nil {
			stop()
		}
		l.pool.release(l, o)
	})
}

// Pool hands out leases on proxies under a model and strategies, and
// learns from their outcomes. Build it with New; it starts nothing and
// needs no closing. All methods are safe for concurrent use.
type Pool struct {
	cfg     config
	proxies []*Proxy

	mu        sync.Mutex // guards everything below
	entries   []*entry
	groups    map[string]*group // partitions by domain
	rest      *group            // proxies in no partition; nil if none
	all       *group
	dhealth   map[dkey]*domainHealth
	sessions  map[string]*binding
	sessOrder list.List // of *binding, oldest first (= expiring first)
	leases    map[uint64]*Lease
	nextID    uint64
	waiters   list.List // of *waiter, first come first served
	timer     *time.Timer
	timerAt   time.Time
	acquired  int64
	timeouts  int64
}

// entry is one proxy's mutable state.
type entry struct {
	p        *Proxy
	idx      int
	rank     int // random tie-break among equally idle proxies
	rotating bool
	h        health
	inFlight int
	lastUse  time.Time
	members  []*member
	bound    int // sessions bound to it
	leases   int64
	outcomes map[failure.Class]int64
	waitSum  time.Duration
	waitMax  time.Duration
}

// dkey identifies a proxy on a domain.
type dkey struct {
	idx    int
	domain string
}

type domainHealth struct {
	health
}

// binding is a sticky session's proxy.
type binding struct {
	key     string
	session string
	group   string
	e       *entry
	since   time.Time
	expires time.Time
	elem    *list.Element
}

type waiter struct {
	req   Request
	dom   string
	g     *group
	start time.Time
	ch    chan *Lease // buffered 1: dispatch never blocks
	elem  *list.Element
}

// New returns a pool over proxies configured by opts. It checks the ids
// are unique and the partitions consistent, and starts nothing.
func New(proxies []*Proxy, opts ...Option) (*Pool, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("proxy pool: %w", err)
	}
	p := &Pool{
		cfg:      cfg,
		proxies:  slices.Clone(proxies),
		groups:   map[string]*group{},
		dhealth:  map[dkey]*domainHealth{},
		sessions: map[string]*binding{},
		leases:   map[uint64]*Lease{},
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
	return p, nil
}

// buildGroups lays out the partitions, the rest and the whole pool.
func (p *Pool) buildGroups(byID map[string]*entry) error {
	taken := map[*entry]string{}
	for _, d := range sortedKeys(p.cfg.partitions) {
		var es []*entry
		for _, id := range p.cfg.partitions[d] {
			e := byID[id]
			if e == nil {
				return fmt.Errorf("partition %s: no proxy with id %s", d, id)
			}
			if other, ok := taken[e]; ok {
				return fmt.Errorf("proxy %s is in the partitions of both %s and %s", id, other, d)
			}
			taken[e] = d
			es = append(es, e)
		}
		p.groups[d] = p.newGroup(d, es)
	}
	if len(p.cfg.evenDomains) > 0 {
		var free []*entry
		for _, e := range p.entries {
			if _, ok := taken[e]; !ok {
				free = append(free, e)
			}
		}
		m := len(p.cfg.evenDomains)
		if len(free) < m {
			return fmt.Errorf("%d proxies cannot be split across %d domains", len(free), m)
		}
		at := 0
		for i, d := range p.cfg.evenDomains {
			if _, dup := p.groups[d]; dup {
				return fmt.Errorf("domain %s partitioned twice", d)
			}
			n := len(free) / m
			if i < len(free)%m {
				n++
			}
			for _, e := range free[at : at+n] {
				taken[e] = d
			}
			p.groups[d] = p.newGroup(d, free[at:at+n])
			at += n
		}
	}
	var rest []*entry
	for _, e := range p.entries {
		if _, ok := taken[e]; !ok {
			rest = append(rest, e)
		}
	}
	p.all = p.newGroup("*", p.entries)
	if len(rest) > 0 && len(rest) < len(p.entries) {
		p.rest = p.newGroup("", rest)
	}
	return nil
}

// Proxies returns the pool's proxies in their original order.
func (p *Pool) Proxies() []*Proxy { return slices.Clone(p.proxies) }

// Len returns the number of proxies.
func (p *Pool) Len() int { return len(p.proxies) }

// Model returns the pool's model.
func (p *Pool) Model() Model { return p.cfg.model }

// groupFor returns the group serving a (normalized) domain.
func (p *Pool) groupFor(dom string) *group {
	if g, ok := matchDomain(p.groups, dom); ok {
		return g
	}
	if p.rest != nil {
		return p.rest
	}
	return p.all
}

func (p *Pool) strategyFor(dom string) Strategy {
	if s, ok := matchDomain(p.cfg.domainStrat, dom); ok {
		return s
	}
	return p.cfg.strategy
}

// Acquire leases a proxy for req, checking health now. If no proxy is
// usable (all quarantined, or all busy under the Exclusive model, or the
// session's proxy busy) it waits, first come first served, until one is,
// until ctx ends (returning ctx's error) or until the max wait passes
// (ErrNoProxy). The lease is taken back when ctx ends; see Lease.
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
	w := &waiter{req: req, dom: dom, g: g, start: now, ch: make(chan *Lease, 1)}
	w.elem = p.waiters.PushBack(w)
	p.armLocked(now)
	p.mu.Unlock()

	var deadline <-chan time.Time
	if p.cfg.maxWait > 0 {
		t := time.NewTimer(p.cfg.maxWait)
		defer t.Stop()
		deadline = t.C
	}
	var err error
	select {
	case l := <-w.ch:
		return p.watch(ctx, l)
	case <-ctx.Done():
		err = ctx.Err()
	case <-deadline:
		err = ErrNoProxy
	}
	p.mu.Lock()
	if w.elem != nil {
		p.waiters.Remove(w.elem)
		w.elem = nil
		if err == ErrNoProxy {
			p.timeouts++
		}
		p.armLocked(p.cfg.now())
		p.mu.Unlock()
		return nil, err
	}
	p.mu.Unlock()
	// A lease was granted as we gave up: hand it back unused.
	l = <-w.ch
	l.Release(Outcome{Class: failure.Canceled})
	return nil, err
}

// watch makes the pool take l back when ctx ends, and returns l. When ctx
// has already ended, no caller may hold l: it is handed back at once and
// watch returns ctx's error instead.
func (p *Pool) watch(ctx context.Context, l *Lease) (*Lease, error) {
	if ctx.Done() == nil {
		return l, nil
	}
	stop := context.AfterFunc(ctx, func() { l.Release(Outcome{Class: failure.Canceled}) })
	p.mu.Lock()
	l.stop = stop
	p.mu.Unlock()
	if err := ctx.Err(); err != nil {
		l.Release(Outcome{Class: failure.Canceled})
		return nil, err
	}
	return l, nil
}

// tryLocked picks a proxy for req, or returns nil if none is usable now;
// refused reports that some were usable but req.Allow refused them.
func (p *Pool) tryLocked(req Request, dom string, g *group, now time.Time) (l *Lease, refused bool) {
	if len(g.members) == 0 {
		return nil, false
	}
	var denied map[*entry]bool // refused by req.Allow
	allow := func(e *entry) bool {
		if req.Allow == nil || req.Allow(e.p.ID) {
			return true
		}
		if denied == nil {
			denied = map[*entry]bool{}
		}
		denied[e] = true
		return false
	}
	// usable reports whether e may take this lease now, and which probes
	// the lease would be.
	usable := func(e *entry) (ok, probeP, probeD bool) {
		switch e.h.state(now) {
		case Quarantined:
			return false, false, false
		case Probation:
			if e.probingP() {
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
		if p.exclusive(e) && e.inFlight > 0 {
			return false, false, false
		}
		if p.cfg.maxInFlight > 0 && !p.exclusive(e) && e.inFlight >= p.cfg.maxInFlight {
			return false, false, false
		}
		return true, probeP, probeD
	}

	sticky := req.Session != "" && p.cfg.model != Rotating
	var key string
	if sticky {
		key = g.name + "\x00" + req.Session
		if b := p.sessions[key]; b != nil {
			e := b.e
			if ok, pp, pd := usable(e); ok && now.Before(b.expires) {
				if !allow(e) {
					return nil, true // the session keeps its proxy: wait for it
				}
				return p.newLeaseLocked(e, req, dom, pp, pd, b, now), false
			}
			st := e.h.state(now)
			dst := Healthy
			if dh := p.dhealth[dkey{e.idx, dom}]; dh != nil && !e.rotating {
				dst = dh.state(now)
			}
			if now.Before(b.expires) && st == Healthy && dst == Healthy {
				return nil, false // its proxy is busy: wait for it
			}
			p.unbindLocked(b) // expired, or its proxy failed: move
		}
	}

	strat := p.strategyFor(dom)
	weight := func(e *entry) float64 {
		w := e.h.win.smoothed()
		if dh := p.dhealth[dkey{e.idx, dom}]; dh != nil {
			w *= dh.win.smoothed()
		}
		return max(w, p.cfg.health.MinWeight)
	}
	// Up to three passes: first honour Avoid and, for a new session
	// binding, prefer proxies no other session holds and that are not
	// rotating; then skip only the proxy tried last; then take any usable
	// proxy.
	var last string
	if len(req.Avoid) > 0 {
		last = req.Avoid[len(req.Avoid)-1]
	}
	for pass := 0; pass < 3; pass++ {
		if pass > 0 && len(req.Avoid) == 0 && !sticky {
			break
		}
		if pass == 1 && last == "" {
			continue
		}
		accept := func(e *entry) bool {
			if denied[e] {
				return false
			}
			switch pass {
			case 0:
				if slices.Contains(req.Avoid, e.p.ID) || sticky && (e.bound > 0 || e.rotating) {
					return false
				}
			case 1:
				if e.p.ID == last {
					return false
				}
			}
			ok, _, _ := usable(e)
			return ok
		}
		e := g.pick(strat, accept, weight, now, p.cfg.rng)
		for e != nil && !allow(e) {
			e = g.pick(strat, accept, weight, now, p.cfg.rng)
		}
		if e == nil {
			continue
		}
		_, pp, pd := usable(e)
		var b *binding
		if sticky && !e.rotating {
			b = p.bindLocked(key, req.Session, g.name, e, now)
		}
		return p.newLeaseLocked(e, req, dom, pp, pd, b, now), false
	}
	return nil, len(denied) > 0
}

func (p *Pool) exclusive(e *entry) bool { return p.cfg.model == Exclusive && !e.rotating }

// probingP reports whether a proxy-level probe is out.
func (e *entry) probingP() bool { return e.h.probing }

func (p *Pool) newLeaseLocked(e *entry, req Request, dom string, probeP, probeD bool, b *binding, now time.Time) *Lease {
	p.nextID++
	l := &Lease{Proxy: e.p, id: p.nextID, pool: p, e: e, req: req, dom: dom, granted: now, probeP: probeP, probeD: probeD, bound: b}
	l.req.Avoid = nil // not kept: the registry shows no more than it needs
	e.inFlight++
	e.leases++
	e.lastUse = now
	e.fixHeaps()
	if probeP {
		e.h.probing = true
	}
	if probeD {
		p.dhealth[dkey{e.idx, dom}].probing = true
	}
	p.leases[l.id] = l
	p.acquired++
	return l
}

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
	hc := &p.cfg.health
	if l.probeP {
		e.h.probing = false
	}
	e.h.record(pe, o.Latency, l.probeP, l.granted, now, hc, cooldown{hc.CooldownBase, hc.CooldownMax}, p.cfg.rng.Float64())
	if de != none || l.probeD {
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
		} else {
			dh.record(de, o.Latency, l.probeD, l.granted, now, hc, cooldown{hc.DomainCooldownBase, hc.DomainCooldownMax}, p.cfg.rng.Float64())
		}
	}
	if b := l.bound; b != nil && (pe == bad || pe == severe || de == bad) && p.sessions[b.key] == b {
		p.unbindLocked(b) // the session moves on its next request
	}
	e.lastUse = now
	e.fixHeaps()
	p.dispatchLocked(now)
}

// domainHealthLocked returns the (proxy, domain) entry, creating it and
// evicting old healthy entries when the table is full.
func (p *Pool) domainHealthLocked(e *entry, dom string, now time.Time) *domainHealth {
	k := dkey{e.idx, dom}
	if dh := p.dhealth[k]; dh != nil {
		return dh
	}
	if len(p.dhealth) >= p.cfg.health.MaxDomainEntries {
		p.evictDomainHealthLocked(now)
	}
	dh := &domainHealth{health: newHealth(p.cfg.health.Window)}
	dh.last = now
	p.dhealth[k] = dh
	return dh
}

// evictDomainHealthLocked forgets the older half of the healthy entries
// with no probe out (all entries, oldest first, if none is healthy), so
// the scan is paid once per many insertions.
func (p *Pool) evictDomainHealthLocked(now time.Time) {
	type aged struct {
		k    dkey
		last time.Time
	}
	var cands []aged
	for k, dh := range p.dhealth {
		if dh.state(now) == Healthy && !dh.probing {
			cands = append(cands, aged{k, dh.last})
		}
	}
	if len(cands) == 0 {
		for k, dh := range p.dhealth {
			if !dh.probing {
				cands = append(cands, aged{k, dh.last})
			}
		}
	}
	slices.SortFunc(cands, func(a, b aged) int { return a.last.Compare(b.last) })
	for _, c := range cands[:max(len(cands)/2, 1)] {
		delete(p.dhealth, c.k)
	}
}

// dispatchLocked serves waiting requests in arrival order.
func (p *Pool) dispatchLocked(now time.Time) {
	if p.waiters.Len() == 0 {
		p.stopTimerLocked()
		return
	}
	// A plain request (no session, nothing to avoid) that cannot be served
	// means no later plain request for the same group and domain can be.
	type gd struct {
		g   *group
		dom string
	}
	var blocked map[gd]bool
	for el := p.waiters.Front(); el != nil; {
		next := el.Next()
		w := el.Value.(*waiter)
		plain := w.req.Session == "" && len(w.req.Avoid) == 0 && w.req.Allow == nil
		if plain && blocked[gd{w.g, w.dom}] {
			el = next
			continue
		}
		if l, _ := p.tryLocked(w.req, w.dom, w.g, now); l != nil {
			p.waiters.Remove(el)
			w.elem = nil
			p.grantedLocked(l, now.Sub(w.start))
			w.ch <- l
		} else if plain {
			if blocked == nil {
				blocked = map[gd]bool{}
			}
			blocked[gd{w.g, w.dom}] = true
		}
		el = next
	}
	p.armLocked(now)
}

// armLocked sets the timer to dispatch again when the first quarantine
// that blocks a waiter ends.
func (p *Pool) armLocked(now time.Time) {
	type gd struct {
		g   *group
		dom string
	}
	var at time.Time
	seen := map[gd]bool{}
	for el := p.waiters.Front(); el != nil; el = el.Next() {
		w := el.Value.(*waiter)
		if seen[gd{w.g, w.dom}] {
			continue
		}
		seen[gd{w.g, w.dom}] = true
		if t := p.quarantineEndLocked(w.g, w.dom, now); !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
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

// quarantineEndLocked returns the first future end of a quarantine of a
// proxy of g, or of one on dom; zero if none.
func (p *Pool) quarantineEndLocked(g *group, dom string, now time.Time) time.Time {
	var at time.Time
	for _, m := range g.members {
		e := m.e
		for _, t := range [2]time.Time{e.h.until, p.untilDomainLocked(e, dom)} {
			if t.After(now) && (at.IsZero() || t.Before(at)) {
				at = t
			}
		}
	}
	return at
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

// bindLocked binds a session to e, forgetting the oldest binding when the
// table is full.
func (p *Pool) bindLocked(key, session, group string, e *entry, now time.Time) *binding {
	for len(p.sessions) >= p.cfg.maxSessions && p.sessOrder.Len() > 0 {
		p.unbindLocked(p.sessOrder.Front().Value.(*binding))
	}
	b := &binding{key: key, session: session, group: group, e: e, since: now, expires: now.Add(p.cfg.stickyTTL)}
	b.elem = p.sessOrder.PushBack(b)
	p.sessions[key] = b
	e.bound++
	return b
}

func (p *Pool) unbindLocked(b *binding) {
	if p.sessions[b.key] != b {
		return
	}
	delete(p.sessions, b.key)
	p.sessOrder.Remove(b.elem)
	b.e.bound--
}

// group is a set of proxies that serve the same domains, with the state
// of the strategies over it.
type group struct {
	name    string // the partition's domain, "" for the rest, "*" for all
	members []*member
	rr      []int // a cycle over members, for round-robin
	rrPos   int
	lru     lruHeap
	scratch []*member
}

// member is an entry's place in one group's LRU heap.
type member struct {
	e *entry
	g *group
	i int // heap index
}

func (p *Pool) newGroup(name string, es []*entry) *group {
	g := &group{name: name}
	for _, e := range es {
		m := &member{e: e, g: g}
		e.members = append(e.members, m)
		g.members = append(g.members, m)
	}
	g.rr = make([]int, len(g.members))
	for i := range g.rr {
		g.rr[i] = i
	}
	if len(g.rr) > 0 {
		g.rrPos = p.cfg.rng.IntN(len(g.rr))
	}
	g.lru = slices.Clone(g.members)
	for i, m := range g.lru {
		m.i = i
	}
	heap.Init(&g.lru)
	return g
}

// fixHeaps restores the LRU heaps after lastUse changed.
func (e *entry) fixHeaps() {
	for _, m := range e.members {
		heap.Fix(&m.g.lru, m.i)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
