package app

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/sluicehq/sluice/crawl"
	"github.com/sluicehq/sluice/dnscache"
	"github.com/sluicehq/sluice/governor"
	"github.com/sluicehq/sluice/guard"
	"github.com/sluicehq/sluice/kafka"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/stages/fetch"
)

// Config is the one config tree of a job: the YAML file (--config) and the
// flags are two spellings of it. A YAML key and its flag are the same
// words: the key `max_redirects` is the flag `--max-redirects`; keys of a
// section that is not marked `flag:"flat"` take the section's name as a
// prefix (`kafka.window` is `--kafka-window`, `proxy.model` is
// `--proxy-model`). Bind walks these tags to declare the flags; Load fills
// the tree (defaults, then the file, then the flags given) and validates
// it. What zero means for each setting is written in docs/config.md and
// enforced by validate: zero is either "off" or refused, never "the
// default".
type Config struct {
	URLs     string `yaml:"urls" help:"input: a file of URL lines (bare URLs or JSON URL messages), - for stdin"`
	Out      string `yaml:"out" help:"output: results JSONL file, - for stdout"`
	Proxies  string `yaml:"proxies" help:"proxy list file, one proxy a line (docs/proxies.md); a run needs it, or --direct"`
	Direct   bool   `yaml:"direct" help:"fetch without proxies, from this machine's own address (refused together with --proxies)"`
	PoolSize int    `yaml:"pool_size" help:"for plan: proxies in the pool (0: as many as the proxy file lists)"`
	Rules    string `yaml:"rules" help:"extraction rules (YAML); empty: h1 as name, .price, meta[itemprop=sku]"`
	Pages    string `yaml:"pages" help:"also write raw pages (for replay) as JSONL to this file"`
	// WARC and WARCMaxSize: the web archive of every fetched page (docs/warc.md).
	WARC        string `yaml:"warc" help:"also archive every fetched page (request and response records) with its result as WARC 1.1 .warc.gz files in this directory (empty: off)"`
	WARCMaxSize int64  `yaml:"warc_max_size" help:"start a new WARC file once the current one holds this many bytes (compressed)"`
	// DrainTimeout bounds the drain after SIGINT/SIGTERM.
	DrainTimeout time.Duration `yaml:"drain_timeout" help:"on SIGINT/SIGTERM, how long to drain before aborting requests"`
	LogLevel     string        `yaml:"log_level" help:"log level: debug, info, warn, error"`
	// MemoryLimit is the Go runtime's soft memory limit for run
	// (runtime/debug.SetMemoryLimit); see DefaultMemoryLimit.
	MemoryLimit int64 `yaml:"memory_limit" help:"run: soft limit in bytes of the process's Go memory; the garbage collector works harder only near it (0: off; unset: 64 MiB + 64 KiB × concurrency + 2 × read_ahead; GOMEMLIMIT in the environment overrides it)"`

	Fetch   FetchConfig       `yaml:"fetch" flag:"flat"`
	Policy  guard.Config      `yaml:"policy" flag:"flat"`
	Proxy   PoolConfig        `yaml:"proxy"`
	Observe ObserveConfig     `yaml:"observe" flag:"flat"`
	Domains []governor.Domain `yaml:"domains" flag:"-"` // YAML only: a list of entries
	// Requests shapes requests per site (docs/requests.md); YAML only.
	Requests []fetch.RequestRule `yaml:"requests" flag:"-"`
	Kafka    KafkaConfig         `yaml:"kafka"`
	Crawl    crawl.Config        `yaml:"crawl"`
}

