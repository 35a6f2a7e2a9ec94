package main

import (
	"flag"
	"strings"
	"time"

	"sluice/guard"
)

// boundsFlags declares the flags of the URL policy and of the bounds on
// what a response may cost, and returns the function that fills them into
// a jobConfig once fs is parsed. Defaults are the fetch stage's.
func boundsFlags(fs *flag.FlagSet) func(cfg *jobConfig) error {
	allowLoopback := fs.Bool("allow-loopback", false, "allow destinations on loopback (127.0.0.0/8, ::1); refused by default")
	allowNets := fs.String("allow-nets", "", "comma-separated CIDRs to allow even inside refused ranges (e.g. 10.20.0.0/16)")
	denyNets := fs.String("deny-nets", "", "comma-separated CIDRs to refuse in addition to the default ranges")
	allowHosts := fs.String("allow-hosts", "", "comma-separated host patterns (example.com, *.example.com); if set, only these hosts")
	denyHosts := fs.String("deny-hosts", "", "comma-separated host patterns to refuse")
	allowPorts := fs.String("allow-ports", "", "comma-separated ports or ranges (443,8000-8099); if set, only these ports")
	denyPorts := fs.String("deny-ports", "", "comma-separated ports or ranges to refuse")
	proxyDNS := fs.String("proxy-dns", guard.ProxyDNSRemote, "who resolves target names behind http(s) proxies: remote (the proxy, after a best-effort check here) or local (checked here, CONNECT to the checked IP)")
	maxRedirects := fs.Int("max-redirects", 10, "redirects followed per attempt (negative: none)")
	maxHeader := fs.Int64("max-header-bytes", 1<<20, "largest response header block in bytes")
	bodyTimeout := fs.Duration("body-timeout", 30*time.Second, "time allowed to read a body once its headers are in")
	truncate := fs.Bool("truncate", false, "keep the first --max-body bytes of a larger body and mark the result truncated, instead of refusing it")
	return func(cfg *jobConfig) error {
		cfg.Fetch.Policy = guard.Config{
			AllowLoopback: *allowLoopback,
			AllowNets:     splitList(*allowNets),
			DenyNets:      splitList(*denyNets),
			AllowHosts:    splitList(*allowHosts),
			DenyHosts:     splitList(*denyHosts),
			AllowPorts:    splitList(*allowPorts),
			DenyPorts:     splitList(*denyPorts),
			ProxyDNS:      *proxyDNS,
		}
		if _, err := guard.New(cfg.Fetch.Policy); err != nil {
			return usagef("url policy: %v", err)
		}
		cfg.Fetch.MaxRedirects = *maxRedirects
		if *maxRedirects == 0 {
			cfg.Fetch.MaxRedirects = -1 // 0 in the flag means none; in the Config it means the default
		}
		cfg.Fetch.MaxHeaderBytes = *maxHeader
		cfg.Fetch.BodyTimeout = *bodyTimeout
		cfg.Fetch.TruncateLarge = *truncate
		return nil
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
