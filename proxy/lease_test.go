package proxy

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/failure"
)

// TestExclusiveLeasesUnderContention runs 1,000 requesters against 20
// exclusive proxies. Some hold their lease and release it, some panic
// while holding it (their deferred Release must return it), some abandon
// it by ending their context without releasing, and some give up while
// still waiting. Never may two requesters hold one proxy, and in the end
// every lease must be back.
func TestExclusiveLeasesUnderContention(t *testing.T) {
	const proxies, requesters = 20, 1000
	p := newPool(t, proxies, WithModel(Exclusive), seeded(21))
	var holders [proxies]atomic.Int32
	var overlaps, granted, gaveUp, abandoned, panicked atomic.Int64

	// A watcher reads the registry while the requesters run: no proxy may
	// appear twice in it either.
	stop := make(chan struct{})
	watched := make(chan int)
	go func() {
		snapshots := 0
		defer func() { watched <- snapshots }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			seen := map[string]bool{}
			for _, l := range p.Leases() {
				if seen[l.Proxy] {
					overlaps.Add(1)
				}
				seen[l.Proxy] = true
			}
			snapshots++
			runtime.Gosched()
		}
	}()

	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range requesters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					panicked.Add(1)
				}
			}()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if i%10 == 7 {
				// Gives up while waiting, at some point.
				var c2 context.CancelFunc
				ctx, c2 = context.WithTimeout(ctx, time.Duration(i%5)*100*time.Microsecond)
				defer c2()
			}
			<-start
			l, err := p.Acquire(ctx, Request{Domain: "shop.example", URL: fmt.Sprintf("http://shop.example/%d", i)})
			if err != nil {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("requester %d: %v", i, err)
				}
				gaveUp.Add(1)
				return
			}
			granted.Add(1)
			if i%10 == 7 {
				// A holder may use a lease only while its context lives
				// (the pool takes it back when the context ends); this
				// one's deadline may pass at any moment, so it hands the
				// lease back unused.
				l.Release(ok)
				return
			}
			h := &holders[index(l.Proxy.ID)]
			use := func() {
				if h.Add(1) != 1 {
					overlaps.Add(1)
				}
				runtime.Gosched()
				h.Add(-1)
			}
			switch i % 5 {
			case 0: // panics while holding the lease
				defer l.Release(Outcome{Class: failure.Internal})
				use()
				panic("requester panics")
			case 1: // abandons the lease: its context ends, no Release
				use()
				abandoned.Add(1)
				cancel()
			default:
				defer l.Release(ok)
				use()
			}
		}()
	}
	close(start)
	wg.Wait()
	// Abandoned leases come back through their context's AfterFunc, which
	// runs on its own goroutine: give those a moment.
	for range 2000 {
		if p.Stats().Leased == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	snapshots := <-watched

	s := p.Stats()
	if n := overlaps.Load(); n != 0 {
		t.Errorf("%d times two requesters held one proxy", n)
	}
	if s.Leased != 0 || s.Waiting != 0 || len(p.Leases()) != 0 {
		t.Errorf("after the run: %d leased, %d waiting, registry %v", s.Leased, s.Waiting, p.Leases())
	}
	var released int64
	for _, ps := range s.Proxies {
		if ps.InFlight != 0 {
			t.Errorf("%s still has %d in flight", ps.ID, ps.InFlight)
		}
		for _, n := range ps.Outcomes {
			released += n
		}
	}
	// Every granted lease was released exactly once; a lease granted to a
	// requester that had just given up is released by the pool.
	if released != s.Acquired || s.Acquired < granted.Load() {
		t.Errorf("acquired %d, granted to requesters %d, released %d", s.Acquired, granted.Load(), released)
	}
	if granted.Load()+gaveUp.Load() != requesters {
		t.Errorf("granted %d + gave up %d != %d", granted.Load(), gaveUp.Load(), requesters)
	}
	if panicked.Load() != requesters/5 && panicked.Load() != granted.Load()/5 {
		// i%5==0 never gives up (i%10==7 is never 0 mod 5), so all panic.
		t.Errorf("%d panicked, want %d", panicked.Load(), requesters/5)
	}
	t.Logf("granted %d, gave up waiting %d, abandoned %d, panicked %d, registry snapshots %d",
		granted.Load(), gaveUp.Load(), abandoned.Load(), panicked.Load(), snapshots)
}

