package proxy

import (
	"fmt"
	"testing"
	"time"
)

func TestStickySessionKeepsItsProxy(t *testing.T) {
	clk := newClock()
	// Round-robin would move every request on: stickiness must win.
	p := newPool(t, 6, WithStrategy(RoundRobin), WithStickyTTL(time.Minute), WithClock(clk.Now), seeded(41))
	bound := map[string]string{}
	for i := range 200 {
		s := fmt.Sprintf("s%d", i%5)
		id := once(t, p, Request{Domain: "shop.example", Session: s}, ok)
		if want, seen := bound[s]; seen && id != want {
			t.Fatalf("request %d of session %s went to %s, bound to %s", i, s, id, want)
		}
		bound[s] = id
		clk.Advance(100 * time.Millisecond) // 20 s in all: within the TTL
	}
	distinct := map[string]bool{}
	for _, id := range bound {
		distinct[id] = true
	}
	if len(distinct) != 5 {
		t.Errorf("5 sessions on 6 proxies share proxies: %v", bound)
	}
	if got := p.Sessions(); len(got) != 5 || p.Stats().Sessions != 5 {
		t.Errorf("sessions: %v", got)
	}
}

func TestStickySessionMovesAfterTTL(t *testing.T) {
	clk := newClock()
	p := newPool(t, 4, WithStickyTTL(time.Minute), WithClock(clk.Now), seeded(42))
	once(t, p, Request{Domain: "d", Session: "cart"}, ok)
	first := p.Sessions()[0]
	clk.Advance(59 * time.Second)
	once(t, p, Request{Domain: "d", Session: "cart"}, ok)
	if got := p.Sessions()[0]; got != first {
		t.Fatalf("binding changed within its TTL: %+v → %+v", first, got)
	}
	clk.Advance(2 * time.Second)
	once(t, p, Request{Domain: "d", Session: "cart"}, ok)
	got := p.Sessions()
	if len(got) != 1 || !got[0].Since.Equal(clk.Now()) || !got[0].Expires.Equal(clk.Now().Add(time.Minute)) {
		t.Errorf("after the TTL: %+v, want a new binding", got)
	}
}

func TestStickySessionMovesWhenItsProxyFails(t *testing.T) {
	for name, o := range map[string]Outcome{"proxy failure": connFail, "ban": blocked} {
		t.Run(name, func(t *testing.T) {
			p := newPool(t, 3, seeded(43))
			a := once(t, p, Request{Domain: "d", Session: "s"}, o)
			b := once(t, p, Request{Domain: "d", Session: "s"}, ok)
			if a == b {
				t.Fatalf("session stayed on %s after it failed", a)
			}
			for range 10 {
				if c := once(t, p, Request{Domain: "d", Session: "s"}, ok); c != b {
					t.Fatalf("session moved again, to %s", c)
				}
			}
		})
	}
}

func TestStickySessionUnderExclusiveWaitsForItsProxy(t *testing.T) {
	p := newPool(t, 3, WithModel(Exclusive), seeded(44))
	first := take(t, p, Request{Domain: "d", Session: "s"})
	got := make(chan *Lease)
	go func() { got <- take(t, p, Request{Domain: "d", Session: "s"}) }()
	for p.Stats().Waiting != 1 {
		time.Sleep(time.Millisecond)
	}
	// Others are served meanwhile, by the other proxies.
	if id := once(t, p, Request{Domain: "d"}, ok); id == first.Proxy.ID {
		t.Fatal("exclusive proxy leased twice")
	}
	first.Release(ok)
	second := <-got
	if second.Proxy.ID != first.Proxy.ID {
		t.Errorf("session moved from %s to %s though its proxy was only busy", first.Proxy.ID, second.Proxy.ID)
	}
	second.Release(ok)
}

func TestSessionsAreBounded(t *testing.T) {
	p := newPool(t, 3, WithMaxSessions(10), seeded(45))
	for i := range 100 {
		once(t, p, Request{Domain: "d", Session: fmt.Sprint(i)}, ok)
	}
	got := p.Sessions()
	if len(got) != 10 || got[9].Session != "99" || got[0].Session != "90" {
		t.Errorf("sessions kept: %v", got)
	}
	bound := 0
	for _, s := range p.Stats().Proxies {
		bound += s.Sessions
	}
	if bound != 10 {
		t.Errorf("proxies count %d bound sessions", bound)
	}
}

func TestRotatingModelIgnoresSessions(t *testing.T) {
	p := newPool(t, 3, WithModel(Rotating), WithStrategy(RoundRobin), seeded(46))
	ids := map[string]bool{}
	for range 9 {
		ids[once(t, p, Request{Domain: "d", Session: "s"}, ok)] = true
	}
	if len(ids) != 3 || len(p.Sessions()) != 0 {
		t.Errorf("rotating model: proxies %v, sessions %v", ids, p.Sessions())
	}
}
