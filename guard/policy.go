// Package guard is sluice's URL policy: which destinations a fetch may
// reach. sluice fetches whatever URL arrives on its input, from machines
// inside a company's network; the policy keeps those URLs (and the
// redirects they lead to) away from the machine itself, the internal
// network and the cloud metadata service.
//
// A Policy is applied three times:
//
//   - CheckURL, before any network access and on every redirect: only
//     http and https, no user information, ports and host names by the
//     allow and deny lists, numeric hosts canonicalised (127.1, 2130706433,
//     0x7f.1 … are 127.0.0.1) and IP literals checked;
//   - at dial time (Dial, Resolve) on every address the name resolves to,
//     and the connection is made to exactly the address that was checked,
//     so a resolver that changes its answer (DNS rebinding) cannot swap it;
//   - through proxies: Tunnel (HTTP CONNECT to the checked IP literal) and
//     Resolve in a socks5:// dialer check here what the proxy will reach;
//     ProxyFunc and CheckName, for proxies that resolve names themselves
//     (remote-DNS HTTP proxies, socks5h://), check the URL and, on a
//     best-effort basis, the name (see LocalDNS for what holds).
//
// By default the policy refuses loopback, private (RFC 1918), CGNAT,
// link-local (169.254.0.0/16, including the metadata address
// 169.254.169.254, and fe80::/10), unique-local IPv6, unspecified,
// multicast, broadcast, reserved, documentation and benchmarking addresses,
// the IPv6 transition forms that embed such an IPv4 address, and the
// deprecated IPv4-compatible, 6to4 and Teredo forms. Tests and the demo,
// which run on loopback, set Config.AllowLoopback.
package guard

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/hostmatch"
)

// Config configures a Policy. The zero value is the safe default: http and
// https to any port of any public address. The yaml tags name its keys in
// a job's config file (the policy: section).
type Config struct {
	// AllowLoopback admits 127.0.0.0/8 and ::1. Off by default; tests and
	// the demo, which run on loopback, turn it on.
	AllowLoopback bool `yaml:"allow_loopback"`
	// AllowNets admits addresses in these CIDR prefixes (or single
	// addresses) even inside a refused range, e.g. "10.20.0.0/16" for an
	// internal mirror. DenyNets wins over it.
	AllowNets []string `yaml:"allow_nets"`
	// DenyNets refuses addresses in these prefixes in addition to the
	// default ranges.
	DenyNets []string `yaml:"deny_nets"`
	// AllowHosts, if not empty, admits only hosts that match one of these
	// patterns (package hostmatch): "example.com" (exactly), "*.example.com" (any subdomain,
	// not example.com itself) or "*" (any). An IP literal host matches its
	// canonical text ("192.0.2.7", "[2001:db8::1]" without brackets).
	AllowHosts []string `yaml:"allow_hosts"`
	// DenyHosts refuses hosts that match one of these patterns (same
	// syntax); it wins over AllowHosts.
	DenyHosts []string `yaml:"deny_hosts"`
	// AllowPorts, if not empty, admits only these ports: "443", "8000-8099".
	// The port of a URL without one is the scheme's default (80, 443).
	AllowPorts []string `yaml:"allow_ports"`
	// DenyPorts refuses these ports (same syntax); it wins over AllowPorts.
	DenyPorts []string `yaml:"deny_ports"`
	// ProxyDNS says who resolves target names when an HTTP or HTTPS proxy
	// is used. "remote" (the default, what proxy providers expect) sends
	// the proxy the name (absolute-form requests, CONNECT host:port) and
	// lets it resolve, after the URL check and a best-effort check of the
	// name as the local resolver answers it. "local" resolves and checks
	// here and sends the proxy a CONNECT for the checked IP literal (plain
	// http is tunnelled too), so the proxy cannot be steered elsewhere by
	// its own DNS; use it when the proxies sit inside a network to
	// protect. socks5 proxies always resolve locally and socks5h proxies
	// always remotely, as their schemes say.
	ProxyDNS string `yaml:"proxy_dns"`
	// Resolver resolves names at dial time; nil means net.DefaultResolver.
	// A caching resolver can be plugged in here.
	Resolver Resolver `yaml:"-"`
	// HandshakeTimeout bounds a CONNECT or SOCKS5 handshake with a proxy
	// (the TCP connect has its own timeout). 0 means 10 s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// MaxProxyHeaderBytes caps a proxy's answer to CONNECT. 0 means 64 KiB.
	MaxProxyHeaderBytes int64 `yaml:"max_proxy_header_bytes"`
}

// ProxyDNS modes.
const (
	ProxyDNSLocal  = "local"
	ProxyDNSRemote = "remote"
)

// rangeName is a refused default range and what to call it in errors.
type rangeName struct {
	prefix netip.Prefix
	name   string
}

