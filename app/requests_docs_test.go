package app

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/stages/fetch"
	"github.com/sluicehq/sluice/stages/source"
)

// fenced returns the bodies of md's code blocks fenced as lang.
func fenced(md, lang string) []string {
	var out []string
	var cur strings.Builder
	in := false
	for line := range strings.Lines(md) {
		switch {
		case !in && strings.TrimSpace(line) == "```"+lang:
			in = true
			cur.Reset()
		case in && strings.HasPrefix(line, "```"):
			in = false
			out = append(out, cur.String())
		case in:
			cur.WriteString(line)
		}
	}
	return out
}

// TestRequestsDocExamples: every YAML block of docs/requests.md loads
// through the config loader and gives a fetch stage config New accepts;
// every JSON line is a URL message Decode accepts.
func TestRequestsDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../docs/requests.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := fenced(string(doc), "yaml")
	if len(blocks) < 3 {
		t.Fatalf("%d YAML blocks in docs/requests.md", len(blocks))
	}
	dir := t.TempDir()
	for i, b := range blocks {
		c, err := load(t, Defaults(), "--config", writeFile(t, dir, "c.yaml", b))
		if err != nil {
			t.Fatalf("block %d: %v\n%s", i, err, b)
		}
		fc := c.FetchStage()
		fc.Policy.AllowLoopback = true
		st, err := fetch.New(fc)
		if err != nil {
			t.Fatalf("block %d: fetch.New: %v", i, err)
		}
		st.Close()
		if i == 0 {
			sh := fc.Shaping
			if len(sh.UserAgents) != 2 || len(sh.Rules) != 2 || sh.Rules[1].Method != "POST" || sh.MaxBody != 131072 ||
				sh.Headers["Accept-Language"] == "" || sh.Cookies["consent"] != "yes" || !reflect.DeepEqual(sh.Rules[1].UserAgent, fetch.UserAgents{"mybot/1.0 (+https://example.com/bot)"}) {
				t.Errorf("first block read as %+v", sh)
			}
		}
	}
	for _, b := range fenced(string(doc), "json") {
		for line := range strings.Lines(b) {
			if _, _, err := source.Decode([]byte(line), 0); err != nil {
				t.Errorf("%s: %v", strings.TrimSpace(line), err)
			}
		}
	}
}

// TestRequestShapingConfig: the defaults are Chrome's User-Agent and
// bounded jars living the sticky TTL; --user-agent replaces the list and
// repeats into a list; an empty one sends none; max_jars 0 is no jars; a
// bad requests: entry is a usage error.
func TestRequestShapingConfig(t *testing.T) {
	c, err := load(t, Defaults(), "--proxy-sticky-ttl", "3m")
	if err != nil {
		t.Fatal(err)
	}
	sh := c.FetchStage().Shaping
	if !reflect.DeepEqual(sh.UserAgents, []string{fetch.DefaultUserAgent}) || sh.JarTTL.Minutes() != 3 || sh.MaxJars != 4096 || sh.MaxBody != 65536 {
		t.Errorf("defaults %+v", sh)
	}
	dir := t.TempDir()
	file := writeFile(t, dir, "c.yaml", "fetch:\n  user_agent: [a, b]\n  max_jars: 0\n")
	if c, err = load(t, Defaults(), "--config", file, "--user-agent", "x/1", "--user-agent", "y/2"); err != nil {
		t.Fatal(err)
	}
	if sh = c.FetchStage().Shaping; !reflect.DeepEqual(sh.UserAgents, []string{"x/1", "y/2"}) || sh.MaxJars >= 0 {
		t.Errorf("flags over file: %+v", sh)
	}
	if c, err = load(t, Defaults(), "--user-agent", ""); err != nil || !reflect.DeepEqual(c.FetchStage().Shaping.UserAgents, []string{""}) {
		t.Errorf("empty --user-agent: %v %v", c.FetchStage().Shaping.UserAgents, err)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"requests:\n  - domain: a.example\n    method: BREW\n", "BREW"},
		{"requests:\n  - domain: a.example\n    colour: red\n", `unknown key "colour"`},
		{"requests:\n  - domain: a.example\n    method: POST\n    body: xxxx\nfetch:\n  max_request_body: 2\n", "exceeds"},
		{"fetch:\n  headers:\n    Host: b.example\n", "Host"},
		{"fetch:\n  user_agent: {a: b}\n", "user_agent"},
		{"fetch:\n  max_jars: -1\n", "fetch.max_jars"},
	} {
		_, err := load(t, Defaults(), "--config", writeFile(t, dir, "bad.yaml", tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !IsUsage(err) {
			t.Errorf("%q: %v, want a usage error with %q", tc.yaml, err, tc.want)
		}
	}
}
