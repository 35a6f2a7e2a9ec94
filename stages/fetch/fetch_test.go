package fetch

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/guard"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// runFetch pushes the URLs through a fetch stage and returns the results
// in input order.
func runFetch(t *testing.T, cfg Config, urls []string) []record.Fetched {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	src := flow.NewSource("urls", func(stop context.Context, emit flow.Emit[record.Task]) error {
		for i, raw := range urls {
			task := record.Task{Msg: record.Message{URL: raw}, Origin: record.Origin{Offset: int64(i)}, Enqueued: time.Now()}
			u, err := url.Parse(raw)
			if err != nil || u.Host == "" {
				task.Err = failure.Errorf(failure.BadInput, "bad URL %q", raw)
			} else {
				task.URL = u
			}
			if err := emit(task); err != nil {
				return err
			}
		}
		return nil
	})
	var mu sync.Mutex
	got := make([]record.Fetched, len(urls))
	seen := 0
	sk := flow.NewSink("collect", 8, func(ctx context.Context, in flow.Inbox[record.Fetched]) error {
		for {
			f, ok := in.Recv(ctx)
			if !ok {
				return nil
			}
			mu.Lock()
			got[f.Task.Origin.Offset] = f
			seen++
			mu.Unlock()
		}
	})
	flow.Connect(src, s.Flow())
	flow.Connect[record.Fetched](s.Flow(), sk)
	if err := flow.Run(context.Background(), context.Background(), src, s.Flow(), sk); err != nil {
		t.Fatal(err)
	}
	if seen != len(urls) {
		t.Fatalf("got %d results for %d inputs", seen, len(urls))
	}
	return got
}

