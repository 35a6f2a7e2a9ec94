package proxy

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/failure"
)

// manualClock is a clock the test moves by hand.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *manualClock {
	return &manualClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testProxies returns n proxies p1..pn on made-up loopback ports.
func testProxies(n int) []*Proxy {
	out := make([]*Proxy, n)
	for i := range out {
		p, err := Parse(fmt.Sprintf("p%d", i+1), fmt.Sprintf("http://127.0.0.1:%d", 20000+i))
		if err != nil {
			panic(err)
		}
		out[i] = p
	}
	return out
}

// index returns i for the id "p(i+1)".
func index(id string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(id, "p"))
	if err != nil {
		panic(id)
	}
	return n - 1
}

func seeded(seed uint64) Option {
	return WithRand(rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)))
}

func newPool(t *testing.T, n int, opts ...Option) *Pool {
	t.Helper()
	p, err := New(testProxies(n), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// take acquires under the test's context: the lease lives until the test
// ends (or is released).
func take(t *testing.T, p *Pool, req Request) *Lease {
	t.Helper()
	l, err := p.Acquire(t.Context(), req)
	if err != nil {
		t.Fatalf("Acquire(%+v): %v", req, err)
	}
	return l
}

// once acquires and releases at once with the outcome, returning the id.
func once(t *testing.T, p *Pool, req Request, o Outcome) string {
	t.Helper()
	l := take(t, p, req)
	l.Release(o)
	return l.Proxy.ID
}

var (
	ok        = Outcome{}
	connFail  = Outcome{Class: failure.ProxyConnect}
	blocked   = Outcome{Class: failure.Blocked, Status: 403}
	authFail  = Outcome{Class: failure.ProxyAuth, Status: 407}
	upstream  = Outcome{Class: failure.ProxyProtocol, Status: 502, Upstream: true}
	garbled   = Outcome{Class: failure.ProxyProtocol}
	noQuarant = WithHealth(HealthConfig{FailThreshold: -1, MinSuccessRate: -1})
)

func stateOf(p *Pool, id string) ProxyStats {
	for _, s := range p.Stats().Proxies {
		if s.ID == id {
			return s
		}
	}
	panic("no proxy " + id)
}

func domainState(p *Pool, id, domain string) (DomainHealth, bool) {
	for _, d := range p.DomainHealth() {
		if d.Proxy == id && d.Domain == domain {
			return d, true
		}
	}
	return DomainHealth{}, false
}
