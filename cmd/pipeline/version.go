package main

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"
)

// versionString names the module version and the VCS revision the binary
// was built from, as the Go toolchain recorded them in its build info:
// "github.com/sluicehq/sluice v1.2.3 (rev 0123abcd, 2026-12-04T15:00:00Z, modified) go1.26.8".
// A binary built from a checkout has version "(devel)"; one built with
// -buildvcs=false has no revision.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "sluice (no build info)"
	}
	return formatVersion(bi)
}

func formatVersion(bi *debug.BuildInfo) string {
	s := bi.Main.Path + " " + bi.Main.Version
	var rev, when, dirty string
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			rev = kv.Value
		case "vcs.time":
			when = kv.Value
		case "vcs.modified":
			if kv.Value == "true" {
				dirty = ", modified"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		s += " (rev " + rev
		if when != "" {
			s += ", " + when
		}
		s += dirty + ")"
	}
	return s + " " + bi.GoVersion
}

func cmdVersion(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		return usageErr{errors.New("version takes no arguments")}
	}
	_, err := fmt.Fprintln(stdout, versionString())
	return err
}
