package app

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFileThenFlags(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "job.yaml", `
urls: in.txt
out: out.jsonl
fetch:
  concurrency: 50
  rate: 3
  max_attempts: 2
  stagger_min: 50ms
  stagger_max: 80ms
  adaptive:
    start: 0.25
domains:
  - domain: shop.example
    per_ip_per_minute: 30
    proxies: 10
`)
	writeFile(t, dir, "in.txt", "https://example.com/\n")
	c, err := load(t, Defaults(), "--config", path, "--concurrency", "7")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := newJob(c, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	f := cfg.Fetch
	if f.Concurrency != 7 || f.DomainRate != 3 || f.MaxAttempts != 2 || f.StaggerMin != 50*time.Millisecond || f.Adaptive.Start != 0.25 {
		t.Errorf("fetch config %+v: want the flag's concurrency 7 and the file's other values", f)
	}
	if len(f.Domains) != 1 || f.Domains[0].PerIPPerMinute != 30 || f.Domains[0].Proxies != 10 {
		t.Errorf("domains %+v", f.Domains)
	}
	if cfg.URLs != filepath.Join(dir, "in.txt") || cfg.Out != filepath.Join(dir, "out.jsonl") {
		t.Errorf("paths %q %q not relative to the config file", cfg.URLs, cfg.Out)
	}
	bad := writeFile(t, dir, "bad.yaml", "fetch:\n  concurency: 5\n")
	if _, err := load(t, Defaults(), "--config", bad); err == nil || !strings.Contains(err.Error(), "concurency") {
		t.Errorf("misspelt key: %v, want an error naming it", err)
	}
}

func TestREADMEConfigExampleLoads(t *testing.T) {
	readme, err := os.ReadFile("../docs/governor.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "## Job config (`--config FILE`)")
	if !ok {
		t.Fatal("docs/governor.md has no job config section")
	}
	_, rest, _ = strings.Cut(rest, "```yaml\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("docs/governor.md job config section has no yaml block")
	}
	path := writeFile(t, t.TempDir(), "job.yaml", block)
	c, err := LoadFile(path)
	if err != nil {
		t.Fatalf("the example config of docs/governor.md does not load: %v", err)
	}
	cfg := jobConfig{Fetch: c.FetchStage()}
	if len(cfg.Fetch.Domains) != 2 || cfg.Fetch.Concurrency != 200 || cfg.Fetch.Adaptive.LatencyFloor != 25*time.Millisecond {
		t.Errorf("loaded %+v", cfg.Fetch)
	}
}
