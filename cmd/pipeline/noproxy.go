package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/proxy"
)

// noProxyFlags declares the flags about running short of proxies and
// returns what fills cfg from them: the proxies file's default scheme,
// the per-proxy cap's margin, the no-proxy timeout, the connect and
// first-byte timeouts, and --direct.
func noProxyFlags(fs *flag.FlagSet) func(cfg *jobConfig) error {
	scheme := fs.String("proxy-scheme", "http", "scheme of proxies-file lines that name none (host:port, user:pass@host:port, host:port:user:pass): http, https, socks5, socks5h; a '# default-scheme: SCHEME' line in the file overrides it")
	margin := fs.Float64("proxy-cap-margin", 0.2, "a proxy holds at most its share of --concurrency plus this fraction of it in flight")
	wait := fs.Duration("no-proxy-timeout", 2*time.Minute, "with file input, how long the run waits while every proxy is quarantined before the remaining inputs end as no_proxy (Kafka input waits for a proxy instead)")
	connect := fs.Duration("connect-timeout", 0, "bound on a TCP connect to a proxy or target; 0: 5 s")
	firstByte := fs.Duration("first-byte-timeout", 0, "bound on the wait for the response headers, and for a proxy's first byte on a new connection; 0: 15 s")
	direct := fs.Bool("direct", false, "fetch without proxies, from this machine's own address (only when no --proxies is given)")
	return func(cfg *jobConfig) error {
		if _, err := (proxy.ListOptions{Scheme: *scheme}).Parse(strings.NewReader("")); err != nil && !errors.Is(err, proxy.ErrNoProxies) {
			return usageError{fmt.Errorf("--proxy-scheme: %w", err)}
		}
		if *margin < 0 {
			return usagef("--proxy-cap-margin %v must not be negative", *margin)
		}
		if *wait <= 0 {
			return usagef("--no-proxy-timeout %v must be positive", *wait)
		}
		if *connect < 0 || *firstByte < 0 {
			return usagef("--connect-timeout and --first-byte-timeout must not be negative")
		}
		if *connect > 0 {
			cfg.Fetch.ConnectTimeout = *connect
		}
		if *firstByte > 0 {
			cfg.Fetch.HeaderTimeout = *firstByte
		}
		cfg.ProxyList = proxy.ListOptions{Scheme: *scheme}
		cfg.Direct = *direct
		m := *margin
		if m == 0 {
			m = -1 // the pool's "no margin": the share alone
		}
		cfg.PoolOptions = append(cfg.PoolOptions, proxy.WithCapMargin(m), proxy.WithNoProxyTimeout(*wait))
		return nil
	}
}

// poolOptions are cfg's pool options for the run's input: a streaming
// (Kafka) input waits for a proxy as long as it takes, since nothing is
// committed while nothing is fetched; a file input ends instead.
func poolOptions(cfg jobConfig) []proxy.Option {
	if cfg.Kafka.Topic != "" {
		return append(cfg.PoolOptions, proxy.WithNoProxyTimeout(-1))
	}
	return cfg.PoolOptions
}

// checkDirect refuses --direct with proxies, and warns when a run fetches
// without proxies it was not told to.
func checkDirect(cfg jobConfig) error {
	switch {
	case cfg.Direct && len(cfg.Proxies) > 0:
		return usagef("--direct and --proxies: choose one")
	case !cfg.Direct && len(cfg.Proxies) == 0:
		cfg.Log.Warn().Msg("no --proxies: fetching directly, from this machine's own address (pass --direct to say so)")
	}
	return nil
}

// proxyFailure is the error of a run that ended for want of a working
// proxy: every proxy refused our credentials, or inputs ended as
// no_proxy after the no-proxy timeout. It names every proxy and its state (never credentials).
func proxyFailure(pool *proxy.Pool, sum summary) error {
	if pool == nil {
		return nil
	}
	switch st := pool.Stats(); {
	case st.AuthFailed:
		return fmt.Errorf("every proxy refused our credentials (a configuration error; check the proxies file): %s", pool.Describe())
	case st.NoProxy > 0:
		return fmt.Errorf("%d inputs ended as no_proxy: no proxy was usable for the no-proxy timeout: %s", sum.Errors[string(failure.NoProxy)], pool.Describe())
	}
	return nil
}

// proxiesReady is the /readyz check of the proxy pool: unready while no
// proxy is usable (since one last worked), or when every proxy refused
// our credentials. Nil (no check) without a pool.
func proxiesReady(pool *proxy.Pool) func(context.Context) error {
	if pool == nil {
		return nil
	}
	return func(context.Context) error {
		switch st := pool.Stats(); {
		case st.AuthFailed:
			return errors.New("every proxy refused our credentials")
		case !st.StuckSince.IsZero():
			return fmt.Errorf("no usable proxy since %s", st.StuckSince.Format(time.RFC3339))
		}
		return nil
	}
}

// proxyNotes describes, for the run's summary, each proxy that failed:
// its quarantines, the attempts it cost before the last one caught it,
// its late leases and its cap at the end (slow start).
func proxyNotes(pool *proxy.Pool) []string {
	var out []string
	for _, ps := range pool.Stats().Proxies {
		if ps.Quarantines == 0 && ps.Late == 0 && !ps.AuthFailed {
			continue
		}
		note := fmt.Sprintf("%s %d quarantines (the last after %d attempts), %d late, cap %d of %d",
			ps.ID, ps.Quarantines, ps.CatchCost, ps.Late, ps.Cap, ps.CapMax)
		if ps.AuthFailed {
			note += ", refused our credentials"
		}
		out = append(out, note)
	}
	return out
}