// FetchConfig is the `fetch:` section.
type FetchConfig struct {
	Concurrency      int               `yaml:"concurrency" help:"requests in flight at most"`
	Rate             float64           `yaml:"rate" help:"requests per second per domain, for domains the config does not list (negative: unlimited)"`
	Burst            int               `yaml:"burst" help:"token bucket size per domain"`
	MaxAttempts      int               `yaml:"max_attempts" help:"attempts per URL, the first included"`
	Timeout          time.Duration     `yaml:"timeout" help:"deadline of one attempt, body included"`
	MaxBody          int64             `yaml:"max_body" help:"largest response body in bytes, after decompression"`
	Pending          int               `yaml:"pending" help:"tasks the governor holds at most (default: max(256, 8 × concurrency))"`
	StaggerMin       time.Duration     `yaml:"stagger_min" help:"staggered start: least interval between admitting two workers (0: none)"`
	StaggerMax       time.Duration     `yaml:"stagger_max" help:"staggered start: greatest interval (0 or -1: off, every worker at once)"`
	Ramp             time.Duration     `yaml:"ramp" help:"staggered start: every worker is admitted within this long of the first, however high the concurrency"`
	SpoolThreshold   int64             `yaml:"spool_threshold" help:"bodies larger than this many bytes spool to disk (0: never spool)"`
	SpoolDir         string            `yaml:"spool_dir" help:"directory for spooled bodies (empty: the system's temporary directory)"`
	BodyBudget       int64             `yaml:"body_budget" help:"bytes of response bodies held in memory at most"`
	ReadAhead        int64             `yaml:"read_ahead" help:"bytes of bodies read and not yet taken by the parse stage at most; further answers wait in their connections"`
	BodyTimeout      time.Duration     `yaml:"body_timeout" help:"time allowed to read a body once its headers are in"`
	ConnectTimeout   time.Duration     `yaml:"connect_timeout" help:"bound on a TCP connect to a proxy or a target"`
	FirstByteTimeout time.Duration     `yaml:"first_byte_timeout" help:"bound on the wait for the response headers, and for a proxy's first byte on a new connection"`
	NoProxyTimeout   time.Duration     `yaml:"no_proxy_timeout" help:"file input: how long the run waits while no proxy is usable before the remaining inputs end as no_proxy (Kafka input waits for a proxy instead)"`
	MaxHeaderBytes   int64             `yaml:"max_header_bytes" help:"largest response header block in bytes"`
	MaxRedirects     int               `yaml:"max_redirects" help:"redirects followed per attempt (0: none)"`
	Truncate         bool              `yaml:"truncate" help:"keep the first --max-body bytes of a larger body and mark the result truncated, instead of refusing it"`
	Hedge            bool              `yaml:"hedge" help:"send a late attempt once more through another proxy, first answer wins (idempotent requests to domains without a rate limit; docs/proxies.md)"`
	CaptchaMarkers   []string          `yaml:"captcha_markers" flag:",repeat,alias=captcha-marker" help:"text that marks a challenge page in a 2xx body (repeatable; replaces the default markers; one empty value: no check)"`
	Adaptive         governor.Adaptive `yaml:"adaptive"`
	DNS              dnscache.Config   `yaml:"dns"`
	// Request shaping (docs/requests.md). headers and cookies are maps:
	// YAML only.
	UserAgent      fetch.UserAgents  `yaml:"user_agent" flag:",repeat" help:"User-Agent header (repeatable: a list, one chosen per proxy or sticky session by a stable hash; one empty value: none)"`
	Headers        map[string]string `yaml:"headers" flag:"-"`
	Cookies        map[string]string `yaml:"cookies" flag:"-"`
	MaxRequestBody int64             `yaml:"max_request_body" help:"largest request body in bytes, from a requests: entry or a URL message (larger: a bad_input result)"`
	MaxJars        int               `yaml:"max_jars" help:"sticky sessions that keep a cookie jar at most, the oldest dropped first (0: no jars)"`
	MaxJarBytes    int64             `yaml:"max_jar_bytes" help:"bytes of cookies one session's jar keeps at most"`
}

