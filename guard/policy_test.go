package guard

import (
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/failure"
)

func mustPolicy(t testing.TB, cfg Config) *Policy {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func TestCheckAddrDefaultRanges(t *testing.T) {
	p := mustPolicy(t, Config{})
	refusedAddrs := []string{
		"127.0.0.1", "127.255.255.254", "::1",
		"10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
		"100.64.0.1", "100.127.255.255",
		"169.254.169.254", "169.254.0.1", "fe80::1",
		"fc00::1", "fd12:3456::1",
		"0.0.0.0", "0.1.2.3", "::",
		"224.0.0.1", "239.255.255.250", "ff02::1",
		"255.255.255.255", "240.0.0.1",
		"192.0.2.1", "198.51.100.1", "203.0.113.1", "2001:db8::1",
		"198.18.0.1", "192.0.0.8", "192.88.99.1",
		"::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1",
		"::127.0.0.1", "::a9fe:a9fe",
		"64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::1",
		"2002:7f00:1::", "2001::1", "100::1", "fec0::1",
	}
	for _, s := range refusedAddrs {
		a := netip.MustParseAddr(s)
		err := p.CheckAddr(a)
		if err == nil {
			t.Errorf("CheckAddr(%s) admitted", s)
			continue
		}
		if failure.ClassOf(err) != failure.Policy || !errors.Is(err, failure.ErrPermanent) {
			t.Errorf("CheckAddr(%s) = %v: want a permanent policy error", s, err)
		}
	}
	for _, s := range []string{"8.8.8.8", "93.184.216.34", "1.1.1.1", "100.63.255.255", "100.128.0.0", "172.32.0.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"} {
		if err := p.CheckAddr(netip.MustParseAddr(s)); err != nil {
			t.Errorf("CheckAddr(%s) = %v, want admitted", s, err)
		}
	}
	if err := p.CheckAddr(netip.Addr{}); err == nil {
		t.Error("the zero Addr was admitted")
	}
	if err := p.CheckAddr(netip.MustParseAddr("fe80::1%eth0")); err == nil {
		t.Error("a zoned address was admitted")
	}
	if err := p.CheckAddr(netip.MustParseAddr("169.254.169.254")); !strings.Contains(err.Error(), "link-local") {
		t.Errorf("metadata refusal does not say why: %v", err)
	}
}

func TestCheckAddrAllowances(t *testing.T) {
	p := mustPolicy(t, Config{
		AllowLoopback: true,
		AllowNets:     []string{"10.20.0.0/16", "fd00::5"},
		DenyNets:      []string{"127.0.0.9/32", "8.8.4.0/24", "10.20.30.0/24"},
	})
	cases := map[string]bool{
		"127.0.0.1":          true,
		"::1":                true,
		"::ffff:127.0.0.2":   true,
		"127.0.0.9":          false, // deny wins over the loopback allowance
		"10.20.1.1":          true,
		"10.20.30.1":         false, // deny wins over allow
		"10.21.0.1":          false,
		"fd00::5":            true,
		"fd00::6":            false,
		"8.8.8.8":            true,
		"8.8.4.4":            false,
		"169.254.169.254":    false, // loopback allowance admits only loopback
		"64:ff9b::7f00:1":    true,  // NAT64 of loopback, admitted like loopback
		"64:ff9b::a9fe:a9fe": false,
	}
	for s, want := range cases {
		err := p.CheckAddr(netip.MustParseAddr(s))
		if (err == nil) != want {
			t.Errorf("CheckAddr(%s) = %v, want admitted=%v", s, err, want)
		}
	}
}

// ssrfURLs are URL spellings of refused destinations. Each must be refused
// by CheckURL alone, before any network access.
var ssrfURLs = []string{
	"http://127.0.0.1/",
	"http://127.1/",
	"http://127.0.1/",
	"http://2130706433/",
	"http://0x7f000001/",
	"http://0x7f.1/",
	"http://0177.0.0.1/",
	"http://0177.1/",
	"http://127.0.0.1./",
	"http://[::1]/",
	"http://[::ffff:127.0.0.1]/",
	"http://[::ffff:7f00:1]/",
	"http://[0:0:0:0:0:ffff:127.0.0.1]/",
	"http://[64:ff9b::127.0.0.1]/",
	"http://169.254.169.254/latest/meta-data/",
	"http://0xa9fea9fe/",
	"http://2852039166/",
	"http://169.254.43518/",
	"http://[::ffff:169.254.169.254]/",
	"http://[fd00:ec2::254]/",
	"http://10.0.0.1/",
	"http://0xa.1/",
	"http://192.168.0.1/",
	"http://172.16.0.1/",
	"http://100.64.0.1/",
	"http://0.0.0.0/",
	"http://0/",
	"http://[::]/",
	"http://[fe80::1]/",
	"http://[fc00::1]/",
	"http://224.0.0.1/",
	"http://255.255.255.255/",
	"http://１２７．０．０．１/",
	"https://127.0.0.1:443/",
	"http://[fe80::1%25eth0]/",
	"http://1.2.3.4.5/",
	"http://user@8.8.8.8/",
	"ftp://8.8.8.8/",
	"file:///etc/passwd",
	"gopher://127.0.0.1:25/",
}

func TestCheckURLRefusesSSRFForms(t *testing.T) {
	p := mustPolicy(t, Config{})
	for _, s := range ssrfURLs {
		u, err := url.Parse(s)
		if err != nil {
			continue // not even a URL: nothing to fetch
		}
		c, err := p.CheckURL(u)
		if err == nil {
			t.Errorf("CheckURL(%s) admitted as %s", s, c)
			continue
		}
		if cl := failure.ClassOf(err); cl != failure.Policy && cl != failure.BadInput {
			t.Errorf("CheckURL(%s) class %q, want policy or bad_input", s, cl)
		}
		if failure.Retryable(err) {
			t.Errorf("CheckURL(%s) is retryable", s)
		}
	}
	// With the loopback allowance the loopback forms pass, canonicalised.
	lp := mustPolicy(t, Config{AllowLoopback: true})
	for _, s := range []string{"http://127.1/", "http://2130706433/", "http://0x7f.1/", "http://0177.0.0.1/", "http://127.0.0.1./"} {
		c, err := lp.CheckURL(mustParse(t, s))
		if err != nil || c.Host != "127.0.0.1" {
			t.Errorf("with loopback allowed, CheckURL(%s) = %v, %v; want http://127.0.0.1/", s, c, err)
		}
	}
	for _, s := range []string{"http://169.254.169.254/", "http://10.0.0.1/"} {
		if _, err := lp.CheckURL(mustParse(t, s)); err == nil {
			t.Errorf("loopback allowance admitted %s", s)
		}
	}
}

func TestCheckURLHostAndPortLists(t *testing.T) {
	p := mustPolicy(t, Config{
		AllowHosts: []string{"*.shop.example", "api.example.com", "93.184.216.34"},
		DenyHosts:  []string{"admin.shop.example"},
		AllowPorts: []string{"80", "443", "8000-8099"},
		DenyPorts:  []string{"8080"},
	})
	cases := map[string]bool{
		"http://www.shop.example/":              true,
		"http://WWW.Shop.Example./":             true,
		"http://shop.example/":                  false, // *.x does not match x
		"http://admin.shop.example/":            false,
		"http://api.example.com:8001/":          true,
		"http://api.example.com:8080/":          false,
		"http://api.example.com:9000/":          false,
		"https://api.example.com/":              true,
		"http://evil.example.com/":              false,
		"http://93.184.216.34/":                 true,
		"http://1572395042/":                    true, // 93.184.216.34 in another spelling
		"http://xn--www-shop-example.evil.tld/": false,
	}
	for s, want := range cases {
		_, err := p.CheckURL(mustParse(t, s))
		if (err == nil) != want {
			t.Errorf("CheckURL(%s) = %v, want admitted=%v", s, err, want)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{AllowNets: []string{"10.0.0.0/33"}},
		{DenyNets: []string{"not an address"}},
		{AllowHosts: []string{"*.[::1]"}},
		{DenyHosts: []string{"exa$mple"}},
		{AllowPorts: []string{"0"}},
		{DenyPorts: []string{"90-80"}},
		{AllowPorts: []string{"70000"}},
		{ProxyDNS: "sometimes"},
		{HandshakeTimeout: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	if _, err := New(Config{ProxyDNS: ProxyDNSRemote, AllowNets: []string{"10.1.2.3"}, DenyHosts: []string{"*"}}); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}
