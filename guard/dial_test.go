package guard

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/testbed"
)

func startCanary(t *testing.T, addr string) *testbed.Canary {
	t.Helper()
	c, err := testbed.StartCanary(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func startDNS(t *testing.T, answers map[string][]string) *testbed.DNS {
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

func startSite(t *testing.T) *testbed.Site {
	t.Helper()
	s, err := testbed.StartSite(testbed.SiteConfig{Products: 50})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// wire puts the policy on tr the way the fetch stage does: Dial for
// direct connections; for an http:// proxy, Tunnel in local-DNS mode and
// ProxyFunc otherwise.
func wire(t *testing.T, p *Policy, tr *http.Transport, proxy string) {
	t.Helper()
	base := DialFunc(tr.DialContext)
	if base == nil {
		base = (&net.Dialer{}).DialContext
	}
	if proxy == "" {
		tr.Proxy = nil
		tr.DialContext = p.Dial(base)
		return
	}
	pu := mustParse(t, proxy)
	if !p.LocalDNS() {
		tr.Proxy = p.ProxyFunc(pu)
		return
	}
	tr.Proxy = nil
	tr.DialContext = p.Tunnel(func(ctx context.Context) (net.Conn, error) { return base(ctx, "tcp", pu.Host) }, pu, tr)
}

// client builds a transport wired as the fetch stage does and a client on it.
func client(t *testing.T, p *Policy, proxy string, base DialFunc) *http.Client {
	t.Helper()
	tr := &http.Transport{DialContext: base, DisableKeepAlives: true, ResponseHeaderTimeout: 10 * time.Second}
	wire(t, p, tr, proxy)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

func get(c *http.Client, u string) (int, string, error) {
	resp, err := c.Get(u)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), err
}

// countingDial is a real dialer that counts its calls and records their
// addresses.
type countingDial struct {
	mu    sync.Mutex
	addrs []string
}

func (d *countingDial) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.addrs = append(d.addrs, addr)
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

func (d *countingDial) seen() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.addrs...)
}

func TestDialRefusesSSRFFormsWithoutConnecting(t *testing.T) {
	canary := startCanary(t, "127.0.0.1:0")
	port := canary.Port()
	dns := startDNS(t, map[string][]string{
		"loopback.sluice.test": {"127.0.0.1"},
		"mapped.sluice.test":   {"::ffff:127.0.0.1"},
		"meta.sluice.test":     {"169.254.169.254"},
		"private.sluice.test":  {"10.0.0.1 192.168.1.1"},
	})
	p := mustPolicy(t, Config{Resolver: dns.Resolver()})
	var dials countingDial
	c := client(t, p, "", dials.dial)
	forms := []string{
		"127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f000001", "0x7f.1", "0177.0.0.1",
		"0177.1", "127.0.0.1.", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[64:ff9b::7f00:1]",
		"localhost", "LocalHost.", "loopback.sluice.test", "mapped.sluice.test",
		"169.254.169.254", "0xa9fea9fe", "meta.sluice.test", "private.sluice.test", "0.0.0.0", "0",
	}
	var canary6 *testbed.Canary
	if c6, err := testbed.StartCanary("[::1]:0"); err == nil {
		canary6 = c6
		t.Cleanup(func() { _ = c6.Close() })
	}
	urls := make([]string, 0, len(forms)+1)
	for _, f := range forms {
		urls = append(urls, fmt.Sprintf("http://%s:%d/", f, port))
	}
	if canary6 != nil {
		urls = append(urls, fmt.Sprintf("http://[::1]:%d/", canary6.Port()), fmt.Sprintf("http://[0:0::1]:%d/", canary6.Port()))
	}
	for _, u := range urls {
		_, _, err := get(c, u)
		if err == nil {
			t.Errorf("GET %s succeeded", u)
			continue
		}
		if cl := failure.ClassOf(err); cl != failure.Policy {
			t.Errorf("GET %s: class %q (%v), want policy", u, cl, err)
		}
	}
	if n := canary.Conns(); n != 0 {
		t.Errorf("canary saw %d connections", n)
	}
	if canary6 != nil && canary6.Conns() != 0 {
		t.Errorf("IPv6 canary saw %d connections", canary6.Conns())
	}
	if d := dials.seen(); len(d) != 0 {
		t.Errorf("the dialer was called for %v", d)
	}

	// Control: with the loopback allowance the same name reaches the
	// canary, so the zero above is not the canary's doing.
	allow := mustPolicy(t, Config{Resolver: dns.Resolver(), AllowLoopback: true})
	_, _, _ = get(client(t, allow, "", dials.dial), fmt.Sprintf("http://loopback.sluice.test:%d/", port))
	if canary.Conns() != 1 {
		t.Errorf("with loopback allowed the canary saw %d connections, want 1", canary.Conns())
	}
	if d := dials.seen(); len(d) != 1 || d[0] != fmt.Sprintf("127.0.0.1:%d", port) {
		t.Errorf("dialer called with %v, want the checked IP literal", d)
	}
}

// TestDialRebinding scripts a resolver that first answers a public address
// and then 127.0.0.1 (TTL 0), the classic DNS rebinding attack. The
// public address cannot be reached from a test, so the test's dialer
// stands in for the network: a dial to 93.184.216.34 goes to a local
// "public" server. Every other dial is real.
func TestDialRebinding(t *testing.T) {
	canary := startCanary(t, "127.0.0.1:0")
	public := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "public page")
	}))
	t.Cleanup(public.Close)
	dns := startDNS(t, map[string][]string{
		"rebind.sluice.test": {"93.184.216.34", "127.0.0.1"},
	})
	publicAddr := fmt.Sprintf("93.184.216.34:%d", canary.Port())
	var dials countingDial
	network := func(ctx context.Context, n, addr string) (net.Conn, error) {
		if addr == publicAddr {
			dials.mu.Lock()
			dials.addrs = append(dials.addrs, addr)
			dials.mu.Unlock()
			var nd net.Dialer
			return nd.DialContext(ctx, n, public.Listener.Addr().String())
		}
		return dials.dial(ctx, n, addr)
	}
	p := mustPolicy(t, Config{Resolver: dns.Resolver()})
	c := client(t, p, "", network) // keep-alives off: every request dials
	u := fmt.Sprintf("http://rebind.sluice.test:%d/", canary.Port())

	status, body, err := get(c, u)
	if err != nil || status != 200 || body != "public page" {
		t.Fatalf("first fetch (public answer): %d %q %v", status, body, err)
	}
	for i := range 3 {
		_, _, err := get(c, u)
		if failure.ClassOf(err) != failure.Policy {
			t.Fatalf("fetch %d after rebinding: %v, want a policy refusal", i+2, err)
		}
	}
	if n := canary.Conns(); n != 0 {
		t.Errorf("canary on 127.0.0.1 saw %d connections", n)
	}
	if d := dials.seen(); len(d) != 1 || d[0] != publicAddr {
		t.Errorf("dials %v, want only the checked public address", d)
	}
	// One lookup per connection: the address checked is the one dialled.
	if n := dns.Lookups("rebind.sluice.test"); n != 4 {
		t.Errorf("%d lookups for 4 connections", n)
	}
}

