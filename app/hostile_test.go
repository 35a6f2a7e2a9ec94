package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/sluicehq/sluice/guard"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/stages/parse"
	"github.com/sluicehq/sluice/testbed"
)

// TestHostileInputsEndAsClassifiedResults runs the whole pipeline (line
// source, fetch, parse, JSONL sink) over a list in which every hostile
// case is followed by a normal page. Each hostile case ends as one result
// with its error class (or, for the charset cases, with valid UTF-8
// fields); every normal page after it is fetched and parsed correctly.
// The target site listens on 127.0.0.2, let through by AllowNets: the
// loopback allowance is off, so the SSRF cases are refused as in
// production.
func TestHostileInputsEndAsClassifiedResults(t *testing.T) {
	h, err := testbed.StartHostile(testbed.HostileConfig{Addr: "127.0.0.2:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	tlsLn, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "<h1>x</h1>") }))
	_ = tlsSrv.Listener.Close()
	tlsSrv.Listener = tlsLn
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	u := h.URL()
	port := u[strings.LastIndex(u, ":")+1:]

	cases := []struct {
		line  string
		class string // "" for success
		check func(res record.Result) string
	}{
		{line: u + "/bomb/gzip", class: "too_large"},
		{line: u + "/trickle", class: "timeout"},
		{line: u + "/endless", class: "too_large"},
		{line: u + "/slow-headers", class: "timeout"},
		{line: u + "/big-headers?kib=2048", class: "header_too_large"},
		{line: u + "/loop", class: "redirects"},
		{line: u + "/chain/20", class: "redirects"},
		{line: u + "/redirect?to=" + url.QueryEscape("http://169.254.169.254/latest/meta-data/"), class: "policy"},
		{line: u + "/redirect?to=" + url.QueryEscape("http://0x7f.1:"+port+"/ok/0"), class: "policy"},
		{line: "http://2130706433:" + port + "/ok/0", class: "policy"},
		{line: "http://[::ffff:169.254.169.254]/", class: "policy"},
		{line: "http://localhost:" + port + "/ok/0", class: "policy"},
		{line: "gopher://127.0.0.2:" + port + "/", class: "bad_input"},
		{line: "not a url at all", class: "bad_input"},
		{line: `{"url": 42}`, class: "bad_input"},
		{line: u + "/garbage", class: "protocol"},
		{line: u + "/midbody", class: "protocol"},
		{line: u + "/status/503", class: "server_error"},
		{line: u + "/status/404", class: "client_error"},
		{line: strings.Replace(tlsSrv.URL, "https://", "https://", 1), class: "tls"},
		{line: u + "/deep?n=100000", class: "parse"},
		{line: u + "/broken", check: fieldIs("name", "broken page")},
		{line: u + "/charset/latin1-meta", check: fieldIs("name", "Café crème")},
		{line: u + "/charset/latin1-as-utf8", check: validUTF8},
		{line: u + "/charset/invalid-utf8", check: validUTF8},
		{line: u + "/charset/wrong-label", check: validUTF8},
		{line: u + "/charset/utf16", check: fieldIs("name", "wide café")},
		{line: u + "/charset/unknown-label", check: fieldIs("name", "unknown é")},
	}
	var in strings.Builder
	for i, c := range cases {
		fmt.Fprintf(&in, "%s\n%s/ok/%d\n", c.line, u, i+1)
	}
	var out bytes.Buffer
	cfg := jobConfig{
		URLReader: strings.NewReader(in.String()),
		OutWriter: &out,
		Direct:    true,
		Rules:     parse.DefaultRules(),
		Drain:     time.Minute,
		Log:       zerolog.Nop(),
	}
	cfg.Fetch.Concurrency = 2
	cfg.Fetch.DomainRate = -1
	cfg.Fetch.MaxAttempts = 2
	cfg.Fetch.BackoffBase = time.Millisecond
	cfg.Fetch.BackoffMax = 2 * time.Millisecond
	cfg.Fetch.BodyTimeout = time.Second
	cfg.Fetch.HeaderTimeout = time.Second
	cfg.Fetch.MaxHeaderBytes = 64 << 10
	cfg.Fetch.Policy = guard.Config{AllowNets: []string{"127.0.0.2/32"}}
	sum, err := runJob(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	results := map[string]record.Result{}
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var r record.Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("bad output line %q: %v", sc.Text(), err)
		}
		if _, dup := results[r.URL]; dup {
			t.Errorf("two results for %s", r.URL)
		}
		results[r.URL] = r
	}
	if len(results) != 2*len(cases) || sum.Written != 2*len(cases) {
		t.Fatalf("%d results (%d written) for %d inputs", len(results), sum.Written, 2*len(cases))
	}
	for i, c := range cases {
		key := c.line
		if strings.HasPrefix(c.line, "{") {
			key = c.line // a message that is not understood keeps its raw text
		}
		res, ok := results[key]
		if !ok {
			t.Errorf("no result for %q", c.line)
			continue
		}
		got := ""
		if res.Error != nil {
			got = res.Error.Class
		}
		if got != c.class {
			t.Errorf("%s: class %q (%v), want %q", c.line, got, res.Error, c.class)
		}
		if c.check != nil && res.Error == nil {
			if msg := c.check(res); msg != "" {
				t.Errorf("%s: %s", c.line, msg)
			}
		}
		next := fmt.Sprintf("%s/ok/%d", u, i+1)
		if r := results[next]; r.Error != nil || r.Fields["name"] != fmt.Sprintf("ok %d", i+1) {
			t.Errorf("page after %s: error %v, fields %v", c.line, r.Error, r.Fields)
		}
	}
	t.Logf("summary: %d written, %d ok, errors by class %v", sum.Written, sum.OK, sum.Errors)
}

func fieldIs(name, want string) func(record.Result) string {
	return func(r record.Result) string {
		if msg := validUTF8(r); msg != "" {
			return msg
		}
		if v := r.Fields[name]; v != want {
			return fmt.Sprintf("field %s = %v, want %q", name, v, want)
		}
		return ""
	}
}

func validUTF8(r record.Result) string {
	for k, v := range r.Fields {
		if s, ok := v.(string); ok && !utf8.ValidString(s) {
			return fmt.Sprintf("field %s = %q is not valid UTF-8", k, s)
		}
	}
	if r.Fields["name"] == nil {
		return "no name field"
	}
	return ""
}

// TestBoundsFromConfigFile: the config file's policy: section and fetch:
// bounds are read; a flag given on the command line overrides only its
// own setting.
func TestBoundsFromConfigFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(path, []byte(`
fetch:
  max_redirects: 3
  truncate: true
  body_timeout: 7s
policy:
  allow_nets: ["10.9.0.0/16"]
  deny_hosts: ["*.internal.example"]
  proxy_dns: local
`), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := load(t, Defaults(), "--config", path, "--allow-loopback", "--deny-hosts", "admin.example")
	if err != nil {
		t.Fatal(err)
	}
	f := c.FetchStage()
	p := f.Policy
	if !p.AllowLoopback || len(p.AllowNets) != 1 || p.AllowNets[0] != "10.9.0.0/16" || len(p.DenyHosts) != 1 || p.DenyHosts[0] != "admin.example" || p.ProxyDNS != "local" {
		t.Errorf("policy %+v", p)
	}
	if f.MaxRedirects != 3 || !f.TruncateLarge || f.BodyTimeout != 7*time.Second {
		t.Errorf("bounds: redirects %d truncate %v body %v", f.MaxRedirects, f.TruncateLarge, f.BodyTimeout)
	}
}
