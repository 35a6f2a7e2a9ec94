package fetch

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/guard"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

// manualClock is a clock the test moves by hand (for the pool's health).
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *manualClock { return &manualClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

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

// newTask builds a Task for a URL, with an optional sticky session.
func newTask(t *testing.T, raw, session string) record.Task {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return record.Task{Msg: record.Message{URL: raw, Session: session}, URL: u, Enqueued: time.Now()}
}

// quickConfig is a fetch config for loopback tests: no rate limit, short
// backoffs, a bounded attempt.
// testPolicy lets the stage reach the test servers, which are on
// loopback (refused by default).
var testPolicy = guard.Config{AllowLoopback: true}

func quickConfig(pool *proxy.Pool, concurrency int) Config {
	return Config{
		Concurrency: concurrency, DomainRate: -1, Pool: pool,
		MaxAttempts: 4, BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond,
		AttemptTimeout: 20 * time.Second, ConnectTimeout: 5 * time.Second,
		Policy: testPolicy,
	}
}

// fetchAll runs a fresh fetch stage over tasks (in order, through the
// stage's workers) and returns every Fetched it passed on.
func fetchAll(t *testing.T, cfg Config, tasks []record.Task) []record.Fetched {
	t.Helper()
	st, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	src := flow.NewSource("tasks", func(stop context.Context, emit flow.Emit[record.Task]) error {
		for _, tk := range tasks {
			if err := emit(tk); err != nil {
				return err
			}
		}
		return nil
	})
	var mu sync.Mutex
	var out []record.Fetched
	sink := flow.NewSink("collect", 16, func(ctx context.Context, in flow.Inbox[record.Fetched]) error {
		for {
			f, ok := in.Recv(ctx)
			if !ok {
				return nil
			}
			mu.Lock()
			out = append(out, f)
			mu.Unlock()
		}
	})
	flow.Connect(src, st.Flow())
	flow.Connect(st.Flow(), sink)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := flow.Run(ctx, ctx, src, st.Flow(), sink); err != nil {
		t.Fatalf("run: %v", err)
	}
	return out
}

// requireAllOK checks that every task came out exactly once, without error.
func requireAllOK(t *testing.T, tasks []record.Task, got []record.Fetched) {
	t.Helper()
	want := map[string]int{}
	for _, tk := range tasks {
		want[tk.Msg.URL]++
	}
	for _, f := range got {
		if f.Err != nil {
			t.Errorf("%s: %v", f.Task.Msg.URL, f.Err)
		}
		want[f.Task.Msg.URL]--
	}
	for u, n := range want {
		if n != 0 {
			t.Errorf("%s: %d results missing (negative: duplicated)", u, n)
		}
	}
	if len(got) != len(tasks) {
		t.Fatalf("%d tasks in, %d results out", len(tasks), len(got))
	}
}

// newFarmPool starts a farm of n proxies and a pool over it with the ids
// p1..pn (proxy i+1 dials from farm.Proxy(i).SourceIP()). Start sites
// first: cleanups run in reverse, and a site waits (up to its grace
// period) for connections the farm opened and never used.
func newFarmPool(t *testing.T, n, firstIP int, fc testbed.FarmConfig, opts ...proxy.Option) (*testbed.Farm, *proxy.Pool) {
	t.Helper()
	fc.N, fc.FirstSourceIP = n, firstIP
	farm, err := testbed.StartFarm(fc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { farm.Close() })
	return farm, farmPool(t, farm, opts...)
}

func startSite(t *testing.T, cfg testbed.SiteConfig) *testbed.Site {
	t.Helper()
	s, err := testbed.StartSite(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// srcOf maps proxy ids to the farm's source addresses.
func srcOf(farm *testbed.Farm) map[string]string {
	m := map[string]string{}
	for i := range farm.Len() {
		m[fmt.Sprintf("p%d", i+1)] = farm.Proxy(i).SourceIP()
	}
	return m
}

func proxyStats(pool *proxy.Pool, id string) proxy.ProxyStats {
	for _, s := range pool.Stats().Proxies {
		if s.ID == id {
			return s
		}
	}
	panic("no proxy " + id)
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
