package fetch

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/failure"
)

// TestClassifyTransportRealErrors classifies the errors real loopback
// sockets produce: each case makes one real request that fails the way it
// says, and the class must follow from the error's type.
func TestClassifyTransportRealErrors(t *testing.T) {
	closedAddr := closedPort(t)
	silent := listen(t, func(c net.Conn) { <-t.Context().Done(); _ = c.Close() }) // accepts, never answers
	hangup := listen(t, func(c net.Conn) { _ = c.Close() })                       // accepts, closes
	reset := listen(t, func(c net.Conn) {                                         // reads the request, resets
		_, _ = bufio.NewReader(c).ReadString('\n')
		_ = c.(*net.TCPConn).SetLinger(0)
		_ = c.Close()
	})
	bigHeaders := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", strings.Repeat("a", 8<<10))
	}))
	t.Cleanup(bigHeaders.Close)
	garbage := listen(t, func(c net.Conn) { _, _ = c.Write([]byte("\x00\x01\x02\x03\x04 not TLS at all\n")); _ = c.Close() })
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	proxy407 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusProxyAuthRequired)
	}))
	t.Cleanup(proxy407.Close)
	badDNS := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", closedAddr) // a DNS server that is not there
	}}

	for _, tc := range []struct {
		name     string
		url      string
		proxy    string // the proxy's host:port; "" direct
		tweak    func(*http.Transport)
		timeout  time.Duration
		want     failure.Class
		wantKind error
		check    func(error) bool // the standard library's type behind it
	}{
		{name: "connection refused", url: "http://" + closedAddr + "/", want: failure.Connect, wantKind: failure.ErrRetryable,
			check: func(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }},
		{name: "reset by the target", url: "http://" + reset + "/", want: failure.Protocol, wantKind: failure.ErrRetryable},
		{name: "closed by the target", url: "http://" + hangup + "/", want: failure.Protocol, wantKind: failure.ErrRetryable},
		{name: "no answer", url: "http://" + silent + "/", timeout: 100 * time.Millisecond, want: failure.Timeout, wantKind: failure.ErrRetryable,
			check: func(err error) bool { var ne net.Error; return errors.As(err, &ne) && ne.Timeout() }},
		{name: "header deadline", url: "http://" + silent + "/", tweak: func(tr *http.Transport) { tr.ResponseHeaderTimeout = 50 * time.Millisecond },
			want: failure.Timeout, wantKind: failure.ErrRetryable},
		{name: "name not resolved", url: "http://shop.sluice.test/", tweak: func(tr *http.Transport) {
			tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				host, _, _ := net.SplitHostPort(addr)
				_, err := badDNS.LookupHost(ctx, host)
				return nil, &net.OpError{Op: "dial", Net: network, Err: err}
			}
		}, want: failure.DNS, wantKind: failure.ErrRetryable,
			check: func(err error) bool { var de *net.DNSError; return errors.As(err, &de) }},
		{name: "headers over the cap", url: bigHeaders.URL, tweak: func(tr *http.Transport) { tr.MaxResponseHeaderBytes = 1 << 10 },
			want: failure.HeaderTooLarge, wantKind: failure.ErrPermanent},
		{name: "unknown certificate authority", url: tlsSrv.URL, want: failure.TLS, wantKind: failure.ErrPermanent,
			check: func(err error) bool { return isCertificateError(err) }},
		{name: "TLS to a server that does not speak it", url: "https://" + garbage + "/", want: failure.TLS, wantKind: failure.ErrPermanent,
			check: func(err error) bool { var rh tls.RecordHeaderError; return errors.As(err, &rh) }},
		{name: "proxy refuses connections", url: "http://target.sluice.test/", proxy: closedAddr, want: failure.ProxyConnect, wantKind: failure.ErrProxy,
			check: func(err error) bool { return opIs(err, "proxyconnect") }},
		{name: "proxy hangs up", url: "http://target.sluice.test/", proxy: hangup, want: failure.ProxyProtocol, wantKind: failure.ErrProxy},
		{name: "proxy wants credentials for CONNECT", url: "https://target.sluice.test/", proxy: strings.TrimPrefix(proxy407.URL, "http://"),
			want: failure.ProxyAuth, wantKind: failure.ErrProxy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &http.Transport{DisableKeepAlives: true}
			if tc.proxy != "" {
				tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: tc.proxy})
			}
			if tc.tweak != nil {
				tc.tweak(tr)
			}
			defer tr.CloseIdleConnections()
			ctx := t.Context()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, tc.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("no error: status %d", resp.StatusCode)
			}
			if tc.check != nil && !tc.check(err) {
				t.Errorf("the error %v (%T) is not of the type the case is about", err, err)
			}
			got := classifyTransport(err, tc.proxy != "", t.Context())
			if c := failure.ClassOf(got); c != tc.want || !errors.Is(got, tc.wantKind) {
				t.Errorf("%v (%T): class %s (%v), want %s (%v)", err, err, c, got, tc.want, tc.wantKind)
			}
		})
	}
	t.Run("run stopped", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		got := classifyTransport(errors.New("whatever"), false, ctx)
		if failure.ClassOf(got) != failure.Canceled || failure.Retryable(got) {
			t.Errorf("%v, want a final canceled error", got)
		}
	})
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// listen serves each connection on a loopback listener with handle until
// the test ends, and returns the address.
func listen(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { // owner: the test; exits when the listener is closed
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go handle(c) // each exits when its connection is done or the test ends
		}
	}()
	t.Cleanup(func() { _ = l.Close(); <-done })
	return l.Addr().String()
}