// PoolConfig is the `proxy:` section: the proxy pool.
type PoolConfig struct {
	Model          string        `yaml:"model" help:"proxy model: shared, exclusive (one request per proxy at a time) or rotating (every proxy is a provider's rotating endpoint)"`
	Strategy       string        `yaml:"strategy" help:"proxy choice: lru-weighted, lru, round-robin, round-robin-shuffle, random, weighted"`
	DomainStrategy []string      `yaml:"domain_strategy" flag:",repeat,alias=domain-strategy" help:"DOMAIN=STRATEGY: another strategy for a domain and its subdomains (repeatable)"`
	Partition      []string      `yaml:"partition" flag:",repeat,alias=partition" help:"DOMAIN=ID,ID,...: only these proxies (p1, p2, … in file order) serve DOMAIN (repeatable)"`
	PartitionEven  []string      `yaml:"partition_even" flag:",alias=partition-even" help:"DOMAIN,DOMAIN,...: split the proxies not named by --proxy-partition evenly across these domains"`
	StickyTTL      time.Duration `yaml:"sticky_ttl" flag:",alias=sticky-ttl" help:"how long a URL message's session keeps its proxy"`
	Wait           time.Duration `yaml:"wait" help:"longest a request waits for a usable proxy before its attempt fails (0: no limit)"`
	Cooldown       time.Duration `yaml:"cooldown" help:"first quarantine of a failing proxy (doubles per repeat, ±30% jitter, up to 20×)"`
	Scheme         string        `yaml:"scheme" help:"scheme of proxies-file lines that name none (host:port, user:pass@host:port, host:port:user:pass): http, https, socks5, socks5h"`
	CapMargin      float64       `yaml:"cap_margin" help:"a proxy holds at most its share of the concurrency plus this fraction of it in flight (0: the share alone)"`
}

// ObserveConfig is the `observe:` section: how a run is watched.
type ObserveConfig struct {
	MetricsAddr   string        `yaml:"metrics_addr" help:"serve /metrics, /healthz and /readyz on this address (e.g. 127.0.0.1:9090; empty: off)"`
	Pprof         bool          `yaml:"pprof" help:"also serve Go's profiling handlers under /debug/pprof/ on --metrics-addr"`
	Trace         string        `yaml:"trace" help:"write one span per fetch attempt as JSON lines to this file, for 'pipeline waterfall' (empty: off)"`
	TraceMax      int64         `yaml:"trace_max" help:"keep at most this many spans in the --trace file"`
	StallAfter    time.Duration `yaml:"stall_after" help:"after this long without a successful output, log what every stage waits on (0: off)"`
	StatsInterval time.Duration `yaml:"stats_interval" help:"interval of the one-line stats log when no progress bar is drawn"`
	Progress      string        `yaml:"progress" help:"auto (a bar on a terminal, else a stats line), bar, log or off"`
}

// KafkaConfig is the `kafka:` section: the client (brokers, TLS, SASL)
// and where a run reads and writes.
type KafkaConfig struct {
	kafka.Config   `yaml:",inline"`
	Topic          string        `yaml:"topic" flag:",alias=topic" help:"read URL messages from this Kafka topic (instead of --urls)"`
	Group          string        `yaml:"group" flag:",alias=group" help:"Kafka consumer group: processes in one group split the partitions"`
	StartAtEnd     bool          `yaml:"start_at_end" help:"a new consumer group starts at the end of the topic instead of its beginning"`
	ResultsTopic   string        `yaml:"results_topic" flag:",alias=results-topic" help:"write results to this Kafka topic (instead of --out)"`
	PagesTopic     string        `yaml:"pages_topic" flag:",alias=pages-topic" help:"write raw pages, compressed, to this Kafka topic (for replay)"`
	DeadTopic      string        `yaml:"dead_topic" flag:",alias=dead-topic" help:"write dead letters to this Kafka topic (empty: the results topic + \".dead\")"`
	Window         int           `yaml:"window" help:"records per partition read and not yet committed, at most"`
	Prefetch       int           `yaml:"prefetch" help:"records read ahead per partition"`
	CommitInterval time.Duration `yaml:"commit_interval" help:"how often acknowledged offsets are committed"`
	SessionTimeout time.Duration `yaml:"session_timeout" help:"how long the group waits for a silent member"`
	ParkAfter      time.Duration `yaml:"park_after" help:"park an input of the Kafka topic that cannot be attempted within this long on the delay topic, and acknowledge it (0: never park)"`
	DelayTopic     string        `yaml:"delay_topic" help:"the delay topic of parked inputs (empty: the input topic + \".delay\"), read back by the group + \".delay\""`
	MaxParks       int           `yaml:"max_parks" help:"times an input may be parked; once more and it ends as an error result"`
	RevokeWait     time.Duration `yaml:"revoke_wait" help:"in a rebalance, how long the member waits for inputs in flight before giving its partitions up (at most half the session timeout; 0: no wait)"`
}

