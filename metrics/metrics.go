// Package metrics exposes what a running sluice pipeline is doing as
// Prometheus metrics: per proxy, per domain, per stage, per connection pool,
// the file-descriptor budget and, when Kafka is used, offsets and lag.
//
// Two kinds of input feed it. Events: every fetch attempt's span
// (ObserveSpan) and every output made durable (ObserveOutput) update
// counters and histograms. Live state: the Sources attached with Attach are
// read at each scrape, for gauges such as queue depths and requests in
// flight. Everything goes into the registry given in Config; nothing is
// registered globally.
//
// Label values are bounded: proxy ids (from the proxy list, never a URL),
// domains up to Config.MaxDomains (the rest count as "other"; a domain
// not seen for Config.DomainIdle gives its place, and its series, up to
// the next new one), stage names, failure classes and status classes. No
// URL and no credential is ever a label.
package metrics

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sluicehq/sluice/record"
)

// Other is the label value that stands for every domain past the cap.
const Other = "other"

// Config configures New. The zero value makes a fresh registry with the Go
// and process collectors, and keeps up to 50 distinct domain labels.
type Config struct {
	// Registry receives every collector. nil means a new registry, with
	// the Go runtime and process collectors added.
	Registry *prometheus.Registry
	// MaxDomains caps the distinct values of the domain label; domains seen
	// after the cap is reached are counted as "other". 0 means 50.
	MaxDomains int
	// DomainIdle is how long a domain label is kept with no attempt of its
	// domain: past it, when a new domain finds the cap reached, the idle
	// domain's series are deleted and its place goes to the new one. So a
	// long-running process labels the domains it works on now, not the
	// first ones it saw. 0 means 1 h; negative keeps the first domains
	// for good.
	DomainIdle time.Duration
	// Now is the clock of DomainIdle; nil means time.Now.
	Now func() time.Time
	// MaxProxies caps the distinct values of the proxy label, as a guard:
	// proxy ids come from the configured list. 0 means 1000.
	MaxProxies int
	// Buckets are the upper bounds, in seconds, of the latency and wait
	// histograms. nil means 1 ms to 60 s, roughly ×2.5 apart.
	Buckets []float64
}

// DefaultBuckets are the histogram bounds used when Config.Buckets is nil.
var DefaultBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Metrics holds sluice's collectors. Its methods are safe for concurrent
// use and quick enough to call from a fetching goroutine.
type Metrics struct {
	reg     *prometheus.Registry
	domains *labelCap
	proxies *labelCap

	proxyRequests *prometheus.CounterVec
	proxyLatency  *prometheus.HistogramVec
	proxyLease    *prometheus.HistogramVec
	proxyBytes    *prometheus.CounterVec
	domainReqs    *prometheus.CounterVec
	domainLimited *prometheus.CounterVec
	domainToken   *prometheus.HistogramVec
	outputs       *prometheus.CounterVec
	stalled       prometheus.Gauge
	stalls        *prometheus.CounterVec

	live *liveCollector
}

// New builds the collectors and registers them in cfg.Registry.
func New(cfg Config) (*Metrics, error) {
	if cfg.MaxDomains == 0 {
		cfg.MaxDomains = 50
	}
	if cfg.MaxProxies == 0 {
		cfg.MaxProxies = 1000
	}
	if cfg.MaxDomains < 1 || cfg.MaxProxies < 1 {
		return nil, fmt.Errorf("metrics config: max domains %d and max proxies %d must be positive", cfg.MaxDomains, cfg.MaxProxies)
	}
	if cfg.Buckets == nil {
		cfg.Buckets = DefaultBuckets
	}
	if cfg.DomainIdle == 0 {
		cfg.DomainIdle = time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		if err := reg.Register(collectors.NewGoCollector()); err != nil {
			return nil, err
		}
		if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
			return nil, err
		}
	}
	m := &Metrics{
		reg:     reg,
		domains: newLabelCap(cfg.MaxDomains),
		proxies: newLabelCap(cfg.MaxProxies),
		proxyRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_proxy_requests_total",
			Help: "Fetch attempts through each proxy, by outcome: ok or the failure class.",
		}, []string{"proxy", "outcome"}),
		proxyLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_proxy_request_duration_seconds",
			Help:    "Duration of fetch attempts through each proxy, from lease to the end of the body or the error.",
			Buckets: cfg.Buckets,
		}, []string{"proxy"}),
		proxyLease: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_proxy_lease_wait_seconds",
			Help:    "Time an attempt waited for the pool to lease it this proxy.",
			Buckets: cfg.Buckets,
		}, []string{"proxy"}),
		proxyBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_proxy_response_bytes_total",
			Help: "Response body bytes received through each proxy, after decompression.",
		}, []string{"proxy"}),
		domainReqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_domain_requests_total",
			Help: "Fetch attempts per domain, by status class (2xx..5xx, or none when no response came).",
		}, []string{"domain", "code"}),
		domainLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_domain_rate_limited_total",
			Help: "429 Too Many Requests answers per domain.",
		}, []string{"domain"}),
		domainToken: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_domain_token_wait_seconds",
			Help:    "Time an attempt waited for its domain's rate-limit token.",
			Buckets: cfg.Buckets,
		}, []string{"domain"}),
		outputs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_outputs_total",
			Help: "Outputs made durable by the sink, by outcome: ok, the error class of the result, or dead_letter.",
		}, []string{"outcome"}),
		stalled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_stalled",
			Help: "1 while the stall watchdog finds no progress, else 0.",
		}),
		stalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_stalls_total",
			Help: "Stalls found by the watchdog, by the cause it named.",
		}, []string{"cause"}),
		live: newLiveCollector(),
	}
	if cfg.DomainIdle > 0 {
		m.domains.idle, m.domains.now = cfg.DomainIdle, cfg.Now
		m.domains.drop = func(d string) {
			m.domainReqs.DeletePartialMatch(prometheus.Labels{"domain": d})
			m.domainLimited.DeleteLabelValues(d)
			m.domainToken.DeleteLabelValues(d)
		}
	}
	m.live.domains = m.domains
	m.live.proxies = m.proxies
	for _, c := range []prometheus.Collector{m.proxyRequests, m.proxyLatency, m.proxyLease, m.proxyBytes,
		m.domainReqs, m.domainLimited, m.domainToken, m.outputs, m.stalled, m.stalls, m.live} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	return m, nil
}

