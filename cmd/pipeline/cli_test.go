package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/app"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/stages/fetch"
	"github.com/sluicehq/sluice/testbed"
)

// TestDemoCommand runs `pipeline demo` small: it checks its own metrics
// (the per-proxy counts add up), draws its waterfall and says where.
func TestDemoCommand(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := realMain([]string{"demo", "-n", "200", "-farm-proxies", "4", "-slow-proxies", "1", "-slow-latency", "20ms",
		"-out", filepath.Join(dir, "results.jsonl"), "-trace", filepath.Join(dir, "trace.jsonl"),
		"-waterfall", filepath.Join(dir, "waterfall.html"), "-progress", "off"}, &stdout, &stderr)
	out := stdout.String()
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr.String())
	}
	for _, want := range []string{
		"metrics: http://127.0.0.1:",
		"metrics: sluice_proxy_requests_total sums to 200 over 4 proxies; the pool leased 200, the site saw 200 requests",
		"waterfall: 200 attempts from " + filepath.Join(dir, "trace.jsonl") + " drawn in " + filepath.Join(dir, "waterfall.html"),
		"every record is correct",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "waterfall.html")); err != nil || st.Size() < 10000 {
		t.Errorf("waterfall file: %v", err)
	}
}

func TestWaterfallCommand(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "trace.jsonl")
	if err := os.WriteFile(in, []byte("not a span\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := realMain([]string{"waterfall", "--in", in, "--out", filepath.Join(dir, "w.html")}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "waterfall: 0 attempts drawn") || !strings.Contains(stderr.String(), "1 lines of") {
		t.Errorf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	for _, args := range [][]string{
		{"waterfall"},
		{"waterfall", "--in", in, "extra"},
		{"run", "--progress", "sometimes"},
		{"run", "--pprof"},
		{"run", "--stats-interval", "0s"},
	} {
		if code := realMain(args, &stdout, &stderr); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
	if code := realMain([]string{"waterfall", "--in", filepath.Join(dir, "missing")}, &stdout, &stderr); code != exitUsage {
		t.Errorf("missing trace: exit %d", code)
	}
}

func TestBoundsFlags(t *testing.T) {
	for _, bad := range [][]string{{"--allow-nets", "10.0.0.0/33"}, {"--deny-ports", "0"}, {"--proxy-dns", "maybe"}} {
		var stderr bytes.Buffer
		if code := realMain(append([]string{"run"}, bad...), io.Discard, &stderr); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", bad, code, exitUsage, stderr.String())
		}
	}
}

// TestRunThroughFarm is the walking pipeline's acceptance test: `pipeline
// run` over 2,000 catalog URLs through 10 farm proxies.
func TestRunThroughFarm(t *testing.T) {
	const n = 2000
	site, err := testbed.StartSite(testbed.SiteConfig{Products: n})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	farm, err := testbed.StartFarm(testbed.FarmConfig{N: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	dir := t.TempDir()
	var urls []string
	for id := 1; id <= n; id++ {
		urls = append(urls, site.ProductURL(id))
	}
	writeLines(t, filepath.Join(dir, "urls.txt"), urls)
	writeLines(t, filepath.Join(dir, "proxies.txt"), farm.URLs())
	rules := "- domain: \"*\"\n  fields:\n    name: h1\n    price: .price\n    sku: \"meta[itemprop=sku] @content\"\n"
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := realMain([]string{"run",
		"--urls", filepath.Join(dir, "urls.txt"), "--proxies", filepath.Join(dir, "proxies.txt"),
		"--rules", filepath.Join(dir, "rules.yaml"), "--out", filepath.Join(dir, "out.jsonl"),
		"--concurrency", "20", "--rate", "-1", "--log-level", "warn", "--allow-loopback",
	}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	v, err := app.VerifyFile(filepath.Join(dir, "out.jsonl"), n)
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK() || v.Correct != n || v.Records != n {
		t.Fatalf("records %d correct %d missing %d wrong %v", v.Records, v.Correct, v.Missing, v.Wrong[:min(5, len(v.Wrong))])
	}
	ips := site.Stats().ByIP
	for i := 0; i < farm.Len(); i++ {
		if ips[farm.Proxy(i).SourceIP()] == 0 {
			t.Errorf("the site never saw proxy %d's address %s: %v", i, farm.Proxy(i).SourceIP(), ips)
		}
	}
	if len(ips) != 10 {
		t.Errorf("site saw %d addresses, want exactly the 10 proxies': %v", len(ips), ips)
	}
	if !strings.Contains(stderr.String(), "2000 written, 2000 ok, 0 errors") {
		t.Errorf("summary: %s", stderr.String())
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"nope"}, {"run", "--concurrency", "0"}, {"run", "--rules", "/does/not/exist"}, {"run", "extra"}} {
		var o, e bytes.Buffer
		if code := realMain(args, &o, &e); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, exitUsage, e.String())
		}
	}
}

// TestCanaryPasswordNeverLeaks runs `pipeline run` at debug level through
// proxies that all carry a canary password: farm proxies that accept it,
// a farm proxy that refuses it (407), a proxy that is down (HTTP and
// SOCKS5), and — when the CI proxy servers run — microsocks and tinyproxy
// refusing it. One site is served by the good proxies, another (a
// partition) only by the failing ones, so requests fail, are retried,
// logged and end as error results carrying the proxies' error messages.
// The canary must appear in no log line, result, page, summary or error.
func TestCanaryPasswordNeverLeaks(t *testing.T) {
	const canary = "canary-pw-91d3e7"
	const pages, bad = 40, 12
	site, err := testbed.StartSite(testbed.SiteConfig{Products: pages})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	other, err := testbed.StartSite(testbed.SiteConfig{Addr: "127.0.1.5:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	good, err := testbed.StartFarm(testbed.FarmConfig{N: 2, FirstSourceIP: 150, User: "scraper", Pass: canary})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	refusing, err := testbed.StartFarm(testbed.FarmConfig{N: 1, FirstSourceIP: 152, User: "scraper", Pass: "another"})
	if err != nil {
		t.Fatal(err)
	}
	defer refusing.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close() // nothing listens there any more

	withCanary := func(raw string) string {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword("scraper", canary)
		return u.String()
	}
	lines := []string{
		good.Proxy(0).URL(), good.Proxy(1).URL(),
		withCanary(refusing.Proxy(0).URL()),
		"http://scraper:" + canary + "@" + down,
		"socks5://scraper:" + canary + "@" + down,
	}
	for _, env := range []string{"SLUICE_TEST_SOCKS5_AUTH", "SLUICE_TEST_TINYPROXY"} {
		if raw := os.Getenv(env); raw != "" {
			lines = append(lines, withCanary(raw))
		} else {
			t.Logf("%s not set: running without that real proxy server", env)
		}
	}
	var failing []string
	for i, l := range lines {
		if !strings.Contains(l, canary) {
			t.Fatalf("proxy line without the canary: %s", l)
		}
		if i >= 2 {
			failing = append(failing, fmt.Sprintf("p%d", i+1))
		}
	}

	dir := t.TempDir()
	proxies := filepath.Join(dir, "proxies.txt")
	urls := filepath.Join(dir, "urls.txt")
	out := filepath.Join(dir, "results.jsonl")
	pagesOut := filepath.Join(dir, "pages.jsonl")
	write(t, proxies, strings.Join(lines, "\n")+"\n")
	var u strings.Builder
	for id := 1; id <= pages; id++ {
		fmt.Fprintf(&u, "%s\n", site.ProductURL(id))
		if id <= bad {
			fmt.Fprintf(&u, "%s\n", other.ProductURL(id))
		}
	}
	write(t, urls, u.String())

	var stdout, stderr syncBuffer // written by the fetch workers' logger
	code := realMain([]string{"run", "--urls", urls, "--proxies", proxies, "--out", out, "--pages", pagesOut,
		"--log-level", "debug", "--concurrency", "4", "--rate", "-1", "--max-attempts", "3", "--allow-loopback",
		"--proxy-strategy", "round-robin", "--proxy-cooldown", "1ms", "--proxy-wait", "50ms",
		"--proxy-partition", "127.0.0.1=p1,p2", "--proxy-partition", "127.0.1.5=" + strings.Join(failing, ",")}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	results := read(t, out)
	var ok, failed int
	classes := map[string]int{}
	var messages []string
	for _, line := range bytes.Split(bytes.TrimSpace(results), []byte("\n")) {
		var r record.Result
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		switch {
		case r.Error == nil && strings.HasPrefix(r.URL, site.URL()):
			ok++
		case r.Error != nil && strings.HasPrefix(r.URL, other.URL()):
			failed++
			classes[r.Error.Class]++
			messages = append(messages, r.Error.Message)
		default:
			t.Errorf("unexpected result %s", line)
		}
	}
	if ok != pages || failed != bad || classes["proxy_auth"] == 0 || classes["proxy_connect"] == 0 {
		t.Fatalf("%d ok, %d failed by class %v", ok, failed, classes)
	}
	if !strings.Contains(strings.Join(messages, "\n"), "dial proxy") {
		t.Errorf("no proxy error message reached a result: %q", messages)
	}
	logs := stderr.String()
	for _, want := range []string{`"class":"proxy_auth"`, `"class":"proxy_connect"`, "proxies not healthy at the end:"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
	for name, b := range map[string][]byte{
		"log": []byte(stderr.String()), "stdout": []byte(stdout.String()), "results": results, "pages": read(t, pagesOut),
	} {
		if bytes.Contains(b, []byte(canary)) {
			t.Errorf("the canary password appears in the %s", name)
		}
	}
	t.Logf("error classes %v; summary:\n%s", classes, tail(logs, 4))
}

func TestProxyFlagsRejectBadConfig(t *testing.T) {
	dir := t.TempDir()
	proxies := filepath.Join(dir, "proxies.txt")
	write(t, proxies, "http://127.0.0.1:1\nhttp://127.0.0.1:2\n")
	for _, args := range [][]string{
		{"--proxy-model", "pooled"},
		{"--proxy-strategy", "fastest"},
		{"--proxy-domain-strategy", "shop.example"},
		{"--proxy-domain-strategy", "shop.example=fastest"},
		{"--proxy-partition", "shop.example"},
		{"--proxy-partition", "shop.example=p7"},
		{"--proxy-partition", "a=p1", "--proxy-partition", "b=p1"},
		{"--proxy-partition-even", "a,b,c"},
		{"--proxy-cooldown", "0s"},
		{"--proxy-sticky-ttl", "-1s"},
	} {
		var stdout, stderr bytes.Buffer
		full := append([]string{"run", "--urls", proxies, "--proxies", proxies, "--out", filepath.Join(dir, "o")}, args...)
		if code := realMain(full, &stdout, &stderr); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, exitUsage, stderr.String())
		}
	}
}

func TestPlanPrintsTheSampleConfig(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := realMain([]string{"plan", "--config", "../../app/testdata/plan.yaml"}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	golden, err := os.ReadFile("../../app/testdata/plan.golden")
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != string(golden) {
		t.Errorf("plan output changed:\n%s\nwant (app/testdata/plan.golden):\n%s", out.String(), golden)
	}
	readme, err := os.ReadFile("../../docs/governor.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), string(golden)) {
		t.Error("docs/governor.md does not show the plan output of testdata/plan.yaml (app/testdata/plan.golden)")
	}
	// The pool size can come from the command line.
	out.Reset()
	if code := realMain([]string{"plan", "--config", "../../app/testdata/plan.yaml", "--pool-size", "20", "--concurrency", "50"}, &out, &errOut); code != exitOK {
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
	v, err := app.VerifyFile(filepath.Join(dir, "results.jsonl"), 40)
	if err != nil || !v.OK() || v.Correct != 40 {
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
	code := realMain([]string{"bench", "-n", "60", "-farm-proxies", "4", "-per-ip", "9", "-window", "3s",
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