// refused lists the ranges refused by default, most specific first where
// they overlap. IPv4-mapped IPv6 addresses are unmapped before the check
// and NAT64 addresses (64:ff9b::/96) are checked as the IPv4 address they
// embed, so neither appears here.
var refused = func() []rangeName {
	list := []struct{ cidr, name string }{
		{"0.0.0.0/8", "unspecified (this network)"},
		{"10.0.0.0/8", "private"},
		{"100.64.0.0/10", "CGNAT shared"},
		{"127.0.0.0/8", "loopback"},
		{"169.254.0.0/16", "link-local (cloud metadata)"},
		{"172.16.0.0/12", "private"},
		{"192.0.0.0/24", "IETF protocol assignments"},
		{"192.0.2.0/24", "documentation"},
		{"192.88.99.0/24", "6to4 relay anycast"},
		{"192.168.0.0/16", "private"},
		{"198.18.0.0/15", "benchmarking"},
		{"198.51.100.0/24", "documentation"},
		{"203.0.113.0/24", "documentation"},
		{"224.0.0.0/4", "multicast"},
		{"240.0.0.0/4", "reserved or broadcast"},
		{"::/128", "unspecified"},
		{"::1/128", "loopback"},
		{"::/96", "IPv4-compatible (deprecated)"},
		{"64:ff9b:1::/48", "NAT64 local use"},
		{"100::/64", "discard"},
		{"2001::/32", "Teredo"},
		{"2001:2::/48", "benchmarking"},
		{"2001:10::/28", "ORCHID (deprecated)"},
		{"2001:20::/28", "ORCHIDv2"},
		{"2001:db8::/32", "documentation"},
		{"2002::/16", "6to4"},
		{"3fff::/20", "documentation"},
		{"5f00::/16", "SRv6 SIDs"},
		{"fc00::/7", "unique-local"},
		{"fe80::/10", "link-local"},
		{"fec0::/10", "site-local (deprecated)"},
		{"ff00::/8", "multicast"},
	}
	out := make([]rangeName, len(list))
	for i, r := range list {
		out[i] = rangeName{netip.MustParsePrefix(r.cidr), r.name}
	}
	return out
}()

var (
	loopback4 = netip.MustParsePrefix("127.0.0.0/8")
	loopback6 = netip.MustParsePrefix("::1/128")
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
)

// Policy decides which URLs and addresses a fetch may reach. Build it with
// New; it is immutable and safe for concurrent use.
type Policy struct {
	allowLoopback bool
	allowNets     []netip.Prefix
	denyNets      []netip.Prefix
	allowHosts    []hostmatch.Pattern
	denyHosts     []hostmatch.Pattern
	allowPorts    []portRange
	denyPorts     []portRange
	localDNS      bool
	resolver      Resolver
	handshake     time.Duration
	maxProxyHdr   int64
}

