package proxy

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicehq/sluice/failure"
)

const base = 30 * time.Second

// leaseCounts leases n times for domain and returns the leases per proxy,
// releasing each with ok.
func leaseCounts(t *testing.T, p *Pool, domain string, n int) map[string]int {
	t.Helper()
	var ids []string
	for range n {
		ids = append(ids, once(t, p, Request{Domain: domain}, ok))
	}
	return counts(ids)
}

func TestQuarantineCycle(t *testing.T) {
	clk := newClock()
	p := newPool(t, 3, WithStrategy(RoundRobin), WithClock(clk.Now), seeded(31))

	// Three consecutive connect failures on p2 quarantine it; successes in
	// between would reset the count.
	for range 3 {
		l := take(t, p, Request{Domain: "d", Avoid: []string{"p1", "p3"}})
		if l.Proxy.ID != "p2" {
			t.Fatalf("leased %s", l.Proxy.ID)
		}
		l.Release(connFail)
	}
	s := stateOf(p, "p2")
	if s.State != Quarantined || s.Quarantines != 1 {
		t.Fatalf("after 3 failures: %+v", s)
	}
	cd := s.QuarantinedUntil.Sub(clk.Now())
	if cd < time.Duration(0.7*float64(base)) || cd > time.Duration(1.3*float64(base)) {
		t.Errorf("first cool-down %v, want %v ±30%%", cd, base)
	}

	// No traffic while quarantined, even when asked to avoid the others.
	if c := leaseCounts(t, p, "d", 100); c["p2"] != 0 {
		t.Fatalf("quarantined proxy leased: %v", c)
	}
	if id := once(t, p, Request{Domain: "d", Avoid: []string{"p1", "p3"}}, ok); id == "p2" {
		t.Fatal("quarantined proxy leased to a request avoiding the others")
	}

	// Cool-down over: probation, one probe at a time.
	clk.Advance(cd)
	if s := stateOf(p, "p2"); s.State != Probation {
		t.Fatalf("after the cool-down: %v", s.State)
	}
	var probe *Lease
	var others []*Lease
	for probe == nil {
		l := take(t, p, Request{Domain: "d"})
		if l.Proxy.ID == "p2" {
			probe = l
		} else {
			others = append(others, l)
		}
	}
	if reg := p.Leases(); !registryHasProbe(reg, "p2") {
		t.Errorf("probe not marked in the registry: %v", reg)
	}
	if c := leaseCounts(t, p, "d", 30); c["p2"] != 0 {
		t.Fatalf("second lease on a proxy on probation while its probe is out: %v", c)
	}
	// The probe fails: back to quarantine for twice as long.
	probe.Release(connFail)
	s = stateOf(p, "p2")
	cd = s.QuarantinedUntil.Sub(clk.Now())
	if s.State != Quarantined || cd < time.Duration(1.4*float64(base)) || cd > time.Duration(2.6*float64(base)) {
		t.Fatalf("after a failed probe: %v for %v, want 2×%v ±30%%", s.State, cd, base)
	}
	clk.Advance(cd)
	// This time the probe succeeds: healthy, full traffic again.
	for probe = nil; probe == nil; {
		l := take(t, p, Request{Domain: "d"})
		if l.Proxy.ID == "p2" {
			probe = l
		} else {
			others = append(others, l)
		}
	}
	probe.Release(ok)
	if s := stateOf(p, "p2"); s.State != Healthy {
		t.Fatalf("after a good probe: %v", s.State)
	}
	if c := leaseCounts(t, p, "d", 30); c["p2"] != 10 {
		t.Errorf("recovered proxy should take its round-robin share: %v", c)
	}
	for _, l := range others {
		l.Release(ok)
	}
}

func registryHasProbe(reg []LeaseInfo, id string) bool {
	for _, l := range reg {
		if l.Proxy == id && l.Probe {
			return true
		}
	}
	return false
}

func TestStrikesAreForgivenAfterRecovery(t *testing.T) {
	clk := newClock()
	hc := HealthConfig{FailThreshold: 1, RecoverAfter: 5, Jitter: 0.0001}
	p := newPool(t, 1, WithHealth(hc), WithClock(clk.Now), seeded(32))
	cooldownAfterFailure := func() time.Duration {
		once(t, p, Request{Domain: "d"}, connFail)
		s := stateOf(p, "p1")
		if s.State != Quarantined {
			t.Fatalf("state %v", s.State)
		}
		d := s.QuarantinedUntil.Sub(clk.Now())
		clk.Advance(d)
		return d.Round(time.Second)
	}
	if d := cooldownAfterFailure(); d != base {
		t.Fatalf("first cool-down %v", d)
	}
	once(t, p, Request{Domain: "d"}, ok) // probe ok: healthy, strike kept
	if d := cooldownAfterFailure(); d != 2*base {
		t.Fatalf("second cool-down %v, want doubled", d)
	}
	for range 5 {
		once(t, p, Request{Domain: "d"}, ok)
	}
	if d := cooldownAfterFailure(); d != base {
		t.Fatalf("cool-down after a full recovery %v, want the base again", d)
	}
}

