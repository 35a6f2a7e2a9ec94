package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/testbed"
)

// docCommands returns the `pipeline ...` lines of the sh blocks of a
// markdown file, indented blocks included.
func docCommands(t *testing.T, path string) [][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	re := regexp.MustCompile("(?ms)^[ \\t]*```sh\\n(.*?)^[ \\t]*```")
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		for _, l := range strings.Split(m[1], "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "pipeline" {
				out = append(out, f[1:])
			}
		}
	}
	return out
}

// TestDocsProxyCommands runs every command of docs/proxies.md against the
// local site, in a directory holding urls.txt and a proxies.txt of farm
// proxies. Each must succeed and write one good result per URL.
func TestDocsProxyCommands(t *testing.T) {
	const pages = 6
	w := startWorld(t, testbed.SiteConfig{Products: pages}, 3)
	dir := t.TempDir()
	write(t, filepath.Join(dir, "urls.txt"), w.urls(pages))
	write(t, filepath.Join(dir, "proxies.txt"), "# the farm\n"+strings.Join(w.farm.URLs(), "   # a farm proxy\n")+"\n")
	cmds := docCommands(t, "../../docs/proxies.md")
	t.Chdir(dir)
	if len(cmds) < 3 {
		t.Fatalf("%d commands in docs/proxies.md", len(cmds))
	}
	for _, args := range cmds {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			_ = os.Remove("results.jsonl")
			var stdout, stderr syncBuffer
			full := append(append([]string(nil), args...), "--allow-loopback", "--rate", "-1", "--log-level", "warn")
			if code := realMain(full, &stdout, &stderr); code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			lines := readLines(t, "results.jsonl")
			if len(lines) != pages {
				t.Fatalf("%d results for %d URLs", len(lines), pages)
			}
			for _, l := range lines {
				if !strings.Contains(l, `"error":null`) {
					t.Errorf("result with an error: %s", l)
				}
			}
		})
	}
}

func TestEmptyProxiesFileIsAUsageError(t *testing.T) {
	w := startWorld(t, testbed.SiteConfig{Products: 2}, 0)
	dir := t.TempDir()
	urls, proxies := filepath.Join(dir, "urls.txt"), filepath.Join(dir, "proxies.txt")
	write(t, urls, w.urls(2))
	for name, content := range map[string]string{"empty": "", "only comments": "# none yet\n\n  # still none\n"} {
		t.Run(name, func(t *testing.T) {
			write(t, proxies, content)
			var stdout, stderr syncBuffer
			code := realMain([]string{"run", "--urls", urls, "--proxies", proxies, "--out", filepath.Join(dir, "o"), "--allow-loopback"}, &stdout, &stderr)
			if code != exitUsage || !strings.Contains(stderr.String(), "no proxies") {
				t.Errorf("exit %d, stderr %s", code, stderr.String())
			}
		})
	}
	var stdout, stderr syncBuffer
	write(t, proxies, "http://127.0.0.1:1\n")
	if code := realMain([]string{"run", "--urls", urls, "--proxies", proxies, "--direct", "--allow-loopback"}, &stdout, &stderr); code != exitUsage {
		t.Errorf("--direct with --proxies: exit %d", code)
	}
}

// TestNoWorkingProxyExitsNonZero: both proxies refuse connections; the
// run ends after the no-proxy timeout, every input as a result, and
// exits 1 naming the proxies.
func TestNoWorkingProxyExitsNonZero(t *testing.T) {
	const pages = 20
	w := startWorld(t, testbed.SiteConfig{Products: pages}, 2)
	dir := t.TempDir()
	var lines []string
	for i := range 2 {
		f, err := testbed.StartFaulty(testbed.FaultyConfig{Backend: w.farm.Proxy(i).Addr()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		if err := f.Set(testbed.FaultRefuse); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, f.Addr()) // host:port, the default scheme
	}
	urls, proxies, out := filepath.Join(dir, "urls.txt"), filepath.Join(dir, "proxies.txt"), filepath.Join(dir, "results.jsonl")
	write(t, urls, w.urls(pages))
	write(t, proxies, strings.Join(lines, "\n")+"\n")
	var stdout, stderr syncBuffer
	code := realMain([]string{"run", "--urls", urls, "--proxies", proxies, "--out", out, "--allow-loopback", "--rate", "-1",
		"--no-proxy-timeout", "300ms", "--log-level", "warn"}, &stdout, &stderr)
	if code != exitFailure {
		t.Fatalf("exit %d, want %d: %s", code, exitFailure, stderr.String())
	}
	for _, want := range []string{"no_proxy", "p1 http://" + lines[0], "p2 http://" + lines[1]} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q: %s", want, stderr.String())
		}
	}
	if got := readLines(t, out); len(got) != pages {
		t.Errorf("%d results for %d URLs", len(got), pages)
	}
	if strings.Contains(stderr.String(), "unfinished") {
		t.Errorf("inputs left unfinished: %s", stderr.String())
	}
}

// TestWrongCredentialsExitNonZero: microsocks and tinyproxy with wrong
// passwords; the run stops early and exits 1 naming both (redacted).
func TestWrongCredentialsExitNonZero(t *testing.T) {
	var lines []string
	for _, env := range []string{"SLUICE_TEST_SOCKS5_AUTH", "SLUICE_TEST_TINYPROXY"} {
		raw := os.Getenv(env)
		if raw == "" {
			t.Skipf("%s is not set: run `source .ci/setup-proxies.sh`", env)
		}
		lines = append(lines, regexp.MustCompile(`:[^:@/]*@`).ReplaceAllString(raw, ":wrong-password@"))
	}
	w := startWorld(t, testbed.SiteConfig{Products: 4}, 0)
	dir := t.TempDir()
	urls, proxies, out := filepath.Join(dir, "urls.txt"), filepath.Join(dir, "proxies.txt"), filepath.Join(dir, "results.jsonl")
	write(t, urls, w.urls(4))
	write(t, proxies, strings.Join(lines, "\n")+"\n")
	var stdout, stderr syncBuffer
	code := realMain([]string{"run", "--urls", urls, "--proxies", proxies, "--out", out, "--allow-loopback", "--log-level", "warn"}, &stdout, &stderr)
	if code != exitFailure || !strings.Contains(stderr.String(), "every proxy refused our credentials") {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if strings.Contains(stderr.String(), "wrong-password") {
		t.Error("the password shows in the message")
	}
	got := readLines(t, out)
	if len(got) != 4 {
		t.Fatalf("%d results for 4 URLs", len(got))
	}
	for _, l := range got {
		if !strings.Contains(l, `"class":"proxy_auth"`) {
			t.Errorf("result %s", l)
		}
	}
	t.Log(tail(stderr.String(), 3))
}
