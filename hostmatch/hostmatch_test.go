package hostmatch

import (
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, host string
		want          bool
	}{
		{"*", "shop.example", true},
		{"*", "127.0.0.1", true},
		{"*", "", true},
		{"shop.example", "shop.example", true},
		{"shop.example", "SHOP.Example.", true},
		{"Shop.Example", "shop.example", true},
		{"shop.example", "www.shop.example", false},
		{"shop.example", "myshop.example", false},
		{"*.shop.example", "www.shop.example", true},
		{"*.shop.example", "a.b.shop.example", true},
		{"*.Shop.example", "WWW.shop.example", true},
		{"*.shop.example", "shop.example", false}, // the bare suffix is not a subdomain
		{"*.shop.example", "myshop.example", false},
		{"*.shop.example", "shop.example.evil", false},
		{"*.shop.example", ".shop.example", false},
		{"127.0.0.1", "127.0.0.1", true},
		{"127.0.0.1", "127.0.0.10", false},
		{"::1", "[::1]", true},
		{"[::1]", "::1", true},
		{" api.example ", "api.example", true},
	} {
		p, err := Parse(tc.pattern)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.pattern, err)
			continue
		}
		if got := p.Match(tc.host); got != tc.want {
			t.Errorf("%q matches %q: %v, want %v", tc.pattern, tc.host, got, tc.want)
		}
		if got := Match(tc.pattern, tc.host); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.host, got, tc.want)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, s := range []string{"", "  ", "*.", "**", "*shop.example", "shop.*.example", "shop?.example", "[a-",
		"example.com/shop", "http://example.com", "example.com:8080", "*.127.0.0.1", "a..b", ".example", "*.*.example", "example..", "0.."} {
		if p, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) = %v, want an error", s, p)
		}
		if Match(s, "example.com") {
			t.Errorf("invalid pattern %q matched", s)
		}
	}
}

func TestStringAndFirst(t *testing.T) {
	ps := []Pattern{MustParse("*.Shop.example"), MustParse("shop.example."), MustParse("*")}
	if got := []string{ps[0].String(), ps[1].String(), ps[2].String()}; strings.Join(got, " ") != "*.shop.example shop.example *" {
		t.Errorf("normal forms %v", got)
	}
	for host, want := range map[string]int{"www.shop.example": 0, "shop.example": 1, "other.test": 2} {
		if got := First(ps, host); got != want {
			t.Errorf("First(%q) = %d, want %d", host, got, want)
		}
	}
	if First(ps[:2], "other.test") != -1 || (Pattern{}).Match("x") {
		t.Error("an unlisted host matched")
	}
}

// FuzzMatch checks the meaning against its definition for any pattern
// and host: case and a trailing dot never matter, "*" matches every
// host, "*.s" exactly the proper subdomains of s, and a plain
// pattern only its own host.
func FuzzMatch(f *testing.F) {
	for _, seed := range [][2]string{
		{"*", "shop.example"}, {"*.shop.example", "www.shop.example"}, {"*.shop.example", "shop.example"},
		{"shop.example", "SHOP.EXAMPLE."}, {"::1", "[::1]"}, {"127.0.0.1", "127.0.0.1"}, {"*.b", "a.b"},
		{"[a-", "a"}, {"*.", "."}, {"xn--bcher-kva.example", "xn--bcher-kva.example"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, pattern, host string) {
		p, err := Parse(pattern)
		if err != nil {
			if Match(pattern, host) {
				t.Fatalf("invalid pattern %q matched %q", pattern, host)
			}
			return
		}
		got := p.Match(host)
		if q, err := Parse(p.String()); err != nil || q != p {
			t.Fatalf("%q: normal form %q does not parse back (%v)", pattern, p.String(), err)
		}
		if up := p.Match(strings.ToUpper(host)); up != got && strings.ToLower(strings.ToUpper(host)) == strings.ToLower(host) {
			t.Fatalf("%q: %q and its upper case match differently", pattern, host)
		}
		if !strings.HasSuffix(host, ".") && host != "" && p.Match(host+".") != got {
			t.Fatalf("%q: a trailing dot on %q changes the match", pattern, host)
		}
		h := normalize(host)
		var want bool
		switch s := p.String(); {
		case s == "*":
			want = true
		case strings.HasPrefix(s, "*."):
			want = strings.HasSuffix(h, s[1:]) && len(h) > len(s)-1
		default:
			want = h == s
		}
		if got != want {
			t.Fatalf("%q matches %q: %v, want %v", pattern, host, got, want)
		}
	})
}
