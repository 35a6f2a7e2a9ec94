package proxy

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Model says how requests share the pool's proxies.
type Model int

const (
	// Shared (the default) is an application-managed pool whose proxies
	// may serve several requests at once (see WithMaxInFlight).
	Shared Model = iota
	// Exclusive is an application-managed pool with exclusive leases: two
	// requests never hold the same proxy at once; a request waits for a
	// free proxy. Rotating endpoints are never exclusive.
	Exclusive
	// Rotating is provider-managed rotation: every proxy is a rotating
	// endpoint that hands out a new exit IP per connection. Leases are
	// shared, sticky sessions are ignored, and a target's ban signals are
	// counted but never quarantine an endpoint for a domain (the banned
	// exit IP is already gone).
	Rotating
)

var modelNames = map[Model]string{Shared: "shared", Exclusive: "exclusive", Rotating: "rotating"}

// String returns the model's name as ParseModel accepts it.
func (m Model) String() string {
	if s, ok := modelNames[m]; ok {
		return s
	}
	return fmt.Sprintf("Model(%d)", int(m))
}

// ParseModel parses "shared", "exclusive" or "rotating".
func ParseModel(s string) (Model, error) {
	for m, name := range modelNames {
		if strings.EqualFold(s, name) {
			return m, nil
		}
	}
	return 0, fmt.Errorf("proxy model %q is not shared, exclusive or rotating", s)
}

// Strategy says which of the usable proxies a lease gets.
type Strategy int

const (
	// LRUWeighted (the default) takes the proxy whose idle time multiplied
	// by its success-rate weight is largest: the least recently used
	// proxy, unless a slightly less idle one is much healthier.
	LRUWeighted Strategy = iota
	// RoundRobin cycles through the proxies in a fixed order from a random
	// start.
	RoundRobin
	// RoundRobinShuffled is RoundRobin with a new random order each cycle,
	// so that the sequence shows no pattern.
	RoundRobinShuffled
	// Random draws uniformly.
	Random
	// LRU takes the least recently used proxy (a heap on last use): the
	// longest cool-down between two uses of one IP.
	LRU
	// Weighted draws with probability proportional to the recent success
	// rate (see HealthConfig.MinWeight), so healthier proxies get more
	// traffic and weak ones keep a little.
	Weighted
)

var strategyNames = map[Strategy]string{
	LRUWeighted: "lru-weighted", RoundRobin: "round-robin", RoundRobinShuffled: "round-robin-shuffle",
	Random: "random", LRU: "lru", Weighted: "weighted",
}

// String returns the strategy's name as ParseStrategy accepts it.
func (s Strategy) String() string {
	if n, ok := strategyNames[s]; ok {
		return n
	}
	return fmt.Sprintf("Strategy(%d)", int(s))
}

// ParseStrategy parses a strategy name: lru-weighted, round-robin,
// round-robin-shuffle, random, lru or weighted.
func ParseStrategy(s string) (Strategy, error) {
	for st, name := range strategyNames {
		if strings.EqualFold(s, name) {
			return st, nil
		}
	}
	return 0, fmt.Errorf("proxy strategy %q is not one of lru-weighted, round-robin, round-robin-shuffle, random, lru, weighted", s)
}

// HealthConfig tunes how outcomes become quarantines. The same rules apply
// to a proxy as a whole (connect, proxy-auth and proxy-protocol failures)
// and to a proxy on one domain (ban signals: 403, 429, captcha markers,
// timeouts, TLS failures). Every zero field takes the documented default.
type HealthConfig struct {
	// Window is how many recent outcomes the success rate and latency are
	// computed over. 0 means 50.
	Window int
	// FailThreshold consecutive failures put a proxy (or a proxy on a
	// domain) into quarantine. 0 means 3; negative disables the rule.
	FailThreshold int
	// MinSuccessRate quarantines when the success rate over the window
	// falls below it, once MinSamples outcomes were seen since the last
	// quarantine. 0 means 0.5; negative disables the rule.
	MinSuccessRate float64
	// MinSamples, see MinSuccessRate. 0 means 20.
	MinSamples int
	// CooldownBase is how long a first quarantine lasts; each further one
	// without a full recovery in between doubles it, up to CooldownMax.
	// 0 means 30 s and 10 min.
	CooldownBase, CooldownMax time.Duration
	// DomainCooldownBase and DomainCooldownMax are the same for a proxy
	// banned on one domain. 0 means 2 min and 30 min.
	DomainCooldownBase, DomainCooldownMax time.Duration
	// Jitter spreads every cool-down uniformly by ± this fraction, so
	// proxies that failed together do not come back together. 0 means 0.3.
	Jitter float64
	// RecoverAfter consecutive successes after a quarantine forget it: the
	// next quarantine starts again at the base cool-down. 0 means 10.
	RecoverAfter int
	// MinWeight is the floor of the success-rate weight used by the
	// weighted strategies, so that weak proxies still get light traffic
	// and can show they recovered. 0 means 0.05.
	MinWeight float64
	// MaxDomainEntries bounds the (proxy, domain) health table; past it the
	// least recently updated healthy entries are forgotten. 0 means 100000.
	MaxDomainEntries int
}

