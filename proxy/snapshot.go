package proxy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// LeaseInfo is one entry of the lease registry: which request holds which
// proxy, since when.
type LeaseInfo struct {
	ID      uint64    `json:"id"`
	Proxy   string    `json:"proxy"`
	Domain  string    `json:"domain"`
	URL     string    `json:"url"`
	Session string    `json:"session,omitempty"`
	Since   time.Time `json:"since"`
	// Probe says the lease is a probation probe.
	Probe bool `json:"probe,omitempty"`
}

// Leases returns the registry of current leases, oldest first.
func (p *Pool) Leases() []LeaseInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]LeaseInfo, 0, len(p.leases))
	for _, l := range p.leases {
		out = append(out, LeaseInfo{
			ID: l.id, Proxy: l.e.p.ID, Domain: l.dom, URL: l.req.URL, Session: l.req.Session,
			Since: l.granted, Probe: l.probeP || l.probeD,
		})
	}
	slices.SortFunc(out, func(a, b LeaseInfo) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return int(a.ID) - int(b.ID)
	})
	return out
}

// ProxyStats is a snapshot of one proxy's counters and health.
type ProxyStats struct {
	ID       string `json:"id"`
	Endpoint string `json:"endpoint"` // scheme://host:port, no credentials
	Rotating bool   `json:"rotating,omitempty"`
	// Partition is the domain the proxy is reserved for, "" if none.
	Partition string `json:"partition,omitempty"`

	State State `json:"state"`
	// QuarantinedUntil is when the current quarantine ends (zero if none).
	QuarantinedUntil time.Time `json:"quarantined_until,omitzero"`
	Quarantines      int64     `json:"quarantines"`
	// SuccessRate and Samples are over the health window, since the last
	// quarantine; Latency is the mean of the successful ones.
	SuccessRate float64       `json:"success_rate"`
	Samples     int           `json:"samples"`
	Latency     time.Duration `json:"latency"`

	InFlight int `json:"in_flight"`
	// Cap is the most leases the proxy may hold now (0: no cap); CapMax
	// the cap it earns back with successes. SlowStart says Cap is still
	// below CapMax: the proxy is new, recovering or failing.
	Cap       int  `json:"cap"`
	CapMax    int  `json:"cap_max"`
	SlowStart bool `json:"slow_start,omitempty"`
	// Late counts leases that ran far past their expected time (soft
	// failures, see WithSlowAttempt).
	Late int64 `json:"late"`
	// CatchCost is how many attempts the proxy was given between its last
	// success (or the start) and its last quarantine: what a failing
	// proxy cost before it was caught.
	CatchCost int64 `json:"catch_cost"`
	// AuthFailed says the proxy refused our credentials at least once.
	AuthFailed bool      `json:"auth_failed,omitempty"`
	Leases     int64     `json:"leases"`
	LastUsed   time.Time `json:"last_used"`
	Sessions   int       `json:"sessions"`
	// Outcomes counts released leases by failure class, "ok" for success.
	Outcomes map[string]int64 `json:"outcomes"`
	// LeaseWait is the total time requests waited for this proxy;
	// LeaseWaitMax the longest single wait.
	LeaseWait    time.Duration `json:"lease_wait"`
	LeaseWaitMax time.Duration `json:"lease_wait_max"`
}

