package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// pendingDocs are pages the README links to that are being written on
// other branches as the README is split into docs/. A link to one of them
// is only logged while the file is missing; once it exists it is checked
// like any other. Remove an entry when its page has been merged.
var pendingDocs = []string{}

// TestDocsLinks checks that every relative link in README.md and docs/*.md
// points to a file or folder of the repository and, when it has a
// #fragment, to a heading of that page (as GitHub derives heading anchors).
func TestDocsLinks(t *testing.T) {
	const root = "../.."
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages = append([]string{filepath.Join(root, "README.md")}, pages...)
	anchors := map[string]map[string]bool{} // page path -> its heading anchors
	anchorsOf := func(p string) (map[string]bool, error) {
		if a, ok := anchors[p]; ok {
			return a, nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		anchors[p] = headingAnchors(string(b))
		return anchors[p], nil
	}
	checked := 0
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, page)
		for _, link := range markdownLinks(string(b)) {
			u, err := url.Parse(link)
			if err != nil {
				t.Errorf("%s: link %q does not parse: %v", rel, link, err)
				continue
			}
			if u.Scheme != "" || u.Host != "" {
				continue // an external link
			}
			target := page
			if u.Path != "" {
				target = filepath.Join(filepath.Dir(page), filepath.FromSlash(u.Path))
			}
			targetRel, _ := filepath.Rel(root, target)
			if strings.HasPrefix(targetRel, "..") {
				t.Errorf("%s: link %q leaves the repository", rel, link)
				continue
			}
			checked++
			if _, err := os.Stat(target); err != nil {
				if slices.Contains(pendingDocs, filepath.ToSlash(targetRel)) {
					t.Logf("%s: link %q: %s is pending (being written on another branch)", rel, link, targetRel)
					continue
				}
				t.Errorf("%s: link %q: %s does not exist", rel, link, targetRel)
				continue
			}
			if u.Fragment == "" {
				continue
			}
			if filepath.Ext(target) != ".md" {
				t.Errorf("%s: link %q: a #fragment into %s, which is not a Markdown page", rel, link, targetRel)
				continue
			}
			a, err := anchorsOf(target)
			if err != nil {
				t.Fatal(err)
			}
			if !a[u.Fragment] {
				t.Errorf("%s: link %q: %s has no heading with the anchor #%s", rel, link, targetRel, u.Fragment)
			}
		}
	}
	if checked == 0 {
		t.Error("found no relative links at all: the link extraction is broken")
	}
}

var (
	// inlineLink matches [text](target) and ![alt](target), with an
	// optional "title"; code spans are removed before it is applied.
	inlineLink = regexp.MustCompile(`!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	codeSpan   = regexp.MustCompile("(`+)[^`]*?(`+)")
	atxHeading = regexp.MustCompile(`^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$`)
)

// markdownLines calls f with every line of md outside fenced code blocks.
func markdownLines(md string, f func(line string)) {
	fence := ""
	for line := range strings.Lines(md) {
		line = strings.TrimRight(line, "\r\n")
		trimmed := strings.TrimLeft(line, " ")
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			continue
		}
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence = trimmed[:3]
			continue
		}
		f(line)
	}
}

// markdownLinks returns the targets of the inline links and images of md,
// leaving out code blocks and code spans.
func markdownLinks(md string) []string {
	var out []string
	markdownLines(md, func(line string) {
		line = codeSpan.ReplaceAllString(line, "")
		for _, m := range inlineLink.FindAllStringSubmatch(line, -1) {
			out = append(out, m[1])
		}
	})
	return out
}

// headingAnchors returns the anchors GitHub gives the ATX headings of md:
// the heading's text lowercased, every character that is not a letter, a
// digit, a space, '-' or '_' dropped, spaces turned into '-', and "-1",
// "-2", … appended to repeats.
func headingAnchors(md string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	markdownLines(md, func(line string) {
		m := atxHeading.FindStringSubmatch(line)
		if m == nil {
			return
		}
		// Links in a heading count by their text.
		text := inlineLink.ReplaceAllStringFunc(m[2], func(s string) string {
			s = strings.TrimPrefix(s, "!")
			return s[1:strings.Index(s, "](")]
		})
		var b strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		slug := b.String()
		if n := seen[slug]; n > 0 {
			out[fmt.Sprintf("%s-%d", slug, n)] = true
		} else {
			out[slug] = true
		}
		seen[slug]++
	})
	return out
}

func TestHeadingAnchors(t *testing.T) {
	md := "# sluice\n" +
		"## Job config (`--config FILE`)\n" +
		"```\n## not a heading\n```\n" +
		"### The URL policy (package `guard`) ###\n" +
		"## Delivery: at-least-once\n" +
		"## Delivery: at-least-once\n" +
		"## See [the pool](proxies.md)\n"
	got := headingAnchors(md)
	for _, want := range []string{"sluice", "job-config---config-file", "the-url-policy-package-guard",
		"delivery-at-least-once", "delivery-at-least-once-1", "see-the-pool"} {
		if !got[want] {
			t.Errorf("no anchor %q in %v", want, got)
		}
	}
	if got["not-a-heading"] {
		t.Error("a line in a code block was taken for a heading")
	}
	links := markdownLinks("[a](docs/a.md) `[b](b.md)` ![c](c.png \"title\")\n```\n[d](d.md)\n```\n[e](https://example.com/)")
	if want := []string{"docs/a.md", "c.png", "https://example.com/"}; !slices.Equal(links, want) {
		t.Errorf("markdownLinks = %q, want %q", links, want)
	}
}
