package metrics

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/governor"
)

// TestDomainLabelsReclaimed: past the cap, new domains count as other
// until a labelled domain has been idle for DomainIdle; then the next new
// domain takes its place and the idle domain's series are gone. The
// number of domain label values never exceeds the cap.
func TestDomainLabelsReclaimed(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	advance := func(d time.Duration) {
		mu.Lock()
		now = now.Add(d)
		mu.Unlock()
	}
	m := newMetrics(t, Config{MaxDomains: 2, DomainIdle: time.Hour, Now: clock})
	for _, d := range []string{"a.example", "b.example", "c.example"} {
		m.ObserveSpan(span("p1", d, 429, "rate_limited", clock(), time.Millisecond))
	}
	fams := gather(t, m)
	if _, ok := value(t, fams, "sluice_domain_requests_total", map[string]string{"domain": "c.example"}); ok {
		t.Error("c.example got a label past the cap")
	}
	if v, _ := value(t, fams, "sluice_domain_requests_total", map[string]string{"domain": Other}); v != 1 {
		t.Errorf("other counts %v, want 1", v)
	}
	advance(30 * time.Minute)
	m.ObserveSpan(span("p1", "b.example", 200, "", clock(), time.Millisecond)) // b stays busy
	advance(31 * time.Minute)                                                  // a is idle for 61 min
	m.ObserveSpan(span("p1", "d.example", 200, "", clock(), time.Millisecond))
	fams = gather(t, m)
	for name, want := range map[string]bool{"a.example": false, "b.example": true, "d.example": true} {
		for _, fam := range []string{"sluice_domain_requests_total", "sluice_domain_token_wait_seconds"} {
			if _, ok := value(t, fams, fam, map[string]string{"domain": name}); ok != want {
				t.Errorf("%s{domain=%q} present %v, want %v", fam, name, ok, want)
			}
		}
	}
	if _, ok := value(t, fams, "sluice_domain_rate_limited_total", map[string]string{"domain": "a.example"}); ok {
		t.Error("the reclaimed domain's 429 counter is still there")
	}
	for i := range 100 {
		advance(2 * time.Hour)
		m.ObserveSpan(span("p1", fmt.Sprintf("h%d.example", i), 200, "", clock(), time.Millisecond))
	}
	labels := map[string]bool{}
	for _, s := range gather(t, m)["sluice_domain_requests_total"].GetMetric() {
		for _, l := range s.GetLabel() {
			if l.GetName() == "domain" {
				labels[l.GetValue()] = true
			}
		}
	}
	if len(labels) > 3 { // two domains and other
		t.Errorf("%d domain label values, want at most 3: %v", len(labels), labels)
	}
	if !labels["h99.example"] {
		t.Errorf("the newest domain has no label: %v", labels)
	}
}

// TestDomainsOfAsksLabelledOnly: with DomainsOf, a scrape asks the
// governor about the labelled domains only, and shows their limits and
// the state table sizes.
func TestDomainsOfAsksLabelledOnly(t *testing.T) {
	m := newMetrics(t, Config{MaxDomains: 2})
	for _, d := range []string{"a.example", "b.example", "c.example"} {
		m.ObserveSpan(span("p1", d, 200, "", time.Now(), time.Millisecond))
	}
	var asked []string
	m.Attach(Sources{
		DomainsOf: func(hosts []string) []governor.DomainStats {
			asked = append(asked, hosts...)
			return []governor.DomainStats{{Domain: "a.example", Rate: 3, Concurrency: 4}}
		},
		State: func() map[string]int { return map[string]int{"governor_domains": 3} },
	})
	defer m.Detach()
	fams := gather(t, m)
	slices.Sort(asked)
	if !slices.Equal(asked, []string{"a.example", "b.example"}) {
		t.Errorf("asked about %v, want the two labelled domains", asked)
	}
	if v, _ := value(t, fams, "sluice_domain_rate_limit", map[string]string{"domain": "a.example"}); v != 3 {
		t.Errorf("a.example rate %v, want 3", v)
	}
	for kind, want := range map[string]float64{"governor_domains": 3, "metrics_domain_labels": 2} {
		if v, _ := value(t, fams, "sluice_state_entries", map[string]string{"kind": kind}); v != want {
			t.Errorf("sluice_state_entries{kind=%q} = %v, want %v", kind, v, want)
		}
	}
}
