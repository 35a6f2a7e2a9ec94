package testbed

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// connectTunnel opens a CONNECT tunnel through proxyAddr to target and
// returns the connection and its reader (positioned after the proxy's
// answer). A non-200 answer is returned as the response with a nil conn.
func connectTunnel(t *testing.T, proxyAddr, target, auth string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	if auth != "" {
		req += "Proxy-Authorization: " + auth + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		conn.Close()
		t.Fatalf("write CONNECT: %v", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		conn.Close()
		t.Fatalf("read CONNECT answer: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		conn.Close()
		return nil, nil, resp
	}
	return conn, br, resp
}

// getOverTunnel sends GET path to host over an established tunnel.
func getOverTunnel(conn net.Conn, br *bufio.Reader, host, path string) (*http.Response, string, error) {
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host); err != nil {
		return nil, "", err
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func siteHost(s *Site) string { return strings.TrimPrefix(s.URL(), "http://") }

func TestStartFarmRejectsBadConfig(t *testing.T) {
	for _, cfg := range []FarmConfig{{N: 0}, {N: -1}, {N: 2, FirstSourceIP: 254}, {N: 1, FirstSourceIP: -3}} {
		if f, err := StartFarm(cfg); err == nil {
			f.Close()
			t.Errorf("StartFarm(%+v) succeeded", cfg)
		}
	}
}

func TestFarmAccessors(t *testing.T) {
	f := startFarm(t, FarmConfig{N: 3, FirstSourceIP: 10, User: "u", Pass: "p w"})
	if f.Len() != 3 {
		t.Fatalf("Len = %d", f.Len())
	}
	urls := f.URLs()
	for i, u := range urls {
		p := f.Proxy(i)
		if p.URL() != u {
			t.Errorf("URLs[%d] = %q, Proxy(%d).URL() = %q", i, u, i, p.URL())
		}
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		if pass, _ := pu.User.Password(); pu.User.Username() != "u" || pass != "p w" || pu.Host != p.Addr() {
			t.Errorf("URL %q: bad userinfo or host", u)
		}
		if !strings.HasPrefix(p.Addr(), "127.0.0.1:") {
			t.Errorf("Addr = %q", p.Addr())
		}
		if want := fmt.Sprintf("127.0.0.%d", 10+i); p.SourceIP() != want {
			t.Errorf("SourceIP = %q, want %q", p.SourceIP(), want)
		}
		if !p.Alive() || p.Requests() != 0 {
			t.Errorf("fresh proxy: alive %v, requests %d", p.Alive(), p.Requests())
		}
	}
	urls[0] = "mutated"
	if f.URLs()[0] == "mutated" {
		t.Fatal("URLs shares its slice")
	}
	plain := startFarm(t, FarmConfig{N: 1})
	if u := plain.URLs()[0]; strings.Contains(u, "@") || plain.Proxy(0).SourceIP() != "127.0.0.2" {
		t.Fatalf("no-auth farm: URL %q source %q", u, plain.Proxy(0).SourceIP())
	}
}

func TestFarmAbsoluteFormSourceIPs(t *testing.T) {
	s := startSite(t, SiteConfig{Products: 100})
	f := startFarm(t, FarmConfig{N: 3})
	for i, pu := range f.URLs() {
		c, _ := newClient(t, pu, "")
		for range 2 {
			id := 10*i + 5
			r := get(t, c, s.ProductURL(id))
			if r.status != 200 || !strings.Contains(r.body, "<h1>"+ExpectedProduct(id).Name+"</h1>") {
				t.Fatalf("proxy %d: status %d body %q", i, r.status, r.body)
			}
		}
		if got := f.Proxy(i).Requests(); got != 2 {
			t.Errorf("proxy %d Requests = %d, want 2", i, got)
		}
	}
	st := s.Stats()
	want := map[string]int64{"127.0.0.2": 2, "127.0.0.3": 2, "127.0.0.4": 2}
	if fmt.Sprint(st.ByIP) != fmt.Sprint(want) {
		t.Fatalf("site ByIP = %v, want %v", st.ByIP, want)
	}
}

func TestFarmStripsHopByHopHeaders(t *testing.T) {
	var mu sync.Mutex
	var seen http.Header
	var remote string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen, remote = r.Header.Clone(), r.RemoteAddr
		mu.Unlock()
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Resp-Keep", "yes")
		w.Header().Set("Proxy-Authenticate", `Basic realm="upstream"`)
		io.WriteString(w, "echo")
	}))
	defer up.Close()

	f := startFarm(t, FarmConfig{N: 1, User: "alice", Pass: "s3cret"})
	c, _ := newClient(t, f.URLs()[0], "")
	req, _ := http.NewRequest(http.MethodGet, up.URL+"/x?q=1", nil)
	req.Header.Set("Connection", "X-Req-Hop")
	req.Header.Set("X-Req-Hop", "1")
	req.Header.Set("Keep-Alive", "300")
	req.Header.Set("Proxy-Connection", "keep-alive")
	req.Header.Set("X-Req-Keep", "yes")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "echo" || resp.StatusCode != 200 {
		t.Fatalf("resp %d %q %v", resp.StatusCode, body, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, h := range []string{"Proxy-Authorization", "X-Req-Hop", "Keep-Alive", "Proxy-Connection"} {
		if v := seen.Get(h); v != "" {
			t.Errorf("upstream saw %s: %q", h, v)
		}
	}
	if seen.Get("X-Req-Keep") != "yes" {
		t.Errorf("end-to-end request header lost: %v", seen)
	}
	if host, _, _ := net.SplitHostPort(remote); host != "127.0.0.2" {
		t.Errorf("upstream saw client %q", remote)
	}
	for _, h := range []string{"X-Resp-Hop", "Keep-Alive", "Proxy-Authenticate"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("client saw %s: %q", h, v)
		}
	}
	if resp.Header.Get("X-Resp-Keep") != "yes" {
		t.Errorf("end-to-end response header lost: %v", resp.Header)
	}
}

func TestFarmConnectManual(t *testing.T) {
	s := startSite(t, SiteConfig{Products: 100})
	f := startFarm(t, FarmConfig{N: 2})
	for i := range f.Len() {
		conn, br, resp := connectTunnel(t, f.Proxy(i).Addr(), siteHost(s), "")
		if conn == nil {
			t.Fatalf("proxy %d: CONNECT status %d", i, resp.StatusCode)
		}
		// Two requests over the same tunnel (keep-alive to the site).
		for _, id := range []int{7, 8} {
			resp, body, err := getOverTunnel(conn, br, siteHost(s), fmt.Sprintf("/product/%d", id))
			if err != nil || resp.StatusCode != 200 || !strings.Contains(body, ExpectedProduct(id).SKU) {
				t.Fatalf("proxy %d over tunnel: %v %v", i, resp, err)
			}
		}
		conn.Close()
		if got := f.Proxy(i).Requests(); got != 1 {
			t.Errorf("proxy %d Requests = %d, want 1 (one CONNECT)", i, got)
		}
	}
	st := s.Stats()
	if st.ByIP["127.0.0.2"] != 2 || st.ByIP["127.0.0.3"] != 2 || len(st.ByIP) != 2 {
		t.Fatalf("site ByIP = %v", st.ByIP)
	}
}

func TestFarmConnectViaTransportTLS(t *testing.T) {
	var mu sync.Mutex
	var remotes []string
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		remotes = append(remotes, r.RemoteAddr)
		mu.Unlock()
		io.WriteString(w, "tls ok")
	}))
	defer ts.Close()
	f := startFarm(t, FarmConfig{N: 2, User: "bob", Pass: "pw"})

	c, tr := newClient(t, f.URLs()[1], "")
	tr.TLSClientConfig = ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	r := get(t, c, ts.URL+"/secure")
	if r.status != 200 || r.body != "tls ok" {
		t.Fatalf("https via CONNECT: %d %q", r.status, r.body)
	}
	tr.CloseIdleConnections()
	mu.Lock()
	defer mu.Unlock()
	if len(remotes) != 1 {
		t.Fatalf("remotes = %v", remotes)
	}
	if host, _, _ := net.SplitHostPort(remotes[0]); host != "127.0.0.3" {
		t.Fatalf("TLS server saw client %q, want 127.0.0.3", remotes[0])
	}
	if f.Proxy(1).Requests() != 1 || f.Proxy(0).Requests() != 0 {
		t.Fatalf("requests: %d %d", f.Proxy(0).Requests(), f.Proxy(1).Requests())
	}
}

