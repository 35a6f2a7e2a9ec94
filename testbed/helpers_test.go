package testbed

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock is a manually advanced clock for the rate window.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func startSite(t *testing.T, cfg SiteConfig) *Site {
	t.Helper()
	s, err := StartSite(cfg)
	if err != nil {
		t.Fatalf("StartSite: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Site.Close: %v", err)
		}
	})
	return s
}

func startFarm(t *testing.T, cfg FarmConfig) *Farm {
	t.Helper()
	f, err := StartFarm(cfg)
	if err != nil {
		t.Fatalf("StartFarm: %v", err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("Farm.Close: %v", err)
		}
	})
	return f
}

// newClient returns a client with its own transport, optionally going
// through proxyURL and/or dialing from sourceIP. Its idle connections are
// closed at cleanup.
func newClient(t *testing.T, proxyURL, sourceIP string) (*http.Client, *http.Transport) {
	t.Helper()
	tr := &http.Transport{DisableCompression: true}
	if proxyURL != "" {
		u, err := url.Parse(proxyURL)
		if err != nil {
			t.Fatal(err)
		}
		tr.Proxy = http.ProxyURL(u)
	}
	if sourceIP != "" {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(sourceIP)}}
		tr.DialContext = d.DialContext
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, tr
}

type result struct {
	status int
	header http.Header
	body   string
}

// get fetches u and reads the whole body, failing the test on any error.
func get(t *testing.T, c *http.Client, u string) result {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", u, err)
	}
	return result{resp.StatusCode, resp.Header, string(b)}
}

// waitFor polls cond until it holds, failing the test after a generous
// bound. It is for waiting on another goroutine's progress, not for timing.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(2 * time.Millisecond):
		}
	}
}
