package app

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// TestCrawlDocsYAML loads every YAML block of docs/crawl.md through the
// real config loader.
func TestCrawlDocsYAML(t *testing.T) {
	doc, err := os.ReadFile("../docs/crawl.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) < 3 {
		t.Fatalf("%d YAML blocks in docs/crawl.md, want at least 3", len(blocks))
	}
	for i, b := range blocks {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "seeds.txt"), []byte("http://shop.example/\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(path, b[1], 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadFile(path)
		if err != nil {
			t.Errorf("block %d: %v\n%s", i+1, err, b[1])
			continue
		}
		if !cfg.Crawl.Follow {
			t.Errorf("block %d: follow not set", i+1)
		}
		if regexp.MustCompile(`(?m)^  sites:`).Match(b[1]) {
			s := cfg.Crawl.Sites
			if len(s) != 2 || s[0].Domain != "*.blog.example" || s[0].Scope != "host" || s[0].MaxDepth != 1 || s[1].Scope != "any" || len(s[1].Allow) != 2 {
				t.Errorf("block %d: sites %+v", i+1, s)
			}
		}
	}
}

// TestCrawlFlagAliases: the short flags docs/crawl.md names set the crawl
// keys.
func TestCrawlFlagAliases(t *testing.T) {
	cfg, err := load(t, Defaults(), "--follow", "--recrawl-after", "48h", "--ignore-robots", "--sitemap", "https://a.example/sitemap.xml",
		"--sitemap", "https://b.example/sitemap.xml", "--crawl-state-dir", t.TempDir(), "--crawl-scope", "domain")
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Crawl
	if !c.Follow || c.RecrawlAfter != 48*time.Hour || !c.IgnoreRobots || len(c.Sitemaps) != 2 || c.Scope != "domain" {
		t.Errorf("crawl config %+v", c)
	}
	if _, err := load(t, Defaults(), "--links-topic", "links"); err == nil {
		t.Error("--links-topic without a Kafka input topic accepted")
	}
}
