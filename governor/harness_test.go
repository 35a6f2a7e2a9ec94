package governor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/proxy"
)

// The governor's tests run the real dispatcher, token buckets and
// controller on synctest's fake clock, with workers that drive it the
// way the fetch stage's do; only the attempt is replaced, by a function
// that answers after a fake delay.

// attemptFunc makes one fake attempt of j.
type attemptFunc func(ctx context.Context, j *Job[string], allow func(string) bool) Outcome

// testGov is a governor of URLs and the fake attempt its workers make.
type testGov struct {
	*Governor[string]
	attempt attemptFunc
}

func newTestGov(t testing.TB, cfg Config, attempt attemptFunc) *testGov {
	t.Helper()
	if cfg.Rand == nil {
		cfg.Rand = lockedRand(1)
	}
	g, err := New[string](cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &testGov{Governor: g, attempt: attempt}
}

// result is one finished job.
type result struct {
	URL      string
	Attempts int
	Status   int
	Err      error
}

// collector records finished jobs in order. hold, if not nil, is waited
// on before each after the first is taken, as a slow next stage with a
// buffer of one would.
type collector struct {
	mu   sync.Mutex
	got  []result
	hold chan struct{}
}

func (c *collector) snapshot() []result {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]result(nil), c.got...)
}

func (c *collector) add(ctx context.Context, r result) {
	c.mu.Lock()
	first := len(c.got) == 0
	c.mu.Unlock()
	if c.hold != nil && !first {
		select {
		case <-c.hold:
		case <-ctx.Done():
		}
	}
	c.mu.Lock()
	c.got = append(c.got, r)
	c.mu.Unlock()
}

// run feeds urls to the governor and runs its workers until every one
// finished or ctx ended.
func (s *testGov) run(ctx context.Context, urls []string, c *collector) error {
	if c == nil {
		c = &collector{}
	}
	intake := make(chan *Job[string])
	var wg sync.WaitGroup
	var bad error
	wg.Go(func() {
		defer close(intake)
		for _, raw := range urls {
			u, err := url.Parse(raw)
			if err != nil {
				bad = err
				return
			}
			select {
			case intake <- &Job[string]{Key: u.Hostname(), Item: raw}:
			case <-ctx.Done():
				return
			}
		}
	})
	for range s.Workers() {
		wg.Go(func() {
			for j := range s.Jobs() {
				o := s.attempt(ctx, j, s.Gate(j))
				v, _, ok := s.Report(ctx, j, o)
				switch {
				case v == Finish:
					c.add(ctx, result{URL: j.Item, Attempts: j.Attempt, Status: o.Status, Err: o.Err})
					s.Release(ctx, o.Held)
				case !ok:
					c.add(ctx, result{URL: j.Item, Attempts: j.Attempt, Err: context.Cause(ctx)})
				}
			}
		})
	}
	s.Run(ctx, intake, func(j *Job[string]) {
		c.add(ctx, result{URL: j.Item, Attempts: j.Attempt, Err: context.Cause(ctx)})
	})
	wg.Wait()
	return bad
}

// urlsOf returns n URLs on host: http://host/product/1 ...
func urlsOf(host string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("http://%s/product/%d", host, i+1)
	}
	return out
}

// lockedRand is a seeded, goroutine-safe source of floats in [0, 1).
func lockedRand(seed uint64) func() float64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Float64()
	}
}

// seq returns the given values in turn, then the last one forever.
func seq(vals ...float64) func() float64 {
	var mu sync.Mutex
	i := 0
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		v := vals[min(i, len(vals)-1)]
		i++
		return v
	}
}

// answer is a fake attempt's outcome: the status the "site" gave after a
// time to first byte, classified as the fetch stage does.
func answer(status int, firstByte time.Duration, retryAfter time.Duration, via string) Outcome {
	o := Outcome{Proxy: via, Status: status, RetryAfter: retryAfter, Latency: firstByte}
	viaProxy := via != ""
	switch {
	case status < 400:
	case status == 429:
		o.Err = failure.New(failure.RateLimited, failure.ErrRateLimited, fmt.Errorf("target answered %d", status))
	case viaProxy && (status == 502 || status == 504):
		o.Err = failure.New(failure.ProxyProtocol, failure.ErrProxy, fmt.Errorf("proxy answered %d", status))
	case status >= 500:
		o.Err = failure.New(failure.ServerError, failure.ErrRetryable, fmt.Errorf("target answered %d", status))
	case status == 403:
		o.Err = failure.New(failure.Blocked, failure.ErrPermanent, fmt.Errorf("target answered %d", status))
	default:
		o.Err = failure.New(failure.ClientError, failure.ErrPermanent, fmt.Errorf("target answered %d", status))
	}
	o.Class = failure.ClassOf(o.Err)
	return o
}

// leaseFrom leases a proxy the way the fetch stage does: through the gate.
func leaseFrom(ctx context.Context, pool *proxy.Pool, j *Job[string], allow func(string) bool) (*proxy.Lease, error) {
	return pool.Acquire(ctx, proxy.Request{Domain: j.Key, Allow: allow})
}

// noLease is the outcome of an attempt that got no proxy.
func noLease(err error) Outcome {
	return Outcome{NoProxy: errors.Is(err, proxy.ErrNoneAllowed), Err: failure.New(failure.Canceled, failure.ErrPermanent, err)}
}

// fakePool is a pool of n proxies that are never dialled.
func fakePool(t testing.TB, n int) *proxy.Pool {
	t.Helper()
	var ps []*proxy.Proxy
	for i := range n {
		p, err := proxy.Parse(fmt.Sprintf("p%d", i+1), fmt.Sprintf("http://127.0.0.1:%d", 9+i))
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	pool, err := proxy.New(ps)
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// proxyIDs are the ids of pool's proxies, for Config.Proxies.
func proxyIDs(pool *proxy.Pool) []string {
	var ids []string
	for _, p := range pool.Proxies() {
		ids = append(ids, p.ID)
	}
	return ids
}
