package app

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sluicehq/sluice/crawl"
	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/stages/parse"
	"github.com/sluicehq/sluice/testbed"
)

// crawlWorld is a crawl site and a proxy farm.
type crawlWorld struct {
	site *testbed.CrawlSite
	w    *world // the farm's proxies
}

func startCrawlWorld(t *testing.T, pages, proxies int) *crawlWorld {
	t.Helper()
	site, err := testbed.StartCrawlSite(testbed.CrawlSiteConfig{Pages: pages})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = site.Close() })
	return &crawlWorld{site: site, w: startWorld(t, testbed.SiteConfig{Products: 1}, proxies)}
}

// job is a crawl of the site from its home page, through the farm.
func (cw *crawlWorld) job(t *testing.T, stateDir string, queue int) jobConfig {
	t.Helper()
	cfg := jobConfig{
		URLReader: strings.NewReader(cw.site.URL() + "\n"),
		Out:       filepath.Join(t.TempDir(), "results.jsonl"),
		Proxies:   cw.w.proxies,
		Direct:    len(cw.w.proxies) == 0,
		Rules:     parse.DefaultRules(),
		Drain:     10 * time.Second,
		Log:       zerolog.Nop(),
		Crawl:     crawl.Defaults(),
	}
	cfg.Crawl.Follow = true
	cfg.Crawl.MaxDepth = 10
	cfg.Crawl.Expected = 100_000
	cfg.Crawl.StateDir = stateDir
	cfg.Crawl.Queue = queue
	cfg.Fetch.Concurrency = 8
	cfg.Fetch.DomainRate = -1
	// These tests count the site's requests per page exactly; a hedge (a
	// late lease's second request, by design) would add one under load.
	cfg.Fetch.NoHedge = true
	cfg.Fetch.Policy.AllowLoopback = true
	cfg.Observe.Progress = "off"
	cfg.Observe.StallAfter = -1
	return cfg
}