func TestCooldownIsCappedAndJittered(t *testing.T) {
	clk := newClock()
	hc := HealthConfig{FailThreshold: 1, CooldownBase: time.Second, CooldownMax: 8 * time.Second, Jitter: 0.5}
	p := newPool(t, 1, WithHealth(hc), WithClock(clk.Now), seeded(33))
	seen := map[time.Duration]bool{}
	for i := range 12 {
		once(t, p, Request{Domain: "d"}, connFail)
		d := stateOf(p, "p1").QuarantinedUntil.Sub(clk.Now())
		want := min(time.Second<<i, 8*time.Second)
		if d < want/2 || d > want*3/2 {
			t.Fatalf("quarantine %d lasts %v, want %v ±50%%", i+1, d, want)
		}
		seen[d] = true
		clk.Advance(d)
	}
	if len(seen) < 10 {
		t.Errorf("cool-downs not jittered: %v", seen)
	}
}

func TestLowSuccessRateQuarantines(t *testing.T) {
	clk := newClock()
	p := newPool(t, 2, WithClock(clk.Now), WithHealth(HealthConfig{MinSamples: 10, MinSuccessRate: 0.6}), seeded(34))
	// Alternating success and failure never makes 3 in a row, but the rate
	// (50%) is below 60% once 10 outcomes are in.
	for i := range 10 {
		o := ok
		if i%2 == 1 {
			o = connFail
		}
		l := take(t, p, Request{Domain: "d", Avoid: []string{"p2"}})
		l.Release(o)
	}
	if s := stateOf(p, "p1"); s.State != Quarantined {
		t.Fatalf("p1 at 50%% success: %v (rate %v over %d)", s.State, s.SuccessRate, s.Samples)
	}
}

func TestProxyAuthQuarantinesAtOnce(t *testing.T) {
	clk := newClock()
	p := newPool(t, 2, WithClock(clk.Now), seeded(35))
	l := take(t, p, Request{Domain: "d", Avoid: []string{"p2"}})
	l.Release(authFail)
	if s := stateOf(p, l.Proxy.ID); s.State != Quarantined || s.Outcomes["proxy_auth"] != 1 {
		t.Fatalf("after a 407: %+v", s)
	}
}

// TestBanIsPerDomain: a proxy banned by one site (403s, a captcha) stays
// usable for the others, and the ban never touches its proxy-level health.
func TestBanIsPerDomain(t *testing.T) {
	clk := newClock()
	p := newPool(t, 3, WithStrategy(RoundRobin), WithClock(clk.Now), seeded(36))
	for range 3 {
		l := take(t, p, Request{Domain: "a.example", Avoid: []string{"p2", "p3"}})
		l.Release(blocked)
	}
	if s := stateOf(p, "p1"); s.State != Healthy {
		t.Fatalf("a domain ban changed the proxy's state: %v", s.State)
	}
	if d, found := domainState(p, "p1", "a.example"); !found || d.State != Quarantined {
		t.Fatalf("(p1, a.example): %+v", d)
	}
	if c := leaseCounts(t, p, "a.example", 40); c["p1"] != 0 {
		t.Errorf("banned proxy leased for its domain: %v", c)
	}
	if c := leaseCounts(t, p, "b.example", 30); c["p1"] != 10 {
		t.Errorf("banned proxy not used for another domain: %v", c)
	}
	// An upstream failure (the proxy could not reach the site) is also
	// per domain; garbage from the proxy is the proxy's own fault.
	for range 3 {
		l := take(t, p, Request{Domain: "c.example", Avoid: []string{"p1", "p3"}})
		l.Release(upstream)
	}
	if d, _ := domainState(p, "p2", "c.example"); d.State != Quarantined || stateOf(p, "p2").State != Healthy {
		t.Errorf("after 3 upstream failures: domain %v, proxy %v", d.State, stateOf(p, "p2").State)
	}
	for range 3 {
		l := take(t, p, Request{Domain: "c.example", Avoid: []string{"p1", "p2"}})
		l.Release(garbled)
	}
	if s := stateOf(p, "p3"); s.State != Quarantined {
		t.Errorf("after 3 garbled answers: %v", s.State)
	}
}

func TestRotatingEndpointsAreNotBannedPerDomain(t *testing.T) {
	clk := newClock()
	p := newPool(t, 1, WithModel(Rotating), WithClock(clk.Now), seeded(37))
	for range 10 {
		once(t, p, Request{Domain: "a.example"}, blocked)
	}
	d, _ := domainState(p, "p1", "a.example")
	if d.State != Healthy || d.Samples != 10 || d.SuccessRate != 0 {
		t.Errorf("rotating endpoint on a.example: %+v", d)
	}
	// Its own failures still count.
	for range 3 {
		once(t, p, Request{Domain: "a.example"}, connFail)
	}
	if s := stateOf(p, "p1"); s.State != Quarantined {
		t.Errorf("rotating endpoint failing to connect: %v", s.State)
	}
}