func TestFarmAuth(t *testing.T) {
	s := startSite(t, SiteConfig{Products: 10})
	f := startFarm(t, FarmConfig{N: 1, User: "alice", Pass: "s3cret"})
	p := f.Proxy(0)
	bare := "http://" + p.Addr()
	wrong := "http://alice:nope@" + p.Addr()

	for _, pu := range []string{bare, wrong} {
		c, _ := newClient(t, pu, "")
		r := get(t, c, s.ProductURL(1))
		if r.status != http.StatusProxyAuthRequired {
			t.Fatalf("%s: status %d, want 407", pu, r.status)
		}
		if got := r.header.Get("Proxy-Authenticate"); got != `Basic realm="testbed"` {
			t.Fatalf("Proxy-Authenticate = %q", got)
		}
	}
	_, _, resp := connectTunnel(t, p.Addr(), siteHost(s), "")
	if resp.StatusCode != http.StatusProxyAuthRequired {
		t.Fatalf("CONNECT without auth: %d", resp.StatusCode)
	}
	_, _, resp = connectTunnel(t, p.Addr(), siteHost(s), "Bearer abc")
	if resp.StatusCode != http.StatusProxyAuthRequired {
		t.Fatalf("CONNECT with bearer: %d", resp.StatusCode)
	}
	if st := s.Stats(); st.Requests != 0 {
		t.Fatalf("unauthenticated requests reached the site: %+v", st)
	}

	c, _ := newClient(t, f.URLs()[0], "")
	if r := get(t, c, s.ProductURL(1)); r.status != 200 {
		t.Fatalf("with credentials: %d", r.status)
	}
	good := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	conn, br, resp := connectTunnel(t, p.Addr(), siteHost(s), good)
	if conn == nil {
		t.Fatalf("CONNECT with auth: %d", resp.StatusCode)
	}
	defer conn.Close()
	if resp, _, err := getOverTunnel(conn, br, siteHost(s), "/product/2"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("over authenticated tunnel: %v %v", resp, err)
	}
	if got := p.Requests(); got != 6 {
		t.Fatalf("Requests = %d, want 6", got)
	}
}

