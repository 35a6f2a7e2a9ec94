// Package hostmatch gives a domain pattern one meaning for all of sluice:
// the URL policy's allow and deny lists (package guard), the governor's
// per-domain settings, the parse rules, request shaping and the proxy
// pool's partitions and per-domain strategies (where a bare domain also
// covers its subdomains; see package proxy).
//
// A pattern is one of:
//
//   - "*": any host (even an empty one: a page without a URL);
//   - "*.suffix": any subdomain of suffix, at any depth ("*.shop.example"
//     matches "www.shop.example" and "a.b.shop.example"), but not suffix
//     itself: list "shop.example" as well to include it;
//   - anything else: exactly that host name or IP address.
//
// Matching ignores case and a trailing dot, and an IPv6 address may be
// written with or without brackets. No other wildcard exists: "*" only
// stands alone or as the first label. A pattern never contains a scheme,
// a port or a path.
package hostmatch

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
)

// Pattern is a parsed host pattern. The zero value matches nothing. It is
// immutable and safe for concurrent use.
type Pattern struct {
	any    bool
	suffix string // ".shop.example" for "*.shop.example"
	exact  string
}

// Parse parses a pattern (surrounding space ignored).
func Parse(s string) (Pattern, error) {
	raw := strings.TrimSpace(s)
	p := normalize(raw)
	switch {
	case p == "":
		return Pattern{}, errors.New("empty host pattern")
	case p == "*" && raw != "*":
		return Pattern{}, fmt.Errorf("host pattern %q: want * or *.name", s)
	case p == "*":
		return Pattern{any: true}, nil
	case strings.HasPrefix(p, "*."):
		name := p[2:]
		if err := checkName(name); err != nil {
			return Pattern{}, fmt.Errorf("host pattern %q: %w", s, err)
		}
		if _, err := netip.ParseAddr(name); err == nil {
			return Pattern{}, fmt.Errorf("host pattern %q: an IP address has no subdomains", s)
		}
		return Pattern{suffix: "." + name}, nil
	}
	if err := checkName(p); err != nil {
		return Pattern{}, fmt.Errorf("host pattern %q: %w", s, err)
	}
	return Pattern{exact: p}, nil
}

// MustParse is Parse for patterns known to be valid; it panics on an
// invalid one.
func MustParse(s string) Pattern {
	p, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return p
}

// checkName accepts a host name or an IP address, as normalize leaves
// them.
func checkName(name string) error {
	if name == "" {
		return errors.New("empty host name")
	}
	if strings.Contains(name, ":") {
		if _, err := netip.ParseAddr(name); err != nil {
			return errors.New("not a host name: a port, a scheme or a bad IPv6 address")
		}
		return nil
	}
	for _, r := range name {
		switch {
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return fmt.Errorf("%q is not allowed in a host name", r)
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '.', r == '_', r >= 0x80:
		case r == '*':
			return errors.New("* stands alone or as the whole first label")
		default:
			return fmt.Errorf("%q is not allowed in a host name", r)
		}
	}
	if strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
		return errors.New("empty label")
	}
	return nil
}

// normalize lower-cases host and drops a trailing dot and IPv6 brackets.
func normalize(host string) string {
	host = strings.ToLower(host)
	if len(host) > 1 {
		host = strings.TrimSuffix(host, ".")
	}
	if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return host
}

// Match reports whether host (a URL's host name, without a port) matches.
func (p Pattern) Match(host string) bool {
	h := normalize(host)
	switch {
	case p.any:
		return true
	case p.suffix != "":
		return len(h) > len(p.suffix) && strings.HasSuffix(h, p.suffix)
	}
	return p.exact != "" && h == p.exact
}

// String returns the pattern in its normal form: "*", "*.suffix" or the
// host.
func (p Pattern) String() string {
	switch {
	case p.any:
		return "*"
	case p.suffix != "":
		return "*" + p.suffix
	}
	return p.exact
}

// Match parses pattern and matches host against it; an invalid pattern
// matches nothing.
func Match(pattern, host string) bool {
	p, err := Parse(pattern)
	return err == nil && p.Match(host)
}

// First returns the index of the first of patterns that matches host, or
// -1.
func First(patterns []Pattern, host string) int {
	for i, p := range patterns {
		if p.Match(host) {
			return i
		}
	}
	return -1
}
