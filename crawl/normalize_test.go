package crawl

import (
	"net/url"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	cases := []struct{ in, want string }{
		{"http://Example.COM", "http://example.com/"},
		{"HTTP://example.com:80/a", "http://example.com/a"},
		{"https://example.com:443/a", "https://example.com/a"},
		{"https://example.com:8443/a", "https://example.com:8443/a"},
		{"http://example.com:443/a", "http://example.com:443/a"},
		{"http://example.com/a#frag", "http://example.com/a"},
		{"http://example.com/a?b=2&a=1", "http://example.com/a?a=1&b=2"},
		{"http://example.com/a?b=2&a=1&b=1", "http://example.com/a?a=1&b=2&b=1"},
		{"http://example.com/a?utm_source=x&id=3&utm_medium=y", "http://example.com/a?id=3"},
		{"http://example.com/a?gclid=1&fbclid=2&msclkid=3", "http://example.com/a"},
		{"http://example.com/a?UTM_Source=x&q=1", "http://example.com/a?q=1"},
		{"http://example.com/a?", "http://example.com/a"},
		{"http://example.com/a/./b/../c", "http://example.com/a/c"},
		{"http://example.com/a/b/../", "http://example.com/a/"},
		{"http://example.com/%7Euser", "http://example.com/~user"},
		{"http://example.com/a%2Fb", "http://example.com/a%2Fb"},
		{"http://user:pw@example.com/", "http://example.com/"},
		{"http://example.com./x", "http://example.com/x"},
		{"http://[::1]:80/x", "http://[::1]/x"},
		{"http://example.com/q?a=%20b&c", "http://example.com/q?a=%20b&c"},
	}
	var n Normalizer
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, _, err := n.Normalize(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("Normalize(%q) = %q, want %q", c.in, got, c.want)
			}
			again, _, err := n.Normalize(got)
			if err != nil || again != got {
				t.Errorf("not idempotent: %q -> %q (%v)", got, again, err)
			}
		})
	}
	for _, bad := range []string{"", "mailto:a@example.com", "ftp://example.com/", "/relative", "http:///nohost", "javascript:alert(1)"} {
		if got, _, err := n.Normalize(bad); err == nil {
			t.Errorf("Normalize(%q) = %q, want an error", bad, got)
		}
	}
}

func TestNormalizeStripParams(t *testing.T) {
	n := Normalizer{StripParams: []string{"session*", "x"}}
	got, _, _ := n.Normalize("http://e.example/?sessionid=1&x=2&utm_source=3")
	if got != "http://e.example/?utm_source=3" {
		t.Errorf("got %q", got)
	}
	none := Normalizer{StripParams: []string{}}
	got, _, _ = none.Normalize("http://e.example/?utm_source=3")
	if got != "http://e.example/?utm_source=3" {
		t.Errorf("empty strip list: got %q", got)
	}
}

// FuzzNormalize: the normaliser never panics; what it returns parses, is
// http(s) with a host, has no fragment and is a fixed point.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"http://Example.com:80/a/../b?z=1&utm_x=2&a=3#f", "https://[::1]:443/", "http://a%zz/", "http://e.example/%2e%2e/x?&&="} {
		f.Add(s)
	}
	var n Normalizer
	f.Fuzz(func(t *testing.T, in string) {
		got, u, err := n.Normalize(in)
		if err != nil {
			return
		}
		if u.Fragment != "" || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
			t.Fatalf("%q -> %q", in, got)
		}
		if _, err := url.Parse(got); err != nil {
			t.Fatalf("%q -> %q does not parse: %v", in, got, err)
		}
		again, _, err := n.Normalize(got)
		if err != nil || again != got {
			t.Fatalf("not a fixed point: %q -> %q -> %q (%v)", in, got, again, err)
		}
		if strings.Contains(got, "utm_") && strings.Contains(u.RawQuery, "utm_") {
			for _, kv := range strings.Split(u.RawQuery, "&") {
				if k, _ := url.QueryUnescape(strings.SplitN(kv, "=", 2)[0]); strings.HasPrefix(strings.ToLower(k), "utm_") {
					t.Fatalf("%q -> %q keeps a tracking parameter", in, got)
				}
			}
		}
	})
}
