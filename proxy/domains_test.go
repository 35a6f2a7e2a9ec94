package proxy

import (
	"slices"
	"testing"
)

// TestDomainMatching pins what a partition's or domain strategy's domain
// means: a bare domain is the domain and its subdomains, "*.domain" its
// subdomains only, "*" any host, an IP address itself; the most specific
// entry wins.
func TestDomainMatching(t *testing.T) {
	entries := []string{"shop.example", "*.api.example", "deep.shop.example", "10.0.0.1", "Upper.Example."}
	cases := []struct {
		host string
		want string // "" for no match
	}{
		{"shop.example", "shop.example"},
		{"www.shop.example", "shop.example"},
		{"a.b.shop.example", "shop.example"},
		{"SHOP.example.", "shop.example"},
		{"deep.shop.example", "deep.shop.example"},
		{"x.deep.shop.example", "deep.shop.example"},
		{"xshop.example", ""},
		{"example", ""},
		{"api.example", ""}, // "*.api.example" is subdomains only
		{"v1.api.example", "*.api.example"},
		{"10.0.0.1", "10.0.0.1"},
		{"1.10.0.0.1", ""},
		{"www.upper.example", "upper.example"},
		{"", ""},
	}
	var tab domainTable[string]
	for _, e := range entries {
		k, err := parseDomain(e)
		if err != nil {
			t.Fatalf("parseDomain(%q): %v", e, err)
		}
		tab.set(k, k.key)
	}
	for _, tc := range cases {
		t.Run(tc.host, func(t *testing.T) {
			_, got, _ := tab.match(tc.host)
			if got != tc.want {
				t.Errorf("match(%q) = %q, want %q", tc.host, got, tc.want)
			}
		})
	}
	var wild domainTable[string]
	k, _ := parseDomain("*")
	wild.set(k, "*")
	k, _ = parseDomain("shop.example")
	wild.set(k, "shop")
	for host, want := range map[string]string{"www.shop.example": "shop", "other.example": "*", "": "*"} {
		if _, got, _ := wild.match(host); got != want {
			t.Errorf("with *: match(%q) = %q, want %q", host, got, want)
		}
	}
	for _, bad := range []string{"shop.example:80", "http://shop.example", "a.*.example", "*.10.0.0.1"} {
		if _, err := parseDomain(bad); err == nil {
			t.Errorf("parseDomain(%q) accepted", bad)
		}
	}
}

// TestPartitionPatterns checks the pool serves hosts by those meanings.
func TestPartitionPatterns(t *testing.T) {
	p := newPool(t, 6,
		WithPartition("shop.example", "p1", "p2"),
		WithPartition("*.api.example", "p3", "p4"),
		seeded(61))
	for _, tc := range []struct {
		domain string
		want   []string
	}{
		{"shop.example", []string{"p1", "p2"}},
		{"a.b.shop.example", []string{"p1", "p2"}},
		{"v1.api.example", []string{"p3", "p4"}},
		{"api.example", []string{"p5", "p6"}},
	} {
		if got := used(t, p, tc.domain, 60); !slices.Equal(got, tc.want) {
			t.Errorf("%s served by %v, want %v", tc.domain, got, tc.want)
		}
	}
}
