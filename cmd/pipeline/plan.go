package main

import (
	"flag"
	"io"

	"github.com/sluicehq/sluice/governor"
	"github.com/sluicehq/sluice/proxy"
)

// cmdPlan prints the governor's calculation for a config: per domain the
// formula, maximum rate and concurrency, the start, the proxies in use, and
// the totals against the pool and the global limit. It fetches nothing.
func cmdPlan(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "", "job config file (YAML) with a domains: section (required)")
	proxies := fs.String("proxies", "", "proxy list file; overrides the config's proxies and pool_size")
	poolSize := fs.Int("pool-size", -1, "number of proxies in the pool; overrides --proxies and the config")
	concurrency := fs.Int("concurrency", 0, "global concurrency limit; overrides the config")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *config == "" || fs.NArg() > 0 {
		return usagef("usage: pipeline plan --config FILE [--proxies FILE | --pool-size N] [--concurrency N]")
	}
	fc, err := loadConfig(*config)
	if err != nil {
		return usageError{err}
	}
	var cfg jobConfig
	fc.apply(&cfg)
	if *proxies != "" {
		cfg.ProxiesFile = *proxies
	}
	size := cfg.PoolSize
	switch {
	case *poolSize >= 0:
		size = *poolSize
	case cfg.ProxiesFile != "":
		ps, err := proxy.LoadFile(cfg.ProxiesFile)
		if err != nil {
			return usageError{err}
		}
		size = len(ps)
	}
	if *concurrency > 0 {
		cfg.Fetch.Concurrency = *concurrency
	}
	p, err := governor.NewPlan(cfg.Fetch.Governor(), size)
	if err != nil {
		return usageError{err}
	}
	_, err = p.WriteTo(stdout)
	return err
}
