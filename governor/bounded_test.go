package governor

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// live is a governor run that stays up while a test feeds it jobs one at
// a time and waits for each to finish; it records when each attempt of a
// host started.
type live struct {
	g      *Governor[string]
	intake chan *Job[string]
	done   chan string // the item of each finished job

	mu     sync.Mutex
	starts map[string][]time.Time
}

// startLive runs g with workers whose attempt answers with reply (after
// no delay), until the test's end.
func startLive(t *testing.T, g *Governor[string], reply func(j *Job[string]) Outcome) *live {
	l := &live{g: g, intake: make(chan *Job[string]), done: make(chan string, 1024), starts: map[string][]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range g.Workers() {
		wg.Go(func() {
			for j := range g.Jobs() {
				l.mu.Lock()
				l.starts[j.Key] = append(l.starts[j.Key], time.Now())
				l.mu.Unlock()
				v, _, ok := g.Report(ctx, j, reply(j))
				if v == Finish && ok {
					g.Release(ctx, 0)
					l.done <- j.Item
				}
			}
		})
	}
	wg.Go(func() { g.Run(ctx, l.intake, func(*Job[string]) {}) })
	t.Cleanup(func() {
		close(l.intake)
		cancel()
		wg.Wait()
	})
	return l
}

// fetch hands one job of host to the governor and waits until it is
// finished.
func (l *live) fetch(t *testing.T, host string) {
	t.Helper()
	item := fmt.Sprintf("%s#%d", host, time.Now().UnixNano())
	l.intake <- &Job[string]{Key: host, Item: item}
	if got := <-l.done; got != item {
		t.Fatalf("finished %s, want %s", got, item)
	}
	synctest.Wait() // the dispatcher has taken the outcome in
}

func (l *live) lastStart(host string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.starts[host]
	return s[len(s)-1]
}

func (l *live) known(host string) bool {
	l.g.mu.Lock()
	defer l.g.mu.Unlock()
	_, ok := l.g.domains[host]
	return ok
}

// TestIdleDomainsForgotten: an idle domain is forgotten once a new
// domain comes a minute later, and comes back fresh, with its limits.
// A domain whose bucket has not refilled (a Crawl-delay longer than the
// idle time), or that holds a Retry-After pause (of the domain or of one
// proxy on it), is kept until that is over, so forgetting it never lets
// a request out early; a cap outlives its domain entry.
func TestIdleDomainsForgotten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, err := New[string](Config{Concurrency: 2, DomainRate: 100, StaggerMax: -1, MaxAttempts: 1,
			MaxRetryAfter: 10 * time.Minute, Adaptive: Adaptive{Off: true}, Rand: lockedRand(1),
			Proxies: []string{"p1"}, Domains: []Domain{{Domain: "perip.example", PerIPPerMinute: 600}}})
		if err != nil {
			t.Fatal(err)
		}
		l := startLive(t, g, func(j *Job[string]) Outcome {
			switch j.Key {
			case "paused.example":
				return answer(503, 0, 5*time.Minute, "")
			case "perip.example":
				return answer(429, 0, 4*time.Minute, "p1")
			}
			return answer(200, 0, 0, "")
		})
		g.CapRate("slow.example", 1.0/150) // Crawl-delay: 150 s
		t0 := time.Now()
		for _, h := range []string{"a.example", "slow.example", "paused.example", "perip.example"} {
			l.fetch(t, h)
		}
		if e := g.Entries(); e.Domains != 4 || e.Caps != 1 || e.ProxySlots != 1 {
			t.Fatalf("entries %+v, want 4 domains, 1 cap, 1 proxy slot", e)
		}
		time.Sleep(90 * time.Second)
		l.fetch(t, "new1.example") // sweeps
		if l.known("a.example") {
			t.Error("a.example idle for 90 s is still known")
		}
		for _, h := range []string{"slow.example", "paused.example", "perip.example"} {
			if !l.known(h) {
				t.Errorf("%s was forgotten while its bucket refilled or its pause ran", h)
			}
		}
		l.fetch(t, "slow.example")
		if got := l.lastStart("slow.example").Sub(t0); got < 150*time.Second {
			t.Errorf("slow.example went again after %v, under its 150 s crawl delay", got)
		}
		l.fetch(t, "paused.example")
		if got := l.lastStart("paused.example").Sub(t0); got < 5*time.Minute {
			t.Errorf("paused.example went again after %v, inside its 5 min Retry-After", got)
		}
		l.fetch(t, "perip.example")
		if got := l.lastStart("perip.example").Sub(t0); got < 4*time.Minute {
			t.Errorf("perip.example went again through p1 after %v, inside the proxy's 4 min Retry-After", got)
		}

		// Everything idle, the pauses over: a sweep forgets all but the
		// newest, and the cap is kept for the host's return.
		time.Sleep(10 * time.Minute)
		l.fetch(t, "new2.example")
		if e := g.Entries(); e.Domains != 1 || e.Caps != 1 {
			t.Errorf("after 10 idle minutes: entries %+v, want 1 domain and the cap", e)
		}
		t1 := time.Now()
		l.fetch(t, "slow.example")
		l.fetch(t, "slow.example")
		if got := l.lastStart("slow.example").Sub(t1); got < 150*time.Second {
			t.Errorf("slow.example came back without its cap: two requests %v apart", got)
		}
	})
}

