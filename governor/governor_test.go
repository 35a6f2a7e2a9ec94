package governor

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicehq/sluice/proxy"
)

// The tests in this file run the real governor (dispatcher, workers,
// token buckets, controller) on synctest's fake clock; only the network
// is replaced, by an exec function that answers after a fake delay.

// starts records the fake times at which attempts started.
type starts struct {
	mu sync.Mutex
	at []time.Duration // since the test's start
	by map[string][]time.Duration
	t0 time.Time
}

func newStarts() *starts { return &starts{t0: time.Now(), by: map[string][]time.Duration{}} }

func (s *starts) add(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := time.Since(s.t0)
	s.at = append(s.at, d)
	s.by[key] = append(s.by[key], d)
}

func (s *starts) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.at)
	slices.Sort(out)
	return out
}

func TestTokenBucketPacesADomain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStarts()
		s := newTestGov(t, Config{
			Concurrency: 4, StaggerMax: -1, Adaptive: Adaptive{Off: true},
			Domains: []Domain{{Domain: "a.test", Rate: 10}},
		}, func(ctx context.Context, j *Job[string], _ func(string) bool) Outcome {
			st.add(j.Key)
			time.Sleep(30 * time.Millisecond)
			return answer(200, 30*time.Millisecond, 0, "")
		})
		c := &collector{}
		if err := s.run(t.Context(), urlsOf("a.test", 20), c); err != nil {
			t.Fatal(err)
		}
		if n := len(c.snapshot()); n != 20 {
			t.Fatalf("%d results, want 20", n)
		}
		at := st.all()
		for i := 1; i < len(at); i++ {
			gap := at[i] - at[i-1]
			// 10 requests a second, one token at a time: 100 ms apart,
			// give or take the microsecond the dispatcher rounds up to.
			if gap < 100*time.Millisecond || gap > 100*time.Millisecond+10*time.Microsecond {
				t.Errorf("start %d came %v after the previous, want 100ms", i, gap)
			}
		}
		if span := at[len(at)-1] - at[0]; span < 1900*time.Millisecond || span > 1901*time.Millisecond {
			t.Errorf("20 requests at 10/s spanned %v, want 1.9s", span)
		}
	})
}

func TestPerProxyBucketsPaceEachIP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStarts()
		pool := fakePool(t, 4)
		// 60 per IP per minute with safety 1: each proxy 1/s. The domain's
		// own rate is set far higher, so only the per-proxy buckets pace.
		s := newTestGov(t, Config{
			Concurrency: 8, StaggerMax: -1, Adaptive: Adaptive{Off: true}, Proxies: proxyIDs(pool),
			Domains: []Domain{{Domain: "a.test", PerIPPerMinute: 60, Safety: 1, Rate: 100}},
		}, func(ctx context.Context, j *Job[string], allow func(string) bool) Outcome {
			if allow == nil {
				t.Error("no gate for a domain with a per-IP limit")
			}
			l, err := leaseFrom(ctx, pool, j, allow)
			if err != nil {
				return noLease(err)
			}
			st.add(l.Proxy.ID)
			time.Sleep(20 * time.Millisecond)
			defer l.Release(proxy.Outcome{Status: 200})
			return answer(200, 20*time.Millisecond, 0, l.Proxy.ID)
		})
		if lim := s.Limits("a.test"); lim.MaxRate != 100 || lim.ProxyRate != 1 {
			t.Fatalf("limits %+v, want max rate 100/s and 1/s per proxy", lim)
		}
		c := &collector{}
		if err := s.run(t.Context(), urlsOf("a.test", 40), c); err != nil {
			t.Fatal(err)
		}
		if n := len(c.snapshot()); n != 40 {
			t.Fatalf("%d results, want 40", n)
		}
		if len(st.by) != 4 {
			t.Errorf("%d proxies used, want 4", len(st.by))
		}
		for id, at := range st.by {
			for i := 1; i < len(at); i++ {
				if gap := at[i] - at[i-1]; gap < time.Second {
					t.Errorf("proxy %s used twice within %v (at %v and %v), want at least 1s apart", id, gap, at[i-1], at[i])
				}
			}
		}
		at := st.all()
		for i := range at {
			n := sort.Search(len(at), func(k int) bool { return at[k] >= at[i]+time.Second })
			if n-i > 4 {
				t.Errorf("%d requests in the second from %v, want at most 4 (4 proxies at 1/s)", n-i, at[i])
			}
		}
		if span := at[len(at)-1] - at[0]; span > 10*time.Second {
			t.Errorf("40 requests over 4 proxies at 1/s took %v, want about 9s", span)
		}
	})
}

