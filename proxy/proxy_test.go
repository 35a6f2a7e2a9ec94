package proxy

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		raw, want string
		user      bool
	}{
		{"http://127.0.0.1:3128", "http://127.0.0.1:3128", false},
		{"HTTPS://user:secret@proxy.example:443/", "https://proxy.example:443", true},
		{"socks5://u:p@10.0.0.1:1080", "socks5://10.0.0.1:1080", true},
		{" socks5h://10.0.0.2:1080 ", "socks5h://10.0.0.2:1080", false},
	} {
		p, err := Parse("p1", tc.raw)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.raw, err)
			continue
		}
		if p.Endpoint() != tc.want || (p.URL.User != nil) != tc.user || p.String() != "p1" {
			t.Errorf("Parse(%q) = %s user=%v string=%s", tc.raw, p.Endpoint(), p.URL.User != nil, p)
		}
		if strings.Contains(p.Redacted(), "secret") {
			t.Errorf("Redacted shows the password: %s", p.Redacted())
		}
	}
}

func TestParseErrorsNeverShowThePassword(t *testing.T) {
	const canary = "canary-pw-5e1f"
	for _, raw := range []string{
		"ftp://u:" + canary + "@h:1",
		"http://u:" + canary + "@h",
		"http://u:" + canary + "@h:1/path",
		"http://u:" + canary + "@h:1?q=1",
		"http://u:" + canary + "@[::1:80",
		"http://:" + canary + "@h:1",
		"http://u:" + canary + "@h:1 " + canary,
		"%%%" + canary,
	} {
		_, err := ParseList(strings.NewReader("# comment\n\n" + raw + "\n"))
		if err == nil {
			t.Errorf("ParseList(%q) succeeded", raw)
			continue
		}
		if strings.Contains(err.Error(), canary) {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

func TestParseList(t *testing.T) {
	ps, err := ParseList(strings.NewReader(`
# farm
http://u:p@127.0.0.1:1

socks5h://127.0.0.1:2
http://u:p@gw.provider.example:7000 rotating
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 3 {
		t.Fatalf("got %d proxies", len(ps))
	}
	for i, want := range []struct {
		id       string
		rotating bool
	}{{"p1", false}, {"p2", false}, {"p3", true}} {
		if ps[i].ID != want.id || ps[i].Rotating != want.rotating {
			t.Errorf("proxy %d = %s rotating=%v, want %+v", i, ps[i].ID, ps[i].Rotating, want)
		}
	}
}

func TestNewRejects(t *testing.T) {
	ps := testProxies(4)
	for name, tc := range map[string]struct {
		proxies []*Proxy
		opts    []Option
	}{
		"duplicate id":      {append(testProxies(2), testProxies(1)...), nil},
		"unknown id":        {ps, []Option{WithPartition("a", "p9")}},
		"overlap":           {ps, []Option{WithPartition("a", "p1", "p2"), WithPartition("b", "p2")}},
		"twice":             {ps, []Option{WithPartition("a", "p1"), WithPartition("A.", "p2")}},
		"too few to split":  {ps, []Option{WithPartition("a", "p1", "p2"), WithEvenPartitions("b", "c", "d")}},
		"bad model":         {ps, []Option{WithModel(Model(9))}},
		"bad strategy":      {ps, []Option{WithStrategy(Strategy(9))}},
		"negative ttl":      {ps, []Option{WithStickyTTL(-1)}},
		"bad health":        {ps, []Option{WithHealth(HealthConfig{CooldownBase: 2, CooldownMax: 1})}},
		"empty partition":   {ps, []Option{WithPartition("a")}},
		"domain both ways":  {ps, []Option{WithPartition("a", "p1"), WithEvenPartitions("a")}},
		"no domain to rank": {ps, []Option{WithDomainStrategy("", LRU)}},
	} {
		if _, err := New(tc.proxies, tc.opts...); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestParseNames(t *testing.T) {
	for s, name := range strategyNames {
		got, err := ParseStrategy(strings.ToUpper(name))
		if err != nil || got != s || s.String() != name {
			t.Errorf("strategy %s: %v %v", name, got, err)
		}
	}
	for m, name := range modelNames {
		got, err := ParseModel(name)
		if err != nil || got != m || m.String() != name {
			t.Errorf("model %s: %v %v", name, got, err)
		}
	}
	if _, err := ParseStrategy("fastest"); err == nil {
		t.Error("ParseStrategy accepted an unknown name")
	}
	if _, err := ParseModel("pooled"); err == nil {
		t.Error("ParseModel accepted an unknown name")
	}
}