func (h *HealthConfig) setDefaults() {
	defInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defInt(&h.Window, 50)
	defInt(&h.FailThreshold, 3)
	defInt(&h.MinSamples, 20)
	defInt(&h.RecoverAfter, 10)
	defInt(&h.MaxDomainEntries, 100000)
	if h.MinSuccessRate == 0 {
		h.MinSuccessRate = 0.5
	}
	if h.Jitter == 0 {
		h.Jitter = 0.3
	}
	if h.MinWeight == 0 {
		h.MinWeight = 0.05
	}
	defDur(&h.CooldownBase, 30*time.Second)
	defDur(&h.CooldownMax, 10*time.Minute)
	defDur(&h.DomainCooldownBase, 2*time.Minute)
	defDur(&h.DomainCooldownMax, 30*time.Minute)
}

func (h *HealthConfig) validate() error {
	switch {
	case h.Window < 1 || h.Window > 10000:
		return fmt.Errorf("health window %d out of range 1..10000", h.Window)
	case h.MinSuccessRate > 1:
		return fmt.Errorf("min success rate %v above 1", h.MinSuccessRate)
	case h.Jitter < 0 || h.Jitter >= 1:
		return fmt.Errorf("cool-down jitter %v out of range 0..1", h.Jitter)
	case h.MinWeight < 0 || h.MinWeight > 1:
		return fmt.Errorf("min weight %v out of range 0..1", h.MinWeight)
	case h.CooldownBase < 0 || h.CooldownMax < h.CooldownBase:
		return fmt.Errorf("cool-down %v..%v is not a range", h.CooldownBase, h.CooldownMax)
	case h.DomainCooldownBase < 0 || h.DomainCooldownMax < h.DomainCooldownBase:
		return fmt.Errorf("domain cool-down %v..%v is not a range", h.DomainCooldownBase, h.DomainCooldownMax)
	case h.MinSamples < 1 || h.RecoverAfter < 1 || h.MaxDomainEntries < 1:
		return fmt.Errorf("min samples, recover-after and max domain entries must be positive")
	}
	return nil
}

// config is what the options fill in.
type config struct {
	model          Model
	strategy       Strategy
	domainStrat    domainTable[Strategy]
	stickyTTL      time.Duration
	maxSessions    int
	partitions     map[string][]string
	evenDomains    []string
	partDomains    map[string]domainKey // partitions' and even partitions' domains by key
	health         HealthConfig
	maxInFlight    int
	concurrency    int
	capMargin      float64
	slowStart      int
	slowFactor     float64
	slowMin        time.Duration
	noProxyTimeout time.Duration
	maxWait        time.Duration
	now            func() time.Time
	rng            *rand.Rand
	errs           []error
	partitionSet   bool
}

// Option configures a Pool.
type Option func(*config)

// WithModel sets the model; the default is Shared.
func WithModel(m Model) Option {
	return func(c *config) {
		if _, ok := modelNames[m]; !ok {
			c.errs = append(c.errs, fmt.Errorf("unknown proxy model %d", int(m)))
		}
		c.model = m
	}
}

// WithStrategy sets the strategy for every domain without its own; the
// default is LRUWeighted.
func WithStrategy(s Strategy) Option {
	return func(c *config) {
		if _, ok := strategyNames[s]; !ok {
			c.errs = append(c.errs, fmt.Errorf("unknown proxy strategy %d", int(s)))
		}
		c.strategy = s
	}
}

