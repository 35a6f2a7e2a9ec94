package governor

import (
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicehq/sluice/failure"
)

// parkRun feeds urls to g and runs its workers the way the fetch stage
// does with parking on: a job handed over with Park set is not attempted,
// and a Park verdict ends the job. It returns the finished and the parked
// jobs (with their due times) once all are one or the other, and the
// errors the parked ones carry (the attempt's, or the domain's pause's).
func parkRun(t *testing.T, g *Governor[string], urls []string, attempt func(j *Job[string]) Outcome) (finished []string, parked map[string]time.Time, why map[string]error) {
	t.Helper()
	ctx := t.Context()
	var mu sync.Mutex
	parked, why = map[string]time.Time{}, map[string]error{}
	intake := make(chan *Job[string])
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(intake)
		for _, raw := range urls {
			u, err := url.Parse(raw)
			if err != nil {
				t.Error(err)
				return
			}
			select {
			case intake <- &Job[string]{Key: u.Hostname(), Item: raw}:
			case <-ctx.Done():
				return
			}
		}
	})
	for range g.Workers() {
		wg.Go(func() {
			for j := range g.Jobs() {
				if !j.Park.IsZero() {
					mu.Lock()
					parked[j.Item], why[j.Item] = j.Park, j.ParkErr
					mu.Unlock()
					g.Release(ctx, 0)
					continue
				}
				o := attempt(j)
				v, _, _ := g.Report(ctx, j, o)
				switch v {
				case Finish:
					mu.Lock()
					finished = append(finished, j.Item)
					mu.Unlock()
					g.Release(ctx, o.Held)
				case Park:
					mu.Lock()
					parked[j.Item], why[j.Item] = j.Park, o.Err
					mu.Unlock()
					g.Release(ctx, o.Held)
				}
			}
		})
	}
	g.Run(ctx, intake, func(j *Job[string]) { t.Errorf("%s abandoned", j.Item) })
	wg.Wait()
	return finished, parked, why
}

func TestParkingALongRetryAfterLeavesOtherDomainsAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		g, err := New[string](Config{Concurrency: 2, StaggerMax: -1, DomainRate: -1, ParkAfter: time.Second, Rand: lockedRand(1)})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		attempts := map[string]int{}
		urls := append(urlsOf("slow.test", 10), urlsOf("fast.test", 10)...)
		finished, parked, why := parkRun(t, g, urls, func(j *Job[string]) Outcome {
			mu.Lock()
			attempts[j.Key]++
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
			if j.Key == "slow.test" {
				return answer(429, 10*time.Millisecond, 120*time.Second, "")
			}
			return answer(200, 10*time.Millisecond, 0, "")
		})
		if len(finished) != 10 || len(parked) != 10 {
			t.Fatalf("%d finished, %d parked; want 10 and 10", len(finished), len(parked))
		}
		for u, due := range parked {
			if d := due.Sub(start); d < 120*time.Second || d > 121*time.Second {
				t.Errorf("%s parked until start+%v, want start+120s (the Retry-After)", u, d)
			}
			if failure.ClassOf(why[u]) != failure.RateLimited {
				t.Errorf("%s parked with error %v, want the 429's (rate_limited)", u, why[u])
			}
		}
		if attempts["slow.test"] > 2 {
			t.Errorf("%d attempts on the paused domain; want at most one per worker", attempts["slow.test"])
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("the run took %v: parked jobs were held", d)
		}
		for _, d := range g.Stats().Domains {
			if d.Domain == "slow.test" && d.Parked != 10 {
				t.Errorf("slow.test parked %d, want 10", d.Parked)
			}
		}
	})
}

func TestParkingAJobThatWaitedTooLongForAToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		g, err := New[string](Config{Concurrency: 2, StaggerMax: -1, DomainRate: 1, ParkAfter: 3 * time.Second, Rand: lockedRand(1)})
		if err != nil {
			t.Fatal(err)
		}
		finished, parked, _ := parkRun(t, g, urlsOf("a.test", 10), func(j *Job[string]) Outcome {
			return answer(200, time.Millisecond, 0, "")
		})
		// One token a second: those the bucket serves within 3 s are
		// attempted, the rest wait 3 s and are parked, due 3 s later.
		if len(finished)+len(parked) != 10 || len(finished) < 3 || len(finished) > 5 {
			t.Fatalf("%d finished, %d parked; want 3 to 5 finished and the rest parked", len(finished), len(parked))
		}
		for u, due := range parked {
			if d := due.Sub(start); d < 6*time.Second || d > 7*time.Second {
				t.Errorf("%s parked until start+%v, want start+6s", u, d)
			}
		}
	})
}

func TestNoParkingWithoutParkAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, err := New[string](Config{Concurrency: 2, StaggerMax: -1, DomainRate: -1, MaxAttempts: 2, Rand: lockedRand(1)})
		if err != nil {
			t.Fatal(err)
		}
		finished, parked, _ := parkRun(t, g, urlsOf("slow.test", 3), func(j *Job[string]) Outcome {
			return answer(429, time.Millisecond, 120*time.Second, "")
		})
		if len(finished) != 3 || len(parked) != 0 {
			t.Fatalf("%d finished, %d parked; want 3 and 0", len(finished), len(parked))
		}
	})
}

// TestRevokedJobsSpendNoTokens: at one token a second, a wanted job, ten
// jobs whose input was revoked while they queued (Job.Gone), and another
// wanted job. The revoked ones are let go without a token or an attempt,
// so the second wanted job starts a second after the first, not eleven.
func TestRevokedJobsSpendNoTokens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		g, err := New[string](Config{Concurrency: 2, StaggerMax: -1, DomainRate: 1, Rand: lockedRand(1)})
		if err != nil {
			t.Fatal(err)
		}
		ctx := t.Context()
		var revoked atomic.Bool
		revoked.Store(true)
		jobs := []*Job[string]{{Key: "a.test", Item: "first"}}
		for i := range 10 {
			jobs = append(jobs, &Job[string]{Key: "a.test", Item: fmt.Sprint("revoked ", i), Gone: revoked.Load})
		}
		jobs = append(jobs, &Job[string]{Key: "a.test", Item: "last"})
		intake := make(chan *Job[string])
		var mu sync.Mutex
		started := map[string]time.Duration{}
		dropped := 0
		var wg sync.WaitGroup
		wg.Go(func() {
			defer close(intake)
			for _, j := range jobs {
				intake <- j
			}
		})
		for range g.Workers() {
			wg.Go(func() {
				for j := range g.Jobs() {
					mu.Lock()
					if j.Dropped {
						dropped++
						mu.Unlock()
						g.Release(ctx, 0)
						continue
					}
					started[j.Item] = time.Since(start)
					mu.Unlock()
					o := answer(200, time.Millisecond, 0, "")
					if v, _, _ := g.Report(ctx, j, o); v == Finish {
						g.Release(ctx, o.Held)
					}
				}
			})
		}
		g.Run(ctx, intake, func(j *Job[string]) { t.Errorf("%s abandoned", j.Item) })
		wg.Wait()
		if dropped != 10 || len(started) != 2 {
			t.Fatalf("%d dropped, attempted %v; want 10 dropped and first and last attempted", dropped, started)
		}
		if d := started["last"] - started["first"]; d > 1500*time.Millisecond {
			t.Errorf("the last wanted job started %v after the first: the revoked ones spent tokens", d)
		}
		for _, d := range g.Stats().Domains {
			if d.Dropped != 10 || d.Attempts != 2 {
				t.Errorf("%s: dropped %d, attempts %d; want 10 and 2", d.Domain, d.Dropped, d.Attempts)
			}
		}
	})
}
