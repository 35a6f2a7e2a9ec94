package guard

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// Host is a canonical URL host: a lower-case ASCII DNS name, or an IP
// address. Exactly one of Name and Addr is set.
type Host struct {
	Name string
	Addr netip.Addr
}

// IsIP reports whether the host is an IP address.
func (h Host) IsIP() bool { return h.Addr.IsValid() }

// String is the host as it goes into a URL's authority: the name, a
// dotted-quad IPv4 address or a bracketed IPv6 address.
func (h Host) String() string {
	switch {
	case h.Addr.Is6():
		return "[" + h.Addr.String() + "]"
	case h.Addr.IsValid():
		return h.Addr.String()
	}
	return h.Name
}

// errHost marks a host that is not a valid DNS name or IP address.
var errHost = errors.New("invalid host")

// maxNameLen is the longest DNS name, in its textual form without the
// trailing dot.
const maxNameLen = 253

// ParseHost canonicalises a URL host (url.URL.Hostname: no port, no
// brackets) the way the WHATWG URL standard does, so that every spelling
// of an address is checked as that address:
//
//   - non-ASCII names are mapped to ASCII (IDNA, as for lookup), so that
//     full-width digits and dots become ordinary ones;
//   - a host whose last label is a number (decimal, 0x-hex or 0-octal) is an
//     IPv4 address in one of inet_aton's forms: "127.1", "2130706433",
//     "0x7f.1", "0177.0.0.1" and "127.0.0.1." are all 127.0.0.1, and one that
//     does not parse as such ("1.2.3.4.5", "256.1.1.1", "example.0x") is
//     refused rather than handed to a resolver that might read it
//     differently;
//   - IPv6 literals take their RFC 5952 form; zones ("fe80::1%eth0") are
//     refused;
//   - names are lower-cased, lose one trailing dot, and must consist of
//     labels of 1–63 letters, digits, '-' or '_' (253 bytes at most).
//
// ParseHost(h.String()) == h for every h it returns.
func ParseHost(raw string) (Host, error) {
	if raw == "" {
		return Host{}, fmt.Errorf("%w: empty", errHost)
	}
	if strings.Contains(raw, ":") {
		a, err := netip.ParseAddr(raw)
		if err != nil {
			return Host{}, fmt.Errorf("%w: %q is not an IPv6 address", errHost, clip(raw))
		}
		if a.Zone() != "" {
			return Host{}, fmt.Errorf("%w: IPv6 zone in %q", errHost, clip(raw))
		}
		return Host{Addr: a}, nil
	}
	name := strings.ToLower(raw)
	if !isASCII(name) {
		a, err := idna.Lookup.ToASCII(name)
		if err != nil || !isASCII(a) {
			return Host{}, fmt.Errorf("%w: %q is not a valid internationalised name", errHost, clip(raw))
		}
		name = strings.ToLower(a)
	}
	if endsInNumber(name) {
		a, ok := parseIPv4(name)
		if !ok {
			return Host{}, fmt.Errorf("%w: %q ends in a number but is not an IPv4 address", errHost, clip(raw))
		}
		return Host{Addr: a}, nil
	}
	name = strings.TrimSuffix(name, ".")
	if err := checkName(name); err != nil {
		return Host{}, fmt.Errorf("%w: %q: %v", errHost, clip(raw), err)
	}
	return Host{Name: name}, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func checkName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("length %d out of 1..%d", len(name), maxNameLen)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return errors.New("empty or over-long label")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("character %q not allowed", c)
			}
		}
	}
	return nil
}

// endsInNumber is the WHATWG "ends in a number" test: the last label
// (ignoring one trailing dot) is all decimal digits or a 0x-prefixed hex
// number.
func endsInNumber(name string) bool {
	parts := strings.Split(name, ".")
	if parts[len(parts)-1] == "" {
		if len(parts) == 1 {
			return false
		}
		parts = parts[:len(parts)-1]
	}
	last := parts[len(parts)-1]
	if last != "" && strings.Trim(last, "0123456789") == "" {
		return true
	}
	return len(last) >= 2 && last[:2] == "0x" && strings.Trim(last[2:], "0123456789abcdef") == ""
}

