package fetch

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	xproxy "golang.org/x/net/proxy"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/proxy"
)

// Resolver looks up host names. *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// poolSize is the keep-alive pool of a client serving share requests at
// once: the share plus 20%, rounded up.
func poolSize(share int) int { return share + (share+4)/5 }

// baseTransport is what every client shares: timeouts, header cap and a
// keep-alive pool sized for share concurrent requests.
func (s *Stage) baseTransport(share int) (*http.Transport, *net.Dialer) {
	pool := poolSize(share)
	dialer := &net.Dialer{Timeout: s.cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext:            dialer.DialContext,
		TLSHandshakeTimeout:    s.cfg.TLSTimeout,
		ResponseHeaderTimeout:  s.cfg.HeaderTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxIdleConns:           pool,
		MaxIdleConnsPerHost:    pool,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: s.cfg.MaxHeaderBytes,
		// A request through a proxy is a few hundred bytes; net/http's
		// 4 KiB write buffer per connection is mostly never touched.
		// Larger requests are written in more pieces, not refused.
		WriteBufferSize:    2 << 10,
		ForceAttemptHTTP2:  true,
		DisableCompression: true, // bodies are decoded by readBody, under the cap (bounds.go)
	}
	if s.cfg.TLS != nil {
		tr.TLSClientConfig = s.cfg.TLS.Clone()
	}
	return tr, dialer
}

func (s *Stage) client(tr *http.Transport) *http.Client {
	return &http.Client{
		Transport: tr,
		// Redirects are followed by the client under the attempt's
		// deadline, through the same proxy, each checked by the URL
		// policy: see bounds.go.
		CheckRedirect: s.checkRedirect,
	}
}

// newClient builds the long-lived client for one proxy (nil = direct).
//
// Every proxy gets its own transport, so a proxy's credentials are only
// ever sent to that proxy (a retry through another proxy uses another
// transport), and keep-alive connections never carry traffic meant for
// one proxy through another. The proxy's endpoint is resolved here, once.
// A rotating endpoint's transport keeps no connection alive, so that each
// request gets a new connection and with it a new exit IP.
func (s *Stage) newClient(p *proxy.Proxy, share int) (*http.Client, error) {
	tr, dialer := s.baseTransport(share)
	if p == nil {
		// The URL policy resolves every target through the stage's
		// resolver (the DNS cache), checks the addresses and dials a checked
		// IP, under the connection counting: see bounds.go. Proxied clients
		// dial their proxy's endpoint, resolved once at start.
		tr.DialContext = s.conns.wrap(directID, tr.MaxIdleConnsPerHost, dialFunc(s.policy.Dial(tr.DialContext)))
		return s.client(tr), nil
	}
	endpoint, err := s.resolveEndpoint(p)
	if err != nil {
		return nil, err
	}
	dialProxy := func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, "tcp", endpoint)
		if err != nil {
			return nil, failure.New(failure.ProxyConnect, failure.ErrProxy, fmt.Errorf("dial proxy %s: %w", p.ID, err))
		}
		return withFirstByteDeadline(c, s.cfg.HeaderTimeout), nil // see timeouts.go
	}
	switch p.URL.Scheme {
	case "http", "https":
		tr.Proxy = http.ProxyURL(p.URL) // its user:pass becomes Proxy-Authorization
		tr.DialContext = dialProxy
		tr.OnProxyConnectResponse = connectAnswer
		toProxy := func(ctx context.Context) (net.Conn, error) { return dialProxy(ctx, "tcp", "") }
		if p.URL.Scheme == "https" {
			dialTLS := s.dialProxyTLS(p, dialProxy)
			tr.DialTLSContext = dialTLS
			toProxy = func(ctx context.Context) (net.Conn, error) { return dialTLS(ctx, "tcp", "") }
		}
		if s.toProxy == nil {
			s.toProxy = map[string]proxyDial{}
		}
		s.toProxy[p.ID] = toProxy
	case "socks5", "socks5h":
		tr.Proxy = nil
		tr.DialContext = s.dialSOCKS(p, endpoint, dialProxy)
	default:
		return nil, fmt.Errorf("proxy %s: unsupported scheme %q", p.ID, p.URL.Scheme)
	}
	if p.Rotating {
		tr.DisableKeepAlives = true
	}
	s.proxyPolicy(tr, p) // the URL policy behind an HTTP(S) proxy: see bounds.go
	// Count the connections of whichever dial the transport uses for its
	// first hop: TLS to an https:// proxy, plain TCP otherwise.
	if tr.DialTLSContext != nil {
		tr.DialTLSContext = s.conns.wrap(p.ID, tr.MaxIdleConnsPerHost, tr.DialTLSContext)
	} else {
		tr.DialContext = s.conns.wrap(p.ID, tr.MaxIdleConnsPerHost, tr.DialContext)
	}
	return s.client(tr), nil
}

