package fetch

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

// startRun runs a fetch stage over urls in the background; the returned
// function cancels the run (hard) and waits for it.
func startRun(t *testing.T, s *Stage, urls []string) (stop func()) {
	t.Helper()
	src := flow.NewSource("urls", func(stop context.Context, emit flow.Emit[record.Task]) error {
		for _, raw := range urls {
			u, err := url.Parse(raw)
			if err != nil {
				return err
			}
			if err := emit(record.Task{Msg: record.Message{URL: raw}, URL: u, Enqueued: time.Now()}); err != nil {
				return nil
			}
		}
		return nil
	})
	sk := flow.NewSink("collect", 8, func(ctx context.Context, in flow.Inbox[record.Fetched]) error {
		for {
			if _, ok := in.Recv(ctx); !ok {
				return nil
			}
		}
	})
	flow.Connect(src, s.Flow())
	flow.Connect[record.Fetched](s.Flow(), sk)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- flow.Run(ctx, ctx, src, s.Flow(), sk) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
}

// eventually polls cond until it holds, failing after a generous bound.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestActivityAndConns holds four requests in two slow farm proxies and
// reads what the stage reports: the requests by proxy and domain, the
// connections they hold; and everything back to zero afterwards.
func TestActivityAndConns(t *testing.T) {
	site, err := testbed.StartSite(testbed.SiteConfig{Products: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	farm, err := testbed.StartFarm(testbed.FarmConfig{N: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	for i := range 2 {
		farm.Proxy(i).SetLatency(time.Minute) // held until the run is stopped
	}
	cfg := fastConfig()
	cfg.Concurrency = 4
	cfg.Pool = farmPool(t, farm)
	cfg.Adaptive.Off = true // all 4 at once, not the governor's half to start
	cfg.NoHedge = true      // held requests run late: a hedge would add a fifth
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if need := s.FDsNeeded(); need != 4+3+3 {
		t.Errorf("FDsNeeded = %d, want 10 (4 workers + two pools of 3)", need)
	}
	var urls []string
	for id := 1; id <= 4; id++ {
		urls = append(urls, site.ProductURL(id))
	}
	stop := startRun(t, s, urls)
	eventually(t, "4 requests in flight", func() bool { return s.Activity().Requests["p1"]+s.Activity().Requests["p2"] == 4 })
	a := s.Activity()
	if a.Requests["p1"] != 2 || a.Requests["p2"] != 2 || a.DomainRequests["127.0.0.1"] != 4 || a.Workers != 4 ||
		a.InFlight != 4 || a.Handover != 0 || len(a.TokenWait) != 0 || a.LeaseWait != 0 || a.Backoff != 0 {
		t.Errorf("activity %+v", a)
	}
	eventually(t, "4 connections open", func() bool {
		n := 0
		for _, c := range s.Pools() {
			n += int(c.Open)
		}
		return n == 4
	})
	for _, c := range s.Pools() {
		if c.Busy != 2 || c.Idle != 0 || c.Size != 3 || c.Dials != 2 {
			t.Errorf("conns %+v", c)
		}
	}
	stop()
	s.Close()
	a = s.Activity()
	if len(a.Requests) != 0 || len(a.DomainRequests) != 0 || a.InFlight != 0 {
		t.Errorf("after the run: %+v", a)
	}
	for _, c := range s.Pools() {
		if c.Open != 0 || c.Busy != 0 {
			t.Errorf("after Close: %+v", c)
		}
	}
}

// TestActivityTokenWait gives a domain one token every two seconds: while
// the first request goes out, the other three inputs wait in the domain's
// queue.
func TestActivityTokenWait(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer srv.Close()
	cfg := fastConfig()
	cfg.Concurrency = 4
	cfg.DomainRate = 0.5
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stop := startRun(t, s, []string{srv.URL + "/1", srv.URL + "/2", srv.URL + "/3", srv.URL + "/4"})
	eventually(t, "3 inputs waiting for tokens", func() bool { return s.Activity().TokenWait["127.0.0.1"] == 3 })
	// A domain without a per-IP limit starts at its maximum: 0.5/s and
	// one request in flight.
	if d := s.Domains(); len(d) != 1 || d[0].Domain != "127.0.0.1" || d[0].Rate != 0.5 || d[0].Limits.Burst != 1 || d[0].Concurrency != 1 || d[0].Level != 1 {
		t.Errorf("domains %+v", d)
	}
	stop()
	if a := s.Activity(); len(a.TokenWait) != 0 {
		t.Errorf("token waits after the run: %+v", a)
	}
}