// Defaults returns the tree with every default filled in. Load starts
// from it (or from a command's variant of it).
func Defaults() Config {
	return Config{
		URLs: "-", Out: "-", DrainTimeout: 30 * time.Second, LogLevel: "info", WARCMaxSize: 1 << 30,
		Fetch: FetchConfig{
			Concurrency: 32, Rate: 10, Burst: 1, MaxAttempts: 4, Timeout: 60 * time.Second, MaxBody: 10 << 20,
			StaggerMin: 100 * time.Millisecond, StaggerMax: 200 * time.Millisecond, Ramp: time.Second,
			SpoolThreshold: 1 << 20, BodyBudget: 256 << 20, ReadAhead: 16 << 20, BodyTimeout: 30 * time.Second, MaxHeaderBytes: 1 << 20,
			ConnectTimeout: 5 * time.Second, FirstByteTimeout: 15 * time.Second, NoProxyTimeout: 2 * time.Minute, Hedge: true,
			MaxRedirects: 10, CaptchaMarkers: append([]string(nil), fetch.DefaultCaptchaMarkers...),
			UserAgent: fetch.UserAgents{fetch.DefaultUserAgent}, MaxRequestBody: 64 << 10, MaxJars: 4096, MaxJarBytes: 16 << 10,
			Adaptive: governor.Adaptive{Start: 0.5, Min: 0.05, Window: 50, MinSamples: 10, RaiseAfter: 250 * time.Millisecond, LatencyWindow: 100, LatencyFloor: 25 * time.Millisecond},
			DNS: dnscache.Config{ResolvConf: "/etc/resolv.conf", Timeout: 2 * time.Second, MinTTL: time.Second, MaxTTL: time.Hour,
				FallbackTTL: 30 * time.Second, NegativeTTL: 5 * time.Second, MaxEntries: 10000},
		},
		Policy:  guard.Config{ProxyDNS: guard.ProxyDNSRemote, HandshakeTimeout: 10 * time.Second, MaxProxyHeaderBytes: 64 << 10},
		Proxy:   PoolConfig{Model: "shared", Strategy: "lru-weighted", StickyTTL: 10 * time.Minute, Cooldown: 30 * time.Second, Scheme: "http", CapMargin: 0.2},
		Observe: ObserveConfig{TraceMax: 250000, StallAfter: 30 * time.Second, StatsInterval: 10 * time.Second, Progress: "auto"},
		Kafka:   KafkaConfig{Group: "sluice", Window: 512, Prefetch: 64, CommitInterval: time.Second, SessionTimeout: 10 * time.Second, MaxParks: 5, RevokeWait: 5 * time.Second},
		Crawl:   crawl.Defaults(),
	}
}

// DefaultMemoryLimit is memory_limit when it is not set: 64 MiB, plus
// 64 KiB per request in flight (goroutine stacks, connection buffers, the
// request's own objects, and the collector's headroom over them), plus
// twice the bodies read ahead: about the peak that docs/performance.md
// bounds a run by, with a margin. At the default concurrency (32) and
// read_ahead that is 98 MiB; at 1,000, about 159 MiB. A run that stays
// within its bound never meets it, so it costs nothing; a run that grows
// past it (larger pages, a burst of long tokens) collects more often
// instead of letting the heap double.
func DefaultMemoryLimit(concurrency int, readAhead int64) int64 {
	return 64<<20 + int64(concurrency)*64<<10 + 2*readAhead
}