func TestRetryAfterPausesTheProxyForThatDomain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStarts()
		pool := fakePool(t, 3)
		var once sync.Once
		var limited string
		s := newTestGov(t, Config{
			Concurrency: 4, StaggerMax: -1, Adaptive: Adaptive{Off: true}, Proxies: proxyIDs(pool),
			Domains: []Domain{{Domain: "a.test", PerIPPerMinute: 120, Safety: 1}},
		}, func(ctx context.Context, j *Job[string], allow func(string) bool) Outcome {
			l, err := leaseFrom(ctx, pool, j, allow)
			if err != nil {
				return noLease(err)
			}
			defer l.Release(proxy.Outcome{})
			st.add(l.Proxy.ID)
			first := false
			once.Do(func() { first, limited = true, l.Proxy.ID })
			if first {
				return answer(http.StatusTooManyRequests, time.Millisecond, 5*time.Second, l.Proxy.ID)
			}
			return answer(200, time.Millisecond, 0, l.Proxy.ID)
		})
		c := &collector{}
		if err := s.run(t.Context(), urlsOf("a.test", 30), c); err != nil {
			t.Fatal(err)
		}
		got := c.snapshot()
		if len(got) != 30 {
			t.Fatalf("%d results, want 30", len(got))
		}
		for _, f := range got {
			if f.Err != nil {
				t.Errorf("%s: %v", f.URL, f.Err)
			}
		}
		at := st.by[limited]
		if len(at) < 2 {
			t.Fatalf("proxy %s was used %d times after its 429", limited, len(at)-1)
		}
		if at[1]-at[0] < 5*time.Second {
			t.Errorf("proxy %s answered 429 with Retry-After: 5 at %v and was used again at %v", limited, at[0], at[1])
		}
		// The other proxies carried on meanwhile.
		others := 0
		for id, ts := range st.by {
			for _, d := range ts {
				if id != limited && d < at[0]+5*time.Second {
					others++
				}
			}
		}
		if others < 10 {
			t.Errorf("only %d requests on the other proxies during the pause", others)
		}
		if d := s.Stats().Domains[0]; d.Pauses != 1 || !d.PausedUntil.IsZero() {
			t.Errorf("pauses %d, domain paused until %v; want one pause of the proxy only", d.Pauses, d.PausedUntil)
		}
	})
}

func TestStaggeredStartAdmitsOneWorkerPerInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStarts()
		s := newTestGov(t, Config{
			Concurrency: 5, DomainRate: -1, Adaptive: Adaptive{Off: true},
			StaggerMin: 100 * time.Millisecond, StaggerMax: 200 * time.Millisecond,
		}, func(ctx context.Context, j *Job[string], _ func(string) bool) Outcome {
			st.add("")
			time.Sleep(10 * time.Second)
			return answer(200, 0, 0, "")
		})
		// The intervals are drawn from [100ms, 200ms]: 0 → 100ms, 1 → 200ms.
		s.rnd = seq(0, 1, 0.5, 0.25, 0.75)
		if err := s.run(t.Context(), urlsOf("a.test", 5), nil); err != nil {
			t.Fatal(err)
		}
		want := []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond, 450 * time.Millisecond, 575 * time.Millisecond}
		if got := st.all(); !slices.Equal(got, want) {
			t.Errorf("workers started at %v, want %v", got, want)
		}
	})
}

