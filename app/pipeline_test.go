package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/stages/parse"
	"github.com/sluicehq/sluice/stages/sink"
	"github.com/sluicehq/sluice/testbed"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(binDir)
		os.Exit(code)
	}))
}

func writeLines(t *testing.T, path string, lines []string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// slowWriter makes the sink the bottleneck.
type slowWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	delay time.Duration
}

func (w *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(w.delay)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// TestSlowSinkBoundsWhatIsHeld: with the sink slowed, the number of URLs
// read but not yet written never exceeds the bound derived from the
// buffer sizes and worker counts, and nothing is lost.
func TestSlowSinkBoundsWhatIsHeld(t *testing.T) {
	const n = 1500
	site, err := testbed.StartSite(testbed.SiteConfig{Products: n})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	var urls strings.Builder
	for id := 1; id <= n; id++ {
		fmt.Fprintln(&urls, site.ProductURL(id))
	}
	out := &slowWriter{delay: 20 * time.Millisecond}
	cfg := jobConfig{URLReader: strings.NewReader(urls.String()), Out: "-", OutWriter: out, Log: zerolog.Nop(), Rules: parse.DefaultRules(), Direct: true}
	cfg.Fetch.Concurrency = 16
	cfg.Fetch.DomainRate = -1
	cfg.Fetch.Policy.AllowLoopback = true
	cfg.Parse.Workers = 2
	cfg.Sink = sink.JSONLConfig{BatchSize: 8, QueueSize: 8}
	p, err := build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	bound := p.inFlightBound()

	done := make(chan struct{})
	var maxHeld int
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			// Read first, then written: the difference can only be
			// under-estimated by the sampling, never over-estimated.
			read := int(p.src.Stats().Processed())
			p.mu.Lock()
			written := p.sum.Written
			p.mu.Unlock()
			maxHeld = max(maxHeld, read-written)
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	sum, err := p.run(context.Background(), context.Background())
	close(done)
	sampler.Wait()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bound %d, most held %d", bound, maxHeld)
	if maxHeld > bound {
		t.Fatalf("held %d inputs read but not written, over the bound %d", maxHeld, bound)
	}
	if maxHeld < bound/2 {
		t.Fatalf("held at most %d of a bound of %d: the sink was not the bottleneck, the test proves nothing", maxHeld, bound)
	}
	v, err := verifyResults(bytes.NewReader(out.buf.Bytes()), n)
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK() || v.Correct != n || sum.Written != n {
		t.Fatalf("written %d correct %d missing %d wrong %d", sum.Written, v.Correct, v.Missing, len(v.Wrong))
	}
}

// binDir holds the compiled command; TestMain removes it.
var binDir string

// buildBinary compiles the pipeline command once per test binary.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "sluice-bin")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "pipeline")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/pipeline")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// TestSIGTERMDrains interrupts a run fed through stdin and finds every URL
// it had read in the output.
func TestSIGTERMDrains(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	site, err := testbed.StartSite(testbed.SiteConfig{Products: n, Latency: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	out := filepath.Join(t.TempDir(), "out.jsonl")
	cmd := exec.Command(bin, "run", "--urls", "-", "--out", out, "--concurrency", "8", "--rate", "-1", "--log-level", "warn", "--allow-loopback", "--direct")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var urls []string
	for id := 1; id <= n; id++ {
		urls = append(urls, site.ProductURL(id))
	}
	// Feed the URLs while the run goes on; the writer blocks once the
	// pipeline's buffers are full and ends when the process stops reading.
	feedDone := make(chan struct{})
	go func() {
		defer close(feedDone)
		w := bufio.NewWriter(stdin)
		for _, u := range urls {
			if _, err := w.WriteString(u + "\n"); err != nil {
				return
			}
		}
		w.Flush()
	}()
	// Wait for some output, then interrupt.
	for {
		if b, _ := os.ReadFile(out); bytes.Count(b, []byte("\n")) >= 50 {
			break
		}
		if cmd.ProcessState != nil {
			t.Fatal("process ended early")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	stdin.Close()
	<-feedDone
	if err != nil {
		t.Fatalf("exit: %v\n%s", err, stderr.String())
	}
	m := regexp.MustCompile(`pages: (\d+) read, (\d+) written`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no summary in:\n%s", stderr.String())
	}
	read, _ := strconv.Atoi(m[1])
	written, _ := strconv.Atoi(m[2])
	if read == 0 || read >= n {
		t.Fatalf("read %d of %d: the interrupt did not land mid-run", read, n)
	}
	// The source reads in order, so what was read is the first `read` URLs;
	// each must be in the output exactly once.
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var r record.Result
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		if r.Error != nil {
			t.Errorf("%s: %v", r.URL, r.Error)
		}
		got[r.URL]++
	}
	if written != read || len(got) != read {
		t.Fatalf("read %d, written %d, distinct in output %d", read, written, len(got))
	}
	for _, u := range urls[:read] {
		if got[u] != 1 {
			t.Fatalf("%s read but found %d times in the output", u, got[u])
		}
	}
	t.Logf("interrupted after reading %d URLs; all %d written", read, written)
}