func TestLeaseRegistry(t *testing.T) {
	clk := newClock()
	p := newPool(t, 3, WithModel(Exclusive), WithClock(clk.Now), seeded(22))
	a := take(t, p, Request{Domain: "a.example", URL: "http://a.example/1", Session: "s1"})
	clk.Advance(time.Second)
	b := take(t, p, Request{Domain: "b.example", URL: "http://b.example/2"})
	reg := p.Leases()
	if len(reg) != 2 {
		t.Fatalf("registry %v", reg)
	}
	if reg[0].Proxy != a.Proxy.ID || reg[0].URL != "http://a.example/1" || reg[0].Session != "s1" || reg[0].Domain != "a.example" || !reg[0].Since.Equal(clk.Now().Add(-time.Second)) {
		t.Errorf("first entry %+v", reg[0])
	}
	if reg[1].Proxy != b.Proxy.ID || reg[1].URL != "http://b.example/2" {
		t.Errorf("second entry %+v", reg[1])
	}
	a.Release(ok)
	a.Release(connFail) // only the first release counts
	if got := p.Leases(); len(got) != 1 || got[0].Proxy != b.Proxy.ID {
		t.Errorf("after release: %v", got)
	}
	if s := stateOf(p, a.Proxy.ID); s.Outcomes["ok"] != 1 || len(s.Outcomes) != 1 {
		t.Errorf("outcomes after a double release: %v", s.Outcomes)
	}
	b.Release(ok)
}

func TestExclusiveWaitsFirstComeFirstServed(t *testing.T) {
	p := newPool(t, 1, WithModel(Exclusive), seeded(23))
	first := take(t, p, Request{Domain: "d"})
	got := make(chan int, 3)
	for i := range 3 {
		go func() {
			l := take(t, p, Request{Domain: "d", URL: fmt.Sprint(i)})
			got <- i
			l.Release(ok)
		}()
		// Let each queue up before the next.
		for p.Stats().Waiting != i+1 {
			runtime.Gosched()
		}
	}
	first.Release(ok)
	for want := range 3 {
		if i := <-got; i != want {
			t.Fatalf("waiter %d served before waiter %d", i, want)
		}
	}
	if s := stateOf(p, "p1"); s.LeaseWait <= 0 || s.LeaseWaitMax <= 0 {
		t.Errorf("lease wait not counted: %+v", s)
	}
}

func TestAcquireGivesUp(t *testing.T) {
	p := newPool(t, 1, WithModel(Exclusive), WithMaxWait(time.Millisecond), seeded(24))
	l := take(t, p, Request{Domain: "d"})
	defer l.Release(ok)
	if _, err := p.Acquire(context.Background(), Request{Domain: "d"}); !errors.Is(err, ErrNoProxy) {
		t.Fatalf("Acquire on a busy pool with max wait: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Acquire(ctx, Request{Domain: "d"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with an ended context: %v", err)
	}
	if s := p.Stats(); s.Waiting != 0 || s.WaitTimeouts != 1 {
		t.Errorf("stats %+v", s)
	}
	empty, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := empty.Acquire(context.Background(), Request{}); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty pool: %v", err)
	}
}

func TestSharedLeasesOverlapUpToMaxInFlight(t *testing.T) {
	p := newPool(t, 2, WithMaxInFlight(3), WithSlowStart(-1), WithMaxWait(time.Millisecond), seeded(25))
	var held []*Lease
	for range 6 {
		held = append(held, take(t, p, Request{Domain: "d"}))
	}
	if _, err := p.Acquire(context.Background(), Request{Domain: "d"}); !errors.Is(err, ErrNoProxy) {
		t.Fatalf("7th lease on 2 proxies × 3: %v", err)
	}
	for _, s := range p.Stats().Proxies {
		if s.InFlight != 3 || s.Cap != 3 || s.SlowStart {
			t.Errorf("%s in flight %d, cap %d, slow start %v", s.ID, s.InFlight, s.Cap, s.SlowStart)
		}
	}
	for _, l := range held {
		l.Release(ok)
	}
}