func TestTunnelLocalDNS(t *testing.T) {
	site := startSite(t)
	canary := startCanary(t, "127.0.0.66:0")
	farm, err := testbed.StartFarm(testbed.FarmConfig{N: 1, User: "u", Pass: "s3cret-pw"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = farm.Close() })
	dns := startDNS(t, map[string][]string{
		"site.sluice.test":   {"127.0.0.1"},
		"canary.sluice.test": {"127.0.0.66"},
	})
	// Only the site's address is let through; the canary's is loopback
	// and refused like any other.
	p := mustPolicy(t, Config{Resolver: dns.Resolver(), AllowNets: []string{"127.0.0.1/32"}, ProxyDNS: ProxyDNSLocal})
	c := client(t, p, farm.URLs()[0], nil)
	sitePort := site.URL()[strings.LastIndex(site.URL(), ":")+1:]

	// The farm proxy resolves with the system resolver, which does not
	// know site.sluice.test: success shows it was sent the IP literal.
	status, body, err := get(c, "http://site.sluice.test:"+sitePort+"/product/7")
	if err != nil || status != 200 || !strings.Contains(body, testbed.ExpectedProduct(7).Name) {
		t.Fatalf("fetch through proxy: %d %v", status, err)
	}
	if ips := site.Stats().ByIP; ips["127.0.0.2"] != 1 {
		t.Errorf("site saw %v, want one request from the proxy's address", ips)
	}
	before := farm.Proxy(0).Requests()
	for _, u := range []string{
		fmt.Sprintf("http://canary.sluice.test:%d/", canary.Port()),
		fmt.Sprintf("http://127.0.0.66:%d/", canary.Port()),
		fmt.Sprintf("https://canary.sluice.test:%d/", canary.Port()),
		"http://169.254.169.254/",
	} {
		if _, _, err := get(c, u); failure.ClassOf(err) != failure.Policy {
			t.Errorf("GET %s via proxy: %v, want a policy refusal", u, err)
		}
	}
	if n := farm.Proxy(0).Requests() - before; n != 0 {
		t.Errorf("the proxy was asked %d times for refused targets", n)
	}
	if canary.Conns() != 0 {
		t.Errorf("canary saw %d connections", canary.Conns())
	}

	// HTTPS through the CONNECT tunnel is verified against the URL's name.
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "tls ok") }))
	t.Cleanup(tlsSrv.Close)
	dns2 := startDNS(t, map[string][]string{"example.com": {"127.0.0.1"}, "wrong.sluice.test": {"127.0.0.1"}})
	p2 := mustPolicy(t, Config{Resolver: dns2.Resolver(), AllowNets: []string{"127.0.0.1/32"}, ProxyDNS: ProxyDNSLocal})
	tr := &http.Transport{TLSClientConfig: tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()}
	wire(t, p2, tr, farm.URLs()[0])
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	tlsPort := tlsSrv.Listener.Addr().(*net.TCPAddr).Port
	status, body, err = get(hc, fmt.Sprintf("https://example.com:%d/", tlsPort)) // the test certificate is for example.com
	if err != nil || status != 200 || body != "tls ok" {
		t.Fatalf("https via CONNECT: %d %q %v", status, body, err)
	}
	if _, _, err := get(hc, fmt.Sprintf("https://wrong.sluice.test:%d/", tlsPort)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("certificate for another name accepted: %v", err)
	}
}