// Stats is a snapshot of the pool.
type Stats struct {
	Model    string `json:"model"`
	Strategy string `json:"strategy"`
	// Waiting is the number of Acquire calls waiting for a proxy.
	Waiting int `json:"waiting"`
	// Leased is the number of leases held now.
	Leased int `json:"leased"`
	// Acquired counts leases granted; WaitTimeouts Acquire calls that gave
	// up after the max wait.
	Acquired     int64 `json:"acquired"`
	WaitTimeouts int64 `json:"wait_timeouts"`
	Sessions     int   `json:"sessions"`
	// NoProxy counts Acquire calls failed because no proxy was usable for
	// the no-proxy timeout, or every proxy refused our credentials.
	NoProxy int64 `json:"no_proxy"`
	// DomainQuarantined counts Acquire calls failed at once because every
	// proxy serving the request, usable itself, was quarantined on its
	// domain (ErrDomainQuarantined).
	DomainQuarantined int64 `json:"domain_quarantined"`
	// Usable counts proxies not quarantined now.
	Usable int `json:"usable"`
	// AuthFailed says every proxy refused our credentials and none has
	// ever worked.
	AuthFailed bool `json:"auth_failed,omitempty"`
	// StuckSince is when requests first found no usable proxy since one
	// last worked (the earliest over partitions); zero if none.
	StuckSince time.Time    `json:"stuck_since,omitzero"`
	Proxies    []ProxyStats `json:"proxies"`
}

// Stats returns a snapshot of every proxy's counters, in pool order.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.now()
	s := Stats{
		Model: p.cfg.model.String(), Strategy: p.cfg.strategy.String(),
		Waiting: p.waiters.Len(), Leased: len(p.leases), Acquired: p.acquired,
		WaitTimeouts: p.timeouts, Sessions: p.sess.len(), NoProxy: p.noProxy,
		DomainQuarantined: p.domainQ,
		AuthFailed:        p.authFailedLocked(),
	}
	for _, g := range p.allGroupsLocked() {
		s.StuckSince = earliestAfter(time.Time{}, s.StuckSince, g.stuckSince)
	}
	partOf := map[*entry]string{}
	for d, g := range p.groups {
		for _, m := range g.members {
			partOf[m.e] = d
		}
	}
	for _, e := range p.entries {
		ps := ProxyStats{
			ID: e.p.ID, Endpoint: e.p.Endpoint(), Rotating: e.rotating, Partition: partOf[e],
			State: e.h.state(now), Quarantines: e.h.quarantines,
			SuccessRate: e.h.win.rate(), Samples: e.h.win.n, Latency: e.h.win.latency(),
			InFlight: e.inFlight, Cap: e.cap.cur, CapMax: e.cap.max, SlowStart: e.cap.onProbation(),
			Late: e.h.soft, CatchCost: e.catchCost, AuthFailed: e.authFailed,
			Leases: e.leases, LastUsed: e.lastUse, Sessions: e.bound,
			Outcomes:  make(map[string]int64, len(e.outcomes)),
			LeaseWait: e.waitSum, LeaseWaitMax: e.waitMax,
		}
		if ps.State != Healthy {
			ps.QuarantinedUntil = e.h.until
		}
		if ps.State != Quarantined {
			s.Usable++
		}
		for c, n := range e.outcomes {
			ps.Outcomes[string(c)] = n
		}
		s.Proxies = append(s.Proxies, ps)
	}
	return s
}

// DomainHealth is a snapshot of one proxy on one domain.
type DomainHealth struct {
	Proxy            string    `json:"proxy"`
	Domain           string    `json:"domain"`
	State            State     `json:"state"`
	QuarantinedUntil time.Time `json:"quarantined_until,omitzero"`
	Quarantines      int64     `json:"quarantines"`
	SuccessRate      float64   `json:"success_rate"`
	Samples          int       `json:"samples"`
	LastSeen         time.Time `json:"last_seen"`
}

// DomainHealth returns the (proxy, domain) health table, sorted by domain
// then proxy order. Rotating endpoints are never quarantined per domain.
func (p *Pool) DomainHealth() []DomainHealth {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.now()
	type row struct {
		idx int
		d   DomainHealth
	}
	rows := make([]row, 0, len(p.dhealth))
	for k, dh := range p.dhealth {
		d := DomainHealth{
			Proxy: p.entries[k.idx].p.ID, Domain: k.domain, State: dh.state(now), Quarantines: dh.quarantines,
			SuccessRate: dh.win.rate(), Samples: dh.win.n, LastSeen: dh.last,
		}
		if d.State != Healthy {
			d.QuarantinedUntil = dh.until
		}
		rows = append(rows, row{k.idx, d})
	}
	slices.SortFunc(rows, func(a, b row) int {
		if c := strings.Compare(a.d.Domain, b.d.Domain); c != 0 {
			return c
		}
		return a.idx - b.idx
	})
	out := make([]DomainHealth, len(rows))
	for i, r := range rows {
		out[i] = r.d
	}
	return out
}

