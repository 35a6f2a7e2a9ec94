package fetch

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

// poolOf builds a pool over raw proxy URLs, ids p1..pn.
func poolOf(t *testing.T, raws []string, opts ...proxy.Option) *proxy.Pool {
	t.Helper()
	var ps []*proxy.Proxy
	for i, raw := range raws {
		rotating := strings.HasSuffix(raw, " rotating")
		p, err := proxy.Parse(fmt.Sprintf("p%d", i+1), strings.TrimSuffix(raw, " rotating"))
		if err != nil {
			t.Fatal(err)
		}
		p.Rotating = rotating
		ps = append(ps, p)
	}
	pool, err := proxy.New(ps, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

func fetchOne(t *testing.T, cfg Config, raw string) record.Fetched {
	t.Helper()
	got := fetchAll(t, cfg, []record.Task{newTask(t, raw, "")})
	if len(got) != 1 {
		t.Fatalf("%d results for one task", len(got))
	}
	return got[0]
}

// requireClass checks a result failed with the class, and says what it got.
func requireClass(t *testing.T, f record.Fetched, want failure.Class) {
	t.Helper()
	if got := failure.ClassOf(f.Err); got != want {
		t.Errorf("%s: class %q (%v), want %q", f.Task.Msg.URL, got, f.Err, want)
	}
}

// tlsSite is an HTTPS target on loopback that counts client addresses.
type tlsSite struct {
	*httptest.Server
	mu   sync.Mutex
	byIP map[string]int
}

func startTLSSite(t *testing.T) *tlsSite {
	t.Helper()
	s := &tlsSite{byIP: map[string]int{}}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		s.mu.Lock()
		s.byIP[host]++
		s.mu.Unlock()
		fmt.Fprintf(w, "<html><h1>secure %s</h1></html>", r.URL.Path)
	}))
	// Tunnels closed before a handshake (a test ending) are not news.
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func (s *tlsSite) ips() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.byIP {
		out[k] = v
	}
	return out
}

// roots trusts the httptest certificate (shared by every httptest TLS
// server, valid for 127.0.0.1).
func roots(s *httptest.Server) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(s.Certificate())
	return &tls.Config{RootCAs: pool}
}

// envProxy reads a real proxy server's URL and source address from the
// environment that .ci/setup-proxies.sh exports, or skips.
func envProxy(t *testing.T, name string) (string, string) {
	t.Helper()
	raw := os.Getenv(name)
	if raw == "" {
		t.Skipf("%s is not set: run `source .ci/setup-proxies.sh` (CI does) to start microsocks and tinyproxy", name)
	}
	return raw, os.Getenv(name + "_SRC")
}

func withPassword(t *testing.T, raw, pass string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if pass == "" {
		u.User = nil
	} else {
		u.User = url.UserPassword(u.User.Username(), pass)
	}
	return u.String()
}

// mapResolver answers from a table and counts lookups. It stands in for
// DNS, which cannot be pointed at made-up names here.
type mapResolver struct {
	mu    sync.Mutex
	m     map[string]netip.Addr
	calls map[string]int
}