func TestTunnelProxyFailuresClassified(t *testing.T) {
	site := startSite(t)
	farm, err := testbed.StartFarm(testbed.FarmConfig{N: 1, User: "u", Pass: "s3cret-pw"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = farm.Close() })
	p := mustPolicy(t, Config{AllowLoopback: true, ProxyDNS: ProxyDNSLocal})
	good := client(t, p, farm.URLs()[0], nil)
	wrongPass := client(t, p, strings.Replace(farm.URLs()[0], "s3cret-pw", "not-the-pw", 1), nil)
	fp := farm.Proxy(0)
	u := site.ProductURL(3)

	check := func(name string, c *http.Client, want failure.Class) {
		t.Helper()
		_, _, err := get(c, u)
		if failure.ClassOf(err) != want || !errors.Is(err, failure.ErrProxy) {
			t.Errorf("%s: %v, want class %s of kind proxy", name, err, want)
		}
		if err != nil && (strings.Contains(err.Error(), "s3cret-pw") || strings.Contains(err.Error(), "not-the-pw")) {
			t.Errorf("%s: error shows the password: %v", name, err)
		}
	}
	check("wrong password", wrongPass, failure.ProxyAuth)
	fp.SetFailure(testbed.Fail502)
	check("502", good, failure.ProxyProtocol)
	if _, _, err := get(good, u); func() bool { var fe *failure.Error; return !errors.As(err, &fe) || fe.Status != 502 }() {
		t.Errorf("the CONNECT answer's status is not in the error: %v", err)
	}
	fp.SetFailure(testbed.FailGarbage)
	check("garbage", good, failure.ProxyProtocol)
	fp.SetFailure(testbed.FailNone)
	if status, _, err := get(good, u); err != nil || status != 200 {
		t.Fatalf("healthy proxy: %d %v", status, err)
	}
	fp.Kill()
	check("dead proxy", good, failure.ProxyConnect)
}

