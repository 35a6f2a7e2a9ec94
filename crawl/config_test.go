package crawl

import (
	"net/url"
	"testing"
)

func TestScope(t *testing.T) {
	cfg := Defaults()
	cfg.Sites = []Site{
		{Domain: "*.shop.co.uk", Rules: Rules{Scope: ScopeDomain, Deny: []string{"*/cart*"}}},
		{Domain: "news.example", Rules: Rules{Scope: ScopeAny, Allow: []string{"news.example/20*", "cdn.example/*"}, AllowRegex: []string{`^https://wire\.example/story/\d+$`}}},
	}
	sc, err := cfg.compile()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		parent, link string
		want         bool
	}{
		{"http://a.example/x", "http://a.example/y", true},
		{"http://a.example/x", "http://b.a.example/y", false},         // host scope
		{"http://a.example:8080/x", "http://a.example:8081/y", false}, // another port is another host
		{"http://www.shop.co.uk/", "http://img.shop.co.uk/p", true},   // same registered domain
		{"http://www.shop.co.uk/", "http://www.other.co.uk/p", false}, // co.uk is a public suffix
		{"http://www.shop.co.uk/", "http://www.shop.co.uk/cart/1", false},
		{"http://news.example/", "http://news.example/2024/a", true},
		{"http://news.example/", "http://news.example/about", false},
		{"http://news.example/", "http://cdn.example/x.html", true},
		{"http://news.example/", "https://wire.example/story/12", true},
		{"http://news.example/", "https://wire.example/story/12a", false},
	}
	var n Normalizer
	for _, c := range cases {
		p, _ := url.Parse(c.parent)
		norm, u, err := n.Normalize(c.link)
		if err != nil {
			t.Fatal(err)
		}
		if got := sc.forHost(p.Hostname()).follows(p, u, norm); got != c.want {
			t.Errorf("%s -> %s: follows %v, want %v", c.parent, c.link, got, c.want)
		}
	}
	bad := Defaults()
	bad.Scope = "planet"
	if bad.Validate() == nil {
		t.Error("scope planet accepted")
	}
}
