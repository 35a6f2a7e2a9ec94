package governor

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

func TestLimitsFollowTheFormula(t *testing.T) {
	cfg := Config{Concurrency: 200}
	cfg.setDefaults()
	for _, tc := range []struct {
		name     string
		d        *Domain
		pool     int
		rate     float64
		conc     int
		proxy    float64
		rateFrom string
	}{
		// The seed article's example: 30/min per IP, 200 proxies, 0.7.
		{"formula", &Domain{Domain: "a", PerIPPerMinute: 30, Proxies: 200}, 200, 70, 70, 0.35, "formula"},
		{"partition", &Domain{Domain: "a", PerIPPerMinute: 60, Safety: 0.5, Proxies: 100}, 200, 50, 50, 0.5, "formula"},
		{"partition larger than the pool", &Domain{Domain: "a", PerIPPerMinute: 60, Safety: 1, Proxies: 500}, 20, 20, 20, 1, "formula"},
		{"whole pool by default", &Domain{Domain: "a", PerIPPerMinute: 180}, 20, 42, 42, 2.1, "formula"},
		{"direct: one IP", &Domain{Domain: "a", PerIPPerMinute: 120}, 0, 1.4, 2, 0, "formula"},
		{"rate override", &Domain{Domain: "a", PerIPPerMinute: 60, Rate: 5}, 10, 5, 5, 0.7, "rate override"},
		{"concurrency override", &Domain{Domain: "a", PerIPPerMinute: 60, Concurrency: 3}, 10, 7, 3, 0.7, "formula"},
		{"capped by the global limit", &Domain{Domain: "a", Rate: 1000}, 10, 1000, 200, 0, "rate override"},
		{"unmatched", nil, 10, 10, 10, 0, "default rate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := limitsFor(tc.d, &cfg, tc.pool)
			if math.Abs(l.MaxRate-tc.rate) > 1e-9 || l.MaxConcurrency != tc.conc || math.Abs(l.ProxyRate-tc.proxy) > 1e-9 || l.RateFrom != tc.rateFrom {
				t.Errorf("limits %+v, want rate %v (%s), concurrency %d, per proxy %v", l, tc.rate, tc.rateFrom, tc.conc, tc.proxy)
			}
		})
	}
}

func TestBucketSizesStayWithinTheSafetyMargin(t *testing.T) {
	cfg := Config{Concurrency: 64}
	cfg.setDefaults()
	for _, tc := range []struct {
		name              string
		d                 Domain
		pool              int
		proxyBurst, burst int
	}{
		// The bench: 180/min, 0.95, 20 proxies: a second at 2.85/s, within
		// ⌊180 × 0.05 / 2⌋ = 4; the domain half a second at 57/s, one per proxy.
		{"bench", Domain{Domain: "a", PerIPPerMinute: 180, Safety: 0.95}, 20, 3, 20},
		{"slow site: at least 2", Domain{Domain: "a", PerIPPerMinute: 30}, 200, 2, 36},
		{"no margin: strict", Domain{Domain: "a", PerIPPerMinute: 60, Safety: 1}, 4, 1, 1},
		{"short window: strict", Domain{Domain: "a", PerIPPerMinute: 120, Safety: 0.8, Window: 2 * time.Second}, 6, 1, 1},
		{"rate override", Domain{Domain: "a", PerIPPerMinute: 600, Rate: 5}, 200, 8, 3},
		{"direct", Domain{Domain: "a", PerIPPerMinute: 600}, 0, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := limitsFor(&tc.d, &cfg, tc.pool)
			if l.ProxyBurst != tc.proxyBurst || l.Burst != tc.burst {
				t.Fatalf("proxy burst %d, domain burst %d; want %d and %d", l.ProxyBurst, l.Burst, tc.proxyBurst, tc.burst)
			}
			if l.ProxyRate > 0 {
				// A bucket of b tokens at r/s grants at most b − 1 +
				// ⌈r × W⌉ requests in any window of length W: under the
				// site's count.
				limit := l.PerIPPerMinute / 60 * l.Window.Seconds()
				if worst := float64(l.ProxyBurst-1) + math.Ceil(l.ProxyRate*l.Window.Seconds()-1e-9); worst > limit+1e-9 {
					t.Errorf("a proxy may send %.1f requests in %v, over the site's %.1f", worst, l.Window, limit)
				}
			}
		})
	}
}

func TestPlanTotalsAgainstThePool(t *testing.T) {
	cfg := Config{Concurrency: 200, Domains: []Domain{
		{Domain: "shop.example", PerIPPerMinute: 30, Proxies: 200},
		{Domain: "*.news.example", PerIPPerMinute: 60, Safety: 0.5, Proxies: 100},
	}}
	p, err := NewPlan(cfg, 200)
	if err != nil {
		t.Fatal(err)
	}
	if p.Sum != 120 || p.Total != 120 || p.ProxiesInUse != 120 || math.Abs(p.Share-0.6) > 1e-9 {
		t.Fatalf("plan %+v: want 70 + 50 = 120 concurrent, 120 of 200 proxies (60%%)", p)
	}
	var b bytes.Buffer
	if _, err := p.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"30/60 × 200 × 0.70 = 70.00",
		"60/60 × 100 × 0.50 = 50.00",
		"default rate = 10.00",
		"proxies in use 120 of 200 (60% of the pool)",
		"max concurrency 120 (sum over domains) of global limit 200",
		"shop.example: each proxy 30/min × 0.70 = 0.350 req/s (one request every 2.857 s), catching up at most 2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan output lacks %q:\n%s", want, out)
		}
	}
	cfg.Concurrency = 100
	if p, _ := NewPlan(cfg, 200); p.Total != 100 {
		t.Errorf("total %d with a global limit of 100", p.Total)
	}
	if _, err := NewPlan(Config{Domains: []Domain{{Domain: "x", Safety: 1.5}}}, 1); err == nil {
		t.Error("safety 1.5 accepted")
	}
	if _, err := NewPlan(Config{Domains: []Domain{{Domain: "http://x/"}}}, 1); err == nil {
		t.Error("a URL accepted as a domain pattern")
	}
}

func TestDomainMatching(t *testing.T) {
	ds := []Domain{{Domain: "*.Shop.example"}, {Domain: "shop.example"}, {Domain: "*"}}
	for host, want := range map[string]string{
		"www.shop.example": "*.Shop.example",
		"SHOP.example":     "shop.example",
		"other.test":       "*",
	} {
		if d := matchDomain(ds, host); d == nil || d.Domain != want {
			t.Errorf("%s matched %v, want %s", host, d, want)
		}
	}
	if matchDomain(ds[:2], "other.test") != nil {
		t.Error("unlisted host matched")
	}
}
