package guard

import (
	"bufio"
	"bytes"
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

	"sluice/failure"
)

// Resolver resolves host names; *net.Resolver is one. network is "ip",
// "ip4" or "ip6".
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// DialFunc is the signature of net.Dialer.DialContext and
// http.Transport.DialContext.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// maxDialAddrs bounds how many admitted addresses of one name a dial tries.
const maxDialAddrs = 4

func (p *Policy) lookup(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if p.resolver != nil {
		return p.resolver.LookupNetIP(ctx, network, host)
	}
	return net.DefaultResolver.LookupNetIP(ctx, network, host)
}

// Resolve resolves addr ("host:port", as a transport dials it), checks
// the port, the host and every address against the policy, and returns
// the admitted addresses (at most a few), in the resolver's order. It
// fails with class policy when the port or host is refused or no address
// is admitted, and with class dns when resolution fails. network is
// "tcp", "tcp4" or "tcp6".
func (p *Policy) Resolve(ctx context.Context, network, addr string) ([]netip.AddrPort, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, failure.Errorf(failure.BadInput, "dial address %q: %v", clip(addr), err)
	}
	port, ok := parsePort(portStr)
	if !ok {
		return nil, failure.Errorf(failure.BadInput, "dial address %q: bad port", clip(addr))
	}
	if err := p.checkPort(port); err != nil {
		return nil, err
	}
	h, err := ParseHost(host)
	if err != nil {
		return nil, failure.Errorf(failure.BadInput, "dial address: %v", err)
	}
	if err := p.checkHost(h); err != nil {
		return nil, err
	}
	ipnet := "ip"
	switch network {
	case "tcp4":
		ipnet = "ip4"
	case "tcp6":
		ipnet = "ip6"
	}
	var addrs []netip.Addr
	if h.IsIP() {
		addrs = []netip.Addr{h.Addr}
	} else {
		addrs, err = p.lookup(ctx, ipnet, h.Name)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, failure.New(failure.DNS, failure.ErrRetryable, err)
		}
	}
	var out []netip.AddrPort
	var firstRefusal error
	for _, a := range addrs {
		if ipnet == "ip4" && !a.Unmap().Is4() || ipnet == "ip6" && !a.Is6() {
			continue
		}
		if err := p.CheckAddr(a); err != nil {
			if firstRefusal == nil {
				firstRefusal = err
			}
			continue
		}
		if len(out) < maxDialAddrs {
			out = append(out, netip.AddrPortFrom(a, uint16(port)))
		}
	}
	if len(out) == 0 {
		if firstRefusal == nil {
			return nil, failure.New(failure.DNS, failure.ErrRetryable, fmt.Errorf("no %s address for %s", ipnet, h))
		}
		if h.IsIP() {
			return nil, firstRefusal
		}
		return nil, refuse("%s resolves only to refused addresses: %v", h, reason(firstRefusal))
	}
	return out, nil
}

