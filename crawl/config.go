package crawl

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"golang.org/x/net/publicsuffix"

	"github.com/sluicehq/sluice/hostmatch"
)

// The scopes of Rules.Scope.
const (
	ScopeHost   = "host"   // the parent page's host only
	ScopeDomain = "domain" // the parent page's registered domain (eTLD+1, golang.org/x/net/publicsuffix)
	ScopeAny    = "any"    // any host: only the Allow patterns restrict
)

// Rules decide which links of a page are followed.
type Rules struct {
	Scope      string   `yaml:"scope" help:"links followed: host (the page's host), domain (its registered domain, e.g. shop.example.co.uk) or any (only --crawl-allow restricts)"`
	MaxDepth   int      `yaml:"max_depth" help:"links followed from a start URL at most (0: the start URLs only)"`
	MaxPages   int      `yaml:"max_pages" help:"URLs taken per host at most (0: no limit)"`
	Allow      []string `yaml:"allow" help:"host/path globs (* matches anything, e.g. shop.example/products/*): a link must match one (empty: no restriction)"`
	AllowRegex []string `yaml:"allow_regex" help:"regular expressions on the whole URL: a link must match one (empty: no restriction)"`
	Deny       []string `yaml:"deny" help:"host/path globs: a link that matches one is not followed"`
}

// Site is Rules for the pages of some hosts (the parent page's host is
// matched, see package hostmatch); empty fields take the job's rules.
type Site struct {
	Domain string `yaml:"domain"`
	Rules  `yaml:",inline"`
}

// Config is the `crawl:` section of a job.
type Config struct {
	Follow           bool `yaml:"follow" flag:",alias=follow" help:"crawl: follow the links of fetched pages (file mode: back into the run's own queue; Kafka mode: to --links-topic)"`
	Rules            `yaml:",inline"`
	Sites            []Site        `yaml:"sites" flag:"-"`
	StripParams      []string      `yaml:"strip_params" help:"query parameters removed from URLs (a trailing * matches a prefix; default: utm_*, gclid, fbclid, ...; one empty value: none)"`
	StateDir         string        `yaml:"state_dir" help:"directory of the crawl state (seen-set and frontier), loaded at start and saved periodically and at the end (empty: no state kept)"`
	Expected         int           `yaml:"expected" help:"URLs the seen-set is sized for"`
	FalsePositive    float64       `yaml:"false_positive" help:"false-positive rate of the seen-set at --crawl-expected URLs (a new URL taken for seen)"`
	SnapshotInterval time.Duration `yaml:"snapshot_interval" help:"how often the crawl state is saved (0: only at the end)"`
	RecrawlAfter     time.Duration `yaml:"recrawl_after" flag:",alias=recrawl-after" help:"URLs seen longer ago than this are taken again (two generations of the seen-set; 0: never)"`
	Queue            int           `yaml:"queue" help:"frontier URLs held in memory; more spill to a file"`
	IgnoreRobots     bool          `yaml:"ignore_robots" flag:",alias=ignore-robots" help:"do not fetch or obey robots.txt"`
	RobotsTTL        time.Duration `yaml:"robots_ttl" help:"how long a host's robots.txt is kept"`
	RobotsErrorTTL   time.Duration `yaml:"robots_error_ttl" help:"how long a host whose robots.txt answered 5xx or could not be fetched is refused"`
	RobotsHosts      int           `yaml:"robots_hosts" help:"robots.txt files cached at most"`
	UserAgent        string        `yaml:"user_agent" help:"the robots.txt user agent matched (empty: sluice)"`
	Sitemaps         []string      `yaml:"sitemaps" flag:",repeat,alias=sitemap" help:"sitemap.xml (or index, gzip'd or not) URLs whose URLs are crawled too (repeatable)"`
	SitemapMaxURLs   int           `yaml:"sitemap_max_urls" help:"URLs taken from sitemaps at most, per run"`
	SitemapMaxFiles  int           `yaml:"sitemap_max_files" help:"sitemap files read at most, per run (indexes included)"`
	LinksTopic       string        `yaml:"links_topic" flag:",alias=links-topic" help:"Kafka mode: produce discovered links to this topic (empty: the input topic)"`
}

// Defaults returns the section's defaults.
func Defaults() Config {
	return Config{
		Rules:    Rules{Scope: ScopeHost, MaxDepth: 5},
		Expected: 10_000_000, FalsePositive: 0.001, SnapshotInterval: time.Minute, Queue: 100_000,
		RobotsTTL: 24 * time.Hour, RobotsErrorTTL: 10 * time.Minute, RobotsHosts: 10_000,
		SitemapMaxURLs: 1_000_000, SitemapMaxFiles: 1000,
	}
}

