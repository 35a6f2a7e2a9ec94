package guard

import (
	"context"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// oracleRefused is an independent statement of what must never be
// admitted by default, built on net/netip's own classification rather
// than on the policy's table.
func oracleRefused(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() {
		return true
	}
	for _, p := range []string{"100.64.0.0/10", "169.254.0.0/16", "0.0.0.0/8", "240.0.0.0/4", "fc00::/7", "fe80::/10"} {
		if netip.MustParsePrefix(p).Contains(a) {
			return true
		}
	}
	if netip.MustParsePrefix("64:ff9b::/96").Contains(a) {
		b := a.As16()
		return oracleRefused(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	}
	return false
}

// lenientIPv4 reads a host the way C's inet_aton does (1–4 parts, each
// decimal, 0x-hex or 0-octal, the last filling the remaining bytes), as a
// proxy or resolver library might. It is written independently of
// parseIPv4.
func lenientIPv4(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) == 0 || len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, 0, 4)
	for _, p := range parts {
		base, digits := uint64(10), p
		if strings.HasPrefix(p, "0x") || strings.HasPrefix(p, "0X") {
			base, digits = 16, p[2:]
		} else if len(p) > 1 && p[0] == '0' {
			base, digits = 8, p[1:]
		}
		if digits == "" && base != 16 {
			return netip.Addr{}, false
		}
		var v uint64
		for _, c := range strings.ToLower(digits) {
			d := strings.IndexRune("0123456789abcdef", c)
			if d < 0 || uint64(d) >= base {
				return netip.Addr{}, false
			}
			v = v*base + uint64(d)
			if v > 0xffffffff {
				return netip.Addr{}, false
			}
		}
		vals = append(vals, v)
	}
	var out uint64
	for i, v := range vals[:len(vals)-1] {
		if v > 255 {
			return netip.Addr{}, false
		}
		out |= v << (24 - 8*i)
	}
	last := vals[len(vals)-1]
	if last >= 1<<(8*(5-len(vals))) {
		return netip.Addr{}, false
	}
	out |= last
	return netip.AddrFrom4([4]byte{byte(out >> 24), byte(out >> 16), byte(out >> 8), byte(out)}), true
}

func FuzzCheckURL(f *testing.F) {
	for _, s := range ssrfURLs {
		f.Add(s)
	}
	for _, s := range []string{
		"http://example.com/", "https://shop.example:8443/p?q=1#x", "http://93.184.216.34/",
		"http://[2606:4700::1111]/", "http://xn--bcher-kva.example/", "http://bücher.example/",
		"http://a.b.c.d.e.f/", "http://example.com.:80/", "HTTP://EXAMPLE.COM", "http://0x5d.0xb8.0xd8.0x22/",
		"http://1572395042/", "http://093.0184.0330.042/", "http://example.0x1/", "http://%31/",
		"http://[::ffff:93.184.216.34]/", "http://[64:ff9b::5db8:d822]/", "http://1.1.1.1.../",
	} {
		f.Add(s)
	}
	p := mustPolicy(f, Config{})
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		orig := *u
		c, err := p.CheckURL(u)
		if err != nil {
			return
		}
		if u.String() != orig.String() {
			t.Fatalf("CheckURL modified its argument")
		}
		// Normalising twice gives the same result.
		c2, err := p.CheckURL(c)
		if err != nil || c2.String() != c.String() {
			t.Fatalf("not idempotent: %q -> %q -> %v, %v", raw, c, c2, err)
		}
		if c3, err := url.Parse(c.String()); err != nil || c3.String() != c.String() {
			t.Fatalf("canonical URL %q does not survive a round trip: %v", c, err)
		}
		if c.Scheme != "http" && c.Scheme != "https" || c.User != nil || c.Host == "" {
			t.Fatalf("admitted %q", c)
		}
		// Never admits a refused address, however it is spelled.
		host := c.Hostname()
		if a, err := netip.ParseAddr(host); err == nil && oracleRefused(a) {
			t.Fatalf("admitted %q as %q: a refused address", raw, c)
		}
		oh := strings.ToLower(orig.Hostname())
		if a, err := netip.ParseAddr(oh); err == nil {
			if oracleRefused(a) || a.Zone() != "" {
				t.Fatalf("admitted IP literal %q", raw)
			}
		}
		if a, ok := lenientIPv4(strings.TrimSuffix(oh, ".")); ok {
			if oracleRefused(a) {
				t.Fatalf("admitted %q: its host reads as %s", raw, a)
			}
			if host != a.String() {
				t.Fatalf("host %q reads as %s but was canonicalised to %q", oh, a, host)
			}
		}
		if _, ok := lenientIPv4(host); ok {
			if _, err := netip.ParseAddr(host); err != nil {
				t.Fatalf("admitted name %q reads as an IPv4 address", host)
			}
		}
	})
}

// listResolver answers every lookup with a fixed list; fuzzing cannot
// use the network.
type listResolver []netip.Addr

func (l listResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return l, nil
}

func FuzzCheckAddr(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "169.254.169.254", "8.8.8.8", "::1", "::ffff:10.1.2.3", "64:ff9b::7f00:1", "2002:7f00:1::1", "fe80::1", "2606:4700::1111", "100.64.1.1", "::"} {
		a := netip.MustParseAddr(s)
		f.Add(a.AsSlice(), false)
		f.Add(a.AsSlice(), true)
	}
	f.Fuzz(func(t *testing.T, b []byte, loopback bool) {
		var addrs []netip.Addr
		for len(b) > 0 {
			n := 16
			if len(b)%16 != 0 && len(b) >= 4 {
				n = 4
			}
			if len(b) < n {
				break
			}
			a, _ := netip.AddrFromSlice(b[:n])
			addrs = append(addrs, a)
			b = b[n:]
		}
		if len(addrs) == 0 {
			return
		}
		p := mustPolicy(t, Config{AllowLoopback: loopback, Resolver: listResolver(addrs)})
		refusedByOracle := func(a netip.Addr) bool {
			if loopback {
				u := a.Unmap()
				if u.IsLoopback() {
					return false
				}
				if netip.MustParsePrefix("64:ff9b::/96").Contains(u) {
					x := u.As16()
					if netip.AddrFrom4([4]byte{x[12], x[13], x[14], x[15]}).IsLoopback() {
						return false
					}
				}
			}
			return oracleRefused(a)
		}
		for _, a := range addrs {
			err := p.CheckAddr(a)
			if err == nil && refusedByOracle(a) {
				t.Fatalf("CheckAddr admitted %s", a)
			}
			// The URL check agrees with the address check.
			u := &url.URL{Scheme: "http", Host: Host{Addr: a}.String(), Path: "/"}
			if _, uerr := p.CheckURL(u); (uerr == nil) != (err == nil) {
				t.Fatalf("CheckURL(%s) = %v but CheckAddr = %v", u, uerr, err)
			}
		}
		// Dial-time resolution admits only checked addresses.
		got, err := p.Resolve(context.Background(), "tcp", "fuzz.example:443")
		if err == nil && len(got) == 0 {
			t.Fatal("Resolve admitted nothing without an error")
		}
		for _, ap := range got {
			if refusedByOracle(ap.Addr()) || p.CheckAddr(ap.Addr()) != nil || ap.Port() != 443 {
				t.Fatalf("Resolve admitted %s", ap)
			}
		}
	})
}
