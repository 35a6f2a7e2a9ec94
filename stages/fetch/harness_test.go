package fetch

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
)

// tasks makes one Task per URL.
func tasks(t testing.TB, urls ...string) []record.Task {
	t.Helper()
	out := make([]record.Task, 0, len(urls))
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, record.Task{Msg: record.Message{URL: raw}, URL: u, Enqueued: time.Now()})
	}
	return out
}

// urlsOf returns n URLs on host: http://host/product/1 ...
func urlsOf(host string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("http://%s/product/%d", host, i+1)
	}
	return out
}

// collector is a sink that records what reaches it, in order. hold, if not
// nil, is waited on before each element is taken.
type collector struct {
	mu   sync.Mutex
	got  []record.Fetched
	hold chan struct{}
}

func (c *collector) snapshot() []record.Fetched {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]record.Fetched(nil), c.got...)
}

// runStage runs ts through s into a collecting sink until all are done or
// ctx ends, and returns what came out.
func runStage(ctx context.Context, s *Stage, ts []record.Task, c *collector) error {
	src := flow.NewSource("src", func(stop context.Context, emit flow.Emit[record.Task]) error {
		for _, t := range ts {
			if stop.Err() != nil {
				return nil
			}
			if err := emit(t); err != nil {
				return nil
			}
		}
		return nil
	})
	if c == nil {
		c = &collector{}
	}
	sink := flow.NewSink("collect", 1, func(ctx context.Context, in flow.Inbox[record.Fetched]) error {
		for {
			if c.hold != nil {
				select {
				case <-c.hold:
				case <-ctx.Done():
				}
			}
			f, ok := in.Recv(ctx)
			if !ok {
				return nil
			}
			c.mu.Lock()
			c.got = append(c.got, f)
			c.mu.Unlock()
		}
	})
	flow.Connect(src, s.Flow())
	flow.Connect(s.Flow(), sink)
	return flow.Run(ctx, ctx, src, s.Flow(), sink)
}

// newTestStage builds a stage whose attempts are made by exec instead of
// the network, for tests of the scheduling on a fake clock.
func newTestStage(t testing.TB, cfg Config, exec execFunc) *Stage {
	t.Helper()
	cfg.DNS.Off = true
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.gov.exec = exec
	s.gov.rnd = lockedRand(1)
	return s
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

// answer is a fake attempt's result: the status the "site" gave after a
// time to first byte.
func answer(status int, firstByte time.Duration, retryAfter time.Duration, via string) (attemptResult, error) {
	res := attemptResult{proxy: via, status: status, retryAfter: retryAfter,
		timings: record.Timings{FirstByteMS: firstByte.Milliseconds()}}
	if via == "" {
		res.proxy = directID
	}
	return res, statusError(status, via != "" && via != directID)
}

// leaseFrom leases a proxy the way attempt does: through the gate.
func leaseFrom(ctx context.Context, pool *proxy.Pool, j *job, allow func(string) bool) (*proxy.Lease, error) {
	l, err := pool.Acquire(ctx, proxy.Request{Domain: j.task.URL.Hostname(), Avoid: j.tried, Allow: allow})
	if err != nil {
		return nil, failure.New(failure.Canceled, failure.ErrPermanent, err)
	}
	return l, nil
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
