package proxy

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func allowPool(t *testing.T, n int, opts ...Option) *Pool {
	t.Helper()
	var ps []*Proxy
	for i := range n {
		p, err := Parse(fmt.Sprintf("p%d", i+1), fmt.Sprintf("http://127.0.0.1:%d", 40000+i))
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	p, err := New(ps, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAllowUnderEveryStrategy: the pool leases only a proxy Allow accepts,
// asks Allow about each proxy at most once per Acquire, and fails at once
// with ErrNoneAllowed when Allow refuses every usable proxy.
func TestAllowUnderEveryStrategy(t *testing.T) {
	for _, s := range []Strategy{LRUWeighted, LRU, RoundRobin, RoundRobinShuffled, Random, Weighted} {
		t.Run(s.String(), func(t *testing.T) {
			p := allowPool(t, 5, WithStrategy(s))
			ctx := context.Background()
			for range 20 {
				asked := map[string]int{}
				l, err := p.Acquire(ctx, Request{Domain: "shop.example", Allow: func(id string) bool {
					asked[id]++
					return id == "p4"
				}})
				if err != nil || l.Proxy.ID != "p4" {
					t.Fatalf("leased %v, %v; want p4, the only one allowed", l, err)
				}
				for id, n := range asked {
					if n > 1 {
						t.Errorf("Allow asked %d times about %s", n, id)
					}
				}
				l.Release(Outcome{Status: 200})
			}
			_, err := p.Acquire(ctx, Request{Domain: "shop.example", Avoid: []string{"p1"}, Allow: func(string) bool { return false }})
			if !errors.Is(err, ErrNoneAllowed) {
				t.Fatalf("all refused: %v, want ErrNoneAllowed", err)
			}
			if s := p.Stats(); s.Leased != 0 || s.Waiting != 0 {
				t.Errorf("after a refused Acquire: %d leased, %d waiting", s.Leased, s.Waiting)
			}
		})
	}
}

// TestAllowKeepsASessionOnItsProxy: a sticky session whose proxy Allow
// refuses is not moved to another proxy: Acquire says ErrNoneAllowed, and
// the session gets its proxy once Allow accepts it.
func TestAllowKeepsASessionOnItsProxy(t *testing.T) {
	p := allowPool(t, 3)
	ctx := context.Background()
	l, err := p.Acquire(ctx, Request{Domain: "shop.example", Session: "cart-1"})
	if err != nil {
		t.Fatal(err)
	}
	bound := l.Proxy.ID
	l.Release(Outcome{Status: 200})
	if _, err := p.Acquire(ctx, Request{Domain: "shop.example", Session: "cart-1", Allow: func(id string) bool { return id != bound }}); !errors.Is(err, ErrNoneAllowed) {
		t.Fatalf("session's proxy refused: %v, want ErrNoneAllowed", err)
	}
	l, err = p.Acquire(ctx, Request{Domain: "shop.example", Session: "cart-1", Allow: func(string) bool { return true }})
	if err != nil || l.Proxy.ID != bound {
		t.Fatalf("leased %v, %v; want the session's %s", l, err, bound)
	}
	l.Release(Outcome{Status: 200})
}