// Dial wraps base (nil means a plain net.Dialer) so that every connection
// goes through Resolve and then to exactly one of the admitted IP
// addresses: base is only ever called with an IP literal, so nothing can
// resolve the name a second time. The addresses are tried in order until
// one connects.
func (p *Policy) Dial(base DialFunc) DialFunc {
	if base == nil {
		base = (&net.Dialer{}).DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		targets, err := p.Resolve(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		var firstErr error
		for _, t := range targets {
			c, err := base(ctx, network, t.String())
			if err == nil {
				return c, nil
			}
			if firstErr == nil {
				firstErr = err
			}
			if ctx.Err() != nil {
				break
			}
		}
		return nil, firstErr
	}
}

// Apply makes every connection tr opens pass the policy. proxyURL is the
// proxy tr is built for, nil for direct connections; tr.DialContext (nil
// means a plain net.Dialer) is kept as the way to reach the target or the
// proxy. Call it once, after the transport is otherwise configured and
// before its first use.
//
// What holds, per kind of connection:
//
//   - direct: the target name is resolved here, every address checked,
//     and the connection made to a checked IP (tr.Proxy is cleared, so no
//     environment proxy is used).
//   - socks5, and http/https proxies in local-DNS mode: the
//     same resolution and check, then the proxy is asked for the checked
//     IP literal (SOCKS5 CONNECT with an IPv4/IPv6 address, HTTP CONNECT
//     ip:port); plain-http targets are tunnelled through CONNECT too. The
//     proxy cannot substitute another destination without lying about
//     the tunnel, and TLS is verified against the URL's name as usual.
//     tr.Proxy is cleared and the handshake is done here, honouring the
//     proxy URL's credentials, tr.ProxyConnectHeader,
//     tr.GetProxyConnectHeader and tr.OnProxyConnectResponse.
//   - socks5h, and http/https proxies in remote-DNS mode (the default):
//     the proxy resolves the name, so its answer cannot be checked here.
//     What holds is CheckURL (scheme, port, host lists, IP literals in
//     every numeric spelling) plus a best-effort check of the name as the
//     local resolver answers it: a name that resolves here to any refused
//     address is refused. A name the proxy resolves differently (split-horizon DNS,
//     rebinding between the two lookups, a provider's endpoint that
//     resolves inside its own network) is outside this package's reach;
//     use local-DNS mode, or a proxy that enforces its own egress policy,
//     where that matters.
//
// The proxy endpoint itself is configuration, not input, and is not
// checked.
func (p *Policy) Apply(tr *http.Transport, proxyURL *url.URL) {
	base := DialFunc(tr.DialContext)
	if base == nil {
		base = (&net.Dialer{}).DialContext
	}
	switch {
	case proxyURL == nil:
		tr.Proxy = nil
		tr.DialContext = p.Dial(base)
	case proxyURL.Scheme == "socks5" || p.localDNS && (proxyURL.Scheme == "http" || proxyURL.Scheme == "https"):
		tr.Proxy = nil
		v := &via{p: p, proxy: proxyURL, base: base, tr: tr}
		tr.DialContext = v.dial
	default:
		tr.Proxy = p.remoteProxy(proxyURL)
		tr.DialContext = base
	}
}

// remoteProxy is the Proxy function for proxies that resolve names
// themselves: CheckURL plus the best-effort local check of the name.
func (p *Policy) remoteProxy(proxyURL *url.URL) func(*http.Request) (*url.URL, error) {
	return func(req *http.Request) (*url.URL, error) {
		c, err := p.CheckURL(req.URL)
		if err != nil {
			return nil, err
		}
		h, err := ParseHost(c.Hostname())
		if err != nil || h.IsIP() {
			return proxyURL, err
		}
		ctx, cancel := context.WithTimeout(req.Context(), p.handshake)
		defer cancel()
		addrs, err := p.lookup(ctx, "ip", h.Name)
		if err != nil {
			return proxyURL, nil // the proxy may well resolve it; it is its answer that counts
		}
		for _, a := range addrs {
			if err := p.CheckAddr(a); err != nil {
				return nil, refuse("%s resolves here to a refused address (%v); not sent to a proxy that resolves it itself", h, reason(err))
			}
		}
		return proxyURL, nil
	}
}

// via dials targets through one proxy after resolving and checking them
// locally.
type via struct {
	p     *Policy
	proxy *url.URL
	base  DialFunc
	tr    *http.Transport
}

func (v *via) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	targets, err := v.p.Resolve(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	var lastErr error
	for _, t := range targets {
		var c net.Conn
		if v.proxy.Scheme == "socks5" {
			c, err = v.socks(ctx, t)
		} else {
			c, err = v.connect(ctx, t)
		}
		if err == nil {
			return c, nil
		}
		lastErr = err
		// Only a refusal of this target is worth trying the next address
		// for; a proxy that cannot be reached or refuses us will not do
		// better with another one.
		var fe *failure.Error
		if ctx.Err() != nil || !errors.As(err, &fe) || fe.Class != failure.ProxyProtocol {
			break
		}
	}
	return nil, lastErr
}

// proxyAddr is the proxy's host:port, with the scheme's default port.
func (v *via) proxyAddr() string {
	port := v.proxy.Port()
	if port == "" {
		switch v.proxy.Scheme {
		case "https":
			port = "443"
		case "http":
			port = "80"
		default:
			port = "1080"
		}
	}
	return net.JoinHostPort(v.proxy.Hostname(), port)
}

func proxyErr(class failure.Class, format string, args ...any) error {
	return failure.New(class, failure.ErrProxy, fmt.Errorf(format, args...))
}

// connect opens a CONNECT tunnel to target through an HTTP(S) proxy.
func (v *via) connect(ctx context.Context, target netip.AddrPort) (_ net.Conn, err error) {
	c, err := v.base(ctx, "tcp", v.proxyAddr())
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, proxyErr(failure.ProxyConnect, "reaching proxy: %w", err)
	}
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()
	// The handshake is bounded by HandshakeTimeout and by ctx.
	deadline := time.Now().Add(v.p.handshake)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(class failure.Class, format string, args ...any) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return proxyErr(class, format, args...)
	}

	if v.proxy.Scheme == "https" {
		cfg := &tls.Config{}
		if v.tr.TLSClientConfig != nil {
			cfg = v.tr.TLSClientConfig.Clone()
		}
		cfg.ServerName = v.proxy.Hostname()
		cfg.NextProtos = nil
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fail(failure.ProxyConnect, "TLS with proxy: %w", err)
		}
		c = tc
	}

	hostport := target.String()
	var hdr http.Header
	if v.tr.GetProxyConnectHeader != nil {
		if hdr, err = v.tr.GetProxyConnectHeader(ctx, v.proxy, hostport); err != nil {
			return nil, err
		}
	} else {
		hdr = v.tr.ProxyConnectHeader
	}
	hdr = hdr.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	if u := v.proxy.User; u != nil && hdr.Get("Proxy-Authorization") == "" {
		pass, _ := u.Password()
		hdr.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pass)))
	}
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: hostport}, Host: hostport, Header: hdr}
	if err := req.Write(c); err != nil {
		return nil, fail(failure.ProxyProtocol, "writing CONNECT: %w", err)
	}
	br := bufio.NewReader(&io.LimitedReader{R: c, N: v.p.maxProxyHdr})
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, fail(failure.ProxyProtocol, "proxy answered CONNECT with garbage: %w", err)
	}
	if v.tr.OnProxyConnectResponse != nil {
		if err := v.tr.OnProxyConnectResponse(ctx, v.proxy, req, resp); err != nil {
			return nil, err
		}
	}
	switch {
	case resp.StatusCode == http.StatusProxyAuthRequired:
		return nil, withStatus(fail(failure.ProxyAuth, "proxy answered %d to CONNECT", resp.StatusCode), resp.StatusCode)
	case resp.StatusCode/100 != 2:
		return nil, withStatus(fail(failure.ProxyProtocol, "proxy answered %d to CONNECT %s", resp.StatusCode, hostport), resp.StatusCode)
	}
	_ = c.SetDeadline(time.Time{})
	if n := br.Buffered(); n > 0 {
		// The target spoke first and the reader took some of it: keep it.
		early, _ := br.Peek(n)
		return &prefixConn{Conn: c, r: io.MultiReader(bytes.NewReader(bytes.Clone(early)), c)}, nil
	}
	return c, nil
}

