package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/testbed"
)

// TestExitCodes checks docs/cli.md's exit-code table, row by row, for
// every subcommand: 0 done; 1 the run failed; 2 a usage error, reported
// as one line and a pointer to -h, never a dump of the flags.
func TestExitCodes(t *testing.T) {
	site, err := testbed.StartSite(testbed.SiteConfig{Products: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	ready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	}))
	defer ready.Close()
	dir := t.TempDir()
	urls := writeFile(t, dir, "urls.txt", site.ProductURL(1)+"\n"+site.ProductURL(2)+"\n")
	badConfig := writeFile(t, dir, "bad.yaml", "fetch:\n  concurency: 3\n")
	wrongRules := writeFile(t, dir, "wrong.yaml", "- domain: \"*\"\n  fields:\n    name: .price\n")
	pages := filepath.Join(dir, "pages.jsonl")
	trace := filepath.Join(dir, "trace.jsonl")
	missing := filepath.Join(dir, "missing")
	out := func(name string) string { return filepath.Join(dir, name) }
	run := []string{"run", "--urls", urls, "--out", out("run.jsonl"), "--progress", "off", "--log-level", "error", "--stagger-max", "0", "--direct"}
	demo := []string{"demo", "-n", "5", "-farm-proxies", "1", "--out", out("demo.jsonl"), "--trace", out("demo-trace.jsonl"),
		"-waterfall", out("w.html"), "--progress", "off", "--metrics-addr", ""}
	bench := []string{"bench", "-n", "5", "-farm-proxies", "1", "-per-ip", "100", "-window", "1s", "--progress", "off"}
	replay := []string{"replay", "--pages-file", pages, "--out", out("replay.jsonl"), "--log-level", "error"}
	plan := []string{"plan", "--config", "../../app/testdata/plan.yaml"}
	waterfall := []string{"waterfall", "--in", trace, "--out", out("trace.html")}
	// soak's broker comes from the flag or the environment: here, from the flag only.
	t.Setenv("SLUICE_KAFKA_BROKERS", "")
	soak := []string{"soak", "--duration", "1m", "--member-bin", "/bin/false"}
	with := func(base []string, more ...string) []string { return append(append([]string(nil), base...), more...) }
	rows := []struct {
		name string
		args []string
		code int
	}{
		// run first: it writes the pages and the trace the others read.
		{"run ok", with(run, "--allow-loopback", "--pages", pages, "--trace", trace), exitOK},
		{"run failed: every input refused", run, exitFailure},
		{"run without --proxies or --direct", run[:len(run)-1], exitUsage},
		{"run unknown flag", with(run, "--bogus"), exitUsage},
		{"run bad value", with(run, "--concurrency", "abc"), exitUsage},
		{"run zero refused", with(run, "--rate", "0"), exitUsage},
		{"run missing urls", with(run, "--urls", missing), exitUsage},
		{"run missing rules", with(run, "--rules", missing), exitUsage},
		{"run missing proxies", with(run, "--proxies", missing), exitUsage},
		{"run missing config", with(run, "--config", missing), exitUsage},
		{"run bad config", with(run, "--config", badConfig), exitUsage},

		{"replay ok", replay, exitOK},
		{"replay failed: no broker", []string{"replay", "--kafka-brokers", "127.0.0.1:1", "--kafka-pages-topic", "p", "--out", out("r2.jsonl"), "--log-level", "error"}, exitFailure},
		{"replay unknown flag", with(replay, "--urls", urls), exitUsage},
		{"replay bad value", with(replay, "--from-offset", "abc"), exitUsage},
		{"replay missing pages file", with(replay, "--pages-file", missing), exitUsage},
		{"replay missing warc", []string{"replay", "--warc", missing, "--out", out("r3.jsonl"), "--log-level", "error"}, exitUsage},
		{"replay missing rules", with(replay, "--rules", missing), exitUsage},
		{"replay missing config", with(replay, "--config", missing), exitUsage},
		{"replay bad config", with(replay, "--config", badConfig), exitUsage},

		{"demo ok", demo, exitOK},
		{"demo failed: wrong records", with(demo, "--rules", wrongRules), exitFailure},
		{"demo unknown flag", with(demo, "--proxies", "3"), exitUsage},
		{"demo bad value", with(demo, "-farm-proxies", "many"), exitUsage},
		{"demo missing rules", with(demo, "--rules", missing), exitUsage},
		{"demo missing config", with(demo, "--config", missing), exitUsage},
		{"demo bad config", with(demo, "--config", badConfig), exitUsage},

		{"bench ok", with(bench, "-min-share", "0"), exitOK},
		{"bench failed: rate mark missed", with(bench, "-min-share", "1000"), exitFailure},
		{"bench unknown flag", with(bench, "--urls", urls), exitUsage},
		{"bench bad value", with(bench, "-per-ip", "x"), exitUsage},
		{"bench missing rules", with(bench, "--rules", missing), exitUsage},
		{"bench missing config", with(bench, "--config", missing), exitUsage},
		{"bench bad config", with(bench, "--config", badConfig), exitUsage},

		{"plan ok", plan, exitOK},
		{"plan unknown flag", with(plan, "--bogus"), exitUsage},
		{"plan bad value", with(plan, "--pool-size", "x"), exitUsage},
		{"plan missing proxies", with(plan, "--proxies", missing), exitUsage},
		{"plan missing config", []string{"plan", "--config", missing}, exitUsage},
		{"plan bad config", []string{"plan", "--config", badConfig}, exitUsage},

		{"waterfall ok", waterfall, exitOK},
		{"waterfall failed: cannot write", with(waterfall, "--out", filepath.Join(missing, "w.html")), exitFailure},
		{"waterfall unknown flag", with(waterfall, "--bogus"), exitUsage},
		{"waterfall bad value", with(waterfall, "--max-spans", "x"), exitUsage},
		{"waterfall missing trace", []string{"waterfall", "--in", missing}, exitUsage},

		{"probe ok", []string{"probe", "--url", ready.URL + "/readyz"}, exitOK},
		{"probe failed: not ready", []string{"probe", "--url", ready.URL + "/other"}, exitFailure},
		{"probe unknown flag", []string{"probe", "--bogus"}, exitUsage},
		{"probe bad value", []string{"probe", "--timeout", "soon"}, exitUsage},

		{"soak without a broker", soak, exitUsage},
		{"soak failed: no broker listening", with(soak, "--kafka-brokers", "127.0.0.1:1"), exitFailure},
		{"soak unknown flag", with(soak, "--urls", urls), exitUsage},
		{"soak bad value", with(soak, "--members", "x"), exitUsage},
		{"soak members out of range", with(soak, "--kafka-brokers", "127.0.0.1:1", "--members", "1"), exitUsage},

		{"version ok", []string{"version"}, exitOK},
		{"version unknown flag", []string{"version", "--bogus"}, exitUsage},
		{"version extra argument", []string{"version", "x"}, exitUsage},
	}
	for _, r := range rows {
		var stdout, stderr bytes.Buffer
		code := realMain(r.args, &stdout, &stderr)
		if code != r.code {
			t.Errorf("%s: exit %d, want %d\nstderr: %s", r.name, code, r.code, tail(stderr.String(), 5))
			continue
		}
		if code != exitUsage {
			continue
		}
		cmd := r.args[0]
		lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "pipeline "+cmd+": ") || lines[1] != "run 'pipeline "+cmd+" -h' for help" {
			t.Errorf("%s: want one line and the pointer to -h, got:\n%s", r.name, stderr.String())
		}
	}
	// The refusal is loud: how many, and the flag that would allow them.
	var stdout, stderr bytes.Buffer
	if code := realMain(run, &stdout, &stderr); code != exitFailure ||
		!strings.Contains(stderr.String(), "refused by the URL policy: 2 of 2 inputs; 2 would need --allow-loopback") ||
		!strings.Contains(stderr.String(), "every input (2) was refused by the URL policy") {
		t.Errorf("refused run: exit %d, stderr:\n%s", code, stderr.String())
	}
}

// TestHelp: -h prints the command's flags on stdout and exits 0; the
// deprecated flag names are left out of it.
func TestHelp(t *testing.T) {
	for name := range commands {
		var stdout, stderr bytes.Buffer
		if code := realMain([]string{name, "-h"}, &stdout, &stderr); code != exitOK || stderr.Len() > 0 {
			t.Errorf("%s -h: exit %d, stderr %q", name, code, stderr.String())
		}
		if !strings.HasPrefix(stdout.String(), "usage: pipeline "+name) || strings.Contains(stdout.String(), "deprecated") {
			t.Errorf("%s -h:\n%s", name, stdout.String())
		}
	}
	var stdout bytes.Buffer
	realMain([]string{"run", "-h"}, &stdout, &bytes.Buffer{})
	for _, want := range []string{"--max-redirects int", "--kafka-tls-ca-file string", "--stagger-max duration", "--captcha-markers string (repeatable)"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("run -h lacks %q", want)
		}
	}
}