func TestFarmKillRevive(t *testing.T) {
	s := startSite(t, SiteConfig{Products: 10})
	f := startFarm(t, FarmConfig{N: 2})
	p := f.Proxy(0)
	addr, pURL := p.Addr(), p.URL()
	c, tr := newClient(t, pURL, "")
	if r := get(t, c, s.ProductURL(1)); r.status != 200 {
		t.Fatalf("before kill: %d", r.status)
	}
	tunnel, tbr, resp := connectTunnel(t, addr, siteHost(s), "")
	if tunnel == nil {
		t.Fatalf("CONNECT: %d", resp.StatusCode)
	}
	defer tunnel.Close()

	p.Kill()
	p.Kill() // idempotent
	if p.Alive() {
		t.Fatal("Alive after Kill")
	}
	if conn, err := net.Dial("tcp", addr); err == nil {
		conn.Close()
		t.Fatal("killed proxy accepted a connection")
	}
	// The open tunnel was closed.
	if _, err := tbr.ReadByte(); err == nil {
		t.Fatal("tunnel still open after Kill")
	}
	tr.CloseIdleConnections()
	if resp, err := c.Get(s.ProductURL(2)); err == nil {
		resp.Body.Close()
		t.Fatal("request through killed proxy succeeded")
	}
	// The other proxy is unaffected.
	c1, _ := newClient(t, f.URLs()[1], "")
	if r := get(t, c1, s.ProductURL(3)); r.status != 200 {
		t.Fatalf("proxy 1 while 0 is dead: %d", r.status)
	}

	if err := p.Revive(); err != nil {
		t.Fatalf("Revive: %v", err)
	}
	if err := p.Revive(); err != nil {
		t.Fatalf("second Revive: %v", err)
	}
	if p.Addr() != addr || p.URL() != pURL || !p.Alive() {
		t.Fatalf("revived proxy moved: %s %s", p.Addr(), p.URL())
	}
	if r := get(t, c, s.ProductURL(4)); r.status != 200 {
		t.Fatalf("after revive: %d", r.status)
	}
	if st := s.Stats(); st.ByIP["127.0.0.2"] != 2 || st.ByIP["127.0.0.3"] != 1 {
		t.Fatalf("site ByIP = %v", st.ByIP)
	}

	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Revive(); !errors.Is(err, ErrFarmClosed) {
		t.Fatalf("Revive after Close = %v, want ErrFarmClosed", err)
	}
}

