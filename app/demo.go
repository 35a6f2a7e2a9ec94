package app

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

// DemoOptions are demo's own flags, besides the config tree.
type DemoOptions struct {
	Pages       int           // product pages to scrape
	FarmProxies int           // proxies in the local farm, 0..250
	PageBytes   int           // size of each product page
	Waterfall   string        // HTML waterfall to draw from the trace; "" none
	SlowProxies int           // farm proxies made slow
	SlowLatency time.Duration // latency of a slow proxy
}

// DemoDefaults are the config defaults of the demo: the local site has
// no limit of its own, so it is scraped briskly; the spans are recorded
// and the metrics served, so both can be looked at.
func DemoDefaults() Config {
	c := Defaults()
	c.Fetch.Rate = 500
	c.Observe.Trace = "trace.jsonl"
	c.Observe.MetricsAddr = "127.0.0.1:0"
	c.Out = "results.jsonl"
	c.LogLevel = "warn"
	return c
}

// Demo is `pipeline demo`: it scrapes a local catalog site through a
// local proxy farm and checks every record.
func Demo(ctx context.Context, c Config, o DemoOptions, stdout, stderr io.Writer) error {
	if o.Pages < 1 || o.FarmProxies < 0 || o.FarmProxies > 250 || o.SlowProxies < 0 || o.SlowProxies > o.FarmProxies {
		return usagef("-n must be at least 1, -farm-proxies within 0..250 and -slow-proxies within 0..-farm-proxies")
	}
	if o.Waterfall != "" && c.Observe.Trace == "" {
		return usagef("-waterfall needs a -trace file")
	}
	if c.Out == "-" || c.Out == "" {
		return usagef("demo needs an --out file, to check it")
	}
	// The demo's site and proxies are on loopback, which the URL policy
	// refuses by default.
	c.Policy.AllowLoopback = true
	cfg, err := newJob(c, stdout, stderr)
	if err != nil {
		return err
	}
	site, err := testbed.StartSite(testbed.SiteConfig{Products: o.Pages, PageBytes: o.PageBytes})
	if err != nil {
		return fmt.Errorf("start catalog site: %w", err)
	}
	defer site.Close()
	cfg.Observe.Total = int64(o.Pages)
	if o.FarmProxies > 0 {
		farm, err := testbed.StartFarm(testbed.FarmConfig{N: o.FarmProxies})
		if err != nil {
			return fmt.Errorf("start proxy farm: %w", err)
		}
		defer farm.Close()
		for i := range o.SlowProxies {
			farm.Proxy(i).SetLatency(o.SlowLatency)
		}
		if cfg.Proxies, err = farmProxies(farm); err != nil {
			return err
		}
	}
	cfg.URLReader = catalogURLs(site, o.Pages)
	if err := os.Remove(c.Out); err != nil && !os.IsNotExist(err) {
		return err
	}
	ops, err := startOps(&cfg)
	if err != nil {
		return err
	}
	defer ops.close()
	fmt.Fprintf(stdout, "demo: scraping %d pages of %s through %d local proxies into %s\n", o.Pages, site.URL(), o.FarmProxies, c.Out)
	if a := ops.addr(); a != "" {
		fmt.Fprintf(stdout, "metrics: http://%s/metrics (also /healthz, /readyz) while the demo runs\n", a)
	}
	sum, err := runJob(ctx, cfg)
	sum.print(stdout)
	if err != nil {
		return err
	}
	return o.check(stdout, stderr, cfg, ops.addr(), sum, site)
}

