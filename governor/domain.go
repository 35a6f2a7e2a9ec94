package governor

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/sluicehq/sluice/hostmatch"
)

// Domain is the governor's configuration for one site, as in the
// `domains:` section of a job's YAML file. Its zero values are documented
// defaults; a Domain with only the pattern set behaves like an unmatched
// host (DomainRate).
//
// The maximum rate comes from the site's tolerance per client IP:
//
//	max rate (req/s) = PerIPPerMinute / 60 × Proxies × Safety
//
// and the maximum concurrency is the same number rounded up (one request in
// flight per request per second, as the formula assumes), at least 1 and
// at most the stage's Concurrency. Each (proxy, domain) pair also gets its
// own token bucket at PerIPPerMinute / 60 × Safety, so no single IP ever
// exceeds the site's per-IP rate, however the pool spreads the requests.
type Domain struct {
	// Domain is the host pattern this entry applies to (package
	// hostmatch): a host name or IP address, "*.shop.example" for any
	// subdomain of shop.example (not shop.example itself), or "*" for
	// every host. Matching is case-insensitive; the first matching entry
	// wins.
	Domain string `yaml:"domain"`
	// PerIPPerMinute is the number of requests per minute the site
	// tolerates from one client IP. 0 means unknown: the rate then comes
	// from Rate, or from the stage's DomainRate, and there are no
	// per-proxy buckets.
	PerIPPerMinute float64 `yaml:"per_ip_per_minute"`
	// Safety scales the formula to stay under the site's threshold. 0
	// means 0.7; it must lie in (0, 1].
	Safety float64 `yaml:"safety"`
	// Proxies is the number of proxies serving this domain (its partition
	// of the pool). 0 means the whole pool; without a pool it is 1, the
	// machine's own address.
	Proxies int `yaml:"proxies"`
	// Rate, if positive, overrides the formula's maximum rate (requests per
	// second for the whole domain). Per-proxy buckets still apply.
	Rate float64 `yaml:"rate"`
	// Concurrency, if positive, overrides the maximum concurrency.
	Concurrency int `yaml:"concurrency"`
	// Window is the span over which the site counts a client's requests:
	// it allows PerIPPerMinute / 60 × Window requests in any window of
	// this length. 0 means a minute. It sizes how far a proxy delayed by
	// scheduling may catch up (see Limits.ProxyBurst) without ever passing
	// the site's count.
	Window time.Duration `yaml:"window"`
}

// DefaultSafety is the safety factor of a Domain that does not set one.
const DefaultSafety = 0.7

// How much delay the buckets absorb (see Limits.ProxyBurst and Burst).
const (
	catchUpProxy  = time.Second
	catchUpDomain = 500 * time.Millisecond
)

func (d Domain) validate() error {
	var errs []error
	if strings.TrimSpace(d.Domain) == "" {
		errs = append(errs, errors.New("domain pattern is empty"))
	} else if _, err := hostmatch.Parse(d.Domain); err != nil {
		errs = append(errs, fmt.Errorf("domain %q: not a host pattern: %w", d.Domain, err))
	}
	if d.PerIPPerMinute < 0 || math.IsNaN(d.PerIPPerMinute) || math.IsInf(d.PerIPPerMinute, 0) {
		errs = append(errs, fmt.Errorf("domain %q: per_ip_per_minute %v must be a finite number >= 0", d.Domain, d.PerIPPerMinute))
	}
	if d.Safety < 0 || d.Safety > 1 || math.IsNaN(d.Safety) {
		errs = append(errs, fmt.Errorf("domain %q: safety %v must lie in (0, 1]", d.Domain, d.Safety))
	}
	if d.Proxies < 0 {
		errs = append(errs, fmt.Errorf("domain %q: proxies %d must be >= 0", d.Domain, d.Proxies))
	}
	if d.Rate < 0 || math.IsNaN(d.Rate) || math.IsInf(d.Rate, 0) {
		errs = append(errs, fmt.Errorf("domain %q: rate %v must be a finite number >= 0", d.Domain, d.Rate))
	}
	if d.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("domain %q: concurrency %d must be >= 0", d.Domain, d.Concurrency))
	}
	if d.Window < 0 {
		errs = append(errs, fmt.Errorf("domain %q: window %v must be >= 0", d.Domain, d.Window))
	}
	return errors.Join(errs...)
}