func farmPool(t *testing.T, farm *testbed.Farm, opts ...proxy.Option) *proxy.Pool {
	t.Helper()
	var ps []*proxy.Proxy
	for i, u := range farm.URLs() {
		p, err := proxy.Parse(fmt.Sprintf("p%d", i+1), u)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	pool, err := proxy.New(ps, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// fastConfig is a test config; loopback, where the test servers run, is
// refused by the URL policy unless allowed.
func fastConfig() Config {
	return Config{Concurrency: 8, DomainRate: -1, BackoffBase: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
		Policy: guard.Config{AllowLoopback: true}}
}

func TestFetchThroughFarm(t *testing.T) {
	site, err := testbed.StartSite(testbed.SiteConfig{Products: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	farm, err := testbed.StartFarm(testbed.FarmConfig{N: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	cfg := fastConfig()
	cfg.Pool = farmPool(t, farm)
	var urls []string
	for id := 1; id <= 100; id++ {
		urls = append(urls, site.ProductURL(id))
	}
	urls = append(urls, "not a url")
	got := runFetch(t, cfg, urls)
	for i, f := range got[:100] {
		if f.Err != nil || f.Status != 200 || !strings.Contains(string(f.Body), testbed.ExpectedProduct(i+1).Name) {
			t.Fatalf("url %d: status %d err %v", i+1, f.Status, f.Err)
		}
		if f.Timings.TotalMS < 0 || f.Attempts != 1 || !strings.HasPrefix(f.Proxy, "p") {
			t.Fatalf("url %d: attempts %d proxy %q", i+1, f.Attempts, f.Proxy)
		}
	}
	if c := failure.ClassOf(got[100].Err); c != failure.BadInput || got[100].Attempts != 0 {
		t.Fatalf("bad input: class %q attempts %d", c, got[100].Attempts)
	}
	if n := len(site.Stats().ByIP); n != 4 {
		t.Fatalf("site saw %d client addresses, want 4", n)
	}
}

// flaky answers each path with the given statuses in turn, then 200, and
// records the client address of every request.
type flaky struct {
	mu      sync.Mutex
	plan    map[string][]int
	headers map[string]string
	seen    map[string][]string
	times   map[string][]time.Time
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	f.seen[r.URL.Path] = append(f.seen[r.URL.Path], host)
	f.times[r.URL.Path] = append(f.times[r.URL.Path], time.Now())
	status := 200
	if p := f.plan[r.URL.Path]; len(p) > 0 {
		status, f.plan[r.URL.Path] = p[0], p[1:]
	}
	f.mu.Unlock()
	for k, v := range f.headers {
		w.Header().Set(k, v)
	}
	w.WriteHeader(status)
	fmt.Fprintf(w, "<html><h1>%s</h1></html>", r.URL.Path)
}

func TestRetriesAndClasses(t *testing.T) {
	fl := &flaky{
		plan: map[string][]int{
			"/503-then-ok": {503, 503},
			"/always-500":  {500, 500, 500, 500, 500},
			"/404":         {404},
			"/403":         {403},
			"/429-ok":      {429},
		},
		seen: map[string][]string{}, times: map[string][]time.Time{},
	}
	srv := httptest.NewServer(fl)
	defer srv.Close()
	farm, err := testbed.StartFarm(testbed.FarmConfig{N: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	cfg := fastConfig()
	cfg.Pool = farmPool(t, farm)
	cfg.MaxAttempts = 4
	paths := []string{"/503-then-ok", "/always-500", "/404", "/403", "/429-ok"}
	var urls []string
	for _, p := range paths {
		urls = append(urls, srv.URL+p)
	}
	got := runFetch(t, cfg, urls)
	want := []struct {
		attempts int
		class    failure.Class
	}{{3, ""}, {4, failure.ServerError}, {1, failure.ClientError}, {1, failure.Blocked}, {2, ""}}
	for i, w := range want {
		f := got[i]
		if f.Attempts != w.attempts || failure.ClassOf(f.Err) != w.class {
			t.Errorf("%s: attempts %d class %q, want %d %q (err %v)", paths[i], f.Attempts, failure.ClassOf(f.Err), w.attempts, w.class, f.Err)
		}
	}
	// Each retry went through a different proxy than the attempt before.
	fl.mu.Lock()
	defer fl.mu.Unlock()
	for _, p := range []string{"/503-then-ok", "/always-500"} {
		s := fl.seen[p]
		for i := 1; i < len(s); i++ {
			if s[i] == s[i-1] {
				t.Errorf("%s: attempt %d reused source address %s: %v", p, i+1, s[i], s)
			}
		}
	}
	if e, ok := got[1].Err.(*failure.Error); !ok || e.Status != 500 || e.Proxy == "" || e.URL == "" {
		t.Errorf("error does not carry status, proxy and URL: %#v", got[1].Err)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	fl := &flaky{plan: map[string][]int{"/x": {429}}, headers: map[string]string{"Retry-After": "1"},
		seen: map[string][]string{}, times: map[string][]time.Time{}}
	srv := httptest.NewServer(fl)
	defer srv.Close()
	cfg := fastConfig()
	got := runFetch(t, cfg, []string{srv.URL + "/x"})
	if got[0].Err != nil || got[0].Attempts != 2 {
		t.Fatalf("attempts %d err %v", got[0].Attempts, got[0].Err)
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	// A lower bound only: the retry waited at least what the server asked
	// (the backoff alone is at most 30 ms here).
	if gap := fl.times["/x"][1].Sub(fl.times["/x"][0]); gap < time.Second {
		t.Fatalf("retry came %v after a 429 with Retry-After: 1", gap)
	}
}

func TestBodyCap(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", 5000)))
	}))
	defer srv.Close()
	cfg := fastConfig()
	cfg.MaxBodyBytes = 1000
	got := runFetch(t, cfg, []string{srv.URL})
	if c := failure.ClassOf(got[0].Err); c != failure.TooLarge || got[0].Attempts != 1 {
		t.Fatalf("class %q attempts %d, want too_large after 1", c, got[0].Attempts)
	}
	cfg.TruncateLarge = true
	got = runFetch(t, cfg, []string{srv.URL})
	if got[0].Err != nil || !got[0].Truncated || len(got[0].Body) != 1000 {
		t.Fatalf("err %v truncated %v len %d", got[0].Err, got[0].Truncated, len(got[0].Body))
	}
}

func TestTimeoutsAreRetriedThenClassified(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	cfg := fastConfig()
	cfg.HeaderTimeout = 50 * time.Millisecond
	cfg.MaxAttempts = 2
	got := runFetch(t, cfg, []string{srv.URL})
	if c := failure.ClassOf(got[0].Err); c != failure.Timeout || got[0].Attempts != 2 {
		t.Fatalf("class %q attempts %d, want timeout after 2", c, got[0].Attempts)
	}
}

func TestDeadProxyIsSkipped(t *testing.T) {
	site, err := testbed.StartSite(testbed.SiteConfig{Products: 20})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	farm, err := testbed.StartFarm(testbed.FarmConfig{N: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	farm.Proxy(1).Kill()
	cfg := fastConfig()
	cfg.Pool = farmPool(t, farm)
	var urls []string
	for id := 1; id <= 20; id++ {
		urls = append(urls, site.ProductURL(id))
	}
	got := runFetch(t, cfg, urls)
	retried := 0
	for i, f := range got {
		if f.Err != nil {
			t.Fatalf("url %d: %v", i+1, f.Err)
		}
		if f.Attempts > 1 {
			retried++
		}
	}
	if retried == 0 {
		t.Fatal("no request met the dead proxy; the test proves nothing")
	}
	if _, ok := site.Stats().ByIP[farm.Proxy(1).SourceIP()]; ok {
		t.Fatal("the site saw the dead proxy's address")
	}
}

func TestProxyErrorClasses(t *testing.T) {
	site, err := testbed.StartSite(testbed.SiteConfig{Products: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	authFarm, err := testbed.StartFarm(testbed.FarmConfig{N: 1, User: "u", Pass: "right"})
	if err != nil {
		t.Fatal(err)
	}
	defer authFarm.Close()
	u, _ := url.Parse(authFarm.URLs()[0])
	u.User = url.UserPassword("u", "wrong-canary")
	p, err := proxy.Parse("p1", u.String())
	if err != nil {
		t.Fatal(err)
	}
	// The 407 quarantines the only proxy; the retry waits for its
	// cool-down, kept short here.
	pool, _ := proxy.New([]*proxy.Proxy{p}, proxy.WithHealth(proxy.HealthConfig{CooldownBase: 10 * time.Millisecond}))
	cfg := fastConfig()
	cfg.Pool = pool
	cfg.MaxAttempts = 2
	got := runFetch(t, cfg, []string{site.ProductURL(1)})
	if c := failure.ClassOf(got[0].Err); c != failure.ProxyAuth {
		t.Fatalf("class %q, want proxy_auth (err %v)", c, got[0].Err)
	}
	if strings.Contains(got[0].Err.Error(), "wrong-canary") {
		t.Fatalf("error leaks the proxy password: %v", got[0].Err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"0", 0}, {"-5", 0}, {"7", 7 * time.Second}, {" 12 ", 12 * time.Second},
		{"999999999999", 24 * time.Hour}, {"soon", 0}, {"1.5", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	}
	for _, tc := range tests {
		if got := ParseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{Concurrency: -1}, {MaxAttempts: 1000}, {Jitter: 0.9}, {ConnectTimeout: -time.Second}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted an invalid config", c)
		}
	}
}
