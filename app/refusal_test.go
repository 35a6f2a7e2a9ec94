package app

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/guard"
	"github.com/sluicehq/sluice/testbed"
)

// TestSomeRefusalsAreReported: a run in which the URL policy refuses some
// inputs succeeds, and its summary says how many and which flag would
// allow them.
func TestSomeRefusalsAreReported(t *testing.T) {
	w := startWorld(t, testbed.SiteConfig{Products: 4}, 0)
	cfg := w.job(t, 4, 2, nil)
	cfg.URLReader = strings.NewReader(w.urls(4) + "http://10.1.2.3/x\nhttp://192.168.1.1/y\n")
	cfg.Fetch.Policy = guard.Config{AllowLoopback: true}
	cfg.Out = filepath.Join(t.TempDir(), "out.jsonl")
	sum, err := runJob(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	sum.print(&b)
	if sum.OK != 4 || !strings.Contains(b.String(), "refused by the URL policy: 2 of 6 inputs; 2 would need --allow-nets CIDR") {
		t.Fatalf("summary:\n%s", b.String())
	}
	for msg, flag := range map[string]string{
		"address 127.0.0.1 is loopback": "--allow-loopback", "port 25 is denied": "--allow-ports (or a narrower --deny-ports)",
		"host a.example is not allowed": "--allow-hosts", "host b.example is denied": "a narrower --deny-hosts",
		"address 10.0.0.1 is in denied net 10.0.0.0/8": "a narrower --deny-nets", "address 10.0.0.1 is private": "--allow-nets CIDR",
	} {
		if got := refusalFlag(msg); got != flag {
			t.Errorf("%q: %q, want %q", msg, got, flag)
		}
	}
}
