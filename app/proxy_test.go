package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

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
		"--partition", "127.0.0.1=p1,p2", "--partition", "127.0.1.5=" + strings.Join(failing, ",")}, &stdout, &stderr)
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

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

func TestProxyFlagsRejectBadConfig(t *testing.T) {
	dir := t.TempDir()
	proxies := filepath.Join(dir, "proxies.txt")
	write(t, proxies, "http://127.0.0.1:1\nhttp://127.0.0.1:2\n")
	for _, args := range [][]string{
		{"--proxy-model", "pooled"},
		{"--proxy-strategy", "fastest"},
		{"--domain-strategy", "shop.example"},
		{"--domain-strategy", "shop.example=fastest"},
		{"--partition", "shop.example"},
		{"--partition", "shop.example=p7"},
		{"--partition", "a=p1", "--partition", "b=p1"},
		{"--partition-even", "a,b,c"},
		{"--proxy-cooldown", "0s"},
		{"--sticky-ttl", "-1s"},
	} {
		var stdout, stderr bytes.Buffer
		full := append([]string{"run", "--urls", proxies, "--proxies", proxies, "--out", filepath.Join(dir, "o")}, args...)
		if code := realMain(full, &stdout, &stderr); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, exitUsage, stderr.String())
		}
	}
}

// TestPoolStatesReportQuarantine: the metrics and the watchdog see the
// pool's quarantine.
func TestPoolStatesReportQuarantine(t *testing.T) {
	ps := []*proxy.Proxy{}
	for i := range 2 {
		p, err := proxy.Parse(fmt.Sprintf("p%d", i+1), fmt.Sprintf("http://127.0.0.1:%d", 40000+i))
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	pool, err := proxy.New(ps)
	if err != nil {
		t.Fatal(err)
	}
	l, err := pool.Acquire(t.Context(), proxy.Request{Domain: "d", Avoid: []string{"p2"}})
	if err != nil {
		t.Fatal(err)
	}
	l.Release(proxy.Outcome{Class: failure.ProxyAuth, Status: 407})
	states := poolStates(pool)()
	if len(states) != 2 || states[0] != (metrics.ProxyState{ID: "p1", Quarantined: true}) || states[1] != (metrics.ProxyState{ID: "p2"}) {
		t.Errorf("states %+v", states)
	}
}
