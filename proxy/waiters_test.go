package proxy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/failure"
)

// checkCountsLocked recounts what the pool keeps counts of: the open
// members of each group, and the waiters by (group, domain) key, plain
// or not.
func checkCountsLocked(p *Pool) error {
	groups := []*group{p.all}
	if p.rest != nil {
		groups = append(groups, p.rest)
	}
	for _, d := range sortedKeys(p.groups) {
		groups = append(groups, p.groups[d])
	}
	for _, g := range groups {
		open := 0
		for _, m := range g.members {
			if o := p.openLocked(m.e); o != m.e.open {
				return fmt.Errorf("proxy %s (%d in flight, cap %d): open %v", m.e.p.ID, m.e.inFlight, m.e.cap.cur, m.e.open)
			} else if o {
				open++
			}
		}
		if g.open != open {
			return fmt.Errorf("group %q: %d open, recount %d", g.name, g.open, open)
		}
	}
	return checkWaitersLocked(p)
}

// checkWaitersLocked recounts the queue against the pool's counts of its
// waiters: the (group, domain) keys, the plain waiters and the others.
func checkWaitersLocked(p *Pool) error {
	n, plain := map[*waitKey]int{}, map[*waitKey]int{}
	nonPlain := 0
	for el := p.waiters.Front(); el != nil; el = el.Next() {
		w := el.Value.(*waiter)
		if k := p.waitKeys[groupDomain{w.g, w.dom}]; k != w.key {
			return fmt.Errorf("waiter for %q: key %p, the table has %p", w.dom, w.key, k)
		}
		if want := w.req.Session == "" && len(w.req.Avoid) == 0 && w.req.Allow == nil; w.plain != want {
			return fmt.Errorf("waiter %+v: plain %v", w.req, w.plain)
		}
		n[w.key]++
		if w.plain {
			plain[w.key]++
		} else {
			nonPlain++
		}
	}
	if len(p.waitKeys) != len(n) {
		return fmt.Errorf("%d keys for the waiters of %d pairs", len(p.waitKeys), len(n))
	}
	plainKeys := 0
	for _, k := range p.waitKeys {
		if k.n != n[k] || k.plain != plain[k] {
			return fmt.Errorf("pair %q: counts %d, %d plain; recount %d, %d", k.dom, k.n, k.plain, n[k], plain[k])
		}
		if k.plain > 0 {
			plainKeys++
		}
	}
	if p.plainKeys != plainKeys || p.nonPlain != nonPlain {
		return fmt.Errorf("pairs with plain waiters %d, waiters not plain %d; recount %d, %d", p.plainKeys, p.nonPlain, plainKeys, nonPlain)
	}
	return nil
}

// waitingURLs returns the URLs of the requests waiting, in their order.
func waitingURLs(p *Pool) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var urls []string
	for el := p.waiters.Front(); el != nil; el = el.Next() {
		urls = append(urls, el.Value.(*waiter).req.URL)
	}
	return urls
}

func checkCounts(t *testing.T, p *Pool) {
	t.Helper()
	p.mu.Lock()
	err := checkCountsLocked(p)
	p.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
}

// TestDispatchServesPastBlockedPairs: a plain waiter that cannot be
// served blocks the plain waiters after it for its pair only; a waiter
// that is not plain, or one for another pair, is still served in its
// turn, and the blocked ones keep their place.
func TestDispatchServesPastBlockedPairs(t *testing.T) {
	p := newPool(t, 2, WithModel(Exclusive), WithPartition("a.example", "p1"), seeded(41))
	a := take(t, p, Request{Domain: "a.example"})
	b := take(t, p, Request{Domain: "b.example"})
	reqs := []Request{
		{Domain: "a.example", URL: "0"},
		{Domain: "a.example", URL: "1"},
		{Domain: "a.example", URL: "2", Avoid: []string{"p1"}},
		{Domain: "b.example", URL: "3"},
		{Domain: "a.example", URL: "4"},
	}
	got := make([]chan *Lease, len(reqs))
	for i, req := range reqs {
		got[i] = make(chan *Lease, 1)
		go func() { got[i] <- take(t, p, req) }()
		for p.Stats().Waiting != i+1 {
			runtime.Gosched()
		}
	}
	checkCounts(t, p)
	// Each release serves one waiter, synchronously: the rest still wait.
	held := map[int]*Lease{-1: a, -2: b}
	served := make([]bool, len(reqs))
	for k, s := range []struct{ release, served int }{
		{-1, 0}, // p1: 1 and 4 are blocked behind 1, 2 cannot avoid p1 yet, 3 waits for p2
		{-2, 3}, // p2: 1 and 2 still want p1
		{0, 1},  // p1 again: 1 comes before 2
		{1, 2},  // p1, the only proxy 2 may use
		{2, 4},
	} {
		held[s.release].Release(ok)
		served[s.served] = true
		var want []string
		for i, req := range reqs {
			if !served[i] {
				want = append(want, req.URL)
			}
		}
		if got := waitingURLs(p); !slices.Equal(got, want) {
			t.Fatalf("step %d: waiting %q, want %q", k, got, want)
		}
		checkCounts(t, p)
		held[s.served] = <-got[s.served]
	}
	if id := held[3].Proxy.ID; id != "p2" {
		t.Errorf("request 3 for b.example served by %s", id)
	}
	held[3].Release(ok)
	held[4].Release(ok)
	checkCounts(t, p)
}

