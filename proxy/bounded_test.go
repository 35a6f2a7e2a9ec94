package proxy

import (
	"fmt"
	"testing"
	"time"
)

// TestDomainHealthForgetsIdle: healthy (proxy, domain) entries idle for
// ten minutes are forgotten, and the oldest go when the table is full,
// but a pair in quarantine is kept through both until its quarantine is
// over, and its strike for the longest cool-down after; forgotten, it
// comes back healthy and usable.
func TestDomainHealthForgetsIdle(t *testing.T) {
	clk := newClock()
	p := newPool(t, 1, WithClock(clk.Now), seeded(7), WithHealth(HealthConfig{MaxDomainEntries: 20,
		DomainCooldownBase: 30 * time.Minute, DomainCooldownMax: time.Hour}))
	for range 3 {
		once(t, p, Request{Domain: "banned.example"}, blocked)
	}
	if d, ok := domainState(p, "p1", "banned.example"); !ok || d.State != Quarantined {
		t.Fatalf("banned.example: %+v, want quarantined", d)
	}
	for i := range 100 {
		once(t, p, Request{Domain: fmt.Sprintf("d%d.example", i)}, ok)
	}
	if n := p.Entries().DomainHealth; n > 21 {
		t.Errorf("%d entries past a cap of 20", n)
	}
	if d, ok := domainState(p, "p1", "banned.example"); !ok || d.State != Quarantined {
		t.Fatalf("a full table dropped the quarantined pair: %+v", d)
	}

	clk.Advance(11 * time.Minute)
	once(t, p, Request{Domain: "new.example"}, ok) // sweeps
	if n := p.Entries().DomainHealth; n != 2 {
		t.Errorf("after 11 idle minutes: %d entries, want 2 (the quarantined pair and the new one)", n)
	}
	if _, ok := domainState(p, "p1", "banned.example"); !ok {
		t.Fatal("the idle sweep dropped a quarantined pair")
	}

	clk.Advance(40 * time.Minute) // the quarantine is over
	once(t, p, Request{Domain: "new2.example"}, ok)
	if _, ok := domainState(p, "p1", "banned.example"); !ok {
		t.Error("banned.example, out of quarantine 51 min after its ban, is forgotten: its strike is lost")
	}
	clk.Advance(30 * time.Minute) // idle past 10 min + the longest cool-down
	once(t, p, Request{Domain: "new3.example"}, ok)
	if _, ok := domainState(p, "p1", "banned.example"); ok {
		t.Error("banned.example, out of quarantine and idle for 81 min, is still kept")
	}
	if id := once(t, p, Request{Domain: "banned.example"}, ok); id != "p1" {
		t.Errorf("banned.example leased %s, want p1", id)
	}
	if d, _ := domainState(p, "p1", "banned.example"); d.State != Healthy {
		t.Errorf("banned.example came back %s, want healthy", d.State)
	}
}

// TestExpiredSessionsForgotten: expired sticky bindings go when the next
// session is bound, not only when the table is full.
func TestExpiredSessionsForgotten(t *testing.T) {
	clk := newClock()
	p := newPool(t, 3, WithClock(clk.Now), seeded(8), WithStickyTTL(time.Minute))
	for i := range 100 {
		once(t, p, Request{Domain: "shop.example", Session: fmt.Sprintf("s%d", i)}, ok)
	}
	if n := p.Entries().Sessions; n != 100 {
		t.Fatalf("%d sessions, want 100", n)
	}
	clk.Advance(2 * time.Minute)
	once(t, p, Request{Domain: "shop.example", Session: "late"}, ok)
	if n := p.Entries().Sessions; n != 1 {
		t.Errorf("%d sessions after the others expired, want 1", n)
	}
	bound := 0
	for _, st := range p.Stats().Proxies {
		bound += st.Sessions
	}
	if bound != 1 {
		t.Errorf("the proxies count %d bound sessions, want 1", bound)
	}
}
