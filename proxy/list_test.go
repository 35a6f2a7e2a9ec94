package proxy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseListForms(t *testing.T) {
	list := `# providers hand out lists in several forms
http://alice:s3cret@10.0.0.1:3128   # a URL, trailing comment
socks5h://10.0.0.2:1080

10.0.0.3:3128
bob:pa#ss/w@rd@10.0.0.4:8080 rotating
10.0.0.5:3128:carol:hunter2#x
[::1]:3128:dave:pw
# default-scheme: socks5
10.0.0.6:1080	# now socks5
`
	ps, err := ParseList(strings.NewReader(list))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ id, endpoint, user, pass string }{
		{"p1", "http://10.0.0.1:3128", "alice", "s3cret"},
		{"p2", "socks5h://10.0.0.2:1080", "", ""},
		{"p3", "http://10.0.0.3:3128", "", ""},
		{"p4", "http://10.0.0.4:8080", "bob", "pa#ss/w@rd"},
		{"p5", "http://10.0.0.5:3128", "carol", "hunter2#x"},
		{"p6", "http://[::1]:3128", "dave", "pw"},
		{"p7", "socks5://10.0.0.6:1080", "", ""},
	}
	if len(ps) != len(want) {
		t.Fatalf("got %d proxies, want %d", len(ps), len(want))
	}
	for i, w := range want {
		p := ps[i]
		pass, _ := p.URL.User.Password()
		if p.ID != w.id || p.Endpoint() != w.endpoint || p.URL.User.Username() != w.user || pass != w.pass {
			t.Errorf("proxy %d: %s %s user %q: want %+v", i, p.ID, p.Endpoint(), p.URL.User.Username(), w)
		}
		if strings.Contains(p.Redacted(), "s3cret") || strings.Contains(p.Redacted(), "hunter2") {
			t.Errorf("Redacted shows a password: %s", p.Redacted())
		}
	}
	if !ps[3].Rotating || ps[0].Rotating {
		t.Errorf("rotating flags: %v %v", ps[0].Rotating, ps[3].Rotating)
	}
}

func TestParseListDefaultScheme(t *testing.T) {
	ps, err := ListOptions{Scheme: "socks5h"}.Parse(strings.NewReader("10.0.0.1:1080\nhttp://10.0.0.2:3128\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ps[0].URL.Scheme != "socks5h" || ps[1].URL.Scheme != "http" {
		t.Errorf("schemes %s %s", ps[0].URL.Scheme, ps[1].URL.Scheme)
	}
	if _, err := (ListOptions{Scheme: "ftp"}).Parse(strings.NewReader("h:1\n")); err == nil {
		t.Error("scheme ftp accepted")
	}
}

func TestParseListErrors(t *testing.T) {
	tests := map[string]struct {
		list, want string
	}{
		"empty":          {"", ErrNoProxies.Error()},
		"only comments":  {"# one\n\n   # two\n", ErrNoProxies.Error()},
		"no port":        {"# x\n10.0.0.1\n", "line 2:"},
		"bad scheme":     {"ftp://u:topsecret@h:1\n", "line 1:"},
		"stray word":     {"h:1 topsecret\n", "line 1:"},
		"half userinfo":  {"h:1\nh:2:useronly\n", "line 2:"},
		"bad directive":  {"# default-scheme: gopher\nh:1\n", "line 1:"},
		"password, user": {"h:1\n\n:topsecret@h:2\n", "line 3:"},
		"path in URL":    {"http://u:top/secret@h:1\n", "line 1:"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseList(strings.NewReader(tc.list))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "topsecret") || strings.Contains(err.Error(), "secret@") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}

func TestLoadFileEmptyIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxies.txt")
	if err := os.WriteFile(path, []byte("# nothing here yet\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(path); !errors.Is(err, ErrNoProxies) {
		t.Fatalf("LoadFile of a list with no proxy: %v", err)
	}
}