// resolveEndpoint returns the proxy's "ip:port", resolving its host name.
func (s *Stage) resolveEndpoint(p *proxy.Proxy) (string, error) {
	host, port := p.URL.Hostname(), p.URL.Port()
	if ip, err := netip.ParseAddr(host); err == nil {
		return net.JoinHostPort(ip.String(), port), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ConnectTimeout)
	defer cancel()
	ip, err := s.lookup(ctx, host)
	if err != nil {
		return "", fmt.Errorf("proxy %s: resolve %s: %w", p.ID, host, err)
	}
	return net.JoinHostPort(ip.String(), port), nil
}

// lookup resolves host, preferring an IPv4 address.
func (s *Stage) lookup(ctx context.Context, host string) (netip.Addr, error) {
	r := s.cfg.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	ips, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.Addr{}, err
	}
	if len(ips) == 0 {
		return netip.Addr{}, fmt.Errorf("no address for %s", host)
	}
	for _, ip := range ips {
		if ip.Unmap().Is4() {
			return ip.Unmap(), nil
		}
	}
	return ips[0], nil
}

// dialProxyTLS connects to an https:// proxy: TLS to the proxy itself
// (HTTP/1.1 only), before the CONNECT or the forwarded request.
func (s *Stage) dialProxyTLS(p *proxy.Proxy, dialProxy func(context.Context, string, string) (net.Conn, error)) func(context.Context, string, string) (net.Conn, error) {
	cfg := &tls.Config{}
	if s.cfg.ProxyTLS != nil {
		cfg = s.cfg.ProxyTLS.Clone()
	}
	cfg.ServerName = p.URL.Hostname()
	cfg.NextProtos = []string{"http/1.1"}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		raw, err := dialProxy(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(raw, cfg)
		hctx, cancel := context.WithTimeout(ctx, s.cfg.TLSTimeout)
		defer cancel()
		if err := tc.HandshakeContext(hctx); err != nil {
			_ = raw.Close()
			return nil, failure.New(failure.ProxyConnect, failure.ErrProxy, fmt.Errorf("TLS with proxy %s: %w", p.ID, err))
		}
		return tc, nil
	}
}

// dialSOCKS connects to targets through a SOCKS5 proxy. socks5:// resolves
// the target here, through the configured resolver; socks5h:// sends the
// name and lets the proxy resolve it. (net/http treats both as socks5h.)
func (s *Stage) dialSOCKS(p *proxy.Proxy, endpoint string, dialProxy func(context.Context, string, string) (net.Conn, error)) func(context.Context, string, string) (net.Conn, error) {
	var auth *xproxy.Auth
	if u := p.URL.User; u != nil {
		pass, _ := u.Password()
		auth = &xproxy.Auth{User: u.Username(), Password: pass}
	}
	d, err := xproxy.SOCKS5("tcp", endpoint, auth, dialerFunc(dialProxy))
	if err != nil { // x/net only fails on a nil forward dialer
		panic(err)
	}
	cd := d.(xproxy.ContextDialer)
	local := p.URL.Scheme == "socks5"
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		target, err := s.socksTarget(ctx, network, addr, local) // the URL policy: see bounds.go
		if err != nil {
			return nil, err
		}
		c, err := cd.DialContext(ctx, network, target)
		if err != nil {
			return nil, socksError(err)
		}
		return c, nil
	}
}

// dialerFunc adapts a dial function to x/net/proxy's dialer interfaces.
type dialerFunc func(ctx context.Context, network, addr string) (net.Conn, error)

