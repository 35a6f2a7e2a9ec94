package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicehq/sluice/governor"
	"github.com/sluicehq/sluice/testbed"
)

// cmdBench measures the governor on the local test world: a catalog site
// that allows a fixed number of requests per client IP per window and
// answers 429 past it, scraped through a farm of proxies that each have
// their own source IP. It reports completion, the share of 429s and the
// rate achieved against the rate the site allows, and fails when they
// miss the given marks.
func cmdBench(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pages := fs.Int("n", 5000, "product pages to scrape")
	nproxies := fs.Int("proxies", 20, "proxies in the local farm")
	perIP := fs.Int("per-ip", 180, "requests the site allows per client IP per window")
	window := fs.Duration("window", time.Minute, "the site's sliding rate-limit window")
	safety := fs.Float64("safety", 0.95, "safety factor of the bench's domain entry (ignored with --config)")
	latency := fs.Duration("latency", 0, "the site's answer latency")
	pageBytes := fs.Int("page-bytes", 8<<10, "size of each product page")
	out := fs.String("out", "", "results JSONL file (replaced); default: a temporary file, removed")
	minShare := fs.Float64("min-share", 0.85, "fail below this share of the allowed rate (0: report only)")
	max429 := fs.Float64("max-429", 0.01, "fail when more than this share of requests is answered 429")
	logLevel := fs.String("log-level", "warn", "log level: debug, info, warn, error")
	fill := runFlags(fs)
	fillPool := proxyFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usagef("unexpected arguments: %v", fs.Args())
	case *pages < 1 || *nproxies < 1 || *nproxies > 250 || *perIP < 1 || *window <= 0:
		return usagef("-n, -per-ip and -window must be positive, -proxies within 1..250")
	}
	log, logOut, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	site, err := testbed.StartSite(testbed.SiteConfig{Products: *pages, PageBytes: *pageBytes,
		PerIPPerMinute: *perIP, Window: *window, Latency: *latency})
	if err != nil {
		return fmt.Errorf("start catalog site: %w", err)
	}
	defer site.Close()
	farm, err := testbed.StartFarm(testbed.FarmConfig{N: *nproxies})
	if err != nil {
		return fmt.Errorf("start proxy farm: %w", err)
	}
	defer farm.Close()

	cfg := jobConfig{Log: log}
	if err := fill(&cfg); err != nil {
		return err
	}
	// The bench's site and proxies are on loopback, which the URL policy
	// refuses by default.
	cfg.Fetch.Policy.AllowLoopback = true
	if err := fillPool(&cfg); err != nil {
		return err
	}
	cfg.Observe.Term = logOut
	cfg.Observe.Total = int64(*pages)
	host := strings.TrimPrefix(site.URL(), "http://")
	host = host[:strings.LastIndexByte(host, ':')]
	perMinute := float64(*perIP) * float64(time.Minute) / float64(*window)
	if len(cfg.Fetch.Domains) == 0 {
		cfg.Fetch.Domains = []governor.Domain{{Domain: host, PerIPPerMinute: perMinute, Safety: *safety, Proxies: *nproxies, Window: *window}}
	}
	if cfg.Proxies, err = farmProxies(farm); err != nil {
		return err
	}
	cfg.URLReader = catalogURLs(site, *pages)
	cfg.Out = *out
	if cfg.Out == "" {
		dir, err := os.MkdirTemp("", "sluice-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.Out = filepath.Join(dir, "results.jsonl")
	} else if err := os.Remove(cfg.Out); err != nil && !os.IsNotExist(err) {
		return err
	}
	allowed := float64(*perIP) * float64(*nproxies) / window.Seconds()
	fmt.Fprintf(stdout, "bench: %d pages through %d proxies; the site allows %d requests per IP per %v: %d × %d / %.0f s = %.1f pages/s\n",
		*pages, *nproxies, *perIP, *window, *perIP, *nproxies, window.Seconds(), allowed)
	plan, err := governor.NewPlan(cfg.Fetch.Governor(), len(cfg.Proxies))
	if err != nil {
		return usageError{err}
	}
	for _, l := range plan.Domains {
		fmt.Fprintf(stdout, "governor: %s %s\n", l.Pattern, l)
	}

	ops, err := startOps(&cfg)
	if err != nil {
		return err
	}
	defer ops.close()
	if a := ops.addr(); a != "" {
		fmt.Fprintf(stdout, "metrics: http://%s/metrics while the bench runs\n", a)
	}
	sum, err := runJob(context.Background(), cfg)
	sum.print(stdout)
	if err != nil {
		return err
	}
	st := site.Stats()
	v, err := verifyFile(cfg.Out, *pages)
	if err != nil {
		return err
	}
	var maxIP int64
	for _, n := range st.MaxPerIPPerMinute {
		maxIP = max(maxIP, n)
	}
	share429 := 0.0
	if st.Requests > 0 {
		share429 = float64(st.Limited) / float64(st.Requests)
	}
	rate := float64(v.Correct) / sum.Elapsed.Seconds()
	fmt.Fprintf(stdout, "completion: %d of %d pages correct (%.1f%%), %d wrong, %d missing, %d duplicated\n",
		v.Correct, *pages, 100*float64(v.Correct)/float64(*pages), len(v.Wrong), v.Missing, v.Duplicates)
	fmt.Fprintf(stdout, "site: %d requests, %d answered 429 (%.2f%%); busiest IP: %d requests in one %v window (limit %d)\n",
		st.Requests, st.Limited, 100*share429, maxIP, *window, *perIP)
	fmt.Fprintf(stdout, "rate: %.1f pages/s over %s = %.1f%% of the allowed %.1f pages/s\n",
		rate, sum.Elapsed.Round(time.Millisecond), 100*rate/allowed, allowed)
	var fails []string
	if !v.ok() || v.Correct != *pages {
		fails = append(fails, fmt.Sprintf("%d of %d pages not correct", *pages-v.Correct, *pages))
	}
	if share429 > *max429 {
		fails = append(fails, fmt.Sprintf("429s at %.2f%% of requests, over %.2f%%", 100*share429, 100**max429))
	}
	if rate < *minShare*allowed {
		fails = append(fails, fmt.Sprintf("rate %.1f pages/s below %.0f%% of %.1f", rate, 100**minShare, allowed))
	}
	if len(fails) > 0 {
		fmt.Fprintf(stdout, "FAIL: %s\n", strings.Join(fails, "; "))
		return fmt.Errorf("bench failed: %s", strings.Join(fails, "; "))
	}
	fmt.Fprintf(stdout, "PASS: all pages, 429s under %.0f%%, rate at least %.0f%% of allowed\n", 100**max429, 100**minShare)
	return nil
}
