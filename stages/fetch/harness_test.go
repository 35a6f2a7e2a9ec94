package fetch

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

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
