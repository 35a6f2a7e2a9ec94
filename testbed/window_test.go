package testbed

import (
	"net"
	"testing"
	"time"
)

func TestSiteRateWindowIsConfigurable(t *testing.T) {
	clk := newFakeClock()
	// 3 s and 9 requests: the same 180 per minute, seen in seconds.
	s := startSite(t, SiteConfig{Products: 10, PerIPPerMinute: 9, Window: 3 * time.Second, Now: clk.Now})
	if s.Window() != 3*time.Second {
		t.Fatalf("Window() = %v", s.Window())
	}
	c, _ := newClient(t, "", "")
	for i := range 9 {
		if r := get(t, c, s.ProductURL(1)); r.status != 200 {
			t.Fatalf("request %d: status %d", i, r.status)
		}
		clk.Advance(100 * time.Millisecond)
	}
	r := get(t, c, s.ProductURL(1)) // t=0.9s, the first leaves at t=3s
	if r.status != 429 || r.header.Get("Retry-After") != "3" {
		t.Fatalf("10th request in the window: status %d, Retry-After %q; want 429 and 3", r.status, r.header.Get("Retry-After"))
	}
	clk.Advance(2100 * time.Millisecond) // t=3s
	if r := get(t, c, s.ProductURL(1)); r.status != 200 {
		t.Fatalf("after the window moved on: status %d", r.status)
	}
	if st := s.Stats(); st.MaxPerIPPerMinute["127.0.0.1"] != 9 || st.Limited != 1 {
		t.Fatalf("stats %+v: want a window maximum of 9 and one 429", st)
	}
	if _, err := StartSite(SiteConfig{Window: -time.Second}); err == nil {
		t.Error("negative window accepted")
	}
}

func TestSitesOnDistinctLoopbackAddresses(t *testing.T) {
	// Several "domains" on one machine: each site on its own 127.0.1.x,
	// with its own limit and its own per-client counts.
	probe, err := net.Listen("tcp", "127.0.1.1:0")
	if err != nil {
		t.Skipf("127.0.1.1 not bindable: %v", err)
	}
	probe.Close()
	a := startSite(t, SiteConfig{Addr: "127.0.1.1:0", PerIPPerMinute: 1, Window: time.Hour})
	b := startSite(t, SiteConfig{Addr: "127.0.1.2:0", PerIPPerMinute: 2, Window: time.Hour})
	c, _ := newClient(t, "", "127.0.0.7")
	for _, want := range []int{200, 429} {
		if r := get(t, c, a.ProductURL(1)); r.status != want {
			t.Fatalf("site a: status %d, want %d", r.status, want)
		}
	}
	for _, want := range []int{200, 200, 429} {
		if r := get(t, c, b.ProductURL(1)); r.status != want {
			t.Fatalf("site b: status %d, want %d", r.status, want)
		}
	}
	if sa, sb := a.Stats(), b.Stats(); sa.MaxPerIPPerMinute["127.0.0.7"] != 1 || sb.MaxPerIPPerMinute["127.0.0.7"] != 2 {
		t.Fatalf("per-site window maxima %v and %v", sa.MaxPerIPPerMinute, sb.MaxPerIPPerMinute)
	}
}