func (f dialerFunc) Dial(network, addr string) (net.Conn, error) {
	return f(context.Background(), network, addr)
}
func (f dialerFunc) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return f(ctx, network, addr)
}

// socksError classifies a failed SOCKS5 dial: the proxy unreachable
// (tagged by the forward dialer), our credentials refused, the proxy
// unable to reach the target (a reply code), or a broken exchange.
func socksError(err error) error {
	var fe *failure.Error
	if errors.As(err, &fe) {
		return fe
	}
	var ne net.Error
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return err // classified against the attempt's contexts
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "authentication failed"), strings.Contains(msg, "no acceptable authentication methods"),
		strings.Contains(msg, "invalid username/password"):
		return failure.New(failure.ProxyAuth, failure.ErrProxy, err)
	case strings.Contains(msg, "unknown error "): // x/net's words for a SOCKS reply code
		return failure.New(failure.ProxyProtocol, failure.ErrProxy, upstreamError{err})
	default:
		return failure.New(failure.ProxyProtocol, failure.ErrProxy, err)
	}
}

// upstreamError marks a proxy's answer that it could not reach the target:
// the proxy works, its path to this domain does not.
type upstreamError struct{ error }

func (e upstreamError) Unwrap() error { return e.error }

// connectAnswer classifies an HTTP proxy's answer to CONNECT. Proxies
// that refuse our credentials answer 407, some 401.
func connectAnswer(_ context.Context, _ *url.URL, _ *http.Request, resp *http.Response) error {
	switch code := resp.StatusCode; code {
	case http.StatusOK:
		return nil
	case http.StatusProxyAuthRequired, http.StatusUnauthorized:
		return failure.New(failure.ProxyAuth, failure.ErrProxy, fmt.Errorf("proxy answered %d to CONNECT", code))
	case http.StatusBadGateway, http.StatusGatewayTimeout:
		return failure.New(failure.ProxyProtocol, failure.ErrProxy, upstreamError{fmt.Errorf("proxy answered %d to CONNECT", code)})
	default:
		return failure.New(failure.ProxyProtocol, failure.ErrProxy, fmt.Errorf("proxy answered %d to CONNECT", code))
	}
}

// proxyDial opens a connection to a proxy itself (TLS done for https://).
type proxyDial func(ctx context.Context) (net.Conn, error)

// proxyRefuses tells whether a 401 answer to a request forwarded through
// an HTTP proxy came from the proxy rather than the target. Some proxies
// (tinyproxy, for one) answer wrong credentials with 401 and
// WWW-Authenticate instead of 407, which looks just like a target asking
// for a login. A Proxy-Authenticate header settles it; otherwise the proxy
// is asked, with the same credentials, for a CONNECT tunnel to the same
// target: its answer to CONNECT is its own, so 401 or 407 there means it
// refuses the credentials. Any other outcome leaves the 401 to the target.
func (s *Stage) proxyRefuses(ctx context.Context, p *proxy.Proxy, resp *http.Response) bool {
	if resp.Header.Get("Proxy-Authenticate") != "" {
		return true
	}
	dial := s.toProxy[p.ID]
	if dial == nil || p.URL.User == nil || resp.Request == nil || resp.Request.URL.Scheme != "http" {
		return false // nothing to refuse, or the 401 came through a tunnel
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout+s.cfg.HeaderTimeout)
	defer cancel()
	c, err := dial(ctx)
	if err != nil {
		return false
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	target := resp.Request.URL.Host
	if resp.Request.URL.Port() == "" {
		target = net.JoinHostPort(resp.Request.URL.Hostname(), "80")
	}
	pass, _ := p.URL.User.Password()
	req := &http.Request{
		Method: http.MethodConnect, URL: &url.URL{Opaque: target}, Host: target,
		Header: http.Header{"Proxy-Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(p.URL.User.Username()+":"+pass))}},
	}
	if err := req.Write(c); err != nil {
		return false
	}
	answer, err := http.ReadResponse(bufio.NewReader(io.LimitReader(c, s.cfg.MaxHeaderBytes)), req)
	if err != nil {
		return false
	}
	_ = answer.Body.Close()
	return answer.StatusCode == http.StatusUnauthorized || answer.StatusCode == http.StatusProxyAuthRequired
}
