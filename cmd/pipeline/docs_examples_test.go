package main

import (
	"bytes"
	"encoding/json"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/stages/parse"
	"github.com/sluicehq/sluice/stages/source"
)

// readmeSection returns the text of README.md under the heading line
// heading, up to the next heading of the same or a higher level.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	level := strings.IndexByte(heading, ' ')
	var out strings.Builder
	found, fenced := false, false
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		if !fenced && strings.HasPrefix(line, "#") {
			if found {
				if n := len(line) - len(strings.TrimLeft(line, "#")); n <= level {
					break
				}
			}
			if strings.TrimSpace(line) == heading {
				found = true
				continue
			}
		}
		if found {
			out.WriteString(line)
		}
	}
	if !found {
		t.Fatalf("README.md has no heading %q", heading)
	}
	return out.String()
}

// codeBlocks returns the bodies of the fenced code blocks of md, in order.
func codeBlocks(md string) []string {
	var out []string
	var cur []string
	in := false
	for line := range strings.Lines(md) {
		if strings.HasPrefix(line, "```") {
			if in {
				out = append(out, strings.Join(cur, ""))
				cur = nil
			}
			in = !in
			continue
		}
		if in {
			cur = append(cur, line)
		}
	}
	return out
}

// TestREADMEQuickstartExamples checks that the files and commands of the
// README's "Scrape your own site in five minutes" are what sluice accepts:
// the rules compile and extract the three fields from a product page of the
// site they name, the proxies file parses, every URL line decodes, the
// flags of the commands exist and the Result shown has the Result's fields.
func TestREADMEQuickstartExamples(t *testing.T) {
	blocks := func(heading string, want int) []string {
		b := codeBlocks(readmeSection(t, heading))
		if len(b) < want {
			t.Fatalf("README %q: %d code blocks, want %d", heading, len(b), want)
		}
		return b
	}

	rulesYAML := blocks("### 1. Write the rules", 1)[0]
	rules, err := parse.ParseRules("rules.yaml", []byte(rulesYAML))
	if err != nil {
		t.Fatalf("the README's rules: %v", err)
	}
	page := []byte(`<!doctype html><html><head><title>Lamp</title><meta itemprop="sku" content="SKU-1"></head>
<body><h1> Desk lamp </h1><span class="price">$11.00</span><a href="/p/2">next</a></body></html>`)

	runBlocks := blocks("### 3. Run", 2)
	var urls []*url.URL
	for line := range strings.Lines(runBlocks[0]) {
		if strings.TrimSpace(line) == "" {
			continue
		}
		_, u, err := source.Decode([]byte(strings.TrimSpace(line)), 64<<10)
		if err != nil {
			t.Errorf("the README's URL line %q: %v", line, err)
			continue
		}
		urls = append(urls, u)
	}
	if len(urls) == 0 {
		t.Fatal("the README lists no URLs")
	}
	for _, u := range urls {
		ex, err := rules.Extract(u, "text/html; charset=utf-8", page, parse.Limits{})
		if err != nil {
			t.Fatalf("extract %s: %v", u, err)
		}
		for field, want := range map[string]string{"name": "Desk lamp", "price": "$11.00", "sku": "SKU-1"} {
			if got := ex.Fields[field]; got != want {
				t.Errorf("the README's rules on %s: field %s = %v, want %q (rule %q matched)", u, field, got, want, ex.Rule)
			}
		}
	}

	proxiesFile := blocks("### 2. List the proxies", 1)[0]
	ps, err := proxy.ParseList(strings.NewReader(proxiesFile))
	if err != nil {
		t.Fatalf("the README's proxies file: %v", err)
	}
	if len(ps) == 0 {
		t.Error("the README's proxies file lists no proxy")
	}

	metricsBlocks := blocks("### 5. See the metrics", 1)
	commands := runBlocks[1] + metricsBlocks[len(metricsBlocks)-1]
	commands = strings.ReplaceAll(commands, "\\\n", " ")
	for line := range strings.Lines(commands) {
		words := strings.Fields(line)
		if len(words) < 2 || words[0] != "pipeline" {
			continue
		}
		var help bytes.Buffer
		realMain([]string{words[1], "-h"}, &help, &help)
		for _, w := range words[2:] {
			name, ok := strings.CutPrefix(w, "--")
			if ok && !strings.Contains(help.String(), "\n  --"+name+" ") && !strings.Contains(help.String(), "\n  --"+name+"\n") {
				t.Errorf("the README runs `pipeline %s` with %s, which it does not have", words[1], w)
			}
		}
	}

	resultJSON := blocks("### 4. Read the results", 1)[0]
	dec := json.NewDecoder(strings.NewReader(resultJSON))
	dec.DisallowUnknownFields()
	var res record.Result
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("the README's Result line: %v", err)
	}
	if res.Schema != 1 || res.Fields["price"] == nil || res.Error != nil {
		t.Errorf("the README's Result line: %+v", res)
	}
}
