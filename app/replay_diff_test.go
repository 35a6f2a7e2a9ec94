package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/record"
)

// TestReplayDiff checks a rule change against stored pages, end to end:
// replay a pages file with the old rules, then with the new rules and
// --diff, and read the per-field report.
func TestReplayDiff(t *testing.T) {
	dir := t.TempDir()
	pages := filepath.Join(dir, "pages.jsonl")
	var pb bytes.Buffer
	for i := 1; i <= 4; i++ {
		body := fmt.Sprintf(`<html><body><h1>Widget %d</h1><p class="price">$%d.50</p><span class="sku">W-%d</span></body></html>`, i, i, i)
		if i == 4 {
			body = `<html><body><h1>Widget 4</h1></body></html>` // no price: null before and after
		}
		p := record.Page{Schema: record.SchemaVersion, URL: fmt.Sprintf("https://shop.example.com/p/%d", i),
			FinalURL: fmt.Sprintf("https://shop.example.com/p/%d", i), Method: "GET", Status: 200,
			Header: map[string][]string{"Content-Type": {"text/html; charset=utf-8"}}, Body: []byte(body),
			FetchedAt: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC), Attempts: 1}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		pb.Write(append(b, '\n'))
	}
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("pages.jsonl", pb.String())
	oldRules := write("old.yaml", "- domain: '*.example.com'\n  fields:\n    name: h1\n    price: .price\n")
	newRules := write("new.yaml", "- domain: '*.example.com'\n  fields:\n    name: h1\n    price: {css: .price, process: [price]}\n    sku: .sku\n")

	replay := func(rules, out, diff string) string {
		c := Defaults()
		c.Rules, c.Out, c.LogLevel = rules, out, "error"
		var stderr bytes.Buffer
		if err := Replay(context.Background(), c, ReplayOptions{PagesFile: pages, FromOffset: -1, Diff: diff}, &bytes.Buffer{}, &stderr); err != nil {
			t.Fatalf("replay: %v\n%s", err, stderr.String())
		}
		return stderr.String()
	}
	oldOut := filepath.Join(dir, "old-results.jsonl")
	replay(oldRules, oldOut, "")
	// The unchanged rules change nothing.
	same := replay(oldRules, filepath.Join(dir, "same.jsonl"), oldOut)
	for _, want := range []string{"diff: 4 records compared with " + oldOut + " (0 only in the replay, 0 only in",
		"diff: field name: 0 of 4 changed", "diff: field price: 0 of 4 changed"} {
		if !strings.Contains(same, want) {
			t.Errorf("same rules: report lacks %q:\n%s", want, same)
		}
	}

	got := replay(newRules, filepath.Join(dir, "new.jsonl"), oldOut)
	for _, want := range []string{
		"diff: 4 records compared with",
		"diff: field name: 0 of 4 changed\n",
		"diff: field price: 3 of 4 changed\n",
		`  https://shop.example.com/p/1: "$1.50" -> {"amount":1.5,"currency":"USD"}` + "\n",
		"diff: field sku: 4 of 4 changed\n",
		"diff: field sku: 4 of 4 changed\n  https://shop.example.com/p/1: (absent) -> \"W-1\"\n  https://shop.example.com/p/2: (absent) -> \"W-2\"\n  https://shop.example.com/p/3: (absent) -> \"W-3\"\n",
		"replay: 4 pages read, 4 results",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	// Examples are bounded per field.
	if n := strings.Count(got, "https://shop.example.com/p/"); n != 3+3 {
		t.Errorf("%d example lines, want 3 per changed field:\n%s", n, got)
	}
	// The rules versions before and after are named.
	if !strings.Contains(got, "rules sha256:") || !strings.Contains(got, " -> sha256:") {
		t.Errorf("report does not name the rules versions:\n%s", got)
	}

	t.Run("bad old file", func(t *testing.T) {
		c := Defaults()
		c.Out, c.LogLevel = filepath.Join(dir, "x.jsonl"), "error"
		err := Replay(context.Background(), c, ReplayOptions{PagesFile: pages, FromOffset: -1, Diff: pages + ".missing"}, &bytes.Buffer{}, &bytes.Buffer{})
		if !IsUsage(err) {
			t.Errorf("missing --diff file: %v, want a usage error", err)
		}
	})
}
