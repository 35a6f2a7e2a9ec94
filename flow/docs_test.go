package flow

import (
	"os"
	"strings"
	"testing"
)

// TestArchitectureDocShowsTheChain: the chain quoted in
// docs/architecture.md is the one Scrape runs.
func TestArchitectureDocShowsTheChain(t *testing.T) {
	doc, err := os.ReadFile("../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	code, err := os.ReadFile("scrape.go")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "```go\n")
	if !ok {
		t.Fatal("docs/architecture.md has no Go block")
	}
	block, _, _ = strings.Cut(block, "```")
	for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
		// The doc qualifies the package's names; the code does not.
		if !strings.Contains(string(code), strings.TrimPrefix(strings.TrimSpace(line), "flow.")) {
			t.Errorf("docs/architecture.md shows %q, which scrape.go does not have", strings.TrimSpace(line))
		}
	}
}