// check checks the demo's own metrics, draws its waterfall and checks
// every record of its results file.
func (o DemoOptions) check(stdout, stderr io.Writer, cfg jobConfig, addr string, sum summary, site *testbed.Site) error {
	if addr != "" {
		if err := checkMetrics(stdout, addr, sum, site.Stats().Requests); err != nil {
			return err
		}
	}
	if o.Waterfall != "" {
		title := fmt.Sprintf("sluice demo: %d pages through %d proxies", o.Pages, o.FarmProxies)
		n, err := renderWaterfall(cfg.Observe.Trace, o.Waterfall, title, 20000, stderr)
		if err != nil {
			return err
		}
		abs, _ := filepath.Abs(o.Waterfall)
		fmt.Fprintf(stdout, "waterfall: %d attempts from %s drawn in %s (open it in a browser)\n", n, cfg.Observe.Trace, abs)
	}
	ips := site.Stats().ByIP
	fmt.Fprintf(stdout, "site saw %d client addresses:", len(ips))
	for _, ip := range sortedKeys(ips) {
		fmt.Fprintf(stdout, " %s=%d", ip, ips[ip])
	}
	fmt.Fprintln(stdout)
	v, err := VerifyFile(cfg.Out, o.Pages)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "check: %d records, %d correct, %d wrong, %d missing, %d duplicated\n", v.Records, v.Correct, len(v.Wrong), v.Missing, v.Duplicates)
	if !v.OK() {
		for _, w := range v.Wrong[:min(len(v.Wrong), 10)] {
			fmt.Fprintln(stdout, "  wrong:", w)
		}
		return fmt.Errorf("%d of %d records are not correct", o.Pages-v.Correct, o.Pages)
	}
	fmt.Fprintln(stdout, "every record is correct")
	return nil
}

// Verification compares a results file with the catalog's expected values.
type Verification struct {
	Records    int
	Correct    int
	Missing    int
	Duplicates int
	Wrong      []string
}

func (v Verification) OK() bool { return len(v.Wrong) == 0 && v.Missing == 0 }

// VerifyFile checks that products 1..n each have exactly one correct
// result in the JSONL file at path.
func VerifyFile(path string, n int) (Verification, error) {
	f, err := os.Open(path)
	if err != nil {
		return Verification{}, err
	}
	defer f.Close()
	return verifyResults(f, n)
}

func verifyResults(r io.Reader, n int) (Verification, error) {
	var v Verification
	seen := map[int]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		v.Records++
		var res record.Result
		if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
			v.Wrong = append(v.Wrong, fmt.Sprintf("line %d: %v", v.Records, err))
			continue
		}
		id, ok := productID(res.URL)
		if !ok || id < 1 || id > n {
			v.Wrong = append(v.Wrong, fmt.Sprintf("line %d: unexpected URL %q", v.Records, res.URL))
			continue
		}
		if seen[id] {
			v.Duplicates++
			continue
		}
		seen[id] = true
		if msg := checkResult(res, testbed.ExpectedProduct(id)); msg != "" {
			v.Wrong = append(v.Wrong, fmt.Sprintf("%s: %s", res.URL, msg))
			continue
		}
		v.Correct++
	}
	v.Missing = n - len(seen)
	return v, sc.Err()
}

func productID(raw string) (int, bool) {
	u, err := url.Parse(raw)
	if err != nil || path.Dir(u.Path) != "/product" {
		return 0, false
	}
	id, err := strconv.Atoi(path.Base(u.Path))
	return id, err == nil
}

func checkResult(res record.Result, want testbed.Product) string {
	if res.Error != nil {
		return fmt.Sprintf("error %s: %s", res.Error.Class, res.Error.Message)
	}
	if res.Schema != record.SchemaVersion || res.Status != 200 {
		return fmt.Sprintf("schema %d status %d", res.Schema, res.Status)
	}
	for field, exp := range map[string]string{"name": want.Name, "price": want.Price, "sku": want.SKU} {
		got := res.Fields[field]
		if got != exp {
			return fmt.Sprintf("field %s = %v, want %q", field, got, exp)
		}
	}
	return ""
}

// farmProxies returns the farm's proxies as pool entries p1, p2, ….
func farmProxies(farm *testbed.Farm) ([]*proxy.Proxy, error) {
	var out []*proxy.Proxy
	for i, u := range farm.URLs() {
		p, err := proxy.Parse(fmt.Sprintf("p%d", i+1), u)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// catalogURLs returns the URLs of products 1..n of the site, one per line.
func catalogURLs(site *testbed.Site, n int) io.Reader {
	var urls strings.Builder
	for id := 1; id <= n; id++ {
		urls.WriteString(site.ProductURL(id))
		urls.WriteByte('\n')
	}
	return strings.NewReader(urls.String())
}