// positives are the settings whose zero (or less) is refused.
func (c *Config) positives() map[string]float64 {
	f, a, d := c.Fetch, c.Fetch.Adaptive, c.Fetch.DNS
	return map[string]float64{
		"fetch.concurrency": float64(f.Concurrency), "fetch.burst": float64(f.Burst), "fetch.max_attempts": float64(f.MaxAttempts),
		"fetch.timeout": float64(f.Timeout), "fetch.max_body": float64(f.MaxBody), "fetch.body_budget": float64(f.BodyBudget), "fetch.read_ahead": float64(f.ReadAhead),
		"fetch.body_timeout": float64(f.BodyTimeout), "fetch.connect_timeout": float64(f.ConnectTimeout),
		"fetch.first_byte_timeout": float64(f.FirstByteTimeout), "fetch.no_proxy_timeout": float64(f.NoProxyTimeout), "fetch.ramp": float64(f.Ramp), "fetch.max_header_bytes": float64(f.MaxHeaderBytes),
		"fetch.max_request_body": float64(f.MaxRequestBody), "fetch.max_jar_bytes": float64(f.MaxJarBytes),
		"drain_timeout": float64(c.DrainTimeout), "warc_max_size": float64(c.WARCMaxSize), "observe.trace_max": float64(c.Observe.TraceMax), "observe.stats_interval": float64(c.Observe.StatsInterval),
		"fetch.adaptive.start": a.Start, "fetch.adaptive.min": a.Min, "fetch.adaptive.window": float64(a.Window),
		"fetch.adaptive.min_samples": float64(a.MinSamples), "fetch.adaptive.raise_after": float64(a.RaiseAfter), "fetch.adaptive.latency_window": float64(a.LatencyWindow),
		"fetch.adaptive.latency_floor": float64(a.LatencyFloor),
		"fetch.dns.timeout":            float64(d.Timeout), "fetch.dns.min_ttl": float64(d.MinTTL), "fetch.dns.max_ttl": float64(d.MaxTTL),
		"fetch.dns.fallback_ttl": float64(d.FallbackTTL), "fetch.dns.negative_ttl": float64(d.NegativeTTL), "fetch.dns.max_entries": float64(d.MaxEntries),
		"policy.handshake_timeout": float64(c.Policy.HandshakeTimeout), "policy.max_proxy_header_bytes": float64(c.Policy.MaxProxyHeaderBytes),
		"proxy.sticky_ttl": float64(c.Proxy.StickyTTL), "proxy.cooldown": float64(c.Proxy.Cooldown),
		"kafka.window": float64(c.Kafka.Window), "kafka.prefetch": float64(c.Kafka.Prefetch),
		"kafka.commit_interval": float64(c.Kafka.CommitInterval), "kafka.session_timeout": float64(c.Kafka.SessionTimeout),
		"kafka.max_parks": float64(c.Kafka.MaxParks),
	}
}

// validate checks the tree, setting by setting, as docs/config.md says;
// given names the keys set by the file or a flag (for settings whose
// default is derived from another).
func (c *Config) validate(given map[string]bool) error {
	var errs []error
	flags := map[string]string{}
	for _, s := range Settings() {
		flags[s.Key] = s.Flag
	}
	bad := func(key, why string, args ...any) {
		if f, ok := flags[key]; ok {
			key += " (--" + f + ")"
		}
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(why, args...)))
	}
	pos := c.positives()
	for _, k := range sortedKeys(pos) {
		if pos[k] <= 0 {
			bad(k, "must be positive (0 is refused: see docs/config.md)")
		}
	}
	if c.Fetch.Rate == 0 {
		bad("fetch.rate", "0 would fetch nothing: give a positive rate, or a negative one for unlimited")
	}
	if c.MemoryLimit < 0 {
		bad("memory_limit", "must not be negative (0: off)")
	}
	if given["pending"] && c.Fetch.Pending < 1 {
		bad("fetch.pending", "must be positive")
	}
	if c.Fetch.MaxRedirects < 0 {
		bad("fetch.max_redirects", "must not be negative (0: none followed)")
	}
	for key, v := range map[string]int64{"fetch.stagger_min": int64(c.Fetch.StaggerMin), "fetch.spool_threshold": c.Fetch.SpoolThreshold,
		"pool_size": int64(c.PoolSize), "kafka.revoke_wait": int64(c.Kafka.RevokeWait), "fetch.max_jars": int64(c.Fetch.MaxJars), "proxy.wait": int64(c.Proxy.Wait), "observe.stall_after": int64(c.Observe.StallAfter)} {
		if v < 0 {
			bad(key, "must not be negative (0: off)")
		}
	}
	switch c.Observe.Progress {
	case "auto", "bar", "log", "off":
	default:
		bad("observe.progress", "%q: want auto, bar, log or off", c.Observe.Progress)
	}
	if c.Observe.Pprof && c.Observe.MetricsAddr == "" {
		bad("observe.pprof", "needs observe.metrics_addr (--metrics-addr)")
	}
	if _, err := zerolog.ParseLevel(c.LogLevel); err != nil || c.LogLevel == "" {
		bad("log_level", "%q: want debug, info, warn or error", c.LogLevel)
	}
	if _, err := guard.New(c.Policy); err != nil {
		bad("policy", "%v", err)
	}
	if err := c.FetchStage().Shaping.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("request shaping: %w", err))
	}
	if _, err := c.poolOptions(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Kafka.Config.Validate(); err != nil {
		errs = append(errs, err)
	}
	k := c.Kafka
	if (k.Topic != "" || k.ResultsTopic != "" || k.PagesTopic != "") && len(k.Brokers) == 0 {
		bad("kafka.brokers", "a Kafka topic needs brokers")
	}
	if k.Topic != "" && k.Group == "" {
		bad("kafka.group", "a Kafka input topic needs a consumer group")
	}
	if k.ParkAfter < 0 {
		bad("kafka.park_after", "must not be negative (0: never park)")
	}
	if k.ParkAfter > 0 && k.Topic != "" && k.ResultsTopic == "" {
		bad("kafka.park_after", "parking needs the Kafka sink (kafka.results_topic): the delay topic is written with the results")
	}
	if k.DelayTopic != "" && k.DelayTopic == k.Topic {
		bad("kafka.delay_topic", "must not be the input topic")
	}
	if err := c.Crawl.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Crawl.LinksTopic != "" && k.Topic == "" {
		bad("crawl.links_topic", "needs a Kafka input topic (kafka.topic): in file mode links go back into the run's own queue")
	}
	return errors.Join(errs...)
}

