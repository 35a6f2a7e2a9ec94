package fetch_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/guard"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/stages/fetch"
	"github.com/sluicehq/sluice/testbed"
)

// socksServer is a small SOCKS5 proxy (RFC 1928 CONNECT, RFC 1929
// username/password) on loopback, written for these tests because the
// testbed farm speaks HTTP only (CI also runs microsocks: see .ci/setup-proxies.sh). It records what each client asked for, so
// a test can see whether it was sent an IP address or a name.
type socksServer struct {
	ln         net.Listener
	user, pass string
	resolver   *net.Resolver // resolves names sent with ATYP 3 (socks5h)

	mu       sync.Mutex
	requests []socksRequest
	conns    map[net.Conn]struct{}
	closed   bool
	wg       sync.WaitGroup
}

type socksRequest struct {
	atyp byte // 1 IPv4, 3 domain name, 4 IPv6
	host string
	port int
}

func startSocks(t *testing.T, user, pass string, resolver *net.Resolver) *socksServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &socksServer{ln: ln, user: user, pass: pass, resolver: resolver, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go func() { // owner: s; exits when close closes the listener
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !s.track(c) {
				return
			}
			s.wg.Add(1)
			go func() { // owner: s; exits when the client or close ends the connection
				defer s.wg.Done()
				defer s.untrack(c)
				s.serve(c)
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *socksServer) addr() string { return s.ln.Addr().String() }

func (s *socksServer) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.Close()
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *socksServer) untrack(c net.Conn) {
	_ = c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *socksServer) close() {
	s.mu.Lock()
	s.closed = true
	_ = s.ln.Close()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *socksServer) seen() []socksRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]socksRequest(nil), s.requests...)
}

func (s *socksServer) serve(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	hdr := make([]byte, 2)
	if _, err := io.ReadFull(c, hdr); err != nil || hdr[0] != 5 {
		return
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(c, methods); err != nil {
		return
	}
	want := byte(0)
	if s.user != "" {
		want = 2
	}
	ok := false
	for _, m := range methods {
		ok = ok || m == want
	}
	if !ok {
		_, _ = c.Write([]byte{5, 0xff})
		return
	}
	_, _ = c.Write([]byte{5, want})
	if want == 2 {
		b := make([]byte, 2)
		if _, err := io.ReadFull(c, b); err != nil {
			return
		}
		user := make([]byte, b[1])
		if _, err := io.ReadFull(c, user); err != nil {
			return
		}
		if _, err := io.ReadFull(c, b[:1]); err != nil {
			return
		}
		pass := make([]byte, b[0])
		if _, err := io.ReadFull(c, pass); err != nil {
			return
		}
		if string(user) != s.user || string(pass) != s.pass {
			_, _ = c.Write([]byte{1, 1})
			return
		}
		_, _ = c.Write([]byte{1, 0})
	}
	req := make([]byte, 4)
	if _, err := io.ReadFull(c, req); err != nil || req[1] != 1 {
		return
	}
	var r socksRequest
	r.atyp = req[3]
	switch r.atyp {
	case 1, 4:
		b := make([]byte, map[byte]int{1: 4, 4: 16}[r.atyp])
		if _, err := io.ReadFull(c, b); err != nil {
			return
		}
		a, _ := netip.AddrFromSlice(b)
		r.host = a.String()
	case 3:
		n := make([]byte, 1)
		if _, err := io.ReadFull(c, n); err != nil {
			return
		}
		name := make([]byte, n[0])
		if _, err := io.ReadFull(c, name); err != nil {
			return
		}
		r.host = string(name)
	default:
		return
	}
	pb := make([]byte, 2)
	if _, err := io.ReadFull(c, pb); err != nil {
		return
	}
	r.port = int(binary.BigEndian.Uint16(pb))
	s.mu.Lock()
	s.requests = append(s.requests, r)
	s.mu.Unlock()

	host := r.host
	if r.atyp == 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		addrs, err := s.resolver.LookupNetIP(ctx, "ip4", host)
		cancel()
		if err != nil || len(addrs) == 0 {
			_, _ = c.Write([]byte{5, 4, 0, 1, 0, 0, 0, 0, 0, 0}) // host unreachable
			return
		}
		host = addrs[0].String()
	}
	up, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(r.port)), 5*time.Second)
	if err != nil {
		_, _ = c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0}) // connection refused
		return
	}
	if !s.track(up) {
		return
	}
	defer s.untrack(up)
	if _, err := c.Write([]byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 0}); err != nil {
		return
	}
	_ = c.SetDeadline(time.Time{})
	done := make(chan struct{})
	go func() { // owner: this handler, which waits on done
		defer close(done)
		_, _ = io.Copy(up, c)
		_ = up.Close()
	}()
	_, _ = io.Copy(c, up)
	_ = c.Close()
	<-done
}

