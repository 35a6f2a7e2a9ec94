package proxy

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// FuzzParse builds proxy URLs around a password, both as typed (raw) and
// percent-encoded, and checks that the password never appears in an
// error, in Redacted or in any way a Proxy prints.
func FuzzParse(f *testing.F) {
	for _, s := range [][5]string{
		{"http", "user", "s3cret-pw", "127.0.0.1:8080", ""},
		{"https", "user", "pa/ss", "proxy.example:443", ""},
		{"http", "user", "12/ss", "host:1", ""},
		{"http", "user", "12#ss", "host:1", ""},
		{"http", "user", "12?ss", "host:1", ""},
		{"socks5", "u", "p@ss:w0rd", "10.0.0.1:1080", ""},
		{"socks5h", "u", "%zz-secret", "h:1", ""},
		{"http", "u", "secret", "h:1", "/path"},
		{"http", "u", "secret", "h", ""},
		{"ftp", "u", "secret", "h:1", ""},
		{"http", "u", "sec ret", "h:1", "?q=1"},
		{"http", "", "onlypass", "[::1]:3128", ""},
		{"HTTP", "u", "secret", "h:1", "#frag"},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4])
	}
	f.Fuzz(func(t *testing.T, scheme, user, pass, host, tail string) {
		typed := scheme + "://" + user + ":" + pass + "@" + host + tail
		encoded := scheme + "://" + url.UserPassword(user, pass).String() + "@" + host + tail
		for _, raw := range []string{typed, encoded} {
			// Only a password that cannot be found elsewhere in the
			// text can be looked for.
			secrets := []string{pass, url.PathEscape(pass), url.QueryEscape(pass), url.UserPassword("", pass).String()[1:]}
			rest := scheme + "://" + user + ":@" + host + tail + " " + url.User(user).String() + " " + strings.ToLower(scheme)
			p, err := Parse("p1", raw)
			for _, secret := range secrets {
				if len(secret) < 4 || strings.Contains(rest, secret) || strings.Contains("p1 proxy http https socks5 socks5h", secret) {
					continue
				}
				if err != nil && strings.Contains(err.Error(), secret) {
					t.Fatalf("Parse(%q) error shows the password: %v", raw, err)
				}
				if err != nil {
					continue
				}
				for _, shown := range []string{p.Redacted(), p.String(), fmt.Sprint(p), fmt.Sprintf("%+v", p), p.ID} {
					if strings.Contains(shown, secret) {
						t.Fatalf("Parse(%q): %q shows the password", raw, shown)
					}
				}
			}
			if err == nil {
				if p.URL.Hostname() == "" || p.URL.Port() == "" || !schemes[p.URL.Scheme] || p.URL.Fragment != "" || p.URL.RawQuery != "" {
					t.Fatalf("Parse(%q) accepted %s", raw, p.Redacted())
				}
			}
		}
	})
}

// FuzzParseList writes one proxy in each of the list's forms around a
// password, among comments, and checks that the list parser never panics,
// never accepts a proxy without host and port, never shows the password
// in an error (Redacted is FuzzParse's and url.URL's business), and that a proxy it accepts in a form without a scheme
// carries exactly the password written.
func FuzzParseList(f *testing.F) {
	for _, s := range [][4]string{
		{"user", "s3cret-pw", "127.0.0.1", "8080"},
		{"u", "pa#ss/w@rd", "proxy.example", "3128"},
		{"u", "p:w:x", "[::1]", "1080"},
		{"", "lonely-pass", "h", "1"},
		{"u", "sp ace", "h", "1"},
		{"u", "", "h", ""},
		{"u\n", "nl\npass", "h", "1"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, user, pass, host, port string) {
		hostport := host + ":" + port
		for form, line := range []string{
			"http://" + user + ":" + pass + "@" + hostport,
			user + ":" + pass + "@" + hostport,
			hostport + ":" + user + ":" + pass,
			hostport,
		} {
			list := "# comment\n\n" + line + "  # trailing\n"
			ps, err := ParseList(strings.NewReader(list))
			secret := pass
			hidden := len(secret) >= 4 && !strings.Contains("# comment trailing http://"+user+hostport+" line proxy p1 want host:port user:pass password", secret)
			if err != nil {
				if hidden && strings.Contains(err.Error(), secret) {
					t.Fatalf("ParseList(%q) error shows the password: %v", list, err)
				}
				continue
			}
			for _, p := range ps {
				if p.URL.Hostname() == "" || p.URL.Port() == "" || !schemes[p.URL.Scheme] {
					t.Fatalf("ParseList(%q) accepted %s", list, p.Redacted())
				}
			}
			clean := !strings.ContainsAny(user+pass+host+port, ":@#[]/?%\\ \t\r\n\v\f\u0085\u00a0") && user != ""
			if (form == 1 || form == 2) && clean && len(ps) == 1 {
				if got, _ := ps[0].URL.User.Password(); got != pass || ps[0].URL.User.Username() != user {
					t.Fatalf("ParseList(%q) read user %q password %q", list, ps[0].URL.User.Username(), got)
				}
			}
		}
	})
}