// derive fills the defaults that follow from other settings.
func (c *Config) derive(given map[string]bool) {
	if !given["pending"] {
		c.Fetch.Pending = max(256, 8*c.Fetch.Concurrency)
	}
	if !given["memory-limit"] {
		c.MemoryLimit = DefaultMemoryLimit(c.Fetch.Concurrency, c.Fetch.ReadAhead)
	}
	if c.Kafka.ResultsTopic != "" && c.Kafka.DeadTopic == "" {
		c.Kafka.DeadTopic = c.Kafka.ResultsTopic + ".dead"
	}
	if c.Kafka.Topic != "" && c.Kafka.DelayTopic == "" {
		c.Kafka.DelayTopic = c.Kafka.Topic + ".delay"
	}
}

// resolvePaths makes the relative paths the file set (given) relative to
// its directory.
func (c *Config) resolvePaths(dir string, given map[string]bool) {
	for name, p := range map[string]*string{"urls": &c.URLs, "out": &c.Out, "proxies": &c.Proxies, "rules": &c.Rules,
		"pages": &c.Pages, "warc": &c.WARC, "spool-dir": &c.Fetch.SpoolDir, "trace": &c.Observe.Trace, "crawl-state-dir": &c.Crawl.StateDir} {
		if given[name] && *p != "" && *p != "-" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	c.Kafka.Config.Resolve(dir)
}

// checkFiles refuses input files that do not exist: a usage error, like
// a bad flag.
func (c *Config) checkFiles() error {
	type file struct{ key, path string }
	files := []file{{"rules", c.Rules}, {"proxies", c.Proxies}}
	if c.Kafka.Topic == "" && c.URLs != "-" {
		files = append(files, file{"urls", c.URLs})
	}
	var errs []error
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.key, err))
		}
	}
	return errors.Join(errs...)
}

