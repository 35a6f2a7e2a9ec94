package testbed

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestFaulty drives a Faulty front of a farm proxy through every fault
// and back to none.
func TestFaulty(t *testing.T) {
	site, err := StartSite(SiteConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	farm, err := StartFarm(FarmConfig{N: 1, FirstSourceIP: 130})
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	f, err := StartFaulty(FaultyConfig{Backend: farm.Proxy(0).Addr(), SlowDelay: 50 * time.Millisecond, ResetAfter: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pu, _ := url.Parse(f.URL())
	get := func(timeout time.Duration) (string, error) {
		c := &http.Client{Timeout: timeout, Transport: &http.Transport{Proxy: http.ProxyURL(pu), DisableKeepAlives: true}}
		resp, err := c.Get(site.ProductURL(1))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	for _, tc := range []struct {
		fault Fault
		ok    bool
	}{
		{FaultNone, true}, {FaultSlow, true}, {FaultBlackhole, false}, {FaultRefuse, false},
		{FaultReset, false}, {FaultGarbage, false}, {FaultNone, true},
	} {
		if err := f.Set(tc.fault); err != nil {
			t.Fatal(err)
		}
		body, err := get(300 * time.Millisecond)
		if got := err == nil && strings.Contains(body, "</html>"); got != tc.ok {
			t.Errorf("%s: ok %v, want %v (err %v)", tc.fault, got, tc.ok, err)
		}
		var ne net.Error
		if tc.fault == FaultBlackhole && !(errors.As(err, &ne) && ne.Timeout()) {
			t.Errorf("blackhole: %v, want a timeout", err)
		}
	}
	stop := f.Flap(10 * time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	stop()
	if f.Fault() != FaultNone {
		t.Errorf("after flapping: %s", f.Fault())
	}
	if _, err := get(time.Second); err != nil {
		t.Errorf("after flapping: %v", err)
	}
	if f.Accepted() < 5 {
		t.Errorf("accepted %d", f.Accepted())
	}
}