// WithDomainStrategy sets the strategy for the hosts domain names: a bare
// domain means the domain and its subdomains, "*.domain" its subdomains
// only (see the package hostmatch patterns and domains.go). Where several
// match a host, the most specific wins.
func WithDomainStrategy(domain string, s Strategy) Option {
	return func(c *config) {
		if _, ok := strategyNames[s]; !ok {
			c.errs = append(c.errs, fmt.Errorf("unknown proxy strategy %d", int(s)))
		}
		if strings.TrimSpace(domain) == "" {
			c.errs = append(c.errs, fmt.Errorf("domain strategy needs a domain"))
			return
		}
		k, err := parseDomain(domain)
		if err != nil {
			c.errs = append(c.errs, fmt.Errorf("domain strategy: %w", err))
			return
		}
		c.domainStrat.set(k, s)
	}
}

// WithStickyTTL sets how long a session key keeps its proxy (from the
// moment it was bound) unless that proxy fails first. 0 means 10 min.
func WithStickyTTL(d time.Duration) Option {
	return func(c *config) {
		if d < 0 {
			c.errs = append(c.errs, fmt.Errorf("sticky TTL %v is negative", d))
		}
		c.stickyTTL = d
	}
}

// WithMaxSessions bounds the sticky session table; past it the oldest
// binding is forgotten. 0 means 100000.
func WithMaxSessions(n int) Option {
	return func(c *config) {
		if n < 0 {
			c.errs = append(c.errs, fmt.Errorf("max sessions %d is negative", n))
		}
		c.maxSessions = n
	}
}

// WithPartition reserves the proxies with the given ids for a domain (and
// its subdomains; "*.domain" for its subdomains only, as in
// WithDomainStrategy): that domain is served only by them, and they serve
// no other partitioned domain; a host several partitions match is served
// by the most specific. Partitions must not overlap. Domains without a
// partition are served by the proxies in no partition, or by the whole
// pool if every proxy is in one.
func WithPartition(domain string, ids ...string) Option {
	return func(c *config) {
		if strings.TrimSpace(domain) == "" || len(ids) == 0 {
			c.errs = append(c.errs, fmt.Errorf("a partition needs a domain and at least one proxy id"))
			return
		}
		k, err := parseDomain(domain)
		if err != nil {
			c.errs = append(c.errs, fmt.Errorf("partition: %w", err))
			return
		}
		d := k.key
		c.partDomains[d] = k
		if _, dup := c.partitions[d]; dup {
			c.errs = append(c.errs, fmt.Errorf("domain %s partitioned twice", d))
			return
		}
		c.partitions[d] = append([]string(nil), ids...)
		c.partitionSet = true
	}
}

// WithEvenPartitions splits the proxies that no WithPartition names
// evenly, in pool order, across the given domains: with N proxies and M
// domains each domain gets N/M of them (the first N mod M one more).
func WithEvenPartitions(domains ...string) Option {
	return func(c *config) {
		for _, d := range domains {
			if strings.TrimSpace(d) == "" {
				c.errs = append(c.errs, fmt.Errorf("even partitions: empty domain"))
				continue
			}
			k, err := parseDomain(d)
			if err != nil {
				c.errs = append(c.errs, fmt.Errorf("even partitions: %w", err))
				continue
			}
			c.partDomains[k.key] = k
			c.evenDomains = append(c.evenDomains, k.key)
		}
		c.partitionSet = true
	}
}

// WithHealth tunes health tracking and quarantine; see HealthConfig.
func WithHealth(h HealthConfig) Option { return func(c *config) { c.health = h } }

// WithMaxInFlight fixes the cap on the leases one proxy may hold at once
// under the Shared and Rotating models, instead of deriving it from the
// concurrency (see WithConcurrency). 0 means derived.
func WithMaxInFlight(n int) Option {
	return func(c *config) {
		if n < 0 {
			c.errs = append(c.errs, fmt.Errorf("max in flight %d is negative", n))
		}
		c.maxInFlight = n
	}
}