// withStatus records the proxy's answer to CONNECT in a classified error,
// so that the attempt reports the status as a forwarded request would.
func withStatus(err error, status int) error {
	if fe, ok := err.(*failure.Error); ok {
		fe.Status = status
	}
	return err
}

// prefixConn replays bytes read ahead of a tunnel's start.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// socks opens a SOCKS5 connection to the IP literal target.
func (v *via) socks(ctx context.Context, target netip.AddrPort) (net.Conn, error) {
	var auth *xproxy.Auth
	if u := v.proxy.User; u != nil {
		pass, _ := u.Password()
		auth = &xproxy.Auth{User: u.Username(), Password: pass}
	}
	fwd := &forward{base: v.base}
	d, err := xproxy.SOCKS5("tcp", v.proxyAddr(), auth, fwd)
	if err != nil {
		return nil, proxyErr(failure.ProxyConnect, "socks5 dialer: %w", err)
	}
	hctx, cancel := context.WithTimeout(ctx, v.p.handshake)
	defer cancel()
	c, err := d.(xproxy.ContextDialer).DialContext(hctx, "tcp", target.String())
	if err == nil {
		return c, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var unreachable *proxyUnreachable
	msg := err.Error()
	switch {
	case errors.As(err, &unreachable):
		return nil, proxyErr(failure.ProxyConnect, "reaching proxy: %w", unreachable.err)
	case strings.Contains(msg, "username/password") || strings.Contains(msg, "no acceptable authentication"):
		return nil, proxyErr(failure.ProxyAuth, "socks5 authentication: %w", err)
	case hctx.Err() != nil:
		return nil, proxyErr(failure.ProxyConnect, "socks5 handshake not done within %v", v.p.handshake)
	}
	return nil, proxyErr(failure.ProxyProtocol, "socks5: %w", err)
}

// forward reaches a SOCKS5 proxy through the transport's dialer and marks
// a failure to do so.
type forward struct{ base DialFunc }

type proxyUnreachable struct{ err error }

func (e *proxyUnreachable) Error() string { return e.err.Error() }
func (e *proxyUnreachable) Unwrap() error { return e.err }

func (f *forward) Dial(network, addr string) (net.Conn, error) {
	return f.DialContext(context.Background(), network, addr)
}

func (f *forward) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := f.base(ctx, network, addr)
	if err != nil {
		return nil, &proxyUnreachable{err}
	}
	return c, nil
}