func TestProxyFuncRemoteDNS(t *testing.T) {
	site := startSite(t)
	canary := startCanary(t, "127.0.0.66:0")
	farm, err := testbed.StartFarm(testbed.FarmConfig{N: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = farm.Close() })
	dns := startDNS(t, map[string][]string{"canary.sluice.test": {"127.0.0.66"}})
	p := mustPolicy(t, Config{Resolver: dns.Resolver(), AllowNets: []string{"127.0.0.1/32"}}) // remote DNS is the default
	c := client(t, p, farm.URLs()[0], nil)
	// An IP literal target goes to the proxy as an absolute-form request.
	if status, _, err := get(c, site.ProductURL(4)); err != nil || status != 200 {
		t.Fatalf("fetch: %d %v", status, err)
	}
	before := farm.Proxy(0).Requests()
	for _, u := range []string{
		fmt.Sprintf("http://canary.sluice.test:%d/", canary.Port()),
		fmt.Sprintf("http://2130706498:%d/", canary.Port()), // 127.0.0.66
		"http://[::ffff:a9fe:a9fe]/",
	} {
		if _, _, err := get(c, u); failure.ClassOf(err) != failure.Policy {
			t.Errorf("GET %s: %v, want a policy refusal", u, err)
		}
	}
	if n := farm.Proxy(0).Requests() - before; n != 0 {
		t.Errorf("refused targets reached the proxy %d times", n)
	}
	if canary.Conns() != 0 {
		t.Errorf("canary saw %d connections", canary.Conns())
	}
}

// TestConnectKeepsEarlyTunnelBytes checks that bytes a proxy sends right
// after its CONNECT answer, in the same read, reach the caller.
func TestConnectKeepsEarlyTunnelBytes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { // owner: this test, which waits on done
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil || req.Method != http.MethodConnect || req.Host != "8.8.8.8:25" {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n220 banner\r\n")
	}()
	defer func() { _ = ln.Close(); <-done }()
	p := mustPolicy(t, Config{ProxyDNS: ProxyDNSLocal})
	tr := &http.Transport{}
	wire(t, p, tr, "http://"+ln.Addr().String())
	conn, err := tr.DialContext(context.Background(), "tcp", "8.8.8.8:25")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != "220 banner\r\n" {
		t.Fatalf("read %q, %v", line, err)
	}
}

func TestResolveErrors(t *testing.T) {
	dns := startDNS(t, map[string][]string{"v6only.sluice.test": {"2606:4700::1"}})
	p := mustPolicy(t, Config{Resolver: dns.Resolver()})
	ctx := context.Background()
	if _, err := p.Resolve(ctx, "tcp", "missing.sluice.test:80"); failure.ClassOf(err) != failure.DNS || !failure.Retryable(err) {
		t.Errorf("unknown name: %v, want a retryable dns error", err)
	}
	if _, err := p.Resolve(ctx, "tcp4", "v6only.sluice.test:80"); failure.ClassOf(err) != failure.DNS {
		t.Errorf("no IPv4 address: %v", err)
	}
	if got, err := p.Resolve(ctx, "tcp", "v6only.sluice.test:80"); err != nil || len(got) != 1 || got[0].String() != "[2606:4700::1]:80" {
		t.Errorf("Resolve = %v, %v", got, err)
	}
	if _, err := p.Resolve(ctx, "tcp", "no-port"); failure.ClassOf(err) != failure.BadInput {
		t.Errorf("no port: %v", err)
	}
	var calls atomic.Int64
	_, err := p.Dial(func(context.Context, string, string) (net.Conn, error) { calls.Add(1); return nil, errors.New("x") })(ctx, "tcp", "8.8.8.8:0")
	if err == nil || calls.Load() != 0 {
		t.Errorf("port 0 dialled: %v", err)
	}
}