func TestFarmKillAbortsSlowRequests(t *testing.T) {
	s := startSite(t, SiteConfig{Products: 10, Latency: time.Hour})
	f := startFarm(t, FarmConfig{N: 2})
	fast := f.Proxy(0)
	slowProxy := f.Proxy(1)
	slowProxy.SetLatency(time.Hour)

	// One request stuck in the proxy's own latency, one stuck at the site.
	errs := make(chan error, 2)
	for _, pu := range []string{slowProxy.URL(), fast.URL()} {
		c, _ := newClient(t, pu, "")
		go func() {
			resp, err := c.Get(s.ProductURL(1))
			if err == nil {
				resp.Body.Close()
				err = fmt.Errorf("unexpected answer %d", resp.StatusCode)
			}
			errs <- err
		}()
	}
	waitFor(t, "both requests in flight", func() bool {
		return slowProxy.Requests() == 1 && s.Stats().Requests == 1
	})
	slowProxy.Kill()
	fast.Kill()
	for range 2 {
		if err := <-errs; err == nil || strings.Contains(err.Error(), "unexpected answer") {
			t.Fatalf("in-flight request through killed proxy: %v", err)
		}
	}
	slowProxy.SetLatency(0)
	if err := slowProxy.Revive(); err != nil {
		t.Fatal(err)
	}
}

func TestFarmLatencyDelaysButForwards(t *testing.T) {
	s := startSite(t, SiteConfig{Products: 10})
	f := startFarm(t, FarmConfig{N: 1})
	f.Proxy(0).SetLatency(5 * time.Millisecond)
	c, _ := newClient(t, f.URLs()[0], "")
	if r := get(t, c, s.ProductURL(9)); r.status != 200 || !strings.Contains(r.body, ExpectedProduct(9).Price) {
		t.Fatalf("status %d", r.status)
	}
}

func TestFarmFailureModes(t *testing.T) {
	const pageBytes = 8192
	s := startSite(t, SiteConfig{Products: 10, PageBytes: pageBytes})
	f := startFarm(t, FarmConfig{N: 1})
	p := f.Proxy(0)

	t.Run("502", func(t *testing.T) {
		p.SetFailure(Fail502)
		defer p.SetFailure(FailNone)
		c, _ := newClient(t, p.URL(), "")
		if r := get(t, c, s.ProductURL(1)); r.status != http.StatusBadGateway {
			t.Fatalf("status %d", r.status)
		}
		_, _, resp := connectTunnel(t, p.Addr(), siteHost(s), "")
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("CONNECT status %d", resp.StatusCode)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		p.SetFailure(FailGarbage)
		defer p.SetFailure(FailNone)
		c, _ := newClient(t, p.URL(), "")
		resp, err := c.Get(s.ProductURL(1))
		if err == nil {
			resp.Body.Close()
			t.Fatalf("garbage answer parsed as HTTP: %d", resp.StatusCode)
		}
		conn, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %[1]s\r\n\r\n", siteHost(s))
		if _, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
			t.Fatal("garbage CONNECT answer parsed as HTTP")
		}
	})
	t.Run("close-mid-response", func(t *testing.T) {
		p.SetFailure(FailCloseMidResponse)
		defer p.SetFailure(FailNone)
		c, _ := newClient(t, p.URL(), "")
		resp, err := c.Get(s.ProductURL(1))
		if err != nil {
			t.Fatalf("headers should arrive: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ContentLength != pageBytes {
			t.Fatalf("status %d, Content-Length %d", resp.StatusCode, resp.ContentLength)
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("body read error = %v, want unexpected EOF", err)
		}
		if len(body) != pageBytes/2 {
			t.Fatalf("got %d body bytes, want %d", len(body), pageBytes/2)
		}

		conn, br, cresp := connectTunnel(t, p.Addr(), siteHost(s), "")
		if conn == nil {
			t.Fatalf("CONNECT: %d", cresp.StatusCode)
		}
		defer conn.Close()
		if _, _, err := getOverTunnel(conn, br, siteHost(s), "/product/2"); err == nil {
			t.Fatal("tunnel response survived close-mid-response")
		}
	})
	t.Run("none again", func(t *testing.T) {
		c, _ := newClient(t, p.URL(), "")
		if r := get(t, c, s.ProductURL(3)); r.status != 200 || len(r.body) != pageBytes {
			t.Fatalf("status %d, %d bytes", r.status, len(r.body))
		}
	})
	if FailCloseMidResponse.String() != "close-mid-response" || FailureMode(9).String() != "FailureMode(9)" {
		t.Fatal("FailureMode.String")
	}
}