// TestStageSOCKS5ChecksTargets: through a socks5:// proxy the stage
// resolves and checks the target and asks the proxy for the checked IPv4
// literal; through socks5h:// the proxy gets the name, after the
// best-effort check. Refused targets never reach the proxy, in either
// mode.
func TestStageSOCKS5ChecksTargets(t *testing.T) {
	site := startHostile(t, testbed.HostileConfig{})
	canary := startCanary(t, "127.0.0.66:0")
	dns := startDNS(t, map[string][]string{
		"site.sluice.test":   {"127.0.0.1"},
		"canary.sluice.test": {"127.0.0.66"},
	})
	socks := startSocks(t, "u", "s0cks-pw", dns.Resolver())
	port := site.URL()[strings.LastIndex(site.URL(), ":")+1:]
	good := "http://site.sluice.test:" + port + "/ok/9"
	refused := []string{
		fmt.Sprintf("http://canary.sluice.test:%d/", canary.Port()),
		fmt.Sprintf("http://127.0.0.66:%d/", canary.Port()),
		fmt.Sprintf("http://0x7f.0.0.66:%d/", canary.Port()),
		"http://169.254.169.254/",
	}
	stage := func(scheme, pass string) fetch.Config {
		p, err := proxy.Parse("p1", scheme+"://u:"+pass+"@"+socks.addr())
		if err != nil {
			t.Fatal(err)
		}
		pl, err := proxy.New([]*proxy.Proxy{p})
		if err != nil {
			t.Fatal(err)
		}
		cfg := fast()
		cfg.Pool = pl
		cfg.Resolver = dns.Resolver()
		cfg.Policy = guard.Config{AllowNets: []string{"127.0.0.1/32"}}
		return cfg
	}
	for _, tc := range []struct {
		scheme string
		atyp   byte
		host   string
	}{{"socks5", 1, "127.0.0.1"}, {"socks5h", 3, "site.sluice.test"}} {
		t.Run(tc.scheme, func(t *testing.T) {
			before := len(socks.seen())
			res := run(t, stage(tc.scheme, "s0cks-pw"), append([]string{good}, refused...))
			if res[0].Err != nil || !strings.Contains(string(res[0].Body), "ok 9") {
				t.Fatalf("fetch through %s: %v", tc.scheme, res[0].Err)
			}
			for _, f := range res[1:] {
				if errClass(f) != failure.Policy {
					t.Errorf("%s: %v, want a policy refusal", f.Task.Msg.URL, f.Err)
				}
			}
			seen := socks.seen()[before:]
			if len(seen) != 1 || seen[0].atyp != tc.atyp || seen[0].host != tc.host {
				t.Errorf("the proxy was asked for %+v, want only %s (type %d)", seen, tc.host, tc.atyp)
			}
			f := run(t, stage(tc.scheme, "wrong-pw"), []string{good})[0]
			if errClass(f) != failure.ProxyAuth || strings.Contains(f.Err.Error(), "wrong-pw") {
				t.Errorf("wrong password: %v", f.Err)
			}
		})
	}
	if canary.Conns() != 0 {
		t.Errorf("canary saw %d connections", canary.Conns())
	}
}