// TestCutDomainRemembered: a domain the controller cut below its start
// is kept ten minutes, not one, so a site that pushed back does not get
// the starting level again after a short lull.
func TestCutDomainRemembered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, err := New[string](Config{Concurrency: 2, DomainRate: 100, StaggerMax: -1, MaxAttempts: 1, Rand: lockedRand(1)})
		if err != nil {
			t.Fatal(err)
		}
		l := startLive(t, g, func(j *Job[string]) Outcome {
			if j.Key == "busy.example" {
				return answer(503, 0, 0, "")
			}
			return answer(200, 0, 0, "")
		})
		for range 20 {
			l.fetch(t, "busy.example")
		}
		g.mu.Lock()
		cut := g.domains["busy.example"].ctl.Level()
		g.mu.Unlock()
		if cut >= 1 {
			t.Fatalf("busy.example at level %v after 20 503s, want a cut", cut)
		}
		time.Sleep(2 * time.Minute)
		l.fetch(t, "other.example")
		if !l.known("busy.example") {
			t.Fatal("a cut domain was forgotten after 2 idle minutes")
		}
		time.Sleep(10 * time.Minute)
		l.fetch(t, "other2.example")
		if l.known("busy.example") {
			t.Error("a cut domain idle for 12 minutes is still known")
		}
	})
}

// TestDomainTableBounded: many hosts seen once each leave at most
// sweepLen entries while they come, and none once they are idle.
func TestDomainTableBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, err := New[string](Config{Concurrency: 8, DomainRate: 100, StaggerMax: -1, MaxAttempts: 1, Rand: lockedRand(1)})
		if err != nil {
			t.Fatal(err)
		}
		l := startLive(t, g, func(*Job[string]) Outcome { return answer(200, 0, 0, "") })
		peak := 0
		for sec := range 3 * maxIdleDomains / 100 {
			for i := range 100 { // 100 new hosts a second
				l.intake <- &Job[string]{Key: fmt.Sprintf("h%d-%d.example", sec, i)}
			}
			for range 100 {
				<-l.done
			}
			synctest.Wait()
			peak = max(peak, g.Entries().Domains)
			time.Sleep(time.Second)
		}
		// At 100 hosts/s, a minute holds 6000: a sweep every minute keeps
		// the table under two minutes' worth.
		if peak > 12000 {
			t.Errorf("domain table peaked at %d entries, want at most 12000", peak)
		}
		time.Sleep(2 * time.Minute)
		l.fetch(t, "last.example")
		if n := g.Entries().Domains; n != 1 {
			t.Errorf("after 2 idle minutes: %d domains, want 1", n)
		}
	})
}

// TestStatsOf: the snapshots of the named hosts that are known, in the
// order asked, the same as Stats gives for them.
func TestStatsOf(t *testing.T) {
	g, err := New[string](Config{DomainRate: 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"a.example", "b.example", "c.example"} {
		if err := g.Take(t.Context(), h); err != nil {
			t.Fatal(err)
		}
	}
	got := g.StatsOf([]string{"c.example", "unknown.example", "a.example"})
	if len(got) != 2 || got[0].Domain != "c.example" || got[1].Domain != "a.example" || got[0].Rate != 5 {
		t.Fatalf("StatsOf = %+v", got)
	}
	for _, d := range g.Stats().Domains {
		if d.Domain == "a.example" && d != got[1] {
			t.Errorf("StatsOf gave %+v, Stats %+v", got[1], d)
		}
	}
}
