package fetch

import (
	"fmt"
	"testing"

	"github.com/sluicehq/sluice/dnscache"
	"github.com/sluicehq/sluice/failure"
)

// TestRefusedURLsTakeNoToken: URLs the policy refuses end as policy
// errors without ever reaching the governor: no domain state, no token
// taken from any bucket, no dispatch and no proxy lease, even on a
// domain whose bucket would make each wait ten minutes.
func TestRefusedURLsTakeNoToken(t *testing.T) {
	pool := fakePool(t, 2)
	cfg := Config{Concurrency: 4, DomainRate: 1.0 / 600, StaggerMax: -1, Pool: pool, DNS: dnscache.Config{Off: true}}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var urls []string
	for i := range 20 {
		urls = append(urls, fmt.Sprintf("http://127.0.0.%d:8080/p/%d", 1+i%3, i)) // loopback: refused by default
	}
	c := &collector{}
	if err := runStage(t.Context(), s, tasks(t, urls...), c); err != nil {
		t.Fatal(err)
	}
	got := c.snapshot()
	if len(got) != 20 {
		t.Fatalf("%d results, want 20", len(got))
	}
	for _, f := range got {
		if failure.ClassOf(f.Err) != failure.Policy || failure.Retryable(f.Err) {
			t.Errorf("%s: %v, want a final policy refusal", f.Task.Msg.URL, f.Err)
		}
	}
	g := s.Governor()
	if len(g.Domains) != 0 || g.Pending != 0 || g.InFlight != 0 {
		t.Errorf("governor saw the refused URLs: %d domains %+v, %d pending", len(g.Domains), g.Domains, g.Pending)
	}
	for _, p := range pool.Proxies() {
		if st := proxyStats(pool, p.ID); st.Leases != 0 {
			t.Errorf("proxy %s leased %d times for refused URLs", p.ID, st.Leases)
		}
	}
}