func TestStaggeredStartSpread(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStarts()
		// 40 workers at 100–200ms each would take 4–8 s: the intervals
		// shrink so the ramp fits in Ramp (1 s): 39 × 200ms × k = 1 s.
		s := newTestGov(t, Config{Concurrency: 40, DomainRate: -1, Adaptive: Adaptive{Off: true}},
			func(ctx context.Context, j *Job[string], _ func(string) bool) Outcome {
				st.add("")
				time.Sleep(time.Minute)
				return answer(200, 0, 0, "")
			})
		if err := s.run(t.Context(), urlsOf("a.test", 40), nil); err != nil {
			t.Fatal(err)
		}
		at := st.all()
		if at[0] != 0 {
			t.Errorf("first worker started at %v", at[0])
		}
		k := float64(time.Second) / (39 * float64(200*time.Millisecond))
		lo, hi := time.Duration(k*float64(100*time.Millisecond)), time.Duration(k*float64(200*time.Millisecond))
		gaps := map[time.Duration]bool{}
		for i := 1; i < len(at); i++ {
			gap := at[i] - at[i-1]
			if gap < lo || gap > hi+time.Microsecond {
				t.Errorf("worker %d admitted %v after the previous, want %v–%v", i, gap, lo, hi)
			}
			gaps[gap] = true
		}
		if len(gaps) < 30 {
			t.Errorf("only %d distinct intervals among 39: not spread", len(gaps))
		}
	})
}

// TestRampIsBounded checks that the staggered start admits every worker
// within Ramp, however many there are, still one at a time.
func TestRampIsBounded(t *testing.T) {
	for _, n := range []int{200, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := newStarts()
				s := newTestGov(t, Config{Concurrency: n, DomainRate: -1, Pending: n},
					func(ctx context.Context, j *Job[string], _ func(string) bool) Outcome {
						st.add("")
						time.Sleep(time.Minute)
						return answer(200, 0, 0, "")
					})
				if err := s.run(t.Context(), urlsOf("a.test", n), nil); err != nil {
					t.Fatal(err)
				}
				at := st.all()
				if len(at) != n {
					t.Fatalf("%d attempts, want %d", len(at), n)
				}
				ramp := at[n-1] - at[0]
				t.Logf("concurrency %d: all %d workers busy %v after the first", n, n, ramp)
				if ramp > time.Second {
					t.Errorf("ramp to %d workers took %v, want at most 1s", n, ramp)
				}
				if ramp < 500*time.Millisecond {
					t.Errorf("ramp to %d workers took %v: a burst, not a stagger", n, ramp)
				}
				for i := 1; i < n; i++ {
					if at[i] == at[i-1] {
						t.Fatalf("workers %d and %d admitted together at %v", i-1, i, at[i])
					}
				}
			})
		})
	}
}

// TestOpenDomainReachesFullConcurrencyWithinASecond: a domain without a
// per-IP limit (here unlimited) runs at full concurrency once the ramp
// is over, with the adaptive controller on.
func TestOpenDomainReachesFullConcurrencyWithinASecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		inflight, peak := 0, 0
		var peakAt time.Duration
		t0 := time.Now()
		s := newTestGov(t, Config{Concurrency: 200, DomainRate: -1},
			func(ctx context.Context, j *Job[string], _ func(string) bool) Outcome {
				mu.Lock()
				inflight++
				if inflight > peak {
					peak, peakAt = inflight, time.Since(t0)
				}
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
				mu.Lock()
				inflight--
				mu.Unlock()
				return answer(200, 50*time.Millisecond, 0, "")
			})
		if err := s.run(t.Context(), urlsOf("open.test", 6000), nil); err != nil {
			t.Fatal(err)
		}
		t.Logf("open domain: %d in flight reached at %v", peak, peakAt)
		if peak != 200 || peakAt > 1100*time.Millisecond {
			t.Errorf("peak %d in flight at %v, want 200 within about 1s", peak, peakAt)
		}
		if d := s.Stats().Domains[0]; d.Level != 1 || d.Cuts != 0 {
			t.Errorf("level %v after %d cuts, want 1 and none", d.Level, d.Cuts)
		}
	})
}

