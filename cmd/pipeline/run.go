package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/sluicehq/sluice/stages/fetch"
	"github.com/sluicehq/sluice/stages/parse"
)

// runFlags declares the flags shared by run, demo and bench into fs, and
// returns a function that fills a jobConfig once fs is parsed: first from
// the --config file, if any, then from the flags given on the command
// line, which override the file. Flags left out keep the file's value or
// the stage's default.
func runFlags(fs *flag.FlagSet) func(cfg *jobConfig) error {
	config := fs.String("config", "", "job config file (YAML): inputs, outputs, fetch settings and the per-site domains: section")
	concurrency := fs.Int("concurrency", 32, "requests in flight at most")
	rate := fs.Float64("rate", 10, "requests per second per domain, for domains the config does not list (negative: unlimited)")
	attempts := fs.Int("max-attempts", 4, "attempts per URL, the first included")
	maxBody := fs.Int64("max-body", 10<<20, "largest response body in bytes, after decompression")
	timeout := fs.Duration("timeout", 60*time.Second, "deadline of one attempt, body included")
	rules := fs.String("rules", "", "extraction rules (YAML); default: h1 as name, .price, meta[itemprop=sku]")
	pages := fs.String("pages", "", "also write raw pages (for replay) as JSONL to this file")
	drain := fs.Duration("drain-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long to drain before aborting requests")
	metricsAddr := fs.String("metrics-addr", "", "serve /metrics, /healthz and /readyz on this address (e.g. 127.0.0.1:9090); default: off")
	pprofOn := fs.Bool("pprof", false, "also serve Go's profiling handlers under /debug/pprof/ on --metrics-addr")
	trace := fs.String("trace", "", "write one span per fetch attempt as JSON lines to this file, for 'pipeline waterfall'")
	traceMax := fs.Int64("trace-max", 250000, "keep at most this many spans in the --trace file")
	stallAfter := fs.Duration("stall-after", 30*time.Second, "after this long without a successful output, log what every stage waits on (0: off)")
	statsEvery := fs.Duration("stats-interval", 10*time.Second, "interval of the one-line stats log when no progress bar is drawn")
	progressMode := fs.String("progress", "auto", "auto (a bar on a terminal, else a stats line at an interval), bar, log or off")
	fillBounds := boundsFlags(fs)
	return func(cfg *jobConfig) error {
		if *concurrency < 1 || *attempts < 1 || *maxBody < 1 || *timeout <= 0 || *drain <= 0 {
			return usagef("--concurrency, --max-attempts, --max-body, --timeout and --drain-timeout must be positive")
		}
		switch *progressMode {
		case "auto", "bar", "log", "off":
		default:
			return usagef("--progress %q: want auto, bar, log or off", *progressMode)
		}
		if *traceMax < 1 {
			return usagef("--trace-max must be positive")
		}
		if *statsEvery <= 0 {
			return usagef("--stats-interval must be positive")
		}
		if *pprofOn && *metricsAddr == "" {
			return usagef("--pprof needs --metrics-addr")
		}
		cfg.Observe.MetricsAddr = *metricsAddr
		cfg.Observe.Pprof = *pprofOn
		cfg.Observe.Trace = *trace
		cfg.Observe.TraceMax = *traceMax
		cfg.Observe.StallAfter = *stallAfter
		cfg.Observe.StatsEvery = *statsEvery
		cfg.Observe.Progress = *progressMode
		if *config != "" {
			fc, err := loadConfig(*config)
			if err != nil {
				return usageError{err}
			}
			fc.apply(cfg)
		}
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		if given["concurrency"] {
			cfg.Fetch.Concurrency = *concurrency
		}
		if given["rate"] {
			cfg.Fetch.DomainRate = *rate
		}
		if given["max-attempts"] {
			cfg.Fetch.MaxAttempts = *attempts
		}
		if given["max-body"] {
			cfg.Fetch.MaxBodyBytes = *maxBody
		}
		if given["timeout"] {
			cfg.Fetch.AttemptTimeout = *timeout
		}
		if given["rules"] {
			cfg.RulesFile = *rules
		}
		if given["pages"] {
			cfg.Pages = *pages
		}
		if given["drain-timeout"] || cfg.Drain == 0 {
			cfg.Drain = *drain
		}
		if err := fillBounds(cfg); err != nil { // the URL policy and response bounds: see bounds.go
			return err
		}
		if cfg.RulesFile != "" {
			r, err := parse.LoadRules(cfg.RulesFile)
			if err != nil {
				return usageError{err}
			}
			cfg.Rules = r
		} else {
			cfg.Rules = parse.DefaultRules()
		}
		return nil
	}
}

func cmdRun(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	urls := fs.String("urls", "-", "input: a file of URL lines (bare URLs or JSON URL messages), - for stdin")
	out := fs.String("out", "-", "output: results JSONL file, - for stdout")
	proxies := fs.String("proxies", "", "proxy list file, one proxy URL per line; default: direct connections")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	fill := runFlags(fs)
	fillPool := proxyFlags(fs)
	fillNoProxy := noProxyFlags(fs)
	fillKafka := kafkaFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v", fs.Args())
	}
	log, logOut, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	cfg := jobConfig{URLs: "-", Out: "-", Log: log}
	if err := fill(&cfg); err != nil {
		return err
	}
	if err := fillPool(&cfg); err != nil {
		return err
	}
	if err := fillNoProxy(&cfg); err != nil {
		return err
	}
	if err := fillKafka(&cfg.Kafka); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if given["urls"] {
		cfg.URLs = *urls
	}
	if given["out"] {
		cfg.Out = *out
	}
	if given["proxies"] {
		cfg.ProxiesFile = *proxies
	}
	cfg.Observe.Term = logOut
	if cfg.URLs != "-" {
		cfg.Observe.Total = countLines(cfg.URLs)
	}
	if cfg.ProxiesFile != "" {
		if cfg.Proxies, err = cfg.ProxyList.Load(cfg.ProxiesFile); err != nil {
			return usageError{err}
		}
	}
	if cfg.Out == "-" {
		cfg.OutWriter = stdout
	}
	ops, err := startOps(&cfg)
	if err != nil {
		return err
	}
	defer ops.close()
	sum, err := runJob(context.Background(), cfg)
	sum.print(stderr)
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
	cfg.Log.Info().Int("proxies", len(cfg.Proxies)).Int("concurrency", cfg.Fetch.Concurrency).Msg("run started")
	sum, err := p.run(hard, soft)
	if err != nil {
		return sum, fmt.Errorf("pipeline: %w", err)
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
