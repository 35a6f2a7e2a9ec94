package app

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/stages/fetch"
	"github.com/sluicehq/sluice/stages/parse"
	"github.com/sluicehq/sluice/stages/sink"
)

// newJob turns a loaded Config into what one batch run needs: the
// logger, the rules, the proxies and the pool options. Errors are usage
// errors.
func newJob(c Config, stdout, stderr io.Writer) (jobConfig, error) {
	log, logOut, err := newLogger(stderr, c.LogLevel)
	if err != nil {
		return jobConfig{}, err
	}
	cfg := jobConfig{
		URLs: c.URLs, Out: c.Out, Pages: c.Pages, ProxiesFile: c.Proxies, PoolSize: c.PoolSize, RulesFile: c.Rules,
		Fetch: c.FetchStage(), Kafka: c.Kafka, Crawl: c.Crawl, Drain: c.DrainTimeout, Log: log,
		WARC: sink.WARCConfig{Dir: c.WARC, MaxSize: c.WARCMaxSize},
		Observe: observeConfig{
			MetricsAddr: c.Observe.MetricsAddr, Pprof: c.Observe.Pprof, Trace: c.Observe.Trace, TraceMax: c.Observe.TraceMax,
			StallAfter: c.Observe.StallAfter, StatsEvery: c.Observe.StatsInterval, Progress: c.Observe.Progress, Term: logOut,
		},
	}
	if cfg.PoolOptions, err = c.poolOptions(); err != nil {
		return cfg, usageError{err}
	}
	cfg.Rules = parse.DefaultRules()
	if c.Rules != "" {
		if cfg.Rules, err = parse.LoadRules(c.Rules); err != nil {
			return cfg, usageError{err}
		}
	}
	cfg.ProxyList = proxy.ListOptions{Scheme: c.Proxy.Scheme}
	cfg.Direct = c.Direct
	if c.Proxies != "" {
		if cfg.Proxies, err = cfg.ProxyList.Load(c.Proxies); err != nil {
			return cfg, usageError{err}
		}
	}
	if cfg.Out == "-" {
		cfg.OutWriter = stdout
	}
	if cfg.URLs != "-" && c.Kafka.Topic == "" {
		cfg.Observe.Total = countLines(cfg.URLs)
	}
	return cfg, nil
}

// Run is `pipeline run`: it scrapes the inputs c names into its outputs
// and prints the summary on stderr.
func Run(ctx context.Context, c Config, stdout, stderr io.Writer) error {
	cfg, err := newJob(c, stdout, stderr)
	if err != nil {
		return err
	}
	ops, err := startOps(&cfg)
	if err != nil {
		return err
	}
	defer ops.close()
	sum, err := runJob(ctx, cfg)
	if !IsUsage(err) { // a usage error is one line, without a summary
		sum.print(stderr)
	}
	return err
}

// runJob builds and runs one batch job under signal handling.
func runJob(ctx context.Context, cfg jobConfig) (summary, error) {
	if err := checkFDs(cfg); err != nil {
		return summary{}, err
	}
	if err := checkDirect(cfg); err != nil {
		return summary{}, err
	}
	p, err := build(cfg)
	if err != nil {
		return summary{}, err
	}
	hard, soft, stop := signalContexts(ctx, cfg.Drain, cfg.Log)
	defer stop()
	for _, d := range cfg.Fetch.Domains {
		cfg.Log.Info().Str("domain", d.Domain).Str("limits", p.fetch.Limits(d.Domain).String()).Msg("governor")
	}
	if cfg.Crawl.Follow {
		if cfg.Crawl.IgnoreRobots {
			cfg.Log.Warn().Msg("crawl: robots.txt is ignored (--ignore-robots)")
		}
		cfg.Log.Info().Str("scope", cfg.Crawl.Scope).Int("max_depth", cfg.Crawl.MaxDepth).Int("max_pages", cfg.Crawl.MaxPages).
			Str("state_dir", cfg.Crawl.StateDir).Bool("robots", !cfg.Crawl.IgnoreRobots).Msg("crawl")
	}
	cfg.Log.Info().Int("proxies", len(cfg.Proxies)).Int("concurrency", cfg.Fetch.Concurrency).Msg("run started")
	sum, err := p.run(hard, soft)
	if err != nil {
		return sum, fmt.Errorf("pipeline: %w", err)
	}
	if n := sum.Errors[string(failure.Policy)]; n > 0 && n == sum.Written {
		return sum, fmt.Errorf("every input (%d) was refused by the URL policy: %s", n, sum.refusalHints())
	}
	return sum, proxyFailure(p.pool, sum) // see noproxy.go
}

// checkFDs raises the file-descriptor limit to its hard maximum and
// compares it with what the fetch concurrency needs: an error when it
// falls short, a warning when it barely suffices.
func checkFDs(cfg jobConfig) error {
	need := fetch.FDsNeeded(cfg.Fetch, len(cfg.Proxies))
	c, err := fetch.CheckFDLimit(need)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		cfg.Log.Warn().Int("need", need).Msg("cannot check the file-descriptor limit on this system")
	case err != nil:
		return err
	case c.Warning != "":
		cfg.Log.Warn().Uint64("limit", c.Limit.Soft).Int("need", need).Msg(c.Warning)
	default:
		cfg.Log.Debug().Uint64("limit", c.Limit.Soft).Uint64("was", c.Before.Soft).Int("need", need).Msg("file-descriptor limit")
	}
	return nil
}