// TestControllerReachesMaxWithinSeconds: a per-IP-limited domain starts
// at half its maximum and, while every answer is healthy and latency
// flat, reaches the maximum within a few seconds; then one 429 cuts it by
// 20% at once, and so does a median latency over twice the baseline.
func TestControllerReachesMaxWithinSeconds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type step struct {
			at    time.Duration
			level float64
		}
		var mu sync.Mutex
		var steps []step
		var s *testGov
		t0 := time.Now()
		sent429 := false
		s = newTestGov(t, Config{
			Concurrency: 64, StaggerMax: -1, MaxAttempts: 1,
			// 3000/min from the one direct IP, safety 1: 50 req/s and
			// concurrency 50 at the maximum.
			Domains: []Domain{{Domain: "a.test", PerIPPerMinute: 3000, Safety: 1}},
		}, func(ctx context.Context, j *Job[string], _ func(string) bool) Outcome {
			lvl := s.Stats().Domains[0].Level
			mu.Lock()
			el := time.Since(t0)
			if len(steps) == 0 || steps[len(steps)-1].level != lvl {
				steps = append(steps, step{el, lvl})
			}
			overload := el >= 5*time.Second && !sent429
			sent429 = sent429 || overload
			mu.Unlock()
			switch {
			case overload:
				return answer(http.StatusTooManyRequests, 40*time.Millisecond, 0, "")
			case el >= 8*time.Second && el < 14*time.Second: // 5× the baseline
				time.Sleep(200 * time.Millisecond)
				return answer(200, 200*time.Millisecond, 0, "")
			}
			time.Sleep(40 * time.Millisecond)
			return answer(200, 40*time.Millisecond, 0, "")
		})
		if err := s.run(t.Context(), urlsOf("a.test", 900), nil); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		t.Logf("levels seen: %v", steps)
		want := []float64{0.5, 0.6, 0.72, 0.864, 1}
		for i, w := range want {
			if i >= len(steps) || math.Abs(steps[i].level-w) > 1e-9 {
				t.Fatalf("levels %v, want them to start %v", steps, want)
			}
		}
		if at := steps[4].at; at > 3*time.Second {
			t.Errorf("maximum reached at %v, want within 3s", at)
		} else {
			t.Logf("level 0.5 → 1 in %v", at)
		}
		var cut429, cutSlow bool
		for i := 5; i < len(steps); i++ {
			if math.Abs(steps[i].level/steps[i-1].level-0.8) > 1e-9 {
				continue
			}
			switch at := steps[i].at; {
			case at >= 5*time.Second && at < 5*time.Second+100*time.Millisecond:
				cut429 = true
			case at >= 8*time.Second && at < 15*time.Second:
				cutSlow = true
			}
		}
		if !cut429 || !cutSlow {
			t.Errorf("levels %v: cut on the 429 %v, on the latency %v; want both", steps, cut429, cutSlow)
		}
		if d := s.Stats().Domains[0]; d.Baseline != 40*time.Millisecond {
			t.Errorf("latency baseline %v, want 40ms", d.Baseline)
		}
	})
}

func TestBackoffJitterBoundsAndSpread(t *testing.T) {
	for _, jitter := range []float64{0.3, 0.5} {
		t.Run("", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				first := map[string]time.Time{}
				var delays []time.Duration
				s := newTestGov(t, Config{
					Concurrency: 100, DomainRate: -1, Adaptive: Adaptive{Off: true}, StaggerMax: -1,
					BackoffBase: time.Second, Jitter: jitter, MaxAttempts: 2,
				}, func(ctx context.Context, j *Job[string], _ func(string) bool) Outcome {
					mu.Lock()
					defer mu.Unlock()
					u := j.Item
					if j.Attempt == 1 {
						first[u] = time.Now()
						return answer(http.StatusInternalServerError, 0, 0, "")
					}
					delays = append(delays, time.Since(first[u]))
					return answer(200, 0, 0, "")
				})
				// All 100 fail at the same instant.
				if err := s.run(t.Context(), urlsOf("a.test", 100), nil); err != nil {
					t.Fatal(err)
				}
				if len(delays) != 100 {
					t.Fatalf("%d retries, want 100", len(delays))
				}
				lo := time.Duration(float64(time.Second) * (1 - jitter))
				hi := time.Duration(float64(time.Second) * (1 + jitter))
				sort.Slice(delays, func(a, b int) bool { return delays[a] < delays[b] })
				if delays[0] < lo || delays[99] > hi {
					t.Errorf("retry delays span %v..%v, want within %v..%v", delays[0], delays[99], lo, hi)
				}
				// Spread: the retries cover most of the jitter range and
				// no 10% slice of it holds more than a quarter of them.
				if spread := delays[99] - delays[0]; spread < time.Duration(0.8*float64(hi-lo)) {
					t.Errorf("retries spread over %v, want most of %v", spread, hi-lo)
				}
				slice := (hi - lo) / 10
				for i := range delays {
					n := sort.Search(len(delays), func(k int) bool { return delays[k] > delays[i]+slice })
					if n-i > 25 {
						t.Errorf("%d retries within %v of %v: they bunch", n-i, slice, delays[i])
						break
					}
				}
			})
		})
	}
}

