package app

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicehq/sluice/governor"
	"github.com/sluicehq/sluice/testbed"
)

// BenchOptions are bench's own flags, besides the config tree.
type BenchOptions struct {
	Pages       int           // product pages to scrape
	FarmProxies int           // proxies in the local farm, 1..250
	PerIP       int           // requests the site allows per client IP per window
	Window      time.Duration // the site's sliding window
	Safety      float64       // safety factor of the bench's domain entry
	Latency     time.Duration // the site's answer latency
	PageBytes   int
	Out         string  // results file; "": a temporary one
	MinShare    float64 // fail below this share of the allowed rate
	Max429      float64 // fail above this share of 429s

	// Members, when set, switches to the scaling bench (docs/scaling.md):
	// for each count, that many `pipeline run` processes in one consumer
	// group on Brokers; the site has no rate limit.
	Members []int
	Brokers []string
	Binary  string // the pipeline binary the members run; "": this one
}

// Bench is `pipeline bench`: it measures the governor on the local test
// world: a catalog site that allows a fixed number of requests per client
// IP per window and answers 429 past it, scraped through a farm of
// proxies that each have their own source IP. It reports completion, the
// share of 429s and the rate achieved against the rate the site allows,
// and fails when they miss the given marks.
func Bench(ctx context.Context, c Config, o BenchOptions, stdout, stderr io.Writer) error {
	if o.Pages < 1 || o.FarmProxies < 1 || o.FarmProxies > 250 || o.PerIP < 1 || o.Window <= 0 {
		return usagef("-n, -per-ip and -window must be positive, -farm-proxies within 1..250")
	}
	if len(o.Members) > 0 {
		return benchMembers(ctx, c, o, stdout, stderr)
	}
	// The bench's site and proxies are on loopback, which the URL policy
	// refuses by default.
	c.Policy.AllowLoopback = true
	cfg, err := newJob(c, stdout, stderr)
	if err != nil {
		return err
	}
	site, err := testbed.StartSite(testbed.SiteConfig{Products: o.Pages, PageBytes: o.PageBytes,
		PerIPPerMinute: o.PerIP, Window: o.Window, Latency: o.Latency})
	if err != nil {
		return fmt.Errorf("start catalog site: %w", err)
	}
	defer site.Close()
	farm, err := testbed.StartFarm(testbed.FarmConfig{N: o.FarmProxies})
	if err != nil {
		return fmt.Errorf("start proxy farm: %w", err)
	}
	defer farm.Close()
	cleanup, err := o.prepare(&cfg, site, farm)
	defer cleanup()
	if err != nil {
		return err
	}
	if err := o.printPlan(stdout, cfg); err != nil {
		return err
	}
	ops, err := startOps(&cfg)
	if err != nil {
		return err
	}
	defer ops.close()
	if a := ops.addr(); a != "" {
		fmt.Fprintf(stdout, "metrics: http://%s/metrics while the bench runs\n", a)
	}
	sum, err := runJob(ctx, cfg)
	sum.print(stdout)
	if err != nil {
		return err
	}
	return o.judge(stdout, cfg.Out, sum, site.Stats())
}

// allowed is the rate the site allows through the farm, in pages/s.
func (o BenchOptions) allowed() float64 {
	return float64(o.PerIP) * float64(o.FarmProxies) / o.Window.Seconds()
}

// prepare points the job at the site through the farm, with a domain
// entry for the site's limit unless the config has its own, and picks the
// results file. cleanup removes a temporary one.
func (o BenchOptions) prepare(cfg *jobConfig, site *testbed.Site, farm *testbed.Farm) (cleanup func(), err error) {
	cleanup = func() {}
	cfg.Observe.Total = int64(o.Pages)
	host := strings.TrimPrefix(site.URL(), "http://")
	host = host[:strings.LastIndexByte(host, ':')]
	perMinute := float64(o.PerIP) * float64(time.Minute) / float64(o.Window)
	if len(cfg.Fetch.Domains) == 0 {
		cfg.Fetch.Domains = []governor.Domain{{Domain: host, PerIPPerMinute: perMinute, Safety: o.Safety, Proxies: o.FarmProxies, Window: o.Window}}
	}
	if cfg.Proxies, err = farmProxies(farm); err != nil {
		return cleanup, err
	}
	cfg.URLReader = catalogURLs(site, o.Pages)
	cfg.Out, cfg.OutWriter = o.Out, nil
	if cfg.Out != "" {
		if err := os.Remove(cfg.Out); err != nil && !os.IsNotExist(err) {
			return cleanup, err
		}
		return cleanup, nil
	}
	dir, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return cleanup, err
	}
	cfg.Out = filepath.Join(dir, "results.jsonl")
	return func() { os.RemoveAll(dir) }, nil
}

// printPlan prints what the site allows and the governor's plan for it.
func (o BenchOptions) printPlan(stdout io.Writer, cfg jobConfig) error {
	fmt.Fprintf(stdout, "bench: %d pages through %d proxies; the site allows %d requests per IP per %v: %d × %d / %.0f s = %.1f pages/s\n",
		o.Pages, o.FarmProxies, o.PerIP, o.Window, o.PerIP, o.FarmProxies, o.Window.Seconds(), o.allowed())
	plan, err := governor.NewPlan(cfg.Fetch.Governor(), len(cfg.Proxies))
	if err != nil {
		return usageError{err}
	}
	for _, l := range plan.Domains {
		fmt.Fprintf(stdout, "governor: %s %s\n", l.Pattern, l)
	}
	return nil
}

// judge checks the results file and the site's counts against the marks.
func (o BenchOptions) judge(stdout io.Writer, out string, sum summary, st testbed.Stats) error {
	v, err := VerifyFile(out, o.Pages)
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
	allowed := o.allowed()
	rate := float64(v.Correct) / sum.Elapsed.Seconds()
	fmt.Fprintf(stdout, "completion: %d of %d pages correct (%.1f%%), %d wrong, %d missing, %d duplicated\n",
		v.Correct, o.Pages, 100*float64(v.Correct)/float64(o.Pages), len(v.Wrong), v.Missing, v.Duplicates)
	fmt.Fprintf(stdout, "site: %d requests, %d answered 429 (%.2f%%); busiest IP: %d requests in one %v window (limit %d)\n",
		st.Requests, st.Limited, 100*share429, maxIP, o.Window, o.PerIP)
	fmt.Fprintf(stdout, "rate: %.1f pages/s over %s = %.1f%% of the allowed %.1f pages/s\n",
		rate, sum.Elapsed.Round(time.Millisecond), 100*rate/allowed, allowed)
	var fails []string
	if !v.OK() || v.Correct != o.Pages {
		fails = append(fails, fmt.Sprintf("%d of %d pages not correct", o.Pages-v.Correct, o.Pages))
	}
	if share429 > o.Max429 {
		fails = append(fails, fmt.Sprintf("429s at %.2f%% of requests, over %.2f%%", 100*share429, 100*o.Max429))
	}
	if rate < o.MinShare*allowed {
		fails = append(fails, fmt.Sprintf("rate %.1f pages/s below %.0f%% of %.1f", rate, 100*o.MinShare, allowed))
	}
	if len(fails) > 0 {
		fmt.Fprintf(stdout, "FAIL: %s\n", strings.Join(fails, "; "))
		return fmt.Errorf("bench failed: %s", strings.Join(fails, "; "))
	}
	fmt.Fprintf(stdout, "PASS: all pages, 429s under %.0f%%, rate at least %.0f%% of allowed\n", 100*o.Max429, 100*o.MinShare)
	return nil
}