// WithConcurrency says how many requests run at once over the pool: each
// proxy then holds at most its share of them (concurrency / the proxies
// of its partition, rounded up) plus a margin (WithCapMargin), and a proxy
// at its cap is not chosen. So a proxy that swallows requests without
// answering holds no more than its share. 0 (the default) means no cap
// until SetConcurrency is called; the fetch stage calls it.
func WithConcurrency(n int) Option {
	return func(c *config) {
		if n < 0 {
			c.errs = append(c.errs, fmt.Errorf("concurrency %d is negative", n))
		}
		c.concurrency = n
	}
}

// WithCapMargin sets the margin of a proxy's cap over its share of the
// concurrency, as a fraction. 0 means 0.2 (the share plus 20%); negative
// means no margin.
func WithCapMargin(f float64) Option {
	return func(c *config) {
		if f > 10 {
			c.errs = append(c.errs, fmt.Errorf("cap margin %v above 10", f))
		}
		c.capMargin = f
	}
}

// WithSlowStart sets the cap a new or just-recovered proxy starts with:
// each success raises it by one up to the full cap, and any failure
// (including a timeout or a late lease) sets it back, so one bad proxy
// costs only a few requests. 0 means 2; negative disables slow start.
func WithSlowStart(n int) Option { return func(c *config) { c.slowStart = n } }

// WithSlowAttempt sets when a lease counts as late: once it has been out
// factor times the typical latency of its (proxy, domain) pair (else of
// its proxy, else of the pool), and at least floor. A late lease is a soft
// failure of its proxy (its cap falls back to the slow start) and
// Lease.Late fires so the holder may hedge. 0 means factor 4 and floor
// 500 ms; a negative factor disables the check.
func WithSlowAttempt(factor float64, floor time.Duration) Option {
	return func(c *config) {
		if floor < 0 {
			c.errs = append(c.errs, fmt.Errorf("slow attempt floor %v is negative", floor))
		}
		c.slowFactor, c.slowMin = factor, floor
	}
}

// WithNoProxyTimeout sets how long requests wait while no proxy serving
// them is usable (every one quarantined): past it, every Acquire for them
// fails at once with ErrNoneUsable until a proxy works again. 0 means
// 2 min; negative means wait for ever (a streaming source, where waiting
// is right: nothing is lost while nothing is fetched).
func WithNoProxyTimeout(d time.Duration) Option { return func(c *config) { c.noProxyTimeout = d } }

// WithMaxWait bounds how long Acquire waits for a usable proxy before it
// gives up with ErrNoProxy. 0 means it waits until its context ends.
func WithMaxWait(d time.Duration) Option {
	return func(c *config) {
		if d < 0 {
			c.errs = append(c.errs, fmt.Errorf("max wait %v is negative", d))
		}
		c.maxWait = d
	}
}

// WithClock sets the clock; nil means time.Now. Waits for a quarantine to
// end use real timers of the duration this clock says is left.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithRand sets the random source for starts, shuffles, draws and jitter;
// nil means a randomly seeded one. The pool uses it under its lock only.
func WithRand(r *rand.Rand) Option { return func(c *config) { c.rng = r } }

func newConfig(opts []Option) (config, error) {
	c := config{partitions: map[string][]string{}, partDomains: map[string]domainKey{}}
	for _, o := range opts {
		o(&c)
	}
	if len(c.errs) > 0 {
		return c, c.errs[0]
	}
	if c.stickyTTL == 0 {
		c.stickyTTL = 10 * time.Minute
	}
	if c.maxSessions == 0 {
		c.maxSessions = 100000
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.rng == nil {
		c.rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if c.capMargin == 0 {
		c.capMargin = 0.2
	}
	c.capMargin = max(c.capMargin, 0)
	if c.slowStart == 0 {
		c.slowStart = 2
	}
	if c.slowFactor == 0 {
		c.slowFactor = 4
	}
	if c.slowMin == 0 {
		c.slowMin = 500 * time.Millisecond
	}
	if c.noProxyTimeout == 0 {
		c.noProxyTimeout = 2 * time.Minute
	}
	c.health.setDefaults()
	if err := c.health.validate(); err != nil {
		return c, err
	}
	return c, nil
}

// normDomain lower-cases a host name and drops a trailing dot.
func normDomain(d string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
}
