package parse

import (
	"os"
	"strings"
	"testing"
)

type docBlock struct {
	lang, body string
	line       int
}

// fencedBlocks returns the fenced code blocks of md with their language.
func fencedBlocks(md string) []docBlock {
	var out []docBlock
	var cur *docBlock
	for i, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "```") {
			if cur != nil {
				out = append(out, *cur)
				cur = nil
			} else {
				cur = &docBlock{lang: strings.TrimSpace(strings.TrimPrefix(line, "```")), line: i + 1}
			}
			continue
		}
		if cur != nil {
			cur.body += line + "\n"
		}
	}
	return out
}

// TestDocsExtraction loads every YAML block of docs/extraction.md through
// the real rule loader; where an html and a json block follow one, it
// extracts the page and compares the fields.
func TestDocsExtraction(t *testing.T) {
	b, err := os.ReadFile("../../docs/extraction.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := fencedBlocks(string(b))
	yamls, checked := 0, 0
	for i, bl := range blocks {
		if bl.lang != "yaml" {
			continue
		}
		yamls++
		r, err := ParseRules("extraction.md", []byte(bl.body))
		if err != nil {
			t.Errorf("docs/extraction.md:%d: %v", bl.line, err)
			continue
		}
		if i+2 >= len(blocks) || blocks[i+1].lang != "html" || blocks[i+2].lang != "json" {
			continue
		}
		checked++
		page, want := blocks[i+1], blocks[i+2]
		e, err := r.Extract(mustURL(t, "https://shop.example/p/x"), "text/html", []byte(page.body), Limits{})
		if err != nil {
			t.Errorf("docs/extraction.md:%d: %v", page.line, err)
			continue
		}
		if got, w := canon(t, e.Fields), canon(t, want.body); got != w {
			t.Errorf("docs/extraction.md:%d: the rules above give\n  %s\nthe page says\n  %s", want.line, got, w)
		}
	}
	if yamls < 7 || checked < 6 {
		t.Errorf("%d YAML blocks, %d checked against a page: the doc lost its examples?", yamls, checked)
	}
}
