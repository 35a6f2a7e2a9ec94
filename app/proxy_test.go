package app

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/proxy"
)

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// TestPoolStatesReportQuarantine: the metrics and the watchdog see the
// pool's quarantine.
func TestPoolStatesReportQuarantine(t *testing.T) {
	ps := []*proxy.Proxy{}
	for i := range 2 {
		p, err := proxy.Parse(fmt.Sprintf("p%d", i+1), fmt.Sprintf("http://127.0.0.1:%d", 40000+i))
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	pool, err := proxy.New(ps)
	if err != nil {
		t.Fatal(err)
	}
	l, err := pool.Acquire(t.Context(), proxy.Request{Domain: "d", Avoid: []string{"p2"}})
	if err != nil {
		t.Fatal(err)
	}
	l.Release(proxy.Outcome{Class: failure.ProxyAuth, Status: 407})
	states := poolStates(pool)()
	if len(states) != 2 || states[0] != (metrics.ProxyState{ID: "p1", Quarantined: true}) || states[1] != (metrics.ProxyState{ID: "p2"}) {
		t.Errorf("states %+v", states)
	}
}
