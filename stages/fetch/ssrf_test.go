package fetch_test

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/guard"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

// ssrfForms returns URL spellings of refused destinations on port: the
// loopback canary in every numeric form, names that resolve to it, the
// metadata address and private ranges.
func ssrfForms(port int) []string {
	var out []string
	for _, h := range []string{
		"127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f000001", "0x7f.1", "0177.0.0.1",
		"0177.1", "127.0.0.1.", "0x7f.0.0.1", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]",
		"[64:ff9b::7f00:1]", "localhost", "loopback.sluice.test", "mapped.sluice.test",
		"169.254.169.254", "0xa9fea9fe", "2852039166", "169.254.43518", "[::ffff:169.254.169.254]",
		"meta.sluice.test", "10.0.0.1", "192.168.0.1", "172.16.0.1", "100.64.0.1", "[fd00:ec2::254]",
		"0.0.0.0", "0", "[::]", "private.sluice.test",
	} {
		out = append(out, "http://"+h+":"+strconv.Itoa(port)+"/latest/meta-data/")
	}
	return out
}

func ssrfDNS(t *testing.T) *testbed.DNS {
	return startDNS(t, map[string][]string{
		"loopback.sluice.test": {"127.0.0.1"},
		"mapped.sluice.test":   {"::ffff:127.0.0.1"},
		"meta.sluice.test":     {"169.254.169.254"},
		"private.sluice.test":  {"10.1.2.3 172.16.5.4"},
	})
}

// TestStageRefusesSSRFForms runs every SSRF form through the fetch stage,
// direct and through a proxy farm, with the loopback allowance off: each
// ends as a permanent policy (or bad_input) error after one attempt, and
// nothing reaches the canary or the proxies.
func TestStageRefusesSSRFForms(t *testing.T) {
	canary := startCanary(t, "127.0.0.1:0")
	dns := ssrfDNS(t)
	urls := ssrfForms(canary.Port())
	if c6, err := testbed.StartCanary("[::1]:0"); err == nil {
		t.Cleanup(func() { _ = c6.Close() })
		urls = append(urls, fmt.Sprintf("http://[::1]:%d/", c6.Port()))
		defer func() {
			if c6.Conns() != 0 {
				t.Errorf("IPv6 canary saw %d connections", c6.Conns())
			}
		}()
	}
	farm := startFarm(t, 3)

	for _, mode := range []string{"direct", "proxies (remote DNS, the default)", "proxies (local DNS)"} {
		t.Run(mode, func(t *testing.T) {
			cfg := fast()
			cfg.MaxAttempts = 3
			cfg.Policy = guard.Config{Resolver: dns.Resolver()}
			if mode != "direct" {
				cfg.Pool = pool(t, farm)
			}
			if strings.Contains(mode, "local") {
				cfg.Policy.ProxyDNS = guard.ProxyDNSLocal
			}
			for i, f := range run(t, cfg, urls) {
				c := errClass(f)
				if c != failure.Policy && c != failure.BadInput {
					t.Errorf("%s: class %q (%v), want policy", urls[i], c, f.Err)
				}
				if f.Attempts != 1 || failure.Retryable(f.Err) {
					t.Errorf("%s: %d attempts, retryable=%v: a refusal is final", urls[i], f.Attempts, failure.Retryable(f.Err))
				}
			}
		})
	}
	if n := canary.Conns(); n != 0 {
		t.Errorf("canary saw %d connections", n)
	}
	for i := range farm.Len() {
		if n := farm.Proxy(i).Requests(); n != 0 {
			t.Errorf("proxy %d was asked %d times", i, n)
		}
	}
}