func readResults(t *testing.T, path string) []record.Result {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []record.Result
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var r record.Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkEveryPageOnce: every page of the site was requested exactly once,
// nothing under /private/ (robots.txt) and nothing on the other host.
func checkEveryPageOnce(t *testing.T, site *testbed.CrawlSite) {
	t.Helper()
	hits := site.Hits()
	for i := 0; i < site.Pages(); i++ {
		p := "/"
		if i > 0 {
			p = fmt.Sprintf("/p/%d", i)
		}
		if hits[p] != 1 {
			t.Errorf("%s requested %d times, want 1", p, hits[p])
		}
	}
	for p, n := range hits {
		if strings.HasPrefix(p, "/private/") {
			t.Errorf("%s (disallowed by robots.txt) requested %d times", p, n)
		}
	}
	if other := site.OtherHits(); len(other) > 0 {
		t.Errorf("out-of-scope host requested: %v", other)
	}
}

// TestCrawlReachesEveryPageOnce: a crawl of a 2,000-page site from its
// home page, through proxies, fetches every page once, nothing out of
// scope and nothing robots.txt disallows; the disallowed URLs end as
// results of class robots; results carry depth and parent.
func TestCrawlReachesEveryPageOnce(t *testing.T) {
	cw := startCrawlWorld(t, 2000, 3)
	cfg := cw.job(t, t.TempDir(), 100_000)
	sum, err := runJob(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkEveryPageOnce(t, cw.site)
	res := readResults(t, cfg.Out)
	ok, robots := map[string]record.Result{}, 0
	for _, r := range res {
		switch {
		case r.Error == nil:
			if _, dup := ok[r.URL]; dup {
				t.Errorf("%s written twice", r.URL)
			}
			ok[r.URL] = r
		case r.Error.Class == string(failure.Robots):
			robots++
		default:
			t.Errorf("%s: %+v", r.URL, r.Error)
		}
	}
	if len(ok) != 2000 || robots != 200 {
		t.Fatalf("%d ok results, %d robots refusals; want 2000, 200 (summary %+v)", len(ok), robots, sum.Crawl)
	}
	if r := ok[cw.site.PageURL(1234)]; r.Depth != 4 || r.Parent != cw.site.PageURL(123) {
		t.Errorf("page 1234: depth %d parent %q, want 4 and %s", r.Depth, r.Parent, cw.site.PageURL(123))
	}
	if sum.Crawl == nil || sum.Crawl.Spilled != 0 {
		t.Errorf("crawl stats %+v: nothing should spill", sum.Crawl)
	}
	if _, err := os.Stat(filepath.Join(cfg.Crawl.StateDir, crawl.StateFile)); err != nil {
		t.Errorf("no state saved: %v", err)
	}
}

// TestCrawlSpills: with a frontier of 5 URLs in memory, links spill to
// disk and the crawl still fetches every page once, and ends.
func TestCrawlSpills(t *testing.T) {
	cw := startCrawlWorld(t, 2000, 2)
	cfg := cw.job(t, "", 5)
	sum, err := runJob(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkEveryPageOnce(t, cw.site)
	if sum.Crawl == nil || sum.Crawl.Spilled < 1000 {
		t.Fatalf("crawl stats %+v: want most links spilled", sum.Crawl)
	}
}

// TestCrawlRestartDoesNotRefetch: a crawl stopped midway (SIGTERM's
// drain) and run again with the same state dir fetches every page once
// over both runs.
func TestCrawlRestartDoesNotRefetch(t *testing.T) {
	cw := startCrawlWorld(t, 2000, 2)
	state := t.TempDir()
	cfg := cw.job(t, state, 100)
	p, err := build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	soft, stop := context.WithCancel(context.Background())
	go func() {
		for {
			p.mu.Lock()
			n := p.sum.Written
			p.mu.Unlock()
			if n >= 300 {
				stop()
				return
			}
			select {
			case <-soft.Done():
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	sum1, err := p.run(context.Background(), soft)
	stop()
	if err != nil {
		t.Fatal(err)
	}
	first := 0
	for p, n := range cw.site.Hits() {
		if p != "/robots.txt" {
			first += n
		}
	}
	if first >= 2000 || sum1.Written < 300 {
		t.Fatalf("the first run was not stopped midway: %d pages fetched, %d written", first, sum1.Written)
	}
	cfg2 := cw.job(t, state, 100)
	if _, err := runJob(context.Background(), cfg2); err != nil {
		t.Fatal(err)
	}
	checkEveryPageOnce(t, cw.site)
	t.Logf("first run fetched %d pages; both together every page once", first)
}

// TestCrawlFromSitemap: a crawl from the site's sitemap index (a plain
// and a gzip'd sitemap) fetches every URL listed once, the orphans too,
// and not the other host's URL the sitemap lists.
func TestCrawlFromSitemap(t *testing.T) {
	cw := startCrawlWorld(t, 500, 2)
	cfg := cw.job(t, "", 100_000)
	cfg.URLReader = nil
	cfg.Crawl.Sitemaps = []string{cw.site.URL() + "sitemap.xml"}
	cfg.Crawl.MaxDepth = 0
	sum, err := runJob(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	hits := cw.site.Hits()
	for i := 1; i < 500; i++ {
		if n := hits[fmt.Sprintf("/p/%d", i)]; n != 1 {
			t.Errorf("/p/%d requested %d times", i, n)
		}
	}
	for i := range testbed.Orphans {
		if n := hits[fmt.Sprintf("/orphan/%d", i)]; n != 1 {
			t.Errorf("/orphan/%d requested %d times", i, n)
		}
	}
	for _, p := range []string{"/sitemap.xml", "/sitemap-1.xml", "/sitemap-2.xml.gz"} {
		if hits[p] != 1 {
			t.Errorf("%s requested %d times", p, hits[p])
		}
	}
	if hits["/"] != 0 || len(cw.site.OtherHits()) != 0 {
		t.Errorf("home %d, other host %v: not listed (or not allowed) in the sitemap", hits["/"], cw.site.OtherHits())
	}
	if sum.OK != 499+testbed.Orphans {
		t.Errorf("%d ok, want %d", sum.OK, 499+testbed.Orphans)
	}
}

// TestCrawlDelayCapsRate: robots.txt's Crawl-delay caps the host's rate
// in the governor (the summary's governor line shows it).
func TestCrawlDelayCapsRate(t *testing.T) {
	site, err := testbed.StartCrawlSite(testbed.CrawlSiteConfig{Pages: 60, CrawlDelay: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = site.Close() })
	cw := &crawlWorld{site: site, w: startWorld(t, testbed.SiteConfig{Products: 1}, 0)}
	cfg := cw.job(t, "", 1000)
	sum, err := runJob(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkEveryPageOnce(t, site)
	for _, d := range sum.Governor.Domains {
		if d.Domain == "127.0.0.1" {
			if d.Limits.MaxRate != 100 || d.Limits.RateFrom != "crawl-delay" {
				t.Errorf("limits %+v, want rate 100/s from crawl-delay", d.Limits)
			}
			return
		}
	}
	t.Fatalf("no governor stats for the site: %+v", sum.Governor.Domains)
}
