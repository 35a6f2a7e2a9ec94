package main

import (
	"flag"
	"strings"
	"time"

	"github.com/sluicehq/sluice/proxy"
)

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// proxyFlags declares the proxy pool's flags into fs, and returns a
// function that fills cfg's pool options (and the fetch stage's captcha
// markers) from them once fs is parsed.
func proxyFlags(fs *flag.FlagSet) func(cfg *jobConfig) error {
	model := fs.String("proxy-model", "shared", "proxy model: shared (a proxy serves several requests at once), exclusive (one request per proxy at a time), rotating (every proxy is a provider's rotating endpoint)")
	strategy := fs.String("proxy-strategy", "lru-weighted", "proxy choice: lru-weighted, lru, round-robin, round-robin-shuffle, random, weighted")
	var domainStrategies, partitions, markers listFlag
	fs.Var(&domainStrategies, "domain-strategy", "DOMAIN=STRATEGY: another strategy for a domain and its subdomains (repeatable)")
	fs.Var(&partitions, "partition", "DOMAIN=ID,ID,...: only these proxies (ids p1, p2, … in proxy file order) serve DOMAIN, and no other partitioned domain (repeatable)")
	even := fs.String("partition-even", "", "DOMAIN,DOMAIN,...: split the proxies not named by --partition evenly across these domains")
	stickyTTL := fs.Duration("sticky-ttl", 10*time.Minute, "how long a URL message's session keeps its proxy (unless that proxy fails first)")
	wait := fs.Duration("proxy-wait", 0, "longest a request waits for a usable proxy (all busy or quarantined) before its attempt fails; 0: no limit")
	cooldown := fs.Duration("proxy-cooldown", 30*time.Second, "first quarantine of a failing proxy (doubles per repeat, ±30% jitter, up to 20×)")
	fs.Var(&markers, "captcha-marker", "text that marks a challenge page in a 2xx body: a ban of that proxy on that domain (repeatable; replaces the default markers)")
	return func(cfg *jobConfig) error {
		m, err := proxy.ParseModel(*model)
		if err != nil {
			return usageError{err}
		}
		s, err := proxy.ParseStrategy(*strategy)
		if err != nil {
			return usageError{err}
		}
		opts := []proxy.Option{
			proxy.WithModel(m), proxy.WithStrategy(s), proxy.WithStickyTTL(*stickyTTL), proxy.WithMaxWait(*wait),
			proxy.WithHealth(proxy.HealthConfig{CooldownBase: *cooldown, CooldownMax: 20 * *cooldown}),
		}
		for _, ds := range domainStrategies {
			d, name, ok := strings.Cut(ds, "=")
			if !ok {
				return usagef("--domain-strategy %q: want DOMAIN=STRATEGY", ds)
			}
			st, err := proxy.ParseStrategy(name)
			if err != nil {
				return usageError{err}
			}
			opts = append(opts, proxy.WithDomainStrategy(d, st))
		}
		for _, p := range partitions {
			d, ids, ok := strings.Cut(p, "=")
			if !ok || ids == "" {
				return usagef("--partition %q: want DOMAIN=ID,ID,...", p)
			}
			opts = append(opts, proxy.WithPartition(d, strings.Split(ids, ",")...))
		}
		if *even != "" {
			opts = append(opts, proxy.WithEvenPartitions(strings.Split(*even, ",")...))
		}
		if *cooldown <= 0 {
			return usagef("--proxy-cooldown %v must be positive", *cooldown)
		}
		cfg.PoolOptions = opts
		if len(markers) > 0 {
			cfg.Fetch.CaptchaMarkers = markers
		}
		return nil
	}
}