// TestStageRefusesRedirectToRefusedAddress: a site the policy allows
// (127.0.0.2, let through by AllowNets; loopback is otherwise refused)
// redirects to refused addresses. Each redirect is refused before any
// connection, directly and through proxies.
func TestStageRefusesRedirectToRefusedAddress(t *testing.T) {
	canary := startCanary(t, "127.0.0.1:0")
	dns := ssrfDNS(t)
	site := startHostile(t, testbed.HostileConfig{Addr: "127.0.0.2:0"})
	farm := startFarm(t, 2)
	var urls []string
	for _, target := range ssrfForms(canary.Port()) {
		urls = append(urls, site.URL()+"/redirect?to="+url.QueryEscape(target))
	}
	// Controls: an allowed redirect is followed, and a chain through the
	// allowed site is too.
	okURL := site.URL() + "/redirect?to=" + url.QueryEscape(site.URL()+"/ok/1")
	urls = append(urls, okURL)

	for _, viaProxy := range []bool{false, true} {
		t.Run(fmt.Sprintf("proxies=%v", viaProxy), func(t *testing.T) {
			cfg := fast()
			cfg.Policy = guard.Config{Resolver: dns.Resolver(), AllowNets: []string{"127.0.0.2/32"}}
			if viaProxy {
				cfg.Pool = pool(t, farm)
			}
			res := run(t, cfg, urls)
			for i, f := range res[:len(res)-1] {
				if c := errClass(f); c != failure.Policy && c != failure.BadInput {
					t.Errorf("%s: class %q (%v), want policy", urls[i], c, f.Err)
				}
			}
			last := res[len(res)-1]
			if last.Err != nil || last.Status != 200 || last.FinalURL != site.URL()+"/ok/1" || !strings.Contains(string(last.Body), "ok 1") {
				t.Errorf("allowed redirect: %v %d %q", last.Err, last.Status, last.FinalURL)
			}
		})
	}
	if n := canary.Conns(); n != 0 {
		t.Errorf("canary saw %d connections", n)
	}
	if n := site.Stats().Requests["redirect"]; n != int64(2*len(urls)) {
		t.Errorf("site saw %d redirect requests, want %d", n, 2*len(urls))
	}
}

// TestStageDNSRebinding: a resolver first answers an allowed address
// (127.0.0.2, standing for a public one: a test cannot reach the
// internet) and from then on 127.0.0.1, where a canary listens on the same
// port. The first fetch succeeds; every later one is refused at dial time
// and the canary sees no connection.
func TestStageDNSRebinding(t *testing.T) {
	site := startHostile(t, testbed.HostileConfig{Addr: "127.0.0.2:0"})
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(site.URL(), "http://"))
	canary, err := testbed.StartCanary("127.0.0.1:" + port)
	if err != nil {
		t.Skipf("port %s is taken on 127.0.0.1: %v", port, err)
	}
	t.Cleanup(func() { _ = canary.Close() })
	dns := startDNS(t, map[string][]string{"rebind.sluice.test": {"127.0.0.2", "127.0.0.1"}})
	cfg := fast()
	cfg.Concurrency = 1
	cfg.MaxAttempts = 3
	cfg.Policy = guard.Config{Resolver: dns.Resolver(), AllowNets: []string{"127.0.0.2/32"}}
	var urls []string
	for i := range 4 {
		urls = append(urls, fmt.Sprintf("http://rebind.sluice.test:%s/ok/%d?close=1", port, i))
	}
	res := run(t, cfg, urls)
	if res[0].Err != nil || res[0].Status != 200 {
		t.Fatalf("first fetch: %v", res[0].Err)
	}
	for _, f := range res[1:] {
		if errClass(f) != failure.Policy || f.Attempts != 1 {
			t.Errorf("%s: %v after %d attempts, want a policy refusal", f.Task.Msg.URL, f.Err, f.Attempts)
		}
	}
	if n := canary.Conns(); n != 0 {
		t.Errorf("canary on 127.0.0.1 saw %d connections", n)
	}
	if n := dns.Lookups("rebind.sluice.test"); n != 4 {
		t.Errorf("%d lookups for 4 connections: the address dialled must be the one checked", n)
	}
}

// resultOf finds the Fetched for raw in res.
func resultOf(res []record.Fetched, raw string) record.Fetched {
	for _, f := range res {
		if string(f.Task.Origin.Raw) == raw {
			return f
		}
	}
	return record.Fetched{}
}
