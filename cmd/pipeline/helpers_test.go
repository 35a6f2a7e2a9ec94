package main

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/testbed"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeLines(t *testing.T, path string, lines []string) {
	t.Helper()
	write(t, path, strings.Join(lines, "\n")+"\n")
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := dir + "/" + name
	write(t, p, body)
	return p
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

// syncBuffer collects output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// world is a catalog site and, when asked for, a proxy farm for one test.
type world struct {
	site *testbed.Site
	farm *testbed.Farm
}

func startWorld(t *testing.T, site testbed.SiteConfig, nproxies int) *world {
	t.Helper()
	w := &world{}
	var err error
	if w.site, err = testbed.StartSite(site); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.site.Close() })
	if nproxies == 0 {
		return w
	}
	if w.farm, err = testbed.StartFarm(testbed.FarmConfig{N: nproxies}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.farm.Close() })
	return w
}

// urls lists product pages 1..n of the site, one per line.
func (w *world) urls(n int) string {
	var b strings.Builder
	for id := 1; id <= n; id++ {
		b.WriteString(w.site.ProductURL(id))
		b.WriteByte('\n')
	}
	return b.String()
}

// readLines returns the lines of a file.
func readLines(t *testing.T, path string) []string {
	t.Helper()
	return strings.Split(strings.TrimRight(string(read(t, path)), "\n"), "\n")
}