func TestBackoffBounds(t *testing.T) {
	for _, tc := range []struct {
		attempt int
		jitter  float64
		rnd     float64
		want    time.Duration
	}{
		{1, 0.5, 0.5, time.Second},
		{1, 0.5, 0, 500 * time.Millisecond},
		{1, 0.5, 1, 1500 * time.Millisecond},
		{3, 0.3, 0, 2800 * time.Millisecond},
		{3, 0.3, 1, 5200 * time.Millisecond},
		{10, 0.5, 0.5, 30 * time.Second}, // capped
	} {
		got := Backoff(time.Second, 30*time.Second, tc.attempt, tc.jitter, func() float64 { return tc.rnd })
		if math.Abs(float64(got-tc.want)) > float64(time.Microsecond) {
			t.Errorf("Backoff(attempt %d, jitter %v, rnd %v) = %v, want %v", tc.attempt, tc.jitter, tc.rnd, got, tc.want)
		}
	}
}

// TestControllerStepsOnTheGovernor drives one domain through a healthy
// phase, a latency rise and an overload, and checks the levels the
// governor applied, on the fake clock.
func TestControllerStepsOnTheGovernor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var levels []float64
		var s *testGov
		t0 := time.Now()
		s = newTestGov(t, Config{
			Concurrency: 4, StaggerMax: -1,
			// 6000/min from the one direct IP, safety 1: 100 req/s. A
			// known per-IP limit, so the controller starts at 50%.
			Domains:  []Domain{{Domain: "a.test", PerIPPerMinute: 6000, Safety: 1, Concurrency: 4}},
			Adaptive: Adaptive{Window: 20, MinSamples: 10, LatencyWindow: 20, LatencyFloor: 10 * time.Millisecond},
		}, func(ctx context.Context, j *Job[string], _ func(string) bool) Outcome {
			d := s.Stats().Domains[0]
			mu.Lock()
			if len(levels) == 0 || levels[len(levels)-1] != d.Level {
				levels = append(levels, d.Level)
			}
			mu.Unlock()
			if got, want := d.Rate, d.Level*100; math.Abs(got-want) > 1e-9 {
				t.Errorf("rate %v at level %v, want %v", got, d.Level, want)
			}
			el := time.Since(t0)
			switch {
			case el < 4*time.Second: // healthy, 20ms
				time.Sleep(20 * time.Millisecond)
				return answer(200, 20*time.Millisecond, 0, "")
			case el < 7*time.Second: // slow: 5× the baseline
				time.Sleep(100 * time.Millisecond)
				return answer(200, 100*time.Millisecond, 0, "")
			case el < 8*time.Second: // one overload answer
				time.Sleep(20 * time.Millisecond)
				return answer(http.StatusTooManyRequests, 20*time.Millisecond, 0, "")
			default:
				time.Sleep(20 * time.Millisecond)
				return answer(200, 20*time.Millisecond, 0, "")
			}
		})
		s.cfg.MaxAttempts = 1
		if err := s.run(t.Context(), urlsOf("a.test", 600), nil); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if levels[0] != 0.5 {
			t.Fatalf("started at level %v, want 0.5", levels[0])
		}
		// Healthy: +20% per window up to the maximum, never above.
		want := []float64{0.5, 0.6, 0.72, 0.864, 1}
		for i, w := range want {
			if i >= len(levels) || math.Abs(levels[i]-w) > 1e-9 {
				t.Fatalf("levels %v, want them to start %v", levels, want)
			}
		}
		cuts := 0
		for i := 1; i < len(levels); i++ {
			r := levels[i] / levels[i-1]
			switch {
			case levels[i] > 1+1e-9:
				t.Errorf("level %v above the maximum", levels[i])
			case math.Abs(r-0.8) < 1e-9:
				cuts++
			case math.Abs(r-1.2) < 1e-9, levels[i] == 1, levels[i] == 0.05: // capped, or floored at Min
			default:
				t.Errorf("level moved from %v to %v: not a 20%% step", levels[i-1], levels[i])
			}
		}
		if d := s.Stats().Domains[0]; cuts < 2 || d.Cuts < 2 {
			t.Errorf("levels %v: %d cuts, want one on latency and one on the 429", levels, cuts)
		}
		if d := s.Stats().Domains[0]; d.Baseline != 20*time.Millisecond {
			t.Errorf("latency baseline %v, want 20ms", d.Baseline)
		}
	})
}