func TestFarmUpstreamErrors(t *testing.T) {
	f := startFarm(t, FarmConfig{N: 1})
	p := f.Proxy(0)
	// A port nobody listens on: grab one and release it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	c, _ := newClient(t, p.URL(), "")
	if r := get(t, c, "http://"+dead+"/"); r.status != http.StatusBadGateway {
		t.Fatalf("forward to dead port: %d", r.status)
	}
	_, _, resp := connectTunnel(t, p.Addr(), dead, "")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("CONNECT to dead port: %d", resp.StatusCode)
	}
	// Origin-form request to a proxy is refused.
	direct, _ := newClient(t, "", "")
	if r := get(t, direct, p.URL()+"/product/1"); r.status != http.StatusBadRequest {
		t.Fatalf("origin-form: %d", r.status)
	}
}

// TestFarmRateLimitedScrape runs a round-robin scrape through the farm
// against a rate-limited site and checks that the limit is per source IP.
func TestFarmRateLimitedScrape(t *testing.T) {
	clk := newFakeClock()
	const perIP, n = 5, 3
	s := startSite(t, SiteConfig{Products: 1000, PerIPPerMinute: perIP, Now: clk.Now})
	f := startFarm(t, FarmConfig{N: n})
	clients := make([]*http.Client, n)
	for i := range n {
		clients[i], _ = newClient(t, f.URLs()[i], "")
	}
	var wg sync.WaitGroup
	var ok, limited atomic.Int64
	for i := range n {
		wg.Go(func() {
			for j := range perIP + 2 { // two too many per proxy
				resp, err := clients[i].Get(s.ProductURL(1 + i*100 + j))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case 200:
					ok.Add(1)
				case 429:
					limited.Add(1)
					if resp.Header.Get("Retry-After") != "60" {
						t.Errorf("Retry-After = %q", resp.Header.Get("Retry-After"))
					}
				default:
					t.Errorf("status %d", resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != n*perIP || limited.Load() != n*2 {
		t.Fatalf("ok %d limited %d", ok.Load(), limited.Load())
	}
	st := s.Stats()
	for i := range n {
		ip := f.Proxy(i).SourceIP()
		if st.ByIP[ip] != perIP+2 || st.MaxPerIPPerMinute[ip] != perIP {
			t.Errorf("%s: requests %d, max/min %d", ip, st.ByIP[ip], st.MaxPerIPPerMinute[ip])
		}
	}
	if _, direct := st.ByIP["127.0.0.1"]; direct {
		t.Errorf("site saw the test's own IP: %v", st.ByIP)
	}
}

// TestFarmConcurrentChaos hammers the farm while flipping fault controls,
// for the race detector; it asserts only accounting invariants.
func TestFarmConcurrentChaos(t *testing.T) {
	s := startSite(t, SiteConfig{Products: 200, FailEvery: 7})
	f := startFarm(t, FarmConfig{N: 4})
	const workers, perWorker = 8, 25
	ctx, cancel := context.WithCancel(context.Background())
	var togglers sync.WaitGroup
	togglers.Go(func() {
		modes := []FailureMode{FailNone, Fail502, FailGarbage, FailCloseMidResponse}
		for i := 0; ctx.Err() == nil; i++ {
			p := f.Proxy(3)
			p.SetFailure(modes[i%len(modes)])
			p.SetLatency(time.Duration(i%3) * time.Millisecond)
			time.Sleep(time.Millisecond)
		}
	})
	var wg sync.WaitGroup
	var sent atomic.Int64
	for w := range workers {
		c, _ := newClient(t, f.URLs()[w%f.Len()], "")
		wg.Go(func() {
			for j := range perWorker {
				sent.Add(1)
				resp, err := c.Get(s.ProductURL(1 + (w*perWorker+j)%200))
				if err != nil {
					continue // proxy 3 is faulty on purpose
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	cancel()
	togglers.Wait()

	var proxied int64
	for i := range f.Len() {
		proxied += f.Proxy(i).Requests()
	}
	st := s.Stats()
	if proxied < sent.Load() {
		t.Fatalf("proxies handled %d requests, %d were sent", proxied, sent.Load())
	}
	if st.Requests > proxied {
		t.Fatalf("site saw %d requests, proxies handled %d", st.Requests, proxied)
	}
	var byIP, byStatus int64
	for _, v := range st.ByIP {
		byIP += v
	}
	for _, v := range st.ByStatus {
		byStatus += v
	}
	if byIP != st.Requests || byStatus != st.Requests {
		t.Fatalf("stats inconsistent: %+v", st)
	}
	for i := range 3 { // healthy proxies: every request reached the site
		if ip := f.Proxy(i).SourceIP(); st.ByIP[ip] != int64(2*perWorker) {
			t.Errorf("%s: %d requests at site, want %d", ip, st.ByIP[ip], 2*perWorker)
		}
	}
}