// TestCountsMatchRecount runs many requests of every kind (plain, with
// Avoid, a session, an Allow that refuses some proxies) for a few
// domains, some given up by their context, with outcomes that quarantine
// proxies and pairs and move caps, leases marked late and the concurrency
// changed, and recounts what the pool counts while it runs and at the
// end.
func TestCountsMatchRecount(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"shared", []Option{WithConcurrency(8), WithSlowAttempt(1, 50*time.Microsecond)}},
		{"exclusive", []Option{WithModel(Exclusive)}},
		{"rotating", []Option{WithModel(Rotating), WithMaxInFlight(1)}},
	} {
		t.Run(tc.name, func(t *testing.T) { testCountsMatchRecount(t, tc.opts) })
	}
}

func testCountsMatchRecount(t *testing.T, opts []Option) {
	hc := HealthConfig{FailThreshold: 2, CooldownBase: time.Millisecond, CooldownMax: 2 * time.Millisecond,
		DomainCooldownBase: time.Millisecond, DomainCooldownMax: 2 * time.Millisecond}
	opts = append(opts, WithPartition("a.example", "p1", "p2"), WithHealth(hc), WithMaxWait(20*time.Millisecond), seeded(42))
	p := newPool(t, 6, opts...)
	domains := []string{"a.example", "b.example", "c.example"}
	outcomes := []Outcome{ok, ok, ok, connFail, blocked, upstream, {Class: failure.Timeout}}
	stop := make(chan struct{})
	checked := make(chan error, 1)
	go func() {
		var err error
		for err == nil {
			select {
			case <-stop:
				checked <- nil
				return
			default:
			}
			p.mu.Lock()
			err = checkCountsLocked(p)
			p.mu.Unlock()
			runtime.Gosched()
		}
		checked <- err
	}()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 43))
			for i := range 40 {
				req := Request{Domain: domains[rng.IntN(len(domains))]}
				switch rng.IntN(5) {
				case 1:
					req.Avoid = []string{fmt.Sprintf("p%d", 1+rng.IntN(6))}
				case 2:
					req.Session = fmt.Sprintf("s%d", rng.IntN(4))
				case 3:
					bad := fmt.Sprintf("p%d", 1+rng.IntN(6))
					req.Allow = func(id string) bool { return id != bad }
				}
				ctx, cancel := context.WithCancel(context.Background())
				if i%7 == 0 {
					cancel() // some give up at once, some while they wait
				} else if i%5 == 0 {
					go cancel()
				}
				if g == 0 && i%10 == 0 {
					p.SetConcurrency(4 + rng.IntN(12))
				}
				l, err := p.Acquire(ctx, req)
				if err == nil {
					runtime.Gosched()
					l.Release(outcomes[rng.IntN(len(outcomes))])
				}
				cancel()
			}
		})
	}
	wg.Wait()
	close(stop)
	if err := <-checked; err != nil {
		t.Fatal(err)
	}
	checkCounts(t, p)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waiters.Len() != 0 || len(p.waitKeys) != 0 || p.nonPlain != 0 || p.plainKeys != 0 {
		t.Errorf("after the last request: %d waiting, %d pairs, %d not plain, %d plain pairs",
			p.waiters.Len(), len(p.waitKeys), p.nonPlain, p.plainKeys)
	}
}

// TestOpenCountFollowsCaps steps a proxy's cap through each way it moves
// (grown by successes, set back by a failure or a late lease, resized by
// SetConcurrency) with leases out, and recounts the open members after
// each step.
func TestOpenCountFollowsCaps(t *testing.T) {
	p := newPool(t, 1, WithConcurrency(5), seeded(44)) // a cap of 5+1, from 2
	req := Request{Domain: "d"}
	step := func(name string, wantOpen int) {
		t.Helper()
		checkCounts(t, p)
		if p.all.open != wantOpen {
			t.Fatalf("%s: %d open, want %d", name, p.all.open, wantOpen)
		}
	}
	step("new", 1)
	for range 4 {
		once(t, p, req, ok)
	}
	step("grown to 6", 1)
	var held []*Lease
	for range 4 {
		held = append(held, take(t, p, req))
	}
	step("4 leases", 1)
	p.markLate(held[0])
	step("late: back to 2", 0)
	held[0].Release(ok)
	step("3 leases, cap 3", 0)
	held[1].Release(ok)
	step("2 leases, cap 4", 1)
	held[1] = take(t, p, req)
	held[0] = take(t, p, req)
	step("4 leases, cap 4", 0)
	held[0].Release(connFail)
	step("failed: 3 leases, cap 2", 0)
	p.SetConcurrency(0)
	step("no cap", 1)
	p.SetConcurrency(1)
	step("a cap of 2 from 2", 0)
	for _, l := range held[1:] {
		l.Release(ok)
	}
	step("all back", 1)
}
