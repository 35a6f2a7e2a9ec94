package proxy

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicehq/sluice/failure"
)

func TestCapIsTheShareOfTheConcurrencyPlusMargin(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		opts                 []Option
		proxies, concurrency int
		want                 int
	}{
		{"share plus 20%", nil, 10, 100, 12},
		{"rounded up", nil, 3, 10, 5},
		{"margin 50%", []Option{WithCapMargin(0.5)}, 10, 100, 15},
		{"no margin", []Option{WithCapMargin(-1)}, 10, 100, 10},
		{"fixed", []Option{WithMaxInFlight(7)}, 10, 100, 7},
		{"no concurrency, no cap", nil, 10, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(t, tc.proxies, append(tc.opts, WithSlowStart(-1), seeded(1))...)
			p.SetConcurrency(tc.concurrency)
			if s := stateOf(p, "p1"); s.Cap != tc.want || s.CapMax != tc.want {
				t.Errorf("cap %d of %d, want %d", s.Cap, s.CapMax, tc.want)
			}
		})
	}
}

func TestCapIsOverThePartition(t *testing.T) {
	p := newPool(t, 6, WithPartition("a.example", "p1", "p2"), WithConcurrency(12), WithSlowStart(-1), seeded(2))
	if a, rest := stateOf(p, "p1").Cap, stateOf(p, "p3").Cap; a != 6+2 || rest != 3+1 {
		t.Errorf("caps: partition of 2 proxies %d, rest of 4 proxies %d", a, rest)
	}
}

// TestSlowStart: a proxy starts with a cap of 2, earns one more per
// success up to its full cap, and falls back to 2 on a failure.
func TestSlowStart(t *testing.T) {
	p := newPool(t, 1, WithConcurrency(10), WithMaxWait(time.Millisecond), noQuarant, seeded(3))
	full := stateOf(p, "p1").CapMax
	if s := stateOf(p, "p1"); s.Cap != 2 || !s.SlowStart || full != 12 {
		t.Fatalf("new proxy: %+v", s)
	}
	a, b := take(t, p, Request{Domain: "d"}), take(t, p, Request{Domain: "d"})
	if _, err := p.Acquire(context.Background(), Request{Domain: "d"}); !errors.Is(err, ErrNoProxy) {
		t.Fatalf("third lease at cap 2: %v", err)
	}
	a.Release(ok)
	b.Release(ok)
	for range 20 {
		once(t, p, Request{Domain: "d"}, ok)
	}
	if s := stateOf(p, "p1"); s.Cap != full || s.SlowStart {
		t.Fatalf("after successes: cap %d, want %d", s.Cap, full)
	}
	once(t, p, Request{Domain: "d"}, connFail)
	if s := stateOf(p, "p1"); s.Cap != 2 || !s.SlowStart {
		t.Errorf("after a failure: cap %d", s.Cap)
	}
}

// TestLateLeaseIsASoftFailure: a lease out far longer than the pair's
// typical latency is marked late: Late fires, the proxy's cap falls back,
// and the late count shows it.
func TestLateLeaseIsASoftFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, err := New(testProxies(2), WithConcurrency(20), WithSlowAttempt(4, 100*time.Millisecond), noQuarant, seeded(4))
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for range 20 { // the pair's typical latency: 50 ms
			l, err := p.Acquire(ctx, Request{Domain: "d", Avoid: []string{"p2"}})
			if err != nil {
				t.Fatal(err)
			}
			l.Release(Outcome{Latency: 50 * time.Millisecond})
		}
		l, err := p.Acquire(ctx, Request{Domain: "d", Avoid: []string{"p2"}})
		if err != nil || l.Proxy.ID != "p1" {
			t.Fatalf("lease %v, %v", l, err)
		}
		time.Sleep(150 * time.Millisecond)
		select {
		case <-l.Late():
			t.Fatal("late after 150 ms, 3× the typical latency")
		default:
		}
		time.Sleep(100 * time.Millisecond)
		select {
		case <-l.Late():
		default:
			t.Fatal("not late after 250 ms, 5× the typical latency")
		}
		if s := stateOf(p, "p1"); s.Late != 1 || s.Cap != 2 {
			t.Errorf("after a late lease: %+v", s)
		}
		l.Release(ok)
	})
}