// Registry returns the registry the collectors are in (to serve it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ObserveSpan counts one fetch attempt. Its signature fits
// fetch.Config.Trace.
func (m *Metrics) ObserveSpan(sp record.Span) {
	proxy := m.proxies.label(sp.Proxy)
	outcome := "ok"
	if sp.Error != "" {
		outcome = sp.Error
	}
	m.proxyRequests.WithLabelValues(proxy, outcome).Inc()
	if !sp.Start.IsZero() && !sp.End.IsZero() {
		m.proxyLatency.WithLabelValues(proxy).Observe(seconds(sp.End.Sub(sp.Start).Seconds()))
	}
	if !sp.WaitEnd.IsZero() && !sp.Start.IsZero() {
		m.proxyLease.WithLabelValues(proxy).Observe(seconds(sp.Start.Sub(sp.WaitEnd).Seconds()))
	}
	if sp.Bytes > 0 {
		m.proxyBytes.WithLabelValues(proxy).Add(float64(sp.Bytes))
	}
	domain := m.domains.label(sp.Domain)
	m.domainReqs.WithLabelValues(domain, codeClass(sp.Status)).Inc()
	if sp.Status == 429 {
		m.domainLimited.WithLabelValues(domain).Inc()
	}
	if !sp.WaitStart.IsZero() && !sp.WaitEnd.IsZero() {
		m.domainToken.WithLabelValues(domain).Observe(seconds(sp.WaitEnd.Sub(sp.WaitStart).Seconds()))
	}
}

// ObserveOutput counts one output made durable. Its signature fits the
// sink's OnDone.
func (m *Metrics) ObserveOutput(o record.Output) {
	m.outputs.WithLabelValues(OutputOutcome(o)).Inc()
}

// OutputOutcome names an output's outcome as in sluice_outputs_total: "ok",
// the error class of its result, "dead_letter", or "parked" (written to
// the delay topic).
func OutputOutcome(o record.Output) string {
	switch {
	case o.Dead != nil:
		return "dead_letter"
	case o.Delay != nil:
		return "parked"
	case o.Result != nil && o.Result.Error != nil:
		return o.Result.Error.Class
	default:
		return "ok"
	}
}

// Stalled records that the watchdog found a stall with the given cause.
func (m *Metrics) Stalled(cause string) {
	m.stalled.Set(1)
	m.stalls.WithLabelValues(cause).Inc()
}

// Recovered records that progress resumed after a stall.
func (m *Metrics) Recovered() { m.stalled.Set(0) }

// Attach makes the collectors read src at each scrape, replacing whatever
// was attached before.
func (m *Metrics) Attach(src Sources) { m.live.attach(&src) }

// Detach stops reading the attached sources (after a run ends); their
// gauges disappear from the next scrape.
func (m *Metrics) Detach() { m.live.attach(nil) }

func codeClass(status int) string {
	if status < 100 || status > 599 {
		return "none"
	}
	return strconv.Itoa(status/100) + "xx"
}

// seconds keeps clock steps from producing negative observations.
func seconds(s float64) float64 { return max(s, 0) }

// labelCap hands out label values for an unbounded key space: the first
// max distinct keys are their own label, later ones are Other. With idle
// set, a key not asked for idle gives its place up to the next new key
// (checked at most once per idle/60 while the cap is reached), and drop
// deletes its series. Safe for concurrent use.
type labelCap struct {
	max   int
	idle  time.Duration        // 0: keys keep their place for good
	now   func() time.Time     // set with idle
	drop  func(key string)     // set with idle; called with mu held
	mu    sync.Mutex           // guards seen and swept
	seen  map[string]time.Time // key → last asked for
	swept time.Time
}

func newLabelCap(n int) *labelCap { return &labelCap{max: n, seen: map[string]time.Time{}} }

func (c *labelCap) label(key string) string {
	if key == "" {
		return "none"
	}
	var now time.Time
	if c.idle > 0 {
		now = c.now()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[key]; ok {
		c.seen[key] = now
		return key
	}
	if len(c.seen) >= c.max && c.idle > 0 && now.Sub(c.swept) >= c.idle/60 {
		c.swept = now
		for k, t := range c.seen {
			if now.Sub(t) >= c.idle {
				delete(c.seen, k)
				c.drop(k)
			}
		}
	}
	if len(c.seen) >= c.max {
		return Other
	}
	c.seen[key] = now
	return key
}

// keys returns the keys holding a label.
func (c *labelCap) keys() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.seen))
	for k := range c.seen {
		out = append(out, k)
	}
	return out
}

// len returns the number of keys holding a label.
func (c *labelCap) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// known reports the label of key without claiming a slot for it.
func (c *labelCap) known(key string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[key]; ok {
		return key, true
	}
	return Other, false
}