// Validate reports every invalid setting.
func (c *Config) Validate() error {
	var errs []error
	for k, v := range map[string]float64{"crawl.expected": float64(c.Expected), "crawl.false_positive": c.FalsePositive, "crawl.queue": float64(c.Queue),
		"crawl.robots_ttl": float64(c.RobotsTTL), "crawl.robots_error_ttl": float64(c.RobotsErrorTTL), "crawl.robots_hosts": float64(c.RobotsHosts),
		"crawl.sitemap_max_urls": float64(c.SitemapMaxURLs), "crawl.sitemap_max_files": float64(c.SitemapMaxFiles)} {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive", k))
		}
	}
	if c.FalsePositive >= 1 {
		errs = append(errs, fmt.Errorf("crawl.false_positive: must be below 1"))
	}
	for k, v := range map[string]int64{"crawl.max_depth": int64(c.MaxDepth), "crawl.max_pages": int64(c.MaxPages),
		"crawl.snapshot_interval": int64(c.SnapshotInterval), "crawl.recrawl_after": int64(c.RecrawlAfter)} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative", k))
		}
	}
	if _, err := c.compile(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// scope is compiled Rules.
type scope struct {
	scope      string
	maxDepth   int
	maxPages   int
	allow      []*regexp.Regexp
	allowRegex []*regexp.Regexp
	deny       []*regexp.Regexp
}

type site struct {
	pat hostmatch.Pattern
	sc  *scope
}

// scopes is the job's compiled rules: the sites in order, then the job's.
type scopes struct {
	sites []site
	def   *scope
}

func (c *Config) compile() (*scopes, error) {
	def, err := compileRules(c.Rules, nil)
	if err != nil {
		return nil, fmt.Errorf("crawl: %w", err)
	}
	out := &scopes{def: def}
	for i, s := range c.Sites {
		p, err := hostmatch.Parse(s.Domain)
		if err != nil {
			return nil, fmt.Errorf("crawl.sites[%d]: %w", i, err)
		}
		sc, err := compileRules(s.Rules, def)
		if err != nil {
			return nil, fmt.Errorf("crawl.sites[%d] (%s): %w", i, s.Domain, err)
		}
		out.sites = append(out.sites, site{p, sc})
	}
	return out, nil
}

func compileRules(r Rules, def *scope) (*scope, error) {
	sc := &scope{scope: r.Scope, maxDepth: r.MaxDepth, maxPages: r.MaxPages}
	if def != nil {
		if sc.scope == "" {
			sc.scope = def.scope
		}
		if r.MaxDepth == 0 {
			sc.maxDepth = def.maxDepth
		}
		if r.MaxPages == 0 {
			sc.maxPages = def.maxPages
		}
	}
	switch sc.scope {
	case ScopeHost, ScopeDomain, ScopeAny:
	default:
		return nil, fmt.Errorf("scope %q: want host, domain or any", sc.scope)
	}
	var err error
	if sc.allow, err = globs(r.Allow); err != nil {
		return nil, err
	}
	if sc.deny, err = globs(r.Deny); err != nil {
		return nil, err
	}
	for _, s := range r.AllowRegex {
		re, err := regexp.Compile(s)
		if err != nil {
			return nil, fmt.Errorf("allow_regex %q: %w", s, err)
		}
		sc.allowRegex = append(sc.allowRegex, re)
	}
	if def != nil {
		if len(r.Allow) == 0 && len(r.AllowRegex) == 0 {
			sc.allow, sc.allowRegex = def.allow, def.allowRegex
		}
		if len(r.Deny) == 0 {
			sc.deny = def.deny
		}
	}
	return sc, nil
}

// globs compiles host/path globs: * matches any run of characters.
func globs(gs []string) ([]*regexp.Regexp, error) {
	var out []*regexp.Regexp
	for _, g := range gs {
		if g == "" {
			return nil, errors.New("empty glob")
		}
		re := "^" + strings.ReplaceAll(regexp.QuoteMeta(strings.ToLower(g)), `\*`, ".*") + "$"
		out = append(out, regexp.MustCompile(re))
	}
	return out, nil
}

// forHost returns the rules for links found on a page of host.
func (s *scopes) forHost(host string) *scope {
	for _, st := range s.sites {
		if st.pat.Match(host) {
			return st.sc
		}
	}
	return s.def
}

// follows reports whether a link u found on a page of host parentHost
// is in scope (depth and page counts aside). Globs see host[:port]/path.
func (sc *scope) follows(parent, u *url.URL, link string) bool {
	switch sc.scope {
	case ScopeHost:
		if !strings.EqualFold(u.Host, parent.Host) {
			return false
		}
	case ScopeDomain:
		if registered(strings.ToLower(u.Hostname())) != registered(strings.ToLower(parent.Hostname())) {
			return false
		}
	}
	hostPath := strings.ToLower(u.Host) + u.EscapedPath()
	for _, re := range sc.deny {
		if re.MatchString(hostPath) {
			return false
		}
	}
	if len(sc.allow) == 0 && len(sc.allowRegex) == 0 {
		return true
	}
	for _, re := range sc.allow {
		if re.MatchString(hostPath) {
			return true
		}
	}
	for _, re := range sc.allowRegex {
		if re.MatchString(link) {
			return true
		}
	}
	return false
}

// registered is host's registered domain (eTLD+1), or host itself when it
// has none (an IP address, localhost, a public suffix).
func registered(host string) string {
	d, err := publicsuffix.EffectiveTLDPlusOne(host)
	if err != nil {
		return host
	}
	return d
}