// SessionInfo is one sticky session binding.
type SessionInfo struct {
	Session string `json:"session"`
	// Partition is the partition's domain the binding lives in, "" for
	// the unpartitioned proxies, "*" for the whole pool.
	Partition string    `json:"partition"`
	Proxy     string    `json:"proxy"`
	Since     time.Time `json:"since"`
	Expires   time.Time `json:"expires"`
}

// Sessions returns the live sticky session bindings, oldest first.
func (p *Pool) Sessions() []SessionInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]SessionInfo, 0, p.sess.len())
	p.sess.each(func(b *binding) {
		out = append(out, SessionInfo{Session: b.session, Partition: b.group, Proxy: b.e.p.ID, Since: b.since, Expires: b.expires})
	})
	return out
}

// Uses returns how many leases each proxy id was given.
func (p *Pool) Uses() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int64, len(p.entries))
	for _, e := range p.entries {
		out[e.p.ID] = e.leases
	}
	return maps.Clone(out)
}

// allGroupsLocked returns every group: the partitions, the rest and all.
func (p *Pool) allGroupsLocked() []*group {
	out := []*group{p.all}
	if p.rest != nil {
		out = append(out, p.rest)
	}
	for _, d := range sortedKeys(p.groups) {
		out = append(out, p.groups[d])
	}
	return out
}

// Describe returns one line naming every proxy (by id and endpoint,
// never credentials) and its state, for the message of a run that ends
// for want of a working proxy: "p1 http://10.0.0.1:3128 quarantined
// (proxy_connect ×3), p2 … auth refused".
func (p *Pool) Describe() string {
	st := p.Stats()
	banned := map[string]int{}
	for _, d := range p.DomainHealth() {
		if d.State == Quarantined {
			banned[d.Proxy]++
		}
	}
	parts := make([]string, 0, len(st.Proxies))
	for _, ps := range st.Proxies {
		state := string(ps.State)
		if n := banned[ps.ID]; n > 0 {
			state += fmt.Sprintf(", quarantined on %d domain(s)", n)
		}
		if ps.AuthFailed {
			state += ", refused our credentials"
		}
		var fails []string
		for _, c := range sortedKeys(ps.Outcomes) {
			if c != "ok" && c != "canceled" {
				fails = append(fails, fmt.Sprintf("%s ×%d", c, ps.Outcomes[c]))
			}
		}
		if len(fails) > 0 {
			state += " (" + strings.Join(fails, ", ") + ")"
		}
		parts = append(parts, ps.ID+" "+ps.Endpoint+" "+state)
	}
	return strings.Join(parts, "; ")
}

// Entries counts the pool's per-key state, for bounds checks and the
// sluice_state_entries gauge.
type Entries struct {
	// DomainHealth counts (proxy, domain) health entries: bounded by
	// HealthConfig.MaxDomainEntries and forgotten after ten idle minutes,
	// except those in quarantine or with a probe out.
	DomainHealth int
	// Sessions counts sticky session bindings (WithMaxSessions bounds
	// them; expired ones go when the next session is bound).
	Sessions int
	// Leases counts the leases out.
	Leases int
}

// Entries returns the sizes of the pool's tables.
func (p *Pool) Entries() Entries {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Entries{DomainHealth: len(p.dhealth), Sessions: p.sess.len(), Leases: len(p.leases)}
}