func TestBodyBudgetLimitsAdmission(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		calls := 0
		var s *testGov
		s = newTestGov(t, Config{Concurrency: 4, DomainRate: -1, StaggerMax: -1, BodyBudget: 1000},
			func(ctx context.Context, j *Job[string], _ func(string) bool) Outcome {
				mu.Lock()
				calls++
				mu.Unlock()
				res := answer(200, 0, 0, "")
				// Each body fills the budget; one that finds it taken
				// spools to disk (holds nothing), as the reader does.
				if s.budget.Take(1000) {
					res.Held = 1000
				}
				return res
			})
		c := &collector{hold: make(chan struct{})}
		done := make(chan error)
		go func() { done <- s.run(t.Context(), urlsOf("a.test", 8), c) }()
		synctest.Wait()
		// The sink takes nothing, so results pile up in front of it and a
		// worker keeps its body's bytes: the budget is used up and the
		// rest of the tasks wait. Attempts dispatched before the first
		// body arrived may have run (they spooled); none starts after,
		// however long the budget stays used up.
		started := func() int {
			mu.Lock()
			defer mu.Unlock()
			return calls
		}
		n := started()
		g := s.Stats()
		if g.BodyBytes != 1000 || g.InFlight != 0 {
			t.Errorf("body bytes %d, in flight %d; want 1000 and 0", g.BodyBytes, g.InFlight)
		}
		if n >= 8 || g.Pending < 8-n {
			t.Errorf("%d attempts started, %d tasks pending while the body budget was used up; want the rest waiting", n, g.Pending)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if m := started(); m != n {
			t.Errorf("%d attempts started while the body budget stayed used up for a minute, want none", m-n)
		}
		close(c.hold)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if len(c.snapshot()) != 8 || calls != 8 {
			t.Errorf("%d results after %d attempts, want 8", len(c.snapshot()), calls)
		}
		if g := s.Stats(); g.BodyBytes != 0 || g.BodyBytesPeak != 1000 {
			t.Errorf("body bytes %d (peak %d) at the end, want 0 (1000)", g.BodyBytes, g.BodyBytesPeak)
		}
	})
}

// BenchmarkGovernorDispatch measures the scheduler's own cost per task:
// 16 domains, no rate limit, attempts that answer at once.
func BenchmarkGovernorDispatch(b *testing.B) {
	s := newTestGov(b, Config{Concurrency: 32, DomainRate: -1, StaggerMax: -1, Adaptive: Adaptive{Off: true}},
		func(ctx context.Context, j *Job[string], _ func(string) bool) Outcome {
			return answer(200, 0, 0, "")
		})
	var urls []string
	for i := range b.N {
		urls = append(urls, fmt.Sprintf("http://d%d.test/p/%d", i%16, i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	if err := s.run(context.Background(), urls, nil); err != nil {
		b.Fatal(err)
	}
}
