// Helpers for the tests of metrics, watchdog, waterfall and demo (TestMain
// with its leak check is in pipeline_test.go).
package app

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/stages/parse"
	"github.com/sluicehq/sluice/testbed"
)

// world is a catalog site and a proxy farm for one test.
type world struct {
	site    *testbed.Site
	farm    *testbed.Farm
	proxies []*proxy.Proxy
}

func startWorld(t *testing.T, site testbed.SiteConfig, nproxies int) *world {
	t.Helper()
	w := &world{}
	var err error
	if w.site, err = testbed.StartSite(site); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.site.Close() })
	if nproxies == 0 {
		return w
	}
	if w.farm, err = testbed.StartFarm(testbed.FarmConfig{N: nproxies}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.farm.Close() })
	for i, u := range w.farm.URLs() {
		p, err := proxy.Parse(fmt.Sprintf("p%d", i+1), u)
		if err != nil {
			t.Fatal(err)
		}
		w.proxies = append(w.proxies, p)
	}
	return w
}

// urls lists product pages 1..n of the site, one per line.
func (w *world) urls(n int) string {
	var b strings.Builder
	for id := 1; id <= n; id++ {
		b.WriteString(w.site.ProductURL(id))
		b.WriteByte('\n')
	}
	return b.String()
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// job returns a jobConfig for n pages of w, writing results to a file in
// a temporary directory, with no rate limit and progress off.
func (w *world) job(t *testing.T, n, concurrency int, log *syncBuffer) jobConfig {
	t.Helper()
	cfg := jobConfig{
		URLReader: strings.NewReader(w.urls(n)),
		Out:       filepath.Join(t.TempDir(), "results.jsonl"),
		Proxies:   w.proxies,
		Direct:    len(w.proxies) == 0,
		Rules:     parse.DefaultRules(),
		Drain:     10 * time.Second,
		Log:       zerolog.Nop(),
	}
	if log != nil {
		cfg.Log = zerolog.New(log).Level(zerolog.InfoLevel)
	}
	cfg.Fetch.Concurrency = concurrency
	cfg.Fetch.DomainRate = -1
	cfg.Fetch.Policy.AllowLoopback = true // the test world is on loopback
	cfg.Observe.Progress = "off"
	cfg.Observe.StallAfter = -1
	return cfg
}

// withMetrics gives cfg a fresh registry served on a free loopback port.
func withMetrics(t *testing.T, cfg *jobConfig) *ops {
	t.Helper()
	m, err := metrics.New(metrics.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Observe.Metrics = m
	cfg.Observe.MetricsAddr = "127.0.0.1:0"
	o, err := startOps(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.close)
	return o
}

// sample is one sample of a scraped family, by its labels.
func sample(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (*dto.Metric, bool) {
	f := fams[name]
	if f == nil {
		return nil, false
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if got[k] != v {
				continue next
			}
		}
		return m, true
	}
	return nil, false
}

func gaugeOf(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	m, ok := sample(fams, name, labels)
	if !ok {
		return 0, false
	}
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue(), true
	case m.Counter != nil:
		return m.GetCounter().GetValue(), true
	}
	return 0, false
}

func total(m map[string]float64) float64 {
	var n float64
	for _, v := range m {
		n += v
	}
	return n
}

// waitUntil polls cond until it holds, failing after a generous bound. It
// waits for another goroutine's progress; it measures nothing.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readLines returns the non-blank lines of a file.
func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// runInBackground runs the job and returns a channel with its result.
func runInBackground(ctx context.Context, cfg jobConfig) <-chan jobResult {
	ch := make(chan jobResult, 1)
	go func() {
		sum, err := runJob(ctx, cfg)
		ch <- jobResult{sum, err}
	}()
	return ch
}

type jobResult struct {
	sum summary
	err error
}