// New validates cfg and builds its Policy.
func New(cfg Config) (*Policy, error) {
	p := &Policy{allowLoopback: cfg.AllowLoopback, resolver: cfg.Resolver, handshake: cfg.HandshakeTimeout, maxProxyHdr: cfg.MaxProxyHeaderBytes}
	var errs []error
	var err error
	if p.allowNets, err = parseNets(cfg.AllowNets); err != nil {
		errs = append(errs, fmt.Errorf("allow nets: %w", err))
	}
	if p.denyNets, err = parseNets(cfg.DenyNets); err != nil {
		errs = append(errs, fmt.Errorf("deny nets: %w", err))
	}
	if p.allowHosts, err = parseHostPatterns(cfg.AllowHosts); err != nil {
		errs = append(errs, fmt.Errorf("allow hosts: %w", err))
	}
	if p.denyHosts, err = parseHostPatterns(cfg.DenyHosts); err != nil {
		errs = append(errs, fmt.Errorf("deny hosts: %w", err))
	}
	if p.allowPorts, err = parsePorts(cfg.AllowPorts); err != nil {
		errs = append(errs, fmt.Errorf("allow ports: %w", err))
	}
	if p.denyPorts, err = parsePorts(cfg.DenyPorts); err != nil {
		errs = append(errs, fmt.Errorf("deny ports: %w", err))
	}
	switch cfg.ProxyDNS {
	case "", ProxyDNSRemote:
	case ProxyDNSLocal:
		p.localDNS = true
	default:
		errs = append(errs, fmt.Errorf("proxy dns %q is not %q or %q", cfg.ProxyDNS, ProxyDNSLocal, ProxyDNSRemote))
	}
	if cfg.HandshakeTimeout < 0 || cfg.MaxProxyHeaderBytes < 0 {
		errs = append(errs, errors.New("handshake timeout and max proxy header bytes must not be negative"))
	}
	if p.handshake == 0 {
		p.handshake = 10 * time.Second
	}
	if p.maxProxyHdr == 0 {
		p.maxProxyHdr = 64 << 10
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// refuse builds the error of a policy refusal.
func refuse(format string, args ...any) error {
	return failure.Errorf(failure.Policy, format, args...)
}

// CheckURL checks u against the policy without any network access and
// returns its canonical form (see Canonical), which is what should be
// fetched. An invalid URL fails with class bad_input, a refused one with
// class policy; both are permanent. A host name is checked against the
// host lists here and its addresses at dial time; an IP literal host is
// checked here.
func (p *Policy) CheckURL(u *url.URL) (*url.URL, error) {
	c, err := Canonical(u)
	if err != nil {
		return nil, failure.Errorf(failure.BadInput, "URL refused: %v", err)
	}
	if err := p.checkPort(portOf(c)); err != nil {
		return nil, err
	}
	h, err := ParseHost(c.Hostname())
	if err != nil { // cannot happen: Canonical parsed it
		return nil, failure.Errorf(failure.BadInput, "URL refused: %v", err)
	}
	if err := p.checkHost(h); err != nil {
		return nil, err
	}
	if h.IsIP() {
		if err := p.CheckAddr(h.Addr); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// reason is the message of a refusal, without its class.
func reason(err error) error {
	var fe *failure.Error
	if errors.As(err, &fe) && fe.Err != nil {
		return fe.Err
	}
	return err
}

// CheckAddr reports whether a connection to a may be made: nil, or an
// error of class policy naming the range that refuses it.
func (p *Policy) CheckAddr(a netip.Addr) error {
	if !a.IsValid() {
		return refuse("invalid address")
	}
	if a.Zone() != "" {
		return refuse("address %s has a zone", a)
	}
	orig := a
	a = a.Unmap()
	if err := p.checkOne(a); err != nil {
		if a != orig {
			return refuse("%s (IPv4-mapped %s): %v", orig, a, reason(err))
		}
		return err
	}
	if a.Is6() && nat64.Contains(a) {
		b := a.As16()
		v4 := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
		if err := p.checkOne(v4); err != nil {
			return refuse("%s (NAT64 of %s): %v", a, v4, reason(err))
		}
	}
	return nil
}

// checkOne applies deny nets, allow nets, the loopback allowance and the
// default ranges, in that order.
func (p *Policy) checkOne(a netip.Addr) error {
	for _, n := range p.denyNets {
		if n.Contains(a) {
			return refuse("address %s is in denied net %s", a, n)
		}
	}
	for _, n := range p.allowNets {
		if n.Contains(a) {
			return nil
		}
	}
	if p.allowLoopback && (loopback4.Contains(a) || loopback6.Contains(a)) {
		return nil
	}
	for _, r := range refused {
		if r.prefix.Contains(a) {
			return refuse("address %s is %s", a, r.name)
		}
	}
	return nil
}

func (p *Policy) checkPort(port int) error {
	for _, r := range p.denyPorts {
		if r.contains(port) {
			return refuse("port %d is denied", port)
		}
	}
	if len(p.allowPorts) == 0 {
		return nil
	}
	for _, r := range p.allowPorts {
		if r.contains(port) {
			return nil
		}
	}
	return refuse("port %d is not allowed", port)
}

func (p *Policy) checkHost(h Host) error {
	name := h.Name
	if h.IsIP() {
		name = h.Addr.String()
	}
	for _, pat := range p.denyHosts {
		if pat.Match(name) {
			return refuse("host %s is denied", clip(name))
		}
	}
	if len(p.allowHosts) == 0 {
		return nil
	}
	for _, pat := range p.allowHosts {
		if pat.Match(name) {
			return nil
		}
	}
	return refuse("host %s is not allowed", clip(name))
}

func parseNets(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if strings.Contains(s, "/") {
			pf, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, err
			}
			out = append(out, pf.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, err
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// parseHostPatterns parses host patterns (package hostmatch: "*",
// "*.suffix" for any subdomain of suffix but not suffix itself, or an
// exact host), the names in their canonical form (see ParseHost), so
// that they compare with the canonical hosts CheckURL produces.
func parseHostPatterns(list []string) ([]hostmatch.Pattern, error) {
	var out []hostmatch.Pattern
	for _, s := range list {
		s = strings.TrimSpace(s)
		var canon string
		switch {
		case s == "*":
			canon = s
		case strings.HasPrefix(s, "*."):
			h, err := ParseHost(s[2:])
			if err != nil || h.IsIP() {
				return nil, fmt.Errorf("pattern %q: want *.name", s)
			}
			canon = "*." + h.Name
		default:
			h, err := ParseHost(strings.Trim(s, "[]"))
			if err != nil {
				return nil, fmt.Errorf("pattern %q: %v", s, err)
			}
			canon = h.Name
			if h.IsIP() {
				canon = h.Addr.String()
			}
		}
		p, err := hostmatch.Parse(canon)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", s, err)
		}
		out = append(out, p)
	}
	return out, nil
}

type portRange struct{ lo, hi int }

func (r portRange) contains(p int) bool { return r.lo <= p && p <= r.hi }

func parsePorts(list []string) ([]portRange, error) {
	var out []portRange
	for _, s := range list {
		s = strings.TrimSpace(s)
		lo, hi, isRange := strings.Cut(s, "-")
		if !isRange {
			hi = lo
		}
		a, errA := strconv.Atoi(lo)
		b, errB := strconv.Atoi(hi)
		if errA != nil || errB != nil || a < 1 || b > 65535 || a > b {
			return nil, fmt.Errorf("port range %q: want N or N-M within 1..65535", s)
		}
		out = append(out, portRange{a, b})
	}
	return out, nil
}
