package testbed

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPipelineDoesNotLinkTesting: the production binary, which links
// testbed for its demo, must not link package testing (whose flags and
// init would come with it). Neither testbed nor anything else the binary
// imports may import it.
func TestPipelineDoesNotLinkTesting(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	for _, pkg := range []string{"github.com/sluicehq/sluice/cmd/pipeline", "github.com/sluicehq/sluice/testbed"} {
		out, err := exec.Command(goTool, "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == "testing" {
				who, _ := exec.Command(goTool, "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}}{{if eq . "testing"}} imports testing{{end}}{{end}}`, pkg).Output()
				t.Fatalf("%s links package testing:\n%s", pkg, importers(string(who)))
			}
		}
	}
}

// importers keeps the lines of go list's output that name an importer of
// testing.
func importers(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasSuffix(l, " imports testing") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}
