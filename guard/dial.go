package guard

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/sluicehq/sluice/failure"
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

// LocalDNS reports whether targets behind HTTP(S) proxies are resolved and
// checked here and reached through Tunnel (Config.ProxyDNS "local"),
// rather than sent to the proxy by name through ProxyFunc ("remote", the
// default).
//
// What holds through proxies, per way of reaching the target (the proxy
// endpoint itself is configuration, not input, and is not checked):
//
//   - Tunnel (HTTP(S) proxies in local-DNS mode) and Resolve in a SOCKS5
//     dialer (socks5://): the target is resolved here, every address
//     checked, and the proxy is asked for the checked IP literal (HTTP
//     CONNECT ip:port, SOCKS5 CONNECT with an IPv4/IPv6 address). The
//     proxy cannot be steered elsewhere by its own DNS, and TLS is
//     verified against the URL's name as usual.
//   - ProxyFunc (HTTP(S) proxies in remote-DNS mode) and CheckName in a
//     SOCKS5 dialer (socks5h://): the proxy resolves the name, so its
//     answer cannot be checked here. What holds is CheckURL (scheme, port,
//     host lists, IP literals in every numeric spelling) plus a
//     best-effort check of the name as the local resolver answers it: a
//     name that resolves here to any refused address is refused (which
//     means one local lookup of the name, even for socks5h://). A name
//     the proxy resolves differently (split-horizon DNS, rebinding between
//     the two lookups, a provider's endpoint that resolves inside its own
//     network) is outside this package's reach; use local DNS, or a proxy
//     that enforces its own egress policy, where that matters.
func (p *Policy) LocalDNS() bool { return p.localDNS }

// CheckName is the check for a target host that a proxy will resolve:
// the host lists, the address of an IP literal, and every address the
// local resolver gives for a name. A lookup that fails here is no refusal
// (the proxy may well resolve the name); an answer with a refused address
// is.
func (p *Policy) CheckName(ctx context.Context, host string) error {
	h, err := ParseHost(host)
	if err != nil {
		return failure.Errorf(failure.BadInput, "URL refused: %v", err)
	}
	if err := p.checkHost(h); err != nil {
		return err
	}
	if h.IsIP() {
		return p.CheckAddr(h.Addr)
	}
	ctx, cancel := context.WithTimeout(ctx, p.handshake)
	defer cancel()
	addrs, err := p.lookup(ctx, "ip", h.Name)
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if err := p.CheckAddr(a); err != nil {
			return refuse("%s resolves here to a refused address (%v); not sent to a proxy that resolves it itself", h, reason(err))
		}
	}
	return nil
}

// ProxyFunc returns the http.Transport.Proxy function for an HTTP(S)
// proxy that resolves target names itself: every request passes CheckURL
// and CheckName before it is handed to proxyURL.
func (p *Policy) ProxyFunc(proxyURL *url.URL) func(*http.Request) (*url.URL, error) {
	return func(req *http.Request) (*url.URL, error) {
		c, err := p.CheckURL(req.URL)
		if err != nil {
			return nil, err
		}
		if err := p.CheckName(req.Context(), c.Hostname()); err != nil {
			return nil, err
		}
		return proxyURL, nil
	}
}

// Tunnel returns the DialContext of a transport that reaches its targets
// through an HTTP(S) proxy with CONNECT tunnels to checked IP literals
// (the transport's Proxy must be nil: to it the tunnel is a direct
// connection, so plain http is tunnelled too). Each dial resolves and
// checks addr (see Resolve), opens a connection to the proxy with toProxy
// (TLS already done for an https:// proxy) and asks for a tunnel to the
// checked IP, with the proxy URL's credentials, tr.ProxyConnectHeader or
// tr.GetProxyConnectHeader, and tr.OnProxyConnectResponse to judge the
// answer. Errors are classified: a refusal is class policy, a failure to
// reach the proxy proxy_connect, our credentials refused proxy_auth, any
// other answer proxy_protocol, with the answer's status.
func (p *Policy) Tunnel(toProxy func(context.Context) (net.Conn, error), proxyURL *url.URL, tr *http.Transport) DialFunc {
	t := &tunnel{p: p, toProxy: toProxy, proxy: proxyURL, tr: tr}
	return t.dial
}

// tunnel dials targets through one HTTP(S) proxy after resolving and
// checking them locally.
type tunnel struct {
	p       *Policy
	toProxy func(context.Context) (net.Conn, error)
	proxy   *url.URL
	tr      *http.Transport
}

func (t *tunnel) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	targets, err := t.p.Resolve(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	var lastErr error
	for _, target := range targets {
		c, err := t.connect(ctx, target)
		if err == nil {
			return c, nil
		}
		lastErr = err
		// Only a proxy that could not reach this address is worth asking
		// for the next one; one that is unreachable or refuses us will not
		// do better.
		var fe *failure.Error
		if ctx.Err() != nil || !errors.As(err, &fe) || fe.Class != failure.ProxyProtocol {
			break
		}
	}
	return nil, lastErr
}

func proxyErr(class failure.Class, format string, args ...any) error {
	return failure.New(class, failure.ErrProxy, fmt.Errorf(format, args...))
}

// connect opens a CONNECT tunnel to target.
func (t *tunnel) connect(ctx context.Context, target netip.AddrPort) (_ net.Conn, err error) {
	c, err := t.toProxy(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var fe *failure.Error
		if errors.As(err, &fe) {
			return nil, err
		}
		return nil, proxyErr(failure.ProxyConnect, "reaching proxy: %w", err)
	}
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()
	// The handshake is bounded by HandshakeTimeout and by ctx.
	deadline := time.Now().Add(t.p.handshake)
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

	hostport := target.String()
	var hdr http.Header
	if t.tr.GetProxyConnectHeader != nil {
		if hdr, err = t.tr.GetProxyConnectHeader(ctx, t.proxy, hostport); err != nil {
			return nil, err
		}
	} else {
		hdr = t.tr.ProxyConnectHeader
	}
	hdr = hdr.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	if u := t.proxy.User; u != nil && hdr.Get("Proxy-Authorization") == "" {
		pass, _ := u.Password()
		hdr.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pass)))
	}
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: hostport}, Host: hostport, Header: hdr}
	if err := req.Write(c); err != nil {
		return nil, fail(failure.ProxyProtocol, "writing CONNECT: %w", err)
	}
	br := bufio.NewReader(&io.LimitedReader{R: c, N: t.p.maxProxyHdr})
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, fail(failure.ProxyProtocol, "proxy answered CONNECT with garbage: %w", err)
	}
	if t.tr.OnProxyConnectResponse != nil {
		if err := t.tr.OnProxyConnectResponse(ctx, t.proxy, req, resp); err != nil {
			return nil, withStatus(err, resp.StatusCode)
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
	var fe *failure.Error
	if errors.As(err, &fe) && fe.Status == 0 {
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
