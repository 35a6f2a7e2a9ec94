package guard

import (
	"net/url"
	"strings"
	"testing"
)

func TestParseHostNumericForms(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		// Every spelling of 127.0.0.1 that inet_aton or a browser accepts.
		{"127.0.0.1", "127.0.0.1"},
		{"127.1", "127.0.0.1"},
		{"127.0.1", "127.0.0.1"},
		{"2130706433", "127.0.0.1"},
		{"0x7f000001", "127.0.0.1"},
		{"0x7f.1", "127.0.0.1"},
		{"0X7F.0.0.1", "127.0.0.1"},
		{"0177.0.0.1", "127.0.0.1"},
		{"0177.1", "127.0.0.1"},
		{"017700000001", "127.0.0.1"},
		{"127.0.0.1.", "127.0.0.1"},
		{"127.000.000.001", "127.0.0.1"},
		{"0x7f.0x0.0x0.0x1", "127.0.0.1"},
		{"１２７．０．０．１", "127.0.0.1"}, // full-width digits and dots, mapped by IDNA
		// Other addresses in odd forms.
		{"169.254.43518", "169.254.169.254"},
		{"0xa9fea9fe", "169.254.169.254"},
		{"2852039166", "169.254.169.254"},
		{"0", "0.0.0.0"},
		{"0x", "0.0.0.0"},
		{"10.1", "10.0.0.1"},
		{"4294967295", "255.255.255.255"},
		// IPv6.
		{"::1", "[::1]"},
		{"0:0:0:0:0:0:0:1", "[::1]"},
		{"::ffff:127.0.0.1", "[::ffff:127.0.0.1]"},
		{"::FFFF:7F00:1", "[::ffff:127.0.0.1]"},
		{"2001:DB8::1", "[2001:db8::1]"},
		// Names.
		{"Example.COM", "example.com"},
		{"example.com.", "example.com"},
		{"a_b.example", "a_b.example"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"EXAMPLE.123a", "example.123a"},
		{"localhost", "localhost"},
	}
	for _, tc := range tests {
		h, err := ParseHost(tc.in)
		if err != nil {
			t.Errorf("ParseHost(%q): %v", tc.in, err)
			continue
		}
		if got := h.String(); got != tc.want {
			t.Errorf("ParseHost(%q) = %q, want %q", tc.in, got, tc.want)
		}
		again, err := ParseHost(strings.Trim(h.String(), "[]"))
		if err != nil || again != h {
			t.Errorf("ParseHost not idempotent on %q: %v %v", tc.in, again, err)
		}
	}
}

func TestParseHostRejects(t *testing.T) {
	for _, in := range []string{
		"",
		"1.2.3.4.5",               // five parts
		"256.1.1.1",               // a part over 255 before the last
		"1.2.3.256",               // last part over 255
		"1.16777216",              // last part over 24 bits
		"4294967296",              // over 32 bits
		"example.0x",              // ends in a number, not an IPv4 address
		"example.123",             // likewise
		"0x7g.1",                  // ends in a number, and 0x7g is not one
		"08.0.0.1",                // 0-prefixed means octal, 8 is not an octal digit
		"99999999999999999999999", // overflow
		"fe80::1%eth0",            // zone
		"::1::",                   // bad IPv6
		"exa$mple.com",            // character outside names
		"a..b",                    // empty label
		".",                       // nothing but a dot
		strings.Repeat("a", 64) + ".com",
		strings.Repeat("a.", 127) + "ab",
		"xn--a.example\u00ad", // soft hyphen is mapped away, but xn--a is not valid punycode
	} {
		if h, err := ParseHost(in); err == nil {
			t.Errorf("ParseHost(%q) = %v, want an error", in, h)
		}
	}
}

func TestCanonical(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"HTTP://Example.COM:0080/a/../b?q=1#frag", "http://example.com:80/a/../b?q=1", ""},
		{"https://0x7f.1/", "https://127.0.0.1/", ""},
		{"http://[::ffff:7f00:1]:8080/x", "http://[::ffff:127.0.0.1]:8080/x", ""},
		{"http://example.com:/", "http://example.com/", ""},
		{"http://example.com./", "http://example.com/", ""},
		{"ftp://example.com/", "", "scheme"},
		{"javascript:alert(1)", "", "scheme"},
		{"http:opaque", "", "no host"},
		{"http:///path", "", "no host"},
		{"http://user:pass@example.com/", "", "user information"},
		{"http://example.com:99999/", "", "port"},
		{"http://example.com:0/", "", "port"},
		{"http://1.2.3.4.5/", "", "invalid host"},
	}
	for _, tc := range tests {
		u, err := url.Parse(tc.in)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", tc.in, err)
		}
		c, err := Canonical(u)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Canonical(%q) = %v, %v; want error with %q", tc.in, c, err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "pass") {
				t.Errorf("error quotes the password: %v", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Canonical(%q): %v", tc.in, err)
			continue
		}
		if c.String() != tc.want {
			t.Errorf("Canonical(%q) = %q, want %q", tc.in, c, tc.want)
		}
		again, err := Canonical(c)
		if err != nil || again.String() != c.String() {
			t.Errorf("Canonical not idempotent on %q: %v, %v", tc.in, again, err)
		}
		if u.String() != mustParse(t, tc.in).String() {
			t.Errorf("Canonical modified its argument")
		}
	}
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
