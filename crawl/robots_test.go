package crawl

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/failure"
)

// TestRobotsConvention: a 2xx robots.txt is obeyed (and its Crawl-delay
// reported), a 4xx allows everything, a 5xx refuses the host until
// ErrorTTL passes; each is fetched once per TTL.
func TestRobotsConvention(t *testing.T) {
	var mu sync.Mutex
	status := map[string]int{"/ok": 200, "/missing": 404, "/broken": 503}
	fetches := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	// One host per behaviour: the path of the first request picks it.
	hosts := map[string]string{}
	for name := range status {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			fetches[name]++
			code := status[name]
			mu.Unlock()
			w.WriteHeader(code)
			if code == 200 {
				io.WriteString(w, "User-agent: *\nDisallow: /private/\nCrawl-delay: 2\n\nUser-agent: other\nDisallow: /\n")
			}
		}))
		defer s.Close()
		hosts[name] = s.URL
	}
	now := time.Unix(0, 0)
	var delay time.Duration
	client := srv.Client()
	r := NewRobots(RobotsConfig{
		Fetch: func(ctx context.Context, u *url.URL) (int, []byte, error) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
			resp, err := client.Do(req)
			if err != nil {
				return 0, nil, err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			return resp.StatusCode, b, err
		},
		TTL: time.Hour, ErrorTTL: time.Minute, MaxHosts: 2,
		OnDelay: func(_ string, d time.Duration) { delay = d },
		Now:     func() time.Time { return now },
	})
	ctx := context.Background()
	check := func(base, path string, allowed bool) {
		t.Helper()
		u, _ := url.Parse(base + path)
		err := r.Allow(ctx, u)
		if allowed != (err == nil) {
			t.Errorf("%s%s: err %v, want allowed %v", base, path, err, allowed)
		}
		if err != nil && failure.ClassOf(err) != failure.Robots {
			t.Errorf("%s: class %s", path, failure.ClassOf(err))
		}
	}
	check(hosts["/ok"], "/a", true)
	check(hosts["/ok"], "/private/x", false)
	check(hosts["/ok"], "/private", true)
	if delay != 2*time.Second {
		t.Errorf("crawl delay %v, want 2s", delay)
	}
	check(hosts["/missing"], "/private/x", true)
	check(hosts["/broken"], "/a", false)
	check(hosts["/broken"], "/b", false)
	mu.Lock()
	status["/broken"] = 404
	mu.Unlock()
	now = now.Add(2 * time.Minute) // past ErrorTTL
	check(hosts["/broken"], "/a", true)
	mu.Lock()
	defer mu.Unlock()
	if fetches["/broken"] != 2 || fetches["/missing"] != 1 {
		t.Errorf("fetches %v: want /broken twice (once per ErrorTTL), /missing once", fetches)
	}
	// MaxHosts 2: /ok was evicted by the others, so it is fetched again.
	mu.Unlock()
	check(hosts["/ok"], "/a", true)
	mu.Lock()
	if fetches["/ok"] != 2 {
		t.Errorf("fetches of /ok: %d, want 2 (evicted from a cache of 2)", fetches["/ok"])
	}
}

// TestRobotsUnreachable: no answer refuses the host.
func TestRobotsUnreachable(t *testing.T) {
	r := NewRobots(RobotsConfig{Fetch: func(context.Context, *url.URL) (int, []byte, error) {
		return 0, nil, failure.Errorf(failure.Connect, "refused")
	}})
	u, _ := url.Parse("http://127.0.0.1:1/x")
	if err := r.Allow(context.Background(), u); failure.ClassOf(err) != failure.Robots {
		t.Errorf("err %v, want class robots", err)
	}
}
