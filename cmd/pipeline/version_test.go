package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// TestGoInstallAndVersion installs the command the way the README says
// (go install <module>/cmd/pipeline, here from the checkout) and runs
// `pipeline version` and `pipeline --version` on the installed binary.
func TestGoInstallAndVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	gobin := t.TempDir()
	cmd := exec.Command("go", "install", "github.com/sluicehq/sluice/cmd/pipeline")
	cmd.Env = append(os.Environ(), "GOBIN="+gobin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install: %v\n%s", err, out)
	}
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(filepath.Join(gobin, "pipeline"), arg).CombinedOutput()
		if err != nil {
			t.Fatalf("pipeline %s: %v\n%s", arg, err, out)
		}
		if !strings.HasPrefix(string(out), "github.com/sluicehq/sluice ") || !strings.Contains(string(out), " go1.") {
			t.Errorf("pipeline %s printed %q, want the module path, version and Go version", arg, out)
		}
	}
}

func TestFormatVersion(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/sluicehq/sluice", Version: "v0.3.0"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"},
			{Key: "vcs.time", Value: "2026-12-04T15:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		}}
	want := "github.com/sluicehq/sluice v0.3.0 (rev 0123456789ab, 2026-12-04T15:00:00Z, modified) go1.26.8"
	if got := formatVersion(bi); got != want {
		t.Errorf("formatVersion = %q, want %q", got, want)
	}
	bi.Settings = nil
	if got := formatVersion(bi); got != "github.com/sluicehq/sluice v0.3.0 go1.26.8" {
		t.Errorf("without VCS info: %q", got)
	}
}
