package main

import (
	"flag"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDocsCommands parses every `go run .` command line of
// docs/performance.md and of the README's performance section with the
// harness's own flags, and checks that the doc's flag table lists every
// flag.
func TestDocsCommands(t *testing.T) {
	doc, err := os.ReadFile("../../docs/performance.md")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	env := func(string) string { return "127.0.0.1:9092" }
	n := 0
	for _, line := range strings.Split(string(doc)+"\n"+string(readme), "\n") {
		_, cmd, ok := strings.Cut(line, "go run .")
		if !ok || strings.Contains(line, "`go run") || cmd != "" && cmd[0] != ' ' {
			continue // not this program (go run ./cmd/pipeline is the root's test's)
		}
		cmd, _, _ = strings.Cut(cmd, "#")
		args := shellWords(cmd)
		if _, err := parseFlags(newFlagSet(io.Discard), args, env); err != nil {
			t.Errorf("docs: %q: %v", strings.TrimSpace(line), err)
		}
		n++
	}
	if n < 3 {
		t.Errorf("found %d `go run .` command lines in the doc, want at least 3", n)
	}
	fs := newFlagSet(io.Discard)
	if _, err := parseFlags(fs, nil, env); err != nil {
		t.Fatal(err)
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !regexp.MustCompile("`-" + regexp.QuoteMeta(f.Name) + "`").Match(doc) {
			t.Errorf("docs/performance.md does not list the flag -%s", f.Name)
		}
	})
}

// shellWords splits s on spaces, keeping "double-quoted" words (which may
// be empty) whole.
func shellWords(s string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`"[^"]*"|\S+`).FindAllString(s, -1) {
		out = append(out, strings.Trim(m, `"`))
	}
	return out
}
