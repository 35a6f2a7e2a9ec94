package governor

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the governor free of HTTP and of the pipeline's
// records and stages: it knows host keys, proxy ids and outcomes.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	forbidden := []string{"net/http", "github.com/sluicehq/sluice/record", "github.com/sluicehq/sluice/flow",
		"github.com/sluicehq/sluice/proxy", "github.com/sluicehq/sluice/stages/"}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasSuffix(f, "/") && strings.HasPrefix(dep, f) {
				t.Errorf("governor depends on %s", dep)
			}
		}
	}
}