// parseIPv4 is the WHATWG IPv4 parser: one to four dot-separated numbers,
// each decimal, 0x-hex or 0-octal; all but the last at most 255, the last
// filling the remaining bytes.
func parseIPv4(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if parts[len(parts)-1] == "" && len(parts) > 1 {
		parts = parts[:len(parts)-1]
	}
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	nums := make([]uint64, len(parts))
	for i, p := range parts {
		n, ok := parseIPv4Number(p)
		if !ok {
			return netip.Addr{}, false
		}
		nums[i] = n
	}
	for _, n := range nums[:len(nums)-1] {
		if n > 255 {
			return netip.Addr{}, false
		}
	}
	last := nums[len(nums)-1]
	if last >= 1<<(8*(5-len(nums))) {
		return netip.Addr{}, false
	}
	v := last
	for i, n := range nums[:len(nums)-1] {
		v += n << (8 * (3 - i))
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

// parseIPv4Number parses one part of an IPv4 host: "0x…" is hex (an empty
// "0x" is 0), a leading 0 makes it octal, otherwise decimal. Values above
// 2^32 fail.
func parseIPv4Number(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	base := 10
	switch {
	case len(s) >= 2 && (s[:2] == "0x" || s[:2] == "0X"):
		s, base = s[2:], 16
	case len(s) >= 2 && s[0] == '0':
		s, base = s[1:], 8
	}
	if s == "" {
		return 0, true
	}
	if s[0] == '+' || s[0] == '-' || strings.Contains(s, "_") {
		return 0, false // strconv would accept these; URLs do not
	}
	n, err := strconv.ParseUint(s, base, 64)
	if err != nil || n > 1<<32 {
		return 0, false
	}
	return n, true
}

// Canonical returns a copy of u in canonical form: scheme lower-cased and
// http or https; no user information; host as ParseHost gives it; port, if
// any, in 1..65535 without leading zeros; no fragment. Path and query are
// kept as they are. Errors are invalid URLs, not policy refusals.
// Canonical(Canonical(u)) equals Canonical(u).
func Canonical(u *url.URL) (*url.URL, error) {
	if u == nil {
		return nil, errors.New("no URL")
	}
	c := *u
	c.Scheme = strings.ToLower(c.Scheme)
	if c.Scheme != "http" && c.Scheme != "https" {
		return nil, fmt.Errorf("scheme %q is not http or https", clip(c.Scheme))
	}
	if c.Opaque != "" || c.Host == "" {
		return nil, errors.New("URL has no host")
	}
	if c.User != nil {
		return nil, errors.New("URL carries user information")
	}
	h, err := ParseHost(c.Hostname())
	if err != nil {
		return nil, err
	}
	port := c.Port()
	c.Host = h.String()
	if p := port; p != "" {
		n, ok := parsePort(p)
		if !ok {
			return nil, fmt.Errorf("port %q out of range 1..65535", clip(p))
		}
		c.Host += ":" + strconv.Itoa(n)
	}
	c.Fragment, c.RawFragment = "", ""
	c.ForceQuery = false
	return &c, nil
}

func parsePort(p string) (int, bool) {
	if p == "" || len(p) > 5 || strings.Trim(p, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(p)
	return n, err == nil && n >= 1 && n <= 65535
}

// portOf returns the URL's explicit port or the scheme's default.
func portOf(u *url.URL) int {
	if n, ok := parsePort(u.Port()); ok {
		return n
	}
	if u.Scheme == "https" {
		return 443
	}
	return 80
}

// clip bounds what an error quotes of outside input.
func clip(s string) string {
	const max = 100
	if len(s) <= max {
		return s
	}
	return strings.ToValidUTF8(s[:max], "") + "…"
}
