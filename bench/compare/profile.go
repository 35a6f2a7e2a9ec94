package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Profile is a CPU and an allocation profile of sluice over one run of
// every URL at concurrency C, taken in a run of its own (not one of the
// measured runs, which the profiler would slow down).
type Profile struct {
	C          int
	CPUFile    string
	AllocsFile string
	// HeapFile and GoroutineFile are taken mid-run, once half the records
	// are written: what is live (as of the last collection) and which
	// goroutines exist while the pipeline is at full concurrency.
	HeapFile      string
	GoroutineFile string
	CPUTop        string // go tool pprof -top
	AllocTop      string // go tool pprof -sample_index=alloc_space -top
	HeapTop       string // go tool pprof -sample_index=inuse_space -top, mid-run
	Verify        verification
	Err           error
}

// profile runs sluice at concurrency c with --pprof, its URLs fed on
// stdin so that the process stays up after the last page: the CPU
// profile spans the whole run, and the allocation profile (cumulative
// since start) is read once every record is written, before stdin is
// closed and the pipeline drains and exits.
func (w *world) profile(ctx context.Context, c int, dir string, rep *Report) Profile {
	p := Profile{C: c,
		CPUFile:       filepath.Join(dir, fmt.Sprintf("cpu-c%d.pb.gz", c)),
		AllocsFile:    filepath.Join(dir, fmt.Sprintf("allocs-c%d.pb.gz", c)),
		HeapFile:      filepath.Join(dir, fmt.Sprintf("heap-c%d.pb.gz", c)),
		GoroutineFile: filepath.Join(dir, fmt.Sprintf("goroutine-c%d.pb.gz", c)),
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.PeerTimeout)
	defer cancel()
	// The CPU profile must outlast the run: take the measured run's time
	// at this concurrency (or a guess) with a wide margin. Idle time adds
	// no samples.
	secs := 30
	if r, ok := rep.find(peerSluice, c); ok && r.Usage.Wall > 0 {
		secs = int(math.Ceil(2*r.Usage.Wall.Seconds())) + 3
	}
	addr, err := freeAddr()
	if err != nil {
		p.Err = err
		return p
	}
	out := filepath.Join(w.dir, fmt.Sprintf("profile-%d.jsonl", c))
	defer os.Remove(out)
	cmd := exec.CommandContext(ctx, w.pipeline, sluiceArgs(sluiceRun{
		Proxies: w.proxies, Rules: w.rules, Extra: w.cfg.SluiceFlags, Concurrency: c, URLs: "-", Out: out, MetricsAddr: addr, Pprof: true,
	})...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		p.Err = err
		return p
	}
	tail, _, err := startChild(cmd)
	if err != nil {
		p.Err = err
		return p
	}
	exited := make(chan struct{})
	var waitErr error // written before exited is closed
	// owner: profile, which always waits on exited
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	defer func() {
		_ = stdin.Close()
		select {
		case <-exited:
		case <-time.After(time.Minute):
			_ = cmd.Process.Signal(syscall.SIGTERM)
			<-exited
		}
		if waitErr != nil && p.Err == nil {
			p.Err = exitError("pipeline (profiled)", waitErr, tail)
		}
	}()
	base := "http://" + addr + "/debug/pprof/"
	if _, err := pollURL(ctx, base, exited); err != nil {
		p.Err = err
		return p
	}
	cpuDone := make(chan error, 1)
	go func() { // owner: profile, which receives from cpuDone on every path below
		cpuDone <- fetchTo(ctx, fmt.Sprintf("%sprofile?seconds=%d", base, secs), p.CPUFile)
	}()
	time.Sleep(100 * time.Millisecond) // let the profiler start before the first URL
	fed := make(chan error, 1)
	go func() { // owner: profile; ends when every URL is written or stdin is closed
		f, err := os.Open(w.urls)
		if err == nil {
			_, err = io.Copy(stdin, f)
			f.Close()
		}
		fed <- err
	}()
	err = waitLines(ctx, out, (w.cfg.N+1)/2, exited)
	if err == nil {
		err = fetchTo(ctx, base+"heap", p.HeapFile)
	}
	if err == nil {
		err = fetchTo(ctx, base+"goroutine", p.GoroutineFile)
	}
	if err == nil {
		err = waitLines(ctx, out, w.cfg.N, exited)
	}
	if ferr := <-cpuDone; err == nil {
		err = ferr
	}
	if err == nil {
		err = fetchTo(ctx, base+"allocs", p.AllocsFile)
	}
	_ = stdin.Close()
	if ferr := <-fed; err == nil && ferr != nil {
		err = fmt.Errorf("feeding URLs: %w", ferr)
	}
	if err != nil {
		p.Err = err
		return p
	}
	<-exited
	p.Verify, _ = verifyFile(out, w.site.URL(), w.cfg.N)
	p.CPUTop = pprofTop(ctx, w.pipeline, p.CPUFile)
	p.AllocTop = pprofTop(ctx, w.pipeline, p.AllocsFile, "-sample_index=alloc_space")
	p.HeapTop = pprofTop(ctx, w.pipeline, p.HeapFile, "-sample_index=inuse_space")
	return p
}

// fetchTo saves the body of GET u to path.
func fetchTo(ctx context.Context, u, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, io.LimitReader(resp.Body, 256<<20)); err != nil {
		f.Close()
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return f.Close()
}

// waitLines waits until the file at path holds n lines.
func waitLines(ctx context.Context, path string, n int, exited <-chan struct{}) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for countLines(path) < n {
		select {
		case <-exited:
			return fmt.Errorf("pipeline exited with %d of %d records written", countLines(path), n)
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d records: %w", n, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// pprofTop renders the top 25 entries of a profile with go tool pprof.
func pprofTop(ctx context.Context, bin, file string, extra ...string) string {
	args := append([]string{"tool", "pprof", "-top", "-nodecount=25"}, extra...)
	args = append(args, bin, file)
	out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("go tool pprof: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}