// FetchStage returns the fetch stage's config the tree describes (without
// the pool, logger and trace, which the builder adds).
func (c *Config) FetchStage() fetch.Config {
	f := c.Fetch
	fc := fetch.Config{
		Concurrency: f.Concurrency, DomainRate: f.Rate, DomainBurst: f.Burst, Domains: c.Domains, Adaptive: f.Adaptive,
		Pending: f.Pending, StaggerMin: f.StaggerMin, StaggerMax: f.StaggerMax, Ramp: f.Ramp, ConnectTimeout: f.ConnectTimeout, HeaderTimeout: f.FirstByteTimeout, CaptchaMarkers: f.CaptchaMarkers,
		AttemptTimeout: f.Timeout, BodyTimeout: f.BodyTimeout, Policy: c.Policy, MaxBodyBytes: f.MaxBody,
		TruncateLarge: f.Truncate, NoHedge: !f.Hedge, MaxHeaderBytes: f.MaxHeaderBytes, MaxRedirects: f.MaxRedirects,
		SpoolThreshold: f.SpoolThreshold, SpoolDir: f.SpoolDir, BodyBudget: f.BodyBudget, ReadAhead: f.ReadAhead, MaxAttempts: f.MaxAttempts, DNS: f.DNS,
	}
	fc.Shaping = fetch.Shaping{UserAgents: f.UserAgent, Headers: f.Headers, Cookies: f.Cookies, Rules: c.Requests,
		MaxBody: f.MaxRequestBody, MaxJars: f.MaxJars, MaxJarBytes: f.MaxJarBytes, JarTTL: c.Proxy.StickyTTL}
	// The stage reads 0 as its default; the tree's zeros mean "off".
	if len(fc.Shaping.UserAgents) == 0 {
		fc.Shaping.UserAgents = []string{""}
	}
	if fc.Shaping.MaxJars == 0 {
		fc.Shaping.MaxJars = -1
	}
	if fc.StaggerMin == 0 {
		fc.StaggerMin = time.Nanosecond
	}
	if fc.StaggerMax <= 0 {
		fc.StaggerMax = -1
	}
	if fc.MaxRedirects == 0 {
		fc.MaxRedirects = -1
	}
	if fc.SpoolThreshold == 0 {
		fc.SpoolThreshold = -1
	}
	if fc.CaptchaMarkers == nil || len(fc.CaptchaMarkers) == 1 && fc.CaptchaMarkers[0] == "" {
		fc.CaptchaMarkers = []string{}
	}
	return fc
}

// poolOptions returns the proxy pool's options the tree describes.
func (c *Config) poolOptions() ([]proxy.Option, error) {
	p := c.Proxy
	m, err := proxy.ParseModel(p.Model)
	if err != nil {
		return nil, fmt.Errorf("proxy.model: %w", err)
	}
	s, err := proxy.ParseStrategy(p.Strategy)
	if err != nil {
		return nil, fmt.Errorf("proxy.strategy: %w", err)
	}
	opts := []proxy.Option{
		proxy.WithModel(m), proxy.WithStrategy(s), proxy.WithStickyTTL(p.StickyTTL), proxy.WithMaxWait(p.Wait),
		proxy.WithHealth(proxy.HealthConfig{CooldownBase: p.Cooldown, CooldownMax: 20 * p.Cooldown}),
	}
	for _, ds := range p.DomainStrategy {
		d, name, ok := strings.Cut(ds, "=")
		if !ok || d == "" || name == "" {
			return nil, fmt.Errorf("proxy.domain_strategy %q: want DOMAIN=STRATEGY", ds)
		}
		st, err := proxy.ParseStrategy(name)
		if err != nil {
			return nil, fmt.Errorf("proxy.domain_strategy: %w", err)
		}
		opts = append(opts, proxy.WithDomainStrategy(d, st))
	}
	for _, pt := range p.Partition {
		d, ids, ok := strings.Cut(pt, "=")
		if !ok || d == "" || ids == "" {
			return nil, fmt.Errorf("proxy.partition %q: want DOMAIN=ID,ID,...", pt)
		}
		opts = append(opts, proxy.WithPartition(d, strings.Split(ids, ",")...))
	}
	if len(p.PartitionEven) > 0 {
		opts = append(opts, proxy.WithEvenPartitions(p.PartitionEven...))
	}
	if p.CapMargin < 0 {
		return nil, fmt.Errorf("proxy.cap_margin %v must not be negative", p.CapMargin)
	}
	margin := p.CapMargin
	if margin == 0 {
		margin = -1 // the pool's "no margin": the share alone
	}
	if _, err := (proxy.ListOptions{Scheme: p.Scheme}).Parse(strings.NewReader("")); err != nil && !errors.Is(err, proxy.ErrNoProxies) {
		return nil, fmt.Errorf("proxy.scheme: %w", err)
	}
	opts = append(opts, proxy.WithCapMargin(margin), proxy.WithNoProxyTimeout(c.Fetch.NoProxyTimeout))
	return opts, nil
}
