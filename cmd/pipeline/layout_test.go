package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The package map of docs/architecture.md ("The package map"), as rules
// over the real import graph. A new package fails TestPackageMap until it
// is placed in layers (and in the map).

const module = "github.com/sluicehq/sluice"

// layers names every package of the module (relative to it, "" for the
// root package) and its place in the map.
var layers = map[string]string{
	"":              "root",
	"cmd/pipeline":  "cli",
	"app":           "wiring",
	"flow":          "below",
	"flow/flowtest": "testonly",
	"stages/source": "stage",
	"stages/fetch":  "stage",
	"stages/parse":  "stage",
	"stages/sink":   "stage",
	"governor":      "below",
	"kafka":         "below",
	"proxy":         "below",
	"guard":         "below",
	"hostmatch":     "below",
	"dnscache":      "below",
	"crawl":         "below",
	"warc":          "below",
	"record":        "below",
	"failure":       "below",
	"metrics":       "below",
	"watchdog":      "below",
	"waterfall":     "below",
	"progress":      "below",
	"testbed":       "below",
	"soak":          "below",
}

// listed is what go list -json tells of one package.
type listed struct {
	ImportPath string
	Imports    []string // direct, not counting tests
	Deps       []string // transitive, not counting tests
}

func goList(t *testing.T) map[string]listed {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	out, err := exec.Command(goTool, "list", "-json=ImportPath,Imports,Deps", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]listed{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs[rel(p.ImportPath)] = p
	}
	return pkgs
}

// rel returns path relative to the module, "" for the root package, and
// "-" for a package outside it.
func rel(path string) string {
	switch {
	case path == module:
		return ""
	case strings.HasPrefix(path, module+"/"):
		return strings.TrimPrefix(path, module+"/")
	}
	return "-"
}

func TestPackageMap(t *testing.T) {
	pkgs := goList(t)
	for p := range pkgs {
		if _, ok := layers[p]; !ok {
			t.Errorf("package %q is not in the package map: add it to docs/architecture.md and to layers", p)
		}
	}
	for p := range layers {
		if _, ok := pkgs[p]; !ok {
			t.Errorf("the package map names %q, which does not exist", p)
		}
	}
	ours := func(paths []string) []string {
		var out []string
		for _, d := range paths {
			if r := rel(d); r != "-" {
				out = append(out, r)
			}
		}
		return out
	}
	for name, p := range pkgs {
		deps := ours(p.Deps)
		layer := layers[name]
		for _, d := range deps {
			// Stages never import each other.
			if layer == "stage" && layers[d] == "stage" && d != name {
				t.Errorf("%s imports %s: stages never import each other", name, d)
			}
			// Below the stages nothing imports a stage, the wiring or the CLI.
			if layer == "below" && (layers[d] == "stage" || layers[d] == "wiring" || layers[d] == "cli") {
				t.Errorf("%s imports %s: %s is below the stages, app and the CLI", name, d, name)
			}
		}
		// Only the CLI and the root package import app.
		if slices.Contains(ours(p.Imports), "app") && layer != "cli" && layer != "root" {
			t.Errorf("%s imports app: only cmd/pipeline and the root package do", name)
		}
		// Nothing but tests links testing.
		if layer != "testonly" && slices.Contains(p.Deps, "testing") {
			t.Errorf("%s links package testing: only tests may", name)
		}
	}
	// Tighter rules for single packages: what each may link of ours, and
	// of net/http.
	only := map[string][]string{
		"record":    {},
		"failure":   {},
		"hostmatch": {},
		"dnscache":  {},
		"warc":      {},
		"testbed":   {},
		"governor":  {"failure", "hostmatch"},
		"proxy":     {"failure", "hostmatch"},
		"guard":     {"failure", "hostmatch"},
		"crawl":     {"failure", "hostmatch", "record"},
		"kafka":     {"record"},
		"flow":      {"record"},
		"progress":  {"flow", "record"},
		"soak":      {"record", "testbed"},
		"waterfall": {"record"},
		"metrics":   {"flow", "governor", "proxy", "record", "failure", "hostmatch"},
		"watchdog":  {"flow", "governor", "metrics", "proxy", "record", "failure", "hostmatch"},
	}
	for name, allowed := range only {
		for _, d := range ours(pkgs[name].Deps) {
			if !slices.Contains(allowed, d) {
				t.Errorf("%s imports %s; the package map allows it only %v", name, d, allowed)
			}
		}
	}
	for _, name := range []string{"governor", "proxy", "hostmatch", "dnscache", "failure"} {
		if slices.Contains(pkgs[name].Deps, "net/http") {
			t.Errorf("%s links net/http: it knows host keys and outcomes, not HTTP", name)
		}
	}
}