// TestNoProxyTimeout: while every proxy is quarantined requests wait;
// once none has been usable for the no-proxy timeout, waiting requests
// and new ones fail with ErrNoneUsable, until a proxy works again.
func TestNoProxyTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hc := WithHealth(HealthConfig{FailThreshold: 1, CooldownBase: time.Hour, CooldownMax: time.Hour})
		p, err := New(testProxies(2), hc, WithNoProxyTimeout(time.Minute), seeded(5))
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for range 2 {
			l, err := p.Acquire(ctx, Request{Domain: "d"})
			if err != nil {
				t.Fatal(err)
			}
			l.Release(connFail)
		}
		errs := make(chan error, 1)
		go func() {
			_, err := p.Acquire(ctx, Request{Domain: "d"})
			errs <- err
		}()
		synctest.Wait()
		if s := p.Stats(); s.Waiting != 1 || s.Usable != 0 || s.StuckSince.IsZero() {
			t.Fatalf("stats while stuck: %+v", s)
		}
		time.Sleep(time.Minute)
		if err := <-errs; !errors.Is(err, ErrNoneUsable) || !errors.Is(err, ErrNoProxy) {
			t.Fatalf("waiting Acquire: %v", err)
		}
		if _, err := p.Acquire(ctx, Request{Domain: "d"}); !errors.Is(err, ErrNoneUsable) {
			t.Fatalf("new Acquire: %v", err)
		}
		if s := p.Stats(); s.NoProxy != 2 {
			t.Errorf("no-proxy count %d", s.NoProxy)
		}
	})
}

// TestAllCredentialsRefused: when every proxy refused our credentials
// before any worked, Acquire fails at once with ErrAuth; a pool where one
// proxy worked keeps waiting instead.
func TestAllCredentialsRefused(t *testing.T) {
	p := newPool(t, 2, seeded(6))
	for range 2 {
		once(t, p, Request{Domain: "d"}, authFail)
	}
	if _, err := p.Acquire(context.Background(), Request{Domain: "d"}); !errors.Is(err, ErrAuth) {
		t.Fatalf("Acquire: %v", err)
	}
	if s := p.Stats(); !s.AuthFailed || !stateOf(p, "p1").AuthFailed {
		t.Errorf("stats %+v", s)
	}

	q := newPool(t, 2, WithMaxWait(time.Millisecond), WithStrategy(RoundRobin), seeded(7))
	once(t, q, Request{Domain: "d"}, ok)
	once(t, q, Request{Domain: "d"}, authFail)
	once(t, q, Request{Domain: "d"}, authFail)
	if _, err := q.Acquire(context.Background(), Request{Domain: "d"}); errors.Is(err, ErrAuth) || !errors.Is(err, ErrNoProxy) {
		t.Fatalf("Acquire after one proxy worked: %v", err)
	}
	if q.Stats().AuthFailed {
		t.Error("pool says every proxy refused")
	}
}

// TestCatchCost: the attempts a failing proxy was given before its
// quarantine.
func TestCatchCost(t *testing.T) {
	p := newPool(t, 1, WithHealth(HealthConfig{FailThreshold: 3}), seeded(8))
	once(t, p, Request{Domain: "d"}, ok)
	for range 3 {
		once(t, p, Request{Domain: "d"}, Outcome{Class: failure.ProxyConnect})
	}
	if s := stateOf(p, "p1"); s.State != Quarantined || s.CatchCost != 3 {
		t.Errorf("%+v", s)
	}
}
