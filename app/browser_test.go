package app

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/andybalholm/cascadia"
	"golang.org/x/net/html"

	"github.com/sluicehq/sluice/testbed"
	"github.com/sluicehq/sluice/waterfall"
)

// chromium returns the headless browser to drive: $SLUICE_CHROMIUM (set by
// .ci/setup-chromium.sh), else a chromium on the PATH. The test is skipped,
// saying so, when there is none.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SLUICE_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("SLUICE_CHROMIUM=%s: %v", p, err)
		}
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium: set SLUICE_CHROMIUM or run .ci/setup-chromium.sh (apt-get install chromium) to run the browser test")
	return ""
}

// runChromium runs headless Chromium with a fresh profile and the extra
// arguments, and returns its standard output. Every process it started is
// killed when it returns.
func runChromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
		"--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // helpers left behind, if any
	}
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, lastLines(stderr.String(), 20))
	}
	return stdout.Bytes()
}

// dom is a parsed page queried with CSS selectors.
type dom struct{ root *html.Node }

func parseDOM(t *testing.T, r io.Reader) dom {
	t.Helper()
	n, err := html.Parse(r)
	if err != nil {
		t.Fatal(err)
	}
	return dom{n}
}

func (d dom) all(sel string) []*html.Node { return cascadia.MustCompile(sel).MatchAll(d.root) }

func attr(n *html.Node, name string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val, true
		}
	}
	return "", false
}

func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// TestWaterfallInBrowser renders the waterfall of a real run against the
// test world (a slow proxy, a failing one) and opens it in headless
// Chromium: once the page's script has run, the DOM holds one bar per
// span, each with a visible width, the failed ones marked, and one summary
// row per proxy.
func TestWaterfallInBrowser(t *testing.T) {
	bin := chromium(t)
	const pages = 150
	w := startWorld(t, testbed.SiteConfig{Products: pages}, 4)
	w.farm.Proxy(0).SetLatency(50 * time.Millisecond)
	w.farm.Proxy(3).SetFailure(testbed.Fail502)
	cfg := w.job(t, pages, 8, nil)
	cfg.Fetch.BackoffBase = 5 * time.Millisecond
	dir := t.TempDir()
	cfg.Observe.Trace = filepath.Join(dir, "trace.jsonl")
	if _, err := runJob(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	spans, _, err := waterfall.ReadFile(cfg.Observe.Trace, 0)
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, sp := range spans {
		if sp.Error != "" {
			failed++
		}
	}
	if len(spans) <= pages || failed == 0 {
		t.Fatalf("%d spans, %d failed: the run should have retried the failing proxy's attempts", len(spans), failed)
	}
	page := filepath.Join(dir, "waterfall.html")
	n, err := renderWaterfall(cfg.Observe.Trace, page, "browser test", 20000, os.Stderr)
	if err != nil || n != len(spans) {
		t.Fatalf("rendered %d of %d spans: %v", n, len(spans), err)
	}

	for _, layout := range []string{"lanes", "rows"} {
		t.Run(layout, func(t *testing.T) {
			out := runChromium(t, bin, "--virtual-time-budget=10000", "--dump-dom", "file://"+page+"#layout="+layout)
			doc := parseDOM(t, bytes.NewReader(out))
			body := doc.all("body")[0]
			if e, ok := attr(body, "data-error"); ok {
				t.Fatalf("the page's script failed: %s", e)
			}
			if r, _ := attr(body, "data-ready"); r != "1" {
				t.Fatalf("the page's script did not finish (data-ready=%q); DOM starts %.300s", r, out)
			}
			bars := doc.all("svg#chart g.bar")
			if len(bars) != len(spans) {
				t.Fatalf("%d bars drawn for %d spans", len(bars), len(spans))
			}
			seen := map[string]bool{}
			narrow := 0
			for _, g := range bars {
				i, _ := attr(g, "data-i")
				seen[i] = true
				base := cascadia.MustCompile("rect.base").MatchFirst(g)
				if base == nil {
					narrow++
					continue
				}
				wAttr, _ := attr(base, "width")
				if wv, err := strconv.ParseFloat(wAttr, 64); err != nil || wv < 1 {
					narrow++
				}
			}
			if len(seen) != len(spans) || narrow > 0 {
				t.Errorf("%d distinct bars, %d without a visible width", len(seen), narrow)
			}
			if errBars := len(doc.all("svg#chart g.bar.err")); errBars != failed {
				t.Errorf("%d bars marked failed, want %d", errBars, failed)
			}
			if ph := len(doc.all("svg#chart rect.ph-ttfb")); ph < pages {
				t.Errorf("%d first-byte phases drawn for %d pages", ph, pages)
			}
			if rows := len(doc.all("#proxy-summary tr.proxy-row")); rows != 4 {
				t.Errorf("%d proxy rows in the summary, want 4", rows)
			}
			if labels := len(doc.all("svg#chart text.group-label")); labels != 4 {
				t.Errorf("%d proxy groups, want 4", labels)
			}
			if ticks := len(doc.all("svg#chart text.tick-label")); ticks < 2 {
				t.Errorf("%d axis labels", ticks)
			}
		})
	}
	// p4 answered 502 to everything: its summary row says so.
	doc := parseDOM(t, mustOpen(t, page))
	p4 := doc.all(`#proxy-summary tr[data-proxy="p4"]`)
	errs := doc.all(`#proxy-summary tr[data-proxy="p4"] td.errors`)
	if len(p4) != 1 || len(errs) != 1 || !strings.Contains(text(p4[0]), "0.0%") || !strings.Contains(text(errs[0]), "proxy_protocol") {
		t.Errorf("p4 row missing or wrong (%d rows)", len(p4))
	}
}

func mustOpen(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