// TestStaleOutcomesDoNotExtendAQuarantine: leases granted before a
// quarantine began report late; they neither extend it nor end it.
func TestStaleOutcomesDoNotExtendAQuarantine(t *testing.T) {
	clk := newClock()
	p := newPool(t, 2, WithClock(clk.Now), seeded(38))
	var held []*Lease
	for range 5 {
		held = append(held, take(t, p, Request{Domain: "d", Avoid: []string{"p2"}}))
	}
	for _, l := range held[:3] {
		l.Release(connFail)
	}
	until := stateOf(p, "p1").QuarantinedUntil
	clk.Advance(time.Second)
	held[3].Release(connFail)
	held[4].Release(ok)
	s := stateOf(p, "p1")
	if s.State != Quarantined || !s.QuarantinedUntil.Equal(until) || s.Quarantines != 1 {
		t.Errorf("stale outcomes changed the quarantine: %+v", s)
	}
}

// TestWaitForQuarantineEnd: with every proxy quarantined a request waits
// (no busy loop, no error) and gets the first proxy whose cool-down ends,
// as a probe. Runs on a fake clock.
func TestWaitForQuarantineEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hc := HealthConfig{FailThreshold: 1, Jitter: 0.0001}
		p := newPool(t, 2, WithHealth(hc), seeded(39))
		start := time.Now()
		once(t, p, Request{Domain: "d", Avoid: []string{"p2"}}, connFail)
		time.Sleep(10 * time.Second)
		once(t, p, Request{Domain: "d", Avoid: []string{"p1"}}, connFail)

		l, err := p.Acquire(t.Context(), Request{Domain: "d"})
		if err != nil {
			t.Fatal(err)
		}
		waited := time.Since(start)
		if l.Proxy.ID != "p1" || waited < base-time.Second || waited > base+time.Second {
			t.Errorf("got %s after %v, want p1 after %v", l.Proxy.ID, waited, base)
		}
		if reg := p.Leases(); !registryHasProbe(reg, "p1") {
			t.Errorf("not a probe: %v", reg)
		}
		l.Release(ok)

		// A waiter whose context ends leaves the queue.
		once(t, p, Request{Domain: "d", Avoid: []string{"p2"}}, connFail)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, err := p.Acquire(ctx, Request{Domain: "d"}); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Acquire: %v", err)
		}
		if s := p.Stats(); s.Waiting != 0 {
			t.Errorf("%d still waiting", s.Waiting)
		}
	})
}

func TestDomainHealthTableIsBounded(t *testing.T) {
	p := newPool(t, 2, WithHealth(HealthConfig{MaxDomainEntries: 50}), seeded(40))
	for i := range 500 {
		once(t, p, Request{Domain: string(rune('a'+i%26)) + ".example" + string(rune('a'+i/26))}, ok)
	}
	if n := len(p.DomainHealth()); n > 50 {
		t.Errorf("%d (proxy, domain) entries kept, bound 50", n)
	}
}

// A domain quarantined on every proxy that answers others fails Acquire at
// once with a *DomainError (the no-proxy clock does not start); a domain
// quarantined on proxies that never answered anything waits as before.
func TestDomainQuarantinedOnLiveProxiesFailsAtOnce(t *testing.T) {
	for _, alive := range []bool{true, false} {
		clk := newClock()
		p := newPool(t, 2, WithClock(clk.Now), seeded(1), WithNoProxyTimeout(time.Hour))
		if alive {
			once(t, p, Request{Domain: "ok.example"}, ok)
			once(t, p, Request{Domain: "ok.example"}, ok)
		}
		for range 6 {
			once(t, p, Request{Domain: "hang.example"}, Outcome{Class: failure.Timeout})
		}
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		_, err := p.Acquire(ctx, Request{Domain: "hang.example"})
		cancel()
		var de *DomainError
		st := p.Stats()
		switch {
		case alive && (!errors.As(err, &de) || de.Class != failure.Timeout || de.Until.IsZero() || !st.StuckSince.IsZero() || st.DomainQuarantined != 1):
			t.Errorf("live proxies: %v (%+v), stats %+v", err, de, st)
		case !alive && (!errors.Is(err, context.DeadlineExceeded) || st.StuckSince.IsZero() || st.DomainQuarantined != 0):
			t.Errorf("proxies never seen working: %v, stats %+v", err, st)
		}
		for _, ps := range st.Proxies {
			if ps.State != Healthy {
				t.Errorf("alive %v: %s is %s", alive, ps.ID, ps.State)
			}
		}
		l, err := p.Acquire(t.Context(), Request{Domain: "ok.example"})
		if err != nil {
			t.Errorf("alive %v: another domain: %v", alive, err)
			continue
		}
		l.Release(ok)
	}
}
