package fetch_test

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/guard"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/stages/fetch"
	"github.com/sluicehq/sluice/stages/source"
	"github.com/sluicehq/sluice/testbed"
)

// run sends urls through a fetch stage built from cfg and returns one
// Fetched per URL, in input order. A URL that does not parse becomes a
// Task carrying its bad_input error, as the source makes it.
func run(t testing.TB, cfg fetch.Config, urls []string) []record.Fetched {
	t.Helper()
	st, err := fetch.New(cfg)
	if err != nil {
		t.Fatalf("fetch.New: %v", err)
	}
	defer st.Close()
	return runStage(t, st, urls)
}

func runStage(t testing.TB, st *fetch.Stage, urls []string) []record.Fetched {
	t.Helper()
	src := flow.NewSource("urls", func(stop context.Context, emit flow.Emit[record.Task]) error {
		for i, raw := range urls {
			msg, u, err := source.Decode([]byte(raw), 0)
			task := record.Task{Msg: msg, URL: u, Err: err, Origin: record.Origin{Offset: int64(i), Raw: []byte(raw)}, Enqueued: time.Now()}
			if err := emit(task); err != nil {
				return nil
			}
		}
		return nil
	})
	var mu sync.Mutex
	var got []record.Fetched
	var sink *flow.Sink[record.Fetched]
	sink = flow.NewSink("collect", 4, func(ctx context.Context, in flow.Inbox[record.Fetched]) error {
		for {
			f, ok := in.Recv(ctx)
			if !ok {
				return nil
			}
			if err := f.LoadBody(); err != nil { // a spooled body, as the parse stage reads it
				t.Errorf("load body: %v", err)
			}
			mu.Lock()
			got = append(got, f)
			mu.Unlock()
			sink.Stats().Done(1)
		}
	})
	flow.Connect(src, st.Flow())
	flow.Connect(st.Flow(), sink)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := flow.Run(ctx, ctx, src, st.Flow(), sink); err != nil {
		t.Fatalf("flow.Run: %v", err)
	}
	sort.Slice(got, func(i, j int) bool { return got[i].Task.Origin.Offset < got[j].Task.Origin.Offset })
	if len(got) != len(urls) {
		t.Fatalf("%d results for %d inputs", len(got), len(urls))
	}
	return got
}

// fast is a stage config for tests: no rate limit, quick retries, loopback
// allowed unless a test turns it off.
func fast() fetch.Config {
	return fetch.Config{
		Concurrency: 4,
		DomainRate:  -1,
		MaxAttempts: 1,
		BackoffBase: time.Millisecond,
		BackoffMax:  2 * time.Millisecond,
		Policy:      guardLoopback(),
	}
}

func startHostile(t testing.TB, cfg testbed.HostileConfig) *testbed.Hostile {
	t.Helper()
	h, err := testbed.StartHostile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("hostile close: %v", err)
		}
	})
	return h
}

func startSite(t testing.TB, cfg testbed.SiteConfig) *testbed.Site {
	t.Helper()
	s, err := testbed.StartSite(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func startFarm(t testing.TB, n int) *testbed.Farm {
	t.Helper()
	f, err := testbed.StartFarm(testbed.FarmConfig{N: n})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func startCanary(t testing.TB, addr string) *testbed.Canary {
	t.Helper()
	c, err := testbed.StartCanary(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func startDNS(t testing.TB, answers map[string][]string) *testbed.DNS {
	t.Helper()
	cfg := testbed.DNSConfig{Answers: map[string][][]netip.Addr{}}
	for name, seq := range answers {
		for _, list := range seq {
			var addrs []netip.Addr
			for _, s := range strings.Fields(list) {
				addrs = append(addrs, netip.MustParseAddr(s))
			}
			cfg.Answers[name] = append(cfg.Answers[name], addrs)
		}
	}
	d, err := testbed.StartDNS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func pool(t testing.TB, farm *testbed.Farm, opts ...proxy.Option) *proxy.Pool {
	t.Helper()
	var ps []*proxy.Proxy
	for i, u := range farm.URLs() {
		p, err := proxy.Parse(fmt.Sprintf("p%d", i+1), u)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	pl, err := proxy.New(ps, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return pl
}

// errClass is the failure class of a Fetched, "" for success.
func errClass(f record.Fetched) failure.Class { return failure.ClassOf(f.Err) }

func guardLoopback() guard.Config { return guard.Config{AllowLoopback: true} }
