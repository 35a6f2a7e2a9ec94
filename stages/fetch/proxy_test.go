package fetch_test

import (
	"sync"
	"testing"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

// TestBadProxiesPenalisedAndRetriedElsewhere: of three proxies one answers
// garbage, one closes mid-response and one works. Every URL ends fetched;
// every attempt on a bad proxy ends with a proxy-kind error (which is what
// the lease reports to the pool) and is followed by an attempt on another
// proxy.
func TestBadProxiesPenalisedAndRetriedElsewhere(t *testing.T) {
	site := startSite(t, testbed.SiteConfig{Products: 100, PageBytes: 4 << 10})
	farm := startFarm(t, 3)
	farm.Proxy(0).SetFailure(testbed.FailGarbage)
	farm.Proxy(1).SetFailure(testbed.FailCloseMidResponse)
	var mu sync.Mutex
	spans := map[string][]record.Span{}
	cfg := fast()
	cfg.MaxAttempts = 3
	pl := pool(t, farm)
	cfg.Pool = pl
	cfg.Trace = func(sp record.Span) {
		mu.Lock()
		spans[sp.URL] = append(spans[sp.URL], sp)
		mu.Unlock()
	}
	var urls []string
	for id := 1; id <= 60; id++ {
		urls = append(urls, site.ProductURL(id))
	}
	res := run(t, cfg, urls)
	for i, f := range res {
		if f.Err != nil || f.Proxy != "p3" {
			t.Errorf("%s: %v via %s, want success via p3", urls[i], f.Err, f.Proxy)
		}
	}
	failed := map[string]int{}
	for u, ss := range spans {
		for i, sp := range ss {
			switch sp.Proxy {
			case "p1", "p2":
				failed[sp.Proxy]++
				if c := failure.Class(sp.Error); c != failure.ProxyProtocol {
					t.Errorf("%s attempt %d via %s: class %q, want proxy_protocol", u, sp.Attempt, sp.Proxy, c)
				}
				if i+1 >= len(ss) || ss[i+1].Proxy == sp.Proxy {
					t.Errorf("%s: attempt %d via %s not retried on another proxy", u, sp.Attempt, sp.Proxy)
				}
			case "p3":
				if sp.Error != "" {
					t.Errorf("%s via p3: %s", u, sp.Error)
				}
			}
		}
	}
	if failed["p1"] == 0 || failed["p2"] == 0 {
		t.Errorf("the bad proxies were not tried: %v", failed)
	}
	// Each span says what the proxy's state was at the lease: its cap then,
	// and probation while the cap was below its maximum.
	probation, capped, total := 0, 0, 0
	for _, ss := range spans {
		for _, sp := range ss {
			total++
			if sp.Probation {
				probation++
			}
			if sp.Cap > 0 {
				capped++
			}
		}
	}
	t.Logf("spans on probation %d, with a cap %d, of %d", probation, capped, total)
	if probation == 0 || capped != total {
		t.Errorf("%d of %d spans on probation, %d with a cap: want the fresh proxies' first leases on probation, every lease with its cap", probation, total, capped)
	}
	if got := site.Stats().ByIP; got["127.0.0.4"] != 60 || got["127.0.0.2"] != 0 {
		t.Errorf("site saw %v: want all 60 from p3 (127.0.0.4), none from the garbage proxy", got)
	}
	// The pool was told: the bad proxies' leases came back failed, as
	// proxy_protocol, and put them in quarantine.
	for _, ps := range pl.Stats().Proxies {
		switch ps.ID {
		case "p1", "p2":
			if ps.Outcomes["proxy_protocol"] == 0 || ps.Quarantines == 0 || ps.Outcomes["ok"] != 0 {
				t.Errorf("%s: outcomes %v, %d quarantines; want proxy_protocol failures and a quarantine", ps.ID, ps.Outcomes, ps.Quarantines)
			}
		case "p3":
			if ps.Outcomes["ok"] != 60 || ps.Quarantines != 0 {
				t.Errorf("p3: outcomes %v, %d quarantines", ps.Outcomes, ps.Quarantines)
			}
		}
	}
	t.Logf("failed attempts per bad proxy: %v", failed)
}