// Limits are one domain's governor limits at full level (the adaptive
// controller runs the domain at a fraction of them).
type Limits struct {
	// Pattern is the Domains entry that matched, "" for an unmatched host.
	Pattern string
	// PerIPPerMinute, Safety and Proxies are the formula's inputs after
	// defaults (Proxies is 1 for direct connections).
	PerIPPerMinute float64
	Safety         float64
	Proxies        int
	// MaxRate is the domain's token rate at full level, requests per
	// second; +Inf means unlimited.
	MaxRate float64
	// RateFrom says where MaxRate came from: "formula", "rate override" or
	// "default rate".
	RateFrom string
	// MaxConcurrency is the domain's concurrency limit at full level.
	MaxConcurrency int
	// ProxyRate is the rate of each (proxy, domain) bucket, requests per
	// second; 0 means no per-proxy buckets.
	ProxyRate float64
	// ProxyBurst is the size of each (proxy, domain) bucket: how many
	// requests a proxy that fell behind (its turn delayed by a busy
	// machine) may make back to back to catch up. It is a second's worth
	// of ProxyRate, at least 2, but never more than half the safety
	// margin of the site's window, so that in any Window a proxy sends at
	// most ProxyBurst + ProxyRate × Window requests, below the site's
	// limit; 1 when the margin is too small for any catching up.
	ProxyBurst int
	// Burst is the size of the domain's bucket: the stage's DomainBurst;
	// with per-proxy buckets that may catch up, half a second's worth of
	// MaxRate (at most one token per proxy), so the domain can catch up
	// too. Every bucket starts with one token, so a job never opens with
	// a burst.
	Burst int
	// Window is the site's counting window (a minute by default).
	Window time.Duration
}

// limitsFor computes the limits of a host matched by d (nil: unmatched)
// under cfg (defaults applied) with a pool of poolSize proxies (0: direct).
func limitsFor(d *Domain, cfg *Config, poolSize int) Limits {
	l := Limits{Proxies: max(poolSize, 1), Safety: DefaultSafety, Window: time.Minute, Burst: cfg.DomainBurst}
	var rateOverride float64
	var conc int
	if d != nil {
		if d.Window > 0 {
			l.Window = d.Window
		}
		l.Pattern = d.Domain
		l.PerIPPerMinute = d.PerIPPerMinute
		if d.Safety > 0 {
			l.Safety = d.Safety
		}
		if d.Proxies > 0 && poolSize > 0 {
			l.Proxies = min(d.Proxies, poolSize)
		}
		rateOverride, conc = d.Rate, d.Concurrency
	}
	switch {
	case rateOverride > 0:
		l.MaxRate, l.RateFrom = rateOverride, "rate override"
	case l.PerIPPerMinute > 0:
		l.MaxRate, l.RateFrom = l.PerIPPerMinute/60*float64(l.Proxies)*l.Safety, "formula"
	case cfg.DomainRate < 0:
		l.MaxRate, l.RateFrom = math.Inf(1), "default rate"
	default:
		l.MaxRate, l.RateFrom = cfg.DomainRate, "default rate"
	}
	if l.PerIPPerMinute > 0 && poolSize > 0 {
		l.ProxyRate = l.PerIPPerMinute / 60 * l.Safety
		margin := int(math.Floor(l.PerIPPerMinute/60*l.Window.Seconds()*(1-l.Safety)/2 + 1e-9))
		l.ProxyBurst = max(1, min(max(2, 1+int(l.ProxyRate*catchUpProxy.Seconds())), margin))
		if l.ProxyBurst > 1 && !math.IsInf(l.MaxRate, 1) {
			l.Burst = max(l.Burst, min(l.Proxies, 1+int(l.MaxRate*catchUpDomain.Seconds())))
		}
	}
	switch {
	case conc > 0:
		l.MaxConcurrency = conc
	case math.IsInf(l.MaxRate, 1):
		l.MaxConcurrency = cfg.Concurrency
	default:
		l.MaxConcurrency = int(math.Ceil(l.MaxRate - 1e-9))
	}
	l.MaxConcurrency = min(max(l.MaxConcurrency, 1), cfg.Concurrency)
	return l
}

// matchDomain returns the first entry of ds whose pattern matches host
// (package hostmatch), or nil.
func matchDomain(ds []Domain, host string) *Domain {
	for i := range ds {
		if hostmatch.Match(ds[i].Domain, host) {
			return &ds[i]
		}
	}
	return nil
}

// String describes a domain's limits in one line, for logs.
func (l Limits) String() string {
	return fmt.Sprintf("max rate %.2f/s (%s, burst %d), max concurrency %d, per proxy %.3f/s (burst %d)",
		l.MaxRate, l.RateFrom, l.Burst, l.MaxConcurrency, l.ProxyRate, l.ProxyBurst)
}
