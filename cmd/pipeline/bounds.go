package main

import (
	"flag"
	"time"

	"github.com/sluicehq/sluice/guard"
)

// boundsFlags declares the flags of the URL policy and of the bounds on
// what a response may cost, and returns the function that fills them into
// a jobConfig once fs is parsed: a flag given on the command line
// overrides the config file's value (its policy: section and fetch:
// keys); a flag left out leaves it. Defaults are the fetch stage's.
func boundsFlags(fs *flag.FlagSet) func(cfg *jobConfig) error {
	allowLoopback := fs.Bool("allow-loopback", false, "allow destinations on loopback (127.0.0.0/8, ::1); refused by default")
	allowNets := fs.String("allow-nets", "", "comma-separated CIDRs to allow even inside refused ranges (e.g. 10.20.0.0/16)")
	denyNets := fs.String("deny-nets", "", "comma-separated CIDRs to refuse in addition to the default ranges")
	allowHosts := fs.String("allow-hosts", "", "comma-separated host patterns (example.com, *.example.com); if set, only these hosts")
	denyHosts := fs.String("deny-hosts", "", "comma-separated host patterns to refuse")
	allowPorts := fs.String("allow-ports", "", "comma-separated ports or ranges (443,8000-8099); if set, only these ports")
	denyPorts := fs.String("deny-ports", "", "comma-separated ports or ranges to refuse")
	proxyDNS := fs.String("proxy-dns", guard.ProxyDNSRemote, "who resolves target names behind http(s) proxies: remote (the proxy, after a best-effort check here) or local (checked here, CONNECT to the checked IP)")
	maxRedirects := fs.Int("max-redirects", 10, "redirects followed per attempt (0: none)")
	maxHeader := fs.Int64("max-header-bytes", 1<<20, "largest response header block in bytes")
	bodyTimeout := fs.Duration("body-timeout", 30*time.Second, "time allowed to read a body once its headers are in")
	truncate := fs.Bool("truncate", false, "keep the first --max-body bytes of a larger body and mark the result truncated, instead of refusing it")
	return func(cfg *jobConfig) error {
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		p := &cfg.Fetch.Policy
		if given["allow-loopback"] {
			p.AllowLoopback = *allowLoopback
		}
		for name, pair := range map[string]struct {
			dst *[]string
			val string
		}{
			"allow-nets": {&p.AllowNets, *allowNets}, "deny-nets": {&p.DenyNets, *denyNets},
			"allow-hosts": {&p.AllowHosts, *allowHosts}, "deny-hosts": {&p.DenyHosts, *denyHosts},
			"allow-ports": {&p.AllowPorts, *allowPorts}, "deny-ports": {&p.DenyPorts, *denyPorts},
		} {
			if given[name] {
				*pair.dst = splitList(pair.val)
			}
		}
		if given["proxy-dns"] {
			p.ProxyDNS = *proxyDNS
		}
		if _, err := guard.New(*p); err != nil {
			return usagef("url policy: %v", err)
		}
		if given["max-redirects"] {
			if *maxRedirects < 0 {
				return usagef("--max-redirects must not be negative")
			}
			cfg.Fetch.MaxRedirects = *maxRedirects
			if *maxRedirects == 0 {
				cfg.Fetch.MaxRedirects = -1 // none; 0 in the Config means the default
			}
		}
		if given["max-header-bytes"] {
			if *maxHeader < 1 {
				return usagef("--max-header-bytes must be positive")
			}
			cfg.Fetch.MaxHeaderBytes = *maxHeader
		}
		if given["body-timeout"] {
			if *bodyTimeout <= 0 {
				return usagef("--body-timeout must be positive")
			}
			cfg.Fetch.BodyTimeout = *bodyTimeout
		}
		if given["truncate"] {
			cfg.Fetch.TruncateLarge = *truncate
		}
		return nil
	}
}
