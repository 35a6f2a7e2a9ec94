package app

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/stages/fetch"
	"github.com/sluicehq/sluice/testbed"
)

func TestPlanPrintsTheSampleConfig(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := realMain([]string{"plan", "--config", "testdata/plan.yaml"}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	golden, err := os.ReadFile("testdata/plan.golden")
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != string(golden) {
		t.Errorf("plan output changed:\n%s\nwant (testdata/plan.golden):\n%s", out.String(), golden)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), string(golden)) {
		t.Error("README.md does not show the plan output of testdata/plan.yaml (testdata/plan.golden)")
	}
	// The pool size can come from the command line.
	out.Reset()
	if code := realMain([]string{"plan", "--config", "testdata/plan.yaml", "--pool-size", "20", "--concurrency", "50"}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	// 7 + 10 + 5 proxies wanted, 20 in the pool.
	for _, want := range []string{"30/60 × 20 × 0.70 = 7.00", "60/60 × 20 × 0.50 = 10.00", "of global limit 50", "proxies in use 20 of 20 (100% of the pool)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan with 20 proxies lacks %q:\n%s", want, out.String())
		}
	}
	if code := realMain([]string{"plan"}, io.Discard, io.Discard); code != exitUsage {
		t.Errorf("plan without --config: exit %d, want %d", code, exitUsage)
	}
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFileThenFlags(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "job.yaml", `
urls: in.txt
out: out.jsonl
fetch:
  concurrency: 50
  rate: 3
  max_attempts: 2
  stagger_min: 50ms
  stagger_max: 80ms
  adaptive:
    start: 0.25
domains:
  - domain: shop.example
    per_ip_per_minute: 30
    proxies: 10
`)
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fill := runFlags(fs)
	if err := fs.Parse([]string{"--config", path, "--concurrency", "7"}); err != nil {
		t.Fatal(err)
	}
	var cfg jobConfig
	if err := fill(&cfg); err != nil {
		t.Fatal(err)
	}
	f := cfg.Fetch
	if f.Concurrency != 7 || f.DomainRate != 3 || f.MaxAttempts != 2 || f.StaggerMin != 50*time.Millisecond || f.Adaptive.Start != 0.25 {
		t.Errorf("fetch config %+v: want the flag's concurrency 7 and the file's other values", f)
	}
	if len(f.Domains) != 1 || f.Domains[0].PerIPPerMinute != 30 || f.Domains[0].Proxies != 10 {
		t.Errorf("domains %+v", f.Domains)
	}
	if cfg.URLs != filepath.Join(dir, "in.txt") || cfg.Out != filepath.Join(dir, "out.jsonl") {
		t.Errorf("paths %q %q not relative to the config file", cfg.URLs, cfg.Out)
	}
	bad := writeFile(t, dir, "bad.yaml", "fetch:\n  concurency: 5\n")
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	fill = runFlags(fs)
	_ = fs.Parse([]string{"--config", bad})
	if err := fill(&jobConfig{}); err == nil || !strings.Contains(err.Error(), "concurency") {
		t.Errorf("misspelt key: %v, want an error naming it", err)
	}
}

func TestRunWithAConfigFile(t *testing.T) {
	site, err := testbed.StartSite(testbed.SiteConfig{Products: 40})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	farm, err := testbed.StartFarm(testbed.FarmConfig{N: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	dir := t.TempDir()
	var urls strings.Builder
	for i := 1; i <= 40; i++ {
		fmt.Fprintln(&urls, site.ProductURL(i))
	}
	writeFile(t, dir, "urls.txt", urls.String())
	writeFile(t, dir, "proxies.txt", strings.Join(farm.URLs(), "\n")+"\n")
	cfgPath := writeFile(t, dir, "job.yaml", `
urls: urls.txt
out: results.jsonl
proxies: proxies.txt
fetch:
  concurrency: 8
policy:
  allow_loopback: true  # the test site and proxies are on loopback
domains:
  - domain: 127.0.0.1
    per_ip_per_minute: 1200
    safety: 0.5
`)
	var out, errOut bytes.Buffer
	if code := realMain([]string{"run", "--config", cfgPath, "--log-level", "warn"}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	v, err := verifyFile(filepath.Join(dir, "results.jsonl"), 40)
	if err != nil || !v.ok() || v.Correct != 40 {
		t.Fatalf("results: %+v %v", v, err)
	}
	// 1200/min per IP × 4 proxies × 0.5 = 40/s: the summary names it.
	if !strings.Contains(errOut.String(), "governor: 127.0.0.1 at") || !strings.Contains(errOut.String(), "40 attempts: 40 ok") {
		t.Errorf("summary lacks the governor line:\n%s", errOut.String())
	}
	if ips := site.Stats().ByIP; len(ips) != 4 {
		t.Errorf("the site saw %d client IPs, want the 4 proxies'", len(ips))
	}
}

func TestBenchSmall(t *testing.T) {
	// The bench's wiring on a small scale: 9 requests per IP per 3 s (180
	// a minute) through 4 proxies, with room for a busy machine (safety
	// 0.7). Its speed is not judged here.
	var out, errOut bytes.Buffer
	code := realMain([]string{"bench", "-n", "60", "-proxies", "4", "-per-ip", "9", "-window", "3s",
		"-safety", "0.7", "-min-share", "0", "-max-429", "0.05"}, &out, &errOut)
	if code != exitOK {
		t.Fatalf("exit %d:\n%s\n%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{
		"the site allows 9 requests per IP per 3s: 9 × 4 / 3 s = 12.0 pages/s",
		"completion: 60 of 60 pages correct (100.0%)",
		"busiest IP: ",
		"PASS",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("bench output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestREADMEConfigExampleLoads(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "### Job config (`--config FILE`)")
	if !ok {
		t.Fatal("README has no job config section")
	}
	_, rest, _ = strings.Cut(rest, "```yaml\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("README job config section has no yaml block")
	}
	path := writeFile(t, t.TempDir(), "job.yaml", block)
	fc, err := loadConfig(path)
	if err != nil {
		t.Fatalf("the README's example config does not load: %v", err)
	}
	var cfg jobConfig
	fc.apply(&cfg)
	if len(cfg.Fetch.Domains) != 2 || cfg.Fetch.Concurrency != 200 || cfg.Fetch.Adaptive.LatencyFloor != 25*time.Millisecond {
		t.Errorf("loaded %+v", cfg.Fetch)
	}
}

func TestRunRefusesAConcurrencyTheFDLimitCannotCarry(t *testing.T) {
	c, err := fetch.CheckFDLimit(1)
	if err != nil {
		t.Skipf("no file-descriptor limit here: %v", err)
	}
	const conc = 100000
	var cfg fetch.Config
	cfg.Concurrency = conc
	if need := fetch.FDsNeeded(cfg, 0); uint64(need) <= c.Limit.Hard {
		t.Skipf("the hard limit %d carries %d descriptors", c.Limit.Hard, need)
	}
	var out, errOut bytes.Buffer
	code := realMain([]string{"run", "--concurrency", fmt.Sprint(conc), "--urls", os.DevNull, "--out", os.DevNull}, &out, &errOut)
	if code != exitFailure || !strings.Contains(errOut.String(), "file-descriptor limit") {
		t.Errorf("exit %d, stderr %q: want a failure naming the file-descriptor limit", code, errOut.String())
	}
}
