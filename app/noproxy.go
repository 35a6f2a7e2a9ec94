package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/proxy"
)

// runPoolOptions are cfg's pool options for the run's input: a streaming
// (Kafka) input waits for a proxy as long as it takes, since nothing is
// committed while nothing is fetched; a file input ends instead.
func runPoolOptions(cfg jobConfig) []proxy.Option {
	if cfg.Kafka.Topic != "" {
		return append(cfg.PoolOptions, proxy.WithNoProxyTimeout(-1))
	}
	return cfg.PoolOptions
}

// checkDirect refuses --direct with proxies, and a run without proxies
// that was not told to fetch directly: a proxy list that failed to
// download must not silently expose the operator's own address.
func checkDirect(cfg jobConfig) error {
	switch {
	case cfg.Direct && len(cfg.Proxies) > 0:
		return usagef("--direct and --proxies: choose one")
	case !cfg.Direct && len(cfg.Proxies) == 0:
		return usagef("no --proxies given: pass a proxies file, or --direct to fetch from this machine's own address")
	case cfg.Direct:
		cfg.Log.Warn().Msg("--direct: fetching without proxies, from this machine's own address")
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
