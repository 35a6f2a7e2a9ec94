package proxy

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// docBlocks returns the fenced blocks of a markdown file whose info
// string is lang, indented or not.
func docBlocks(t *testing.T, path, lang string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?ms)^([ \\t]*)```" + regexp.QuoteMeta(lang) + "\\n(.*?)^[ \\t]*```")
	var out []string
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		var lines []string
		for _, l := range strings.Split(m[2], "\n") {
			lines = append(lines, strings.TrimPrefix(l, m[1]))
		}
		out = append(out, strings.Join(lines, "\n"))
	}
	return out
}

// TestDocsProxiesFiles parses every proxies file shown in
// docs/proxies.md: the valid ones must parse, the invalid one must fail
// on the line the page says.
func TestDocsProxiesFiles(t *testing.T) {
	valid := docBlocks(t, "../docs/proxies.md", "proxies")
	if len(valid) < 2 {
		t.Fatalf("%d proxies examples in docs/proxies.md", len(valid))
	}
	for i, b := range valid {
		ps, err := ParseList(strings.NewReader(b))
		if err != nil {
			t.Errorf("example %d: %v\n%s", i+1, err, b)
			continue
		}
		t.Logf("example %d: %d proxies, first %s", i+1, len(ps), ps[0].Redacted())
	}
	first, _ := ParseList(strings.NewReader(valid[0]))
	if len(first) != 8 || first[5].Endpoint() != "http://10.0.0.5:3128" || first[6].URL.User.Username() != "dave" || !first[7].Rotating {
		t.Errorf("first example read as %v", first)
	} else if pw, _ := first[5].URL.User.Password(); pw != "pa$$word" {
		t.Errorf("carol's password read as %q", pw)
	}
	second, _ := ParseList(strings.NewReader(valid[1]))
	if len(second) != 2 || second[1].URL.Scheme != "socks5h" {
		t.Errorf("second example read as %v", second)
	}
	invalid := docBlocks(t, "../docs/proxies.md", "proxies-invalid")
	if len(invalid) != 1 {
		t.Fatalf("%d invalid examples", len(invalid))
	}
	_, err := ParseList(strings.NewReader(invalid[0]))
	want := "line 2: proxy p2: scheme is not http, https, socks5 or socks5h"
	if err == nil || err.Error() != want {
		t.Errorf("invalid example: %v, want %q", err, want)
	}
}