func (r *mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[host]++
	if ip, ok := r.m[host]; ok {
		return []netip.Addr{ip}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (r *mapResolver) count(host string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[host]
}

func TestMicrosocks(t *testing.T) {
	raw, src := envProxy(t, "SLUICE_TEST_SOCKS5")
	site := startSite(t, testbed.SiteConfig{})
	for _, scheme := range []string{"socks5", "socks5h"} {
		t.Run(scheme, func(t *testing.T) {
			site.ResetStats()
			pool := poolOf(t, []string{strings.Replace(raw, "socks5", scheme, 1)})
			tasks := productTasks(t, site, 1, 20, "")
			requireAllOK(t, tasks, fetchAll(t, quickConfig(pool, 4), tasks))
			if ips := site.Stats().ByIP; len(ips) != 1 || ips[src] != 20 {
				t.Errorf("site saw %v, want 20 from microsocks' %s", ips, src)
			}
		})
	}
}

// TestSOCKS5ResolvesLocallySOCKS5hRemotely: a name only our resolver
// knows works through socks5:// (we resolve it and send the address) and
// fails through socks5h:// (microsocks gets the name and cannot resolve
// it), with a proxy-side class, not a DNS error of ours.
func TestSOCKS5ResolvesLocallySOCKS5hRemotely(t *testing.T) {
	raw, src := envProxy(t, "SLUICE_TEST_SOCKS5")
	site := startSite(t, testbed.SiteConfig{})
	res := &mapResolver{m: map[string]netip.Addr{"catalog.sluice.test": netip.MustParseAddr("127.0.0.1")}, calls: map[string]int{}}
	target := strings.Replace(site.ProductURL(7), "127.0.0.1", "catalog.sluice.test", 1)

	cfg := quickConfig(poolOf(t, []string{raw}), 1)
	cfg.Resolver = res
	f := fetchOne(t, cfg, target)
	if f.Err != nil || !bytes.Contains(f.Body, []byte("Product 7 ")) {
		t.Fatalf("socks5 with a locally known name: %v", f.Err)
	}
	if res.count("catalog.sluice.test") != 1 || site.Stats().ByIP[src] != 1 {
		t.Errorf("lookups %d, site saw %v", res.count("catalog.sluice.test"), site.Stats().ByIP)
	}

	cfg = quickConfig(poolOf(t, []string{strings.Replace(raw, "socks5", "socks5h", 1)}), 1)
	cfg.Resolver, cfg.MaxAttempts = res, 1
	f = fetchOne(t, cfg, target)
	requireClass(t, f, failure.ProxyProtocol)
	// The proxy got the name (and could not resolve it). The one lookup
	// here is the URL policy's best-effort check of a name a proxy will
	// resolve (guard.Policy.CheckName), not the target address.
	if res.count("catalog.sluice.test") != 2 {
		t.Errorf("%d lookups for socks5h, want the policy's one check", res.count("catalog.sluice.test")-1)
	}
}

func TestMicrosocksAuth(t *testing.T) {
	raw, src := envProxy(t, "SLUICE_TEST_SOCKS5_AUTH")
	site := startSite(t, testbed.SiteConfig{})
	pool := poolOf(t, []string{raw, strings.Replace(raw, "socks5://", "socks5h://", 1)})
	tasks := productTasks(t, site, 1, 20, "")
	requireAllOK(t, tasks, fetchAll(t, quickConfig(pool, 4), tasks))
	if ips := site.Stats().ByIP; len(ips) != 1 || ips[src] != 20 {
		t.Errorf("site saw %v, want 20 from %s", ips, src)
	}
	for name, bad := range map[string]string{"wrong password": withPassword(t, raw, "not-the-password"), "no credentials": withPassword(t, raw, "")} {
		t.Run(name, func(t *testing.T) {
			pool := poolOf(t, []string{bad})
			cfg := quickConfig(pool, 1)
			cfg.MaxAttempts = 1
			f := fetchOne(t, cfg, site.ProductURL(1))
			requireClass(t, f, failure.ProxyAuth)
			if !errors.Is(f.Err, failure.ErrProxy) {
				t.Errorf("not a proxy error: %v", f.Err)
			}
			if s := proxyStats(pool, "p1"); s.State != proxy.Quarantined || s.Outcomes["proxy_auth"] != 1 {
				t.Errorf("pool after refused credentials: %+v", s)
			}
		})
	}
}

func TestTinyproxyAuth(t *testing.T) {
	raw, src := envProxy(t, "SLUICE_TEST_TINYPROXY")
	site := startSite(t, testbed.SiteConfig{})
	secure := startTLSSite(t)
	pool := poolOf(t, []string{raw})
	cfg := quickConfig(pool, 4)
	cfg.TLS = roots(secure.Server)

	tasks := productTasks(t, site, 1, 10, "")
	for i := range 10 {
		tasks = append(tasks, newTask(t, fmt.Sprintf("%s/item/%d", secure.URL, i), ""))
	}
	requireAllOK(t, tasks, fetchAll(t, cfg, tasks))
	if ips := site.Stats().ByIP; len(ips) != 1 || ips[src] != 10 {
		t.Errorf("http site saw %v, want 10 from tinyproxy's %s", ips, src)
	}
	if ips := secure.ips(); len(ips) != 1 || ips[src] != 10 {
		t.Errorf("https site (through CONNECT) saw %v, want 10 from %s", ips, src)
	}

	for name, bad := range map[string]string{"wrong password": withPassword(t, raw, "not-the-password"), "no credentials": withPassword(t, raw, "")} {
		for _, target := range []string{site.ProductURL(1), secure.URL + "/item/1"} {
			t.Run(name+" "+target[:5], func(t *testing.T) {
				cfg := quickConfig(poolOf(t, []string{bad}), 1)
				cfg.TLS, cfg.MaxAttempts = roots(secure.Server), 1
				requireClass(t, fetchOne(t, cfg, target), failure.ProxyAuth)
			})
		}
	}
}

// TestProxyAuthClasses: a proxy refusing our credentials is a proxy_auth
// error — a 407 to a forwarded request, a 407 to CONNECT, and a 401 to
// CONNECT from proxies that answer so — never a target error.
func TestProxyAuthClasses(t *testing.T) {
	site := startSite(t, testbed.SiteConfig{})
	secure := startTLSSite(t)
	farm, _ := newFarmPool(t, 1, 100, testbed.FarmConfig{User: "u", Pass: "right"})
	wrong := withPassword(t, farm.Proxy(0).URL(), "wrong")

	// A proxy that answers every CONNECT with 401 and a forwarded request
	// with 200, as some do.
	say401 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			w.Header().Set("WWW-Authenticate", `Basic realm="proxy"`)
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "<html>ok</html>")
	}))
	defer say401.Close()

	for _, tc := range []struct {
		name, proxy, target string
	}{
		{"407 forward", wrong, site.ProductURL(1)},
		{"407 CONNECT", wrong, secure.URL + "/x"},
		{"407 no credentials", withPassword(t, farm.Proxy(0).URL(), ""), site.ProductURL(1)},
		{"401 CONNECT", say401.URL, secure.URL + "/x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := poolOf(t, []string{tc.proxy})
			cfg := quickConfig(pool, 1)
			cfg.TLS, cfg.MaxAttempts = roots(secure.Server), 1
			f := fetchOne(t, cfg, tc.target)
			requireClass(t, f, failure.ProxyAuth)
			if s := proxyStats(pool, "p1"); s.State != proxy.Quarantined {
				t.Errorf("proxy refusing credentials not quarantined: %+v", s)
			}
		})
	}

	// A target asking for a login through a proxy that accepts our
	// credentials is the target's 401, whatever the proxy.
	login := serveOn(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Basic realm="shop"`)
		http.Error(w, "log in", http.StatusUnauthorized)
	}))
	right := []string{farm.Proxy(0).URL()}
	if raw := os.Getenv("SLUICE_TEST_TINYPROXY"); raw != "" {
		right = append(right, raw)
	}
	for _, raw := range right {
		pool := poolOf(t, []string{raw})
		cfg := quickConfig(pool, 1)
		cfg.MaxAttempts = 1
		requireClass(t, fetchOne(t, cfg, login+"/account"), failure.ClientError)
		if s := proxyStats(pool, "p1"); s.State != proxy.Healthy {
			t.Errorf("a target's 401 held against the proxy: %+v", s)
		}
	}
}

// TestHTTPSProxy reaches an http and an https target through a proxy
// spoken to over TLS (a TLS front on a farm proxy with auth).
func TestHTTPSProxy(t *testing.T) {
	site := startSite(t, testbed.SiteConfig{})
	secure := startTLSSite(t)
	farm, _ := newFarmPool(t, 1, 101, testbed.FarmConfig{User: "u", Pass: "tls-pass"})
	front, err := testbed.StartRelay(testbed.RelayConfig{
		Backends: []string{farm.Proxy(0).Addr()},
		TLS:      &tls.Config{Certificates: secure.TLS.Certificates},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	raw := "https://u:tls-pass@" + front.Addr()

	cfg := quickConfig(poolOf(t, []string{raw}), 2)
	cfg.TLS, cfg.ProxyTLS = roots(secure.Server), roots(secure.Server)
	tasks := append(productTasks(t, site, 1, 5, ""), newTask(t, secure.URL+"/a", ""), newTask(t, secure.URL+"/b", ""))
	requireAllOK(t, tasks, fetchAll(t, cfg, tasks))
	src := farm.Proxy(0).SourceIP()
	if site.Stats().ByIP[src] != 5 || secure.ips()[src] != 2 {
		t.Errorf("sites saw %v and %v, want all from %s", site.Stats().ByIP, secure.ips(), src)
	}

	// Not trusting the proxy's certificate is a failure to reach the proxy.
	cfg = quickConfig(poolOf(t, []string{raw}), 1)
	cfg.MaxAttempts = 1
	requireClass(t, fetchOne(t, cfg, site.ProductURL(1)), failure.ProxyConnect)
}

// TestRotatingEndpointRotatesPerRequest: a provider's rotating endpoint
// (a relay handing each connection to the next of four farm proxies)
// gives every request a new exit address only if the endpoint is declared
// rotating; otherwise keep-alive pins all traffic to one exit.
func TestRotatingEndpointRotatesPerRequest(t *testing.T) {
	site := startSite(t, testbed.SiteConfig{})
	farm, _ := newFarmPool(t, 4, 110, testbed.FarmConfig{})
	var backends []string
	for i := range farm.Len() {
		backends = append(backends, farm.Proxy(i).Addr())
	}
	for _, tc := range []struct {
		name     string
		rotating bool
		ips      int
	}{{"declared rotating", true, 4}, {"not declared", false, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			site.ResetStats()
			relay, err := testbed.StartRelay(testbed.RelayConfig{Backends: backends})
			if err != nil {
				t.Fatal(err)
			}
			defer relay.Close()
			raw := "http://" + relay.Addr()
			if tc.rotating {
				raw += " rotating"
			}
			tasks := productTasks(t, site, 1, 20, "")
			requireAllOK(t, tasks, fetchAll(t, quickConfig(poolOf(t, []string{raw}, proxy.WithModel(proxy.Rotating)), 1), tasks))
			ips := site.Stats().ByIP
			if len(ips) != tc.ips {
				t.Errorf("site saw %v, want %d exit addresses", ips, tc.ips)
			}
			if tc.rotating {
				for ip, n := range ips {
					if n != 5 {
						t.Errorf("exit %s used %d times, want 5", ip, n)
					}
				}
				if relay.Conns() != 20 {
					t.Errorf("%d connections for 20 requests", relay.Conns())
				}
			}
		})
	}
}

// TestCredentialsNeverReachAnotherProxy: two proxies with different
// credentials, the first failing every request (502) so that retries go
// through the second. What each proxy received is captured at the byte
// level: neither ever saw the other's credentials, for forwarded requests
// and for CONNECT.
func TestCredentialsNeverReachAnotherProxy(t *testing.T) {
	site := startSite(t, testbed.SiteConfig{})
	secure := startTLSSite(t)
	farmA, err := testbed.StartFarm(testbed.FarmConfig{N: 1, FirstSourceIP: 120, User: "alice", Pass: "pw-one-7c1"})
	if err != nil {
		t.Fatal(err)
	}
	defer farmA.Close()
	farmB, err := testbed.StartFarm(testbed.FarmConfig{N: 1, FirstSourceIP: 121, User: "bob", Pass: "pw-two-d40"})
	if err != nil {
		t.Fatal(err)
	}
	defer farmB.Close()
	farmA.Proxy(0).SetFailure(testbed.Fail502)
	relayA, err := testbed.StartRelay(testbed.RelayConfig{Backends: []string{farmA.Proxy(0).Addr()}, Capture: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer relayA.Close()
	relayB, err := testbed.StartRelay(testbed.RelayConfig{Backends: []string{farmB.Proxy(0).Addr()}, Capture: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer relayB.Close()

	pool := poolOf(t, []string{"http://alice:pw-one-7c1@" + relayA.Addr(), "http://bob:pw-two-d40@" + relayB.Addr()},
		proxy.WithStrategy(proxy.RoundRobin), proxy.WithHealth(proxy.HealthConfig{FailThreshold: -1, MinSuccessRate: -1}))
	cfg := quickConfig(pool, 2)
	cfg.TLS = roots(secure.Server)
	tasks := productTasks(t, site, 1, 10, "")
	for i := range 10 {
		tasks = append(tasks, newTask(t, fmt.Sprintf("%s/s/%d", secure.URL, i), ""))
	}
	got := fetchAll(t, cfg, tasks)
	requireAllOK(t, tasks, got)
	retried := 0
	for _, f := range got {
		if f.Proxy != "p2" {
			t.Errorf("%s succeeded through %s", f.Task.Msg.URL, f.Proxy)
		}
		if f.Attempts > 1 {
			retried++
		}
	}
	if retried == 0 {
		t.Fatal("no request was retried from the failing proxy to the other")
	}

	basic := func(u, p string) string { return base64.StdEncoding.EncodeToString([]byte(u + ":" + p)) }
	a, b := relayA.Captured(), relayB.Captured()
	for _, c := range []struct {
		name       string
		got        []byte
		own, other string
		otherPass  string
	}{
		{"proxy A", a, basic("alice", "pw-one-7c1"), basic("bob", "pw-two-d40"), "pw-two-d40"},
		{"proxy B", b, basic("bob", "pw-two-d40"), basic("alice", "pw-one-7c1"), "pw-one-7c1"},
	} {
		if !bytes.Contains(c.got, []byte("Proxy-Authorization: Basic "+c.own)) {
			t.Errorf("%s never got its own credentials (%d bytes captured)", c.name, len(c.got))
		}
		if bytes.Contains(c.got, []byte(c.other)) || bytes.Contains(c.got, []byte(c.otherPass)) {
			t.Errorf("%s received the other proxy's credentials", c.name)
		}
	}
	for _, verb := range []string{"CONNECT ", "GET http://"} {
		if !bytes.Contains(a, []byte(verb)) || !bytes.Contains(b, []byte(verb)) {
			t.Errorf("both proxies should have seen %q requests", verb)
		}
	}
}

// TestCaptchaBanIsPerDomain: one site shows a challenge page to one
// proxy's address. That proxy is banned for that site only: the site's
// requests all succeed through the others, and the proxy keeps serving
// another site.
func TestCaptchaBanIsPerDomain(t *testing.T) {
	counts := func() (func(http.Handler) http.Handler, func() map[string]int) {
		var mu sync.Mutex
		m := map[string]int{}
		wrap := func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ip, _, _ := net.SplitHostPort(r.RemoteAddr)
				mu.Lock()
				m[ip]++
				mu.Unlock()
				h.ServeHTTP(w, r)
			})
		}
		return wrap, func() map[string]int {
			mu.Lock()
			defer mu.Unlock()
			out := map[string]int{}
			for k, v := range m {
				out[k] = v
			}
			return out
		}
	}
	const bannedIP = "127.0.0.130"
	wrapA, seenA := counts()
	wrapB, seenB := counts()
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html><h1>item</h1></html>") })
	a := serveOn(t, "127.0.1.3:0", wrapA(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ip, _, _ := net.SplitHostPort(r.RemoteAddr); ip == bannedIP {
			io.WriteString(w, `<html><div id="px-captcha">Press and hold</div></html>`)
			return
		}
		page(w, r)
	})))
	b := serveOn(t, "127.0.1.4:0", wrapB(page))
	farm, pool := newFarmPool(t, 3, 130, testbed.FarmConfig{}, proxy.WithStrategy(proxy.RoundRobin))
	if farm.Proxy(0).SourceIP() != bannedIP {
		t.Fatal("farm layout changed")
	}
	var tasks []record.Task
	for i := range 30 {
		tasks = append(tasks, newTask(t, fmt.Sprintf("%s/a/%d", a, i), ""), newTask(t, fmt.Sprintf("%s/b/%d", b, i), ""))
	}
	got := fetchAll(t, quickConfig(pool, 2), tasks)
	requireAllOK(t, tasks, got)
	for _, f := range got {
		if strings.HasPrefix(f.Task.Msg.URL, a) && f.Proxy == "p1" {
			t.Errorf("%s answered through the banned proxy", f.Task.Msg.URL)
		}
	}
	var ban proxy.DomainHealth
	for _, d := range pool.DomainHealth() {
		if d.Proxy == "p1" && d.Domain == "127.0.1.3" {
			ban = d
		}
	}
	if ban.State != proxy.Quarantined {
		t.Errorf("(p1, 127.0.1.3) is %v, want quarantined", ban.State)
	}
	s := proxyStats(pool, "p1")
	if s.State != proxy.Healthy || s.Outcomes["blocked"] < 3 {
		t.Errorf("p1 overall: %+v", s)
	}
	if seenA()[bannedIP] > 3+1 {
		t.Errorf("banned proxy kept being sent to its site: %v", seenA())
	}

	// With the ban in place, the other site gets its full round-robin
	// share from the banned proxy, and the banning site none.
	beforeA, beforeB := seenA()[bannedIP], seenB()[bannedIP]
	tasks = nil
	for i := range 30 {
		tasks = append(tasks, newTask(t, fmt.Sprintf("%s/b2/%d", b, i), ""))
	}
	requireAllOK(t, tasks, fetchAll(t, quickConfig(pool, 2), tasks))
	tasks = nil
	for i := range 30 {
		tasks = append(tasks, newTask(t, fmt.Sprintf("%s/a2/%d", a, i), ""))
	}
	requireAllOK(t, tasks, fetchAll(t, quickConfig(pool, 2), tasks))
	if got := seenB()[bannedIP] - beforeB; got != 10 {
		t.Errorf("the proxy banned by one site served %d of 30 requests to the other, want 10", got)
	}
	if got := seenA()[bannedIP] - beforeA; got != 0 {
		t.Errorf("the banned proxy was sent %d more requests to the site that banned it", got)
	}
}

// serveOn serves h on addr and returns the base URL.
func serveOn(t *testing.T, addr string, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = ln
	s.Start()
	t.Cleanup(s.Close)
	return s.URL
}

// TestProxyEndpointResolvedOnce: a proxy given by name is looked up when
// the stage is built, not per connection.
func TestProxyEndpointResolvedOnce(t *testing.T) {
	site := startSite(t, testbed.SiteConfig{})
	farm, _ := newFarmPool(t, 1, 140, testbed.FarmConfig{})
	res := &mapResolver{m: map[string]netip.Addr{"gw.sluice.test": netip.MustParseAddr("127.0.0.1")}, calls: map[string]int{}}
	raw := strings.Replace(farm.Proxy(0).URL(), "127.0.0.1", "gw.sluice.test", 1)
	cfg := quickConfig(poolOf(t, []string{raw + " rotating"}), 2)
	cfg.Resolver = res
	tasks := productTasks(t, site, 1, 20, "")
	requireAllOK(t, tasks, fetchAll(t, cfg, tasks))
	if n := res.count("gw.sluice.test"); n != 1 {
		t.Errorf("proxy endpoint resolved %d times for 20 requests on new connections", n)
	}
	cfg.Resolver = &mapResolver{m: map[string]netip.Addr{}, calls: map[string]int{}}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "gw.sluice.test") {
		t.Errorf("unresolvable proxy: %v", err)
	}
}

// TestCanaryNeverInErrorsSpansOrSnapshots fails requests in every way a
// proxy can fail — refused credentials (407 forwarded and on CONNECT,
// microsocks and tinyproxy when running), a dead HTTP and a dead SOCKS5
// proxy, an HTTPS proxy with an untrusted certificate, an unresolvable
// proxy name — all with a canary password, and checks it appears in no
// error (however printed), span, or pool snapshot.
func TestCanaryNeverInErrorsSpansOrSnapshots(t *testing.T) {
	const canary = "canary-pw-0b77e2"
	site := startSite(t, testbed.SiteConfig{})
	secure := startTLSSite(t)
	farm, _ := newFarmPool(t, 1, 160, testbed.FarmConfig{User: "u", Pass: "not-the-canary"})
	front, err := testbed.StartRelay(testbed.RelayConfig{Backends: []string{farm.Proxy(0).Addr()}, TLS: &tls.Config{Certificates: secure.TLS.Certificates}})
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	raws := []string{
		withPassword(t, farm.Proxy(0).URL(), canary),
		"http://u:" + canary + "@" + down,
		"socks5://u:" + canary + "@" + down,
		"socks5h://u:" + canary + "@" + down,
		"https://u:" + canary + "@" + front.Addr(),
	}
	for _, env := range []string{"SLUICE_TEST_SOCKS5_AUTH", "SLUICE_TEST_TINYPROXY"} {
		if raw := os.Getenv(env); raw != "" {
			raws = append(raws, withPassword(t, raw, canary))
		}
	}
	pool := poolOf(t, raws, proxy.WithHealth(proxy.HealthConfig{FailThreshold: -1, MinSuccessRate: -1, CooldownBase: 1}))
	var mu sync.Mutex
	var spans []record.Span
	cfg := quickConfig(pool, 3)
	cfg.MaxAttempts = 3
	cfg.Trace = func(sp record.Span) {
		mu.Lock()
		spans = append(spans, sp)
		mu.Unlock()
	}
	var tasks []record.Task
	for i := range 2 * len(raws) {
		tasks = append(tasks, newTask(t, site.ProductURL(i+1), fmt.Sprintf("s%d", i%3)),
			newTask(t, fmt.Sprintf("%s/x/%d", secure.URL, i), ""))
	}
	got := fetchAll(t, cfg, tasks)

	var dump strings.Builder
	classes := map[failure.Class]int{}
	for _, f := range got {
		if f.Err == nil {
			t.Errorf("%s succeeded through %s", f.Task.Msg.URL, f.Proxy)
			continue
		}
		classes[failure.ClassOf(f.Err)]++
		fmt.Fprintf(&dump, "%v\n%+v\n%#v\n%s\n", f.Err, f.Err, f.Err, f.Proxy)
		for e := f.Err; e != nil; e = errors.Unwrap(e) {
			fmt.Fprintf(&dump, "%v\n", e)
		}
		var fe *failure.Error
		if errors.As(f.Err, &fe) {
			fmt.Fprintf(&dump, "%#v\n", *fe)
		}
	}
	for _, v := range []any{spans, pool.Stats(), pool.Leases(), pool.DomainHealth(), pool.Sessions(), pool.Uses()} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		dump.Write(b)
		fmt.Fprintf(&dump, "%+v\n", v)
	}
	for _, p := range pool.Proxies() {
		fmt.Fprintf(&dump, "%v %s %s\n", p, p.Redacted(), p.Endpoint())
	}
	// A proxy whose name cannot be resolved fails the stage's construction.
	bad := quickConfig(poolOf(t, []string{"http://u:" + canary + "@nowhere.sluice.test:3128"}), 1)
	bad.Resolver = &mapResolver{m: map[string]netip.Addr{}, calls: map[string]int{}}
	if _, err := New(bad); err == nil {
		t.Error("unresolvable proxy accepted")
	} else {
		fmt.Fprintf(&dump, "%v\n%+v\n", err, err)
	}
	if classes[failure.ProxyAuth] == 0 || classes[failure.ProxyConnect] == 0 {
		t.Errorf("failure classes %v: want proxy_auth and proxy_connect among them", classes)
	}
	if strings.Contains(dump.String(), canary) {
		i := strings.Index(dump.String(), canary)
		t.Errorf("canary found: …%s…", dump.String()[max(i-200, 0):i])
	}
	t.Logf("%d results by class %v, %d spans, %d bytes checked", len(got), classes, len(spans), dump.Len())
}
