package app

// End-to-end tests of `pipeline run` and `pipeline replay` on Kafka: the
// pipeline runs as a separate process (built by the test) against a real
// broker (SLUICE_KAFKA_BROKERS, see .ci/setup-kafka.sh) and the local
// catalog site, so that it can be killed, restarted and measured.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

// pipelineBinary builds the pipeline command once (see buildBinary).
func pipelineBinary(t *testing.T) string {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// proc is a pipeline process.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{}
	err  error // set before done closes
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startPipeline runs `pipeline args...`; the process is killed when the
// test ends if it is still running.
func startPipeline(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, log: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(pipelineBinary(t), args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { // owner: p; ends when the process exits
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("%s output (last 3000 bytes):\n%s", p.name, lastBytes(p.log.String(), 3000))
		}
	})
	return p
}

// lastBytes is the end of s, at most n bytes.
func lastBytes(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// signal sends sig and waits for the process to exit; it returns the exit
// error (nil for exit status 0).
func (p *proc) signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(90 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("%s did not exit after %v", p.name, sig)
	}
	return p.err
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to drain and exit (SIGTERM) and fails the test
// unless it exits with status 0.
func (p *proc) stop() {
	p.t.Helper()
	if err := p.signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("%s: exit after SIGTERM: %v\n%s", p.name, err, lastBytes(p.log.String(), 3000))
	}
}

// eventually polls cond until it holds, failing after a generous deadline
// (a safety net, not a timing assertion). The processes must stay alive.
func eventually(t *testing.T, what string, cond func() bool, procs ...*proc) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		for _, p := range procs {
			if p.exited() {
				t.Fatalf("%s exited (%v) while waiting for %s:\n%s", p.name, p.err, what, lastBytes(p.log.String(), 3000))
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kafkaJob is a set of unique topics and a group for one test.
type kafkaJob struct {
	brokers                     []string
	input, results, pages, dead string
	group                       string
	partitions                  int
	window                      int
}

func newKafkaJob(t *testing.T, brokers []string, partitions, window int) *kafkaJob {
	return &kafkaJob{
		brokers:    brokers,
		input:      testbed.CreateKafkaTopic(t, brokers, "urls", partitions),
		results:    testbed.CreateKafkaTopic(t, brokers, "results", 2),
		pages:      testbed.CreateKafkaTopic(t, brokers, "pages", 2),
		dead:       testbed.CreateKafkaTopic(t, brokers, "dead", 1),
		group:      testbed.UniqueName("sluice"),
		partitions: partitions,
		window:     window,
	}
}

// args are the flags of a streaming run of this job, then extra.
func (j *kafkaJob) args(extra ...string) []string {
	args := []string{"run",
		"--kafka-brokers", strings.Join(j.brokers, ","), "--kafka-topic", j.input, "--kafka-group", j.group,
		"--kafka-results-topic", j.results, "--kafka-dead-topic", j.dead,
		"--kafka-window", strconv.Itoa(j.window), "--kafka-session-timeout", "3s", "--kafka-commit-interval", "200ms",
		"--rate", "-1", "--concurrency", "32", "--log-level", "warn", "--drain-timeout", "20s",
		"--allow-loopback", // the test site is on loopback
	}
	if !slices.Contains(extra, "--proxies") {
		args = append(args, "--direct")
	}
	return append(args, extra...)
}

// outputs reads the results and dead-letter topics: per URL how many
// results, and per raw input how many dead letters.
func (j *kafkaJob) outputs(t *testing.T) (results map[string][]record.Result, dead map[string]int) {
	t.Helper()
	results, dead = map[string][]record.Result{}, map[string]int{}
	for _, m := range testbed.ReadKafka(t, j.brokers, j.results) {
		var r record.Result
		if err := json.Unmarshal(m.Value, &r); err != nil {
			t.Fatalf("result record: %v", err)
		}
		if string(m.Key) != r.URL {
			t.Fatalf("result keyed %q for %q", m.Key, r.URL)
		}
		results[r.URL] = append(results[r.URL], r)
	}
	for _, m := range testbed.ReadKafka(t, j.brokers, j.dead) {
		var d record.DeadLetter
		if err := json.Unmarshal(m.Value, &d); err != nil {
			t.Fatalf("dead letter: %v", err)
		}
		if d.Topic != j.input || d.Error.Class != "bad_input" {
			t.Fatalf("dead letter from %q with error %+v", d.Topic, d.Error)
		}
		dead[string(d.Value)]++
	}
	return results, dead
}

// written is how many records the results and dead-letter topics hold.
func (j *kafkaJob) written(t *testing.T) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int64
	for _, topic := range []string{j.results, j.dead} {
		ends, err := testbed.EndOffsets(ctx, j.brokers, topic)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ends {
			n += e
		}
	}
	return n
}

func (j *kafkaJob) committed(t *testing.T) map[int]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := testbed.CommittedOffsets(ctx, j.brokers, j.group, j.input, j.partitions)
	if err != nil {
		t.Fatal(err)
	}
	return offs
}

func (j *kafkaJob) assignments(t *testing.T) map[string][]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := testbed.GroupAssignments(ctx, j.brokers, j.group, j.input)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func productURLs(site *testbed.Site, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = site.ProductURL(i + 1)
	}
	return out
}

// checkProducts fails unless every one of urls has a correct result.
func checkProducts(t *testing.T, results map[string][]record.Result, urls []string) {
	t.Helper()
	for _, u := range urls {
		rs := results[u]
		if len(rs) == 0 {
			t.Fatalf("no result for %s", u)
		}
		id, _ := productID(u)
		if msg := checkResult(rs[0], testbed.ExpectedProduct(id)); msg != "" {
			t.Fatalf("%s: %s", u, msg)
		}
	}
}

func duplicates(results map[string][]record.Result, dead map[string]int) int {
	n := 0
	for _, rs := range results {
		n += len(rs) - 1
	}
	for _, c := range dead {
		n += c - 1
	}
	return n
}

// poison are inputs that are not URL messages: each must end as a dead
// letter, and the run must go on.
var poison = []string{"\xff\xfe not utf-8", "ftp://example.com/x", `{"url": "http://x/", "bogus": 1}`, "not a url", ""}

// TestKafkaKill9 kills the pipeline with SIGKILL three times at random
// points of a 5,000-URL run, restarting it each time: at the end every
// input has a result or a dead letter, and the duplicates are at most the
// uncommitted window (partitions × window) per kill.
func TestKafkaKill9(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	site, err := testbed.StartSite(testbed.SiteConfig{Products: 5000, PageBytes: 2 << 10, Latency: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	const partitions, window, kills = 4, 64, 3
	job := newKafkaJob(t, brokers, partitions, window)
	urls := productURLs(site, 5000)
	values := append([]string(nil), urls...)
	for i, p := range poison { // spread the poison through the input
		at := (i + 1) * len(values) / (len(poison) + 1)
		values = append(values[:at], append([]string{p}, values[at:]...)...)
	}
	testbed.ProduceKafka(t, brokers, job.input, testbed.Spread(values, partitions))

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	p := startPipeline(t, "pipeline#1", job.args()...)
	for k := 1; k <= kills; k++ {
		// A random point within the k-th quarter of the run.
		at := int64(k*len(values)/4 + rng.IntN(len(values)/5))
		eventually(t, fmt.Sprintf("%d records written", at), func() bool { return job.written(t) >= at }, p)
		_ = p.signal(syscall.SIGKILL)
		t.Logf("kill %d at %d records written", k, job.written(t))
		p = startPipeline(t, fmt.Sprintf("pipeline#%d", k+1), job.args()...)
	}
	var results map[string][]record.Result
	var dead map[string]int
	eventually(t, "every input's output", func() bool {
		if job.written(t) < int64(len(values)) {
			return false
		}
		results, dead = job.outputs(t)
		return len(results) == len(urls) && len(dead) == len(poison)
	}, p)
	p.stop()
	results, dead = job.outputs(t)
	checkProducts(t, results, urls)
	for _, v := range poison {
		if dead[v] == 0 {
			t.Fatalf("no dead letter for %q", v)
		}
	}
	dups, bound := duplicates(results, dead), partitions*window*kills
	t.Logf("%d inputs, %d records, %d duplicates after %d kills (bound %d = %d partitions × window %d × %d kills)",
		len(values), job.written(t), dups, kills, bound, partitions, window, kills)
	if dups > bound {
		t.Fatalf("%d duplicates, more than the bound %d", dups, bound)
	}
	if c := job.committed(t); c[0]+c[1]+c[2]+c[3] != int64(len(values)) {
		t.Fatalf("committed offsets %v do not cover the %d inputs", c, len(values))
	}
}

// TestKafkaStalledURLIsRedelivered stalls one URL while the URLs after it
// finish: the committed offset stops at the stalled one, and after a kill
// the next process fetches it again.
func TestKafkaStalledURLIsRedelivered(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	site, err := testbed.StartSite(testbed.SiteConfig{Products: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	var stallHits atomic.Int64
	var released atomic.Bool
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stallHits.Add(1)
		if !released.Load() {
			<-r.Context().Done() // the first fetch never gets an answer
			return
		}
		fmt.Fprint(w, `<html><h1>Stalled product</h1><span class="price">$1.00</span></html>`)
	}))
	defer stall.Close()
	stallURL := stall.URL + "/product/stalled"

	job := newKafkaJob(t, brokers, 1, 256)
	values := append(productURLs(site, 20), stallURL)
	values = append(values, productURLs(site, 60)[20:]...)
	testbed.ProduceKafka(t, brokers, job.input, testbed.Spread(values, 1))
	const stallOffset = 20

	p := startPipeline(t, "pipeline#1", job.args("--timeout", "10m", "--concurrency", "4")...)
	eventually(t, "the URLs after the stalled one", func() bool { return job.written(t) == int64(len(values)-1) }, p)
	if stallHits.Load() != 1 {
		t.Fatalf("stalled URL fetched %d times", stallHits.Load())
	}
	// Commits go on (every 200 ms): the committed offset reaches the stalled
	// record and never passes it.
	eventually(t, "the commit up to the stalled URL", func() bool { return job.committed(t)[0] == stallOffset }, p)
	time.Sleep(time.Second) // several more commit rounds
	if c := job.committed(t)[0]; c != stallOffset {
		t.Fatalf("committed offset %d with offset %d unfinished", c, stallOffset)
	}
	_ = p.signal(syscall.SIGKILL)
	if c := job.committed(t)[0]; c != stallOffset {
		t.Fatalf("committed offset %d after the kill, want %d", c, stallOffset)
	}

	released.Store(true)
	p = startPipeline(t, "pipeline#2", job.args()...)
	var results map[string][]record.Result
	eventually(t, "the stalled URL's result", func() bool {
		// Everything is written once everything is committed.
		return job.committed(t)[0] == int64(len(values))
	}, p)
	p.stop()
	results, _ = job.outputs(t)
	if n := stallHits.Load(); n != 2 {
		t.Fatalf("stalled URL fetched %d times, want 2 (once per process)", n)
	}
	if r := results[stallURL][0]; r.Error != nil || r.Fields["name"] != "Stalled product" {
		t.Fatalf("stalled URL result %+v", r)
	}
	checkProducts(t, results, productURLs(site, 60))
	// What came after the stalled record was delivered again: it had not
	// been committed.
	if dups := duplicates(results, nil); dups != len(values)-1-stallOffset {
		t.Fatalf("%d duplicates, want the %d records after the stalled one", dups, len(values)-1-stallOffset)
	}
}

// TestKafkaTwoInstances runs two processes in one group: they split the
// partitions and together cover every URL; when one stops, the other
// takes its partitions over and nothing is lost.
func TestKafkaTwoInstances(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	site, err := testbed.StartSite(testbed.SiteConfig{Products: 2000})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	job := newKafkaJob(t, brokers, 4, 128)
	dir := t.TempDir()
	outA, outB := filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl")
	args := func(out string) []string {
		return []string{"run", "--kafka-brokers", strings.Join(brokers, ","), "--kafka-topic", job.input, "--kafka-group", job.group,
			"--out", out, "--kafka-session-timeout", "3s", "--kafka-commit-interval", "200ms", "--kafka-window", "128",
			"--rate", "120", "--concurrency", "8", "--log-level", "warn", "--allow-loopback", "--direct"}
	}
	a := startPipeline(t, "a", args(outA)...)
	eventually(t, "a alone in the group", func() bool { return len(job.assignments(t)) == 1 }, a)
	b := startPipeline(t, "b", args(outB)...)
	var split map[string][]int
	eventually(t, "the split", func() bool {
		split = job.assignments(t)
		if len(split) != 2 {
			return false
		}
		for _, ps := range split {
			if len(ps) != 2 {
				return false
			}
		}
		return true
	}, a, b)
	covered := map[int]bool{}
	for _, ps := range split {
		for _, p := range ps {
			covered[p] = true
		}
	}
	if len(covered) != 4 {
		t.Fatalf("members cover partitions %v", split)
	}
	urls := productURLs(site, 2000)
	testbed.ProduceKafka(t, brokers, job.input, testbed.Spread(urls, 4))
	eventually(t, "both instances' results", func() bool {
		return len(readResultsFile(t, outA)) >= 200 && len(readResultsFile(t, outB)) >= 200
	}, a, b)
	b.stop()
	fromB := readResultsFile(t, outB)
	eventually(t, "a takes every partition", func() bool {
		as := job.assignments(t)
		return len(as) == 1 && len(firstValue(as)) == 4
	}, a)
	var all map[string][]record.Result
	eventually(t, "every URL", func() bool {
		all = readResultsFile(t, outA)
		for u, rs := range fromB {
			all[u] = append(all[u], rs...)
		}
		return len(all) == len(urls)
	}, a)
	a.stop()
	checkProducts(t, all, urls)
	fromA := readResultsFile(t, outA)
	t.Logf("a wrote %d URLs, b %d before it stopped", len(fromA), len(fromB))
	if len(fromA) == len(urls) && len(fromB) == 0 {
		t.Fatal("b did no work")
	}
}

func firstValue(m map[string][]int) []int {
	for _, v := range m {
		return v
	}
	return nil
}

// readResultsFile reads a JSONL results file that may still be written
// to: a last line without its newline yet is not counted.
func readResultsFile(t *testing.T, path string) map[string][]record.Result {
	t.Helper()
	out := map[string][]record.Result{}
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1]
	} else {
		data = nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var r record.Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out[r.URL] = append(out[r.URL], r)
	}
	return out
}

// TestKafkaSlowSinkBoundedMemory slows the sink (results go to a FIFO the
// test reads slowly) while input keeps arriving: consumer lag grows, and
// the process's resident memory stays within a bound far below what the
// lagging input would take if it were buffered.
func TestKafkaSlowSinkBoundedMemory(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	site, err := testbed.StartSite(testbed.SiteConfig{Products: 1000, PageBytes: 32 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	job := newKafkaJob(t, brokers, 2, 512)
	fifo := filepath.Join(t.TempDir(), "results.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// Every input message carries 4 KiB of meta, so that buffering the lag
	// would show: 16,000 messages are 64 MiB.
	pad := strings.Repeat("x", 4<<10)
	batch := func(round int) []kafka.Message {
		var vals []string
		for i := range 2000 {
			vals = append(vals, fmt.Sprintf(`{"url": %q, "meta": {"round": %d, "pad": %q}}`, site.ProductURL(i%1000+1), round, pad))
		}
		return testbed.Spread(vals, 2)
	}
	testbed.ProduceKafka(t, brokers, job.input, batch(0))
	p := startPipeline(t, "pipeline", "run", "--kafka-brokers", strings.Join(brokers, ","), "--kafka-topic", job.input, "--kafka-group", job.group,
		"--out", fifo, "--kafka-window", "512", "--rate", "-1", "--concurrency", "16", "--log-level", "warn", "--allow-loopback", "--direct")
	r, err := os.OpenFile(fifo, os.O_RDONLY, 0) // blocks until the pipeline opens it
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	readLines := func(n int) {
		for range n {
			if _, err := br.ReadBytes('\n'); err != nil {
				t.Fatalf("read results: %v", err)
			}
		}
	}
	lag := func() int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ends, err := testbed.EndOffsets(ctx, brokers, job.input)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for part, c := range job.committed(t) {
			n += ends[part] - max(c, 0)
		}
		return n
	}
	var lags, rss []int64
	for round := 1; round <= 8; round++ {
		testbed.ProduceKafka(t, brokers, job.input, batch(round))
		readLines(100) // the slow consumer of results
		time.Sleep(300 * time.Millisecond)
		if p.exited() {
			t.Fatalf("pipeline exited: %v\n%s", p.err, p.log.String())
		}
		lags = append(lags, lag())
		rss = append(rss, vmRSS(t, p.cmd.Process.Pid))
	}
	t.Logf("lag per round: %v", lags)
	t.Logf("VmRSS per round (KiB): %v", rss)
	for i := 1; i < len(lags); i++ {
		if lags[i] <= lags[i-1] {
			t.Fatalf("lag did not grow: %v", lags)
		}
	}
	const boundKiB = 24 << 10 // 24 MiB of growth, against 56 MiB of added lag
	if grow := maxOf(rss[1:]) - rss[1]; grow > boundKiB {
		t.Fatalf("resident memory grew by %d KiB while lagging (bound %d KiB): %v", grow, boundKiB, rss)
	}
	_ = p.signal(syscall.SIGKILL)
}

func maxOf(xs []int64) int64 {
	m := xs[0]
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

// vmRSS reads the resident set size of a process, in KiB.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no VmRSS in /proc status")
	return 0
}

// TestKafkaBrokerRestart restarts the broker (SIGKILL, then start again on
// the same port and data) in the middle of a run: the run resumes and
// every URL gets its result.
func TestKafkaBrokerRestart(t *testing.T) {
	broker := testbed.StartKafkaBroker(t)
	brokers := []string{broker.Addr()}
	site, err := testbed.StartSite(testbed.SiteConfig{Products: 2000})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	job := newKafkaJob(t, brokers, 2, 256)
	urls := productURLs(site, 2000)
	testbed.ProduceKafka(t, brokers, job.input, testbed.Spread(urls, 2))
	p := startPipeline(t, "pipeline", job.args("--rate", "150", "--kafka-session-timeout", "6s")...)
	eventually(t, "the run under way", func() bool { return job.written(t) >= 300 }, p)
	broker.Stop(syscall.SIGKILL)
	before := site.Stats().Requests
	time.Sleep(2 * time.Second) // the pipeline meets a dead broker
	broker.Start()
	t.Logf("broker restarted; the site answered %d requests meanwhile", site.Stats().Requests-before)
	var results map[string][]record.Result
	eventually(t, "every URL's result", func() bool {
		if job.written(t) < int64(len(urls)) {
			return false
		}
		results, _ = job.outputs(t)
		return len(results) == len(urls)
	}, p)
	p.stop()
	checkProducts(t, results, urls)
	t.Logf("%d results for %d URLs", job.written(t), len(urls))
}

// TestKafkaReplay runs a job that keeps its pages, then replays the pages
// topic: the results are the same, and the site sees no request.
func TestKafkaReplay(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	site, err := testbed.StartSite(testbed.SiteConfig{Products: 300})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	job := newKafkaJob(t, brokers, 2, 512)
	urls := productURLs(site, 300)
	testbed.ProduceKafka(t, brokers, job.input, testbed.Spread(urls, 2))
	start := time.Now()
	p := startPipeline(t, "run", job.args("--kafka-pages-topic", job.pages)...)
	eventually(t, "every result", func() bool { return job.written(t) >= int64(len(urls)) }, p)
	p.stop()
	original, _ := job.outputs(t)
	checkProducts(t, original, urls)

	requests := site.Stats().Requests
	out := filepath.Join(t.TempDir(), "replay.jsonl")
	rp := startPipeline(t, "replay", "replay", "--kafka-brokers", strings.Join(brokers, ","), "--kafka-pages-topic", job.pages, "--out", out, "--log-level", "warn")
	<-rp.done
	if rp.err != nil {
		t.Fatalf("replay: %v\n%s", rp.err, rp.log.String())
	}
	if n := site.Stats().Requests - requests; n != 0 {
		t.Fatalf("replay sent %d requests to the site", n)
	}
	replayed := readResultsFile(t, out)
	if len(replayed) != len(urls) {
		t.Fatalf("replay gave %d results for %d pages", len(replayed), len(urls))
	}
	for _, u := range urls {
		a, b := original[u][0], replayed[u][0]
		if len(replayed[u]) != 1 {
			t.Fatalf("%s replayed %d times", u, len(replayed[u]))
		}
		if !sameResult(a, b) {
			ja, _ := json.Marshal(a)
			jb, _ := json.Marshal(b)
			t.Fatalf("replay differs for %s:\n run:    %s\n replay: %s", u, ja, jb)
		}
	}

	// From an offset: only what each partition holds from there on.
	rp = startPipeline(t, "replay-from", "replay", "--kafka-brokers", strings.Join(brokers, ","), "--kafka-pages-topic", job.pages,
		"--from-offset", "100", "--out", out+".2", "--log-level", "warn")
	<-rp.done
	if rp.err != nil {
		t.Fatalf("replay --from-offset: %v\n%s", rp.err, rp.log.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := testbed.EndOffsets(ctx, brokers, job.pages)
	if err != nil {
		t.Fatal(err)
	}
	var want int
	for _, e := range ends {
		want += int(max(e-100, 0))
	}
	if got := len(readResultsFile(t, out+".2")); got != want {
		t.Fatalf("replay from offset 100 gave %d results, want %d", got, want)
	}
	// From a time: before the run, every page; after it, none.
	for _, tc := range []struct {
		from string
		want int
	}{{start.Add(-time.Minute).Format(time.RFC3339), len(urls)}, {time.Now().Add(time.Hour).Format(time.RFC3339), 0}} {
		path := filepath.Join(t.TempDir(), "replay-time.jsonl")
		rp = startPipeline(t, "replay-time", "replay", "--kafka-brokers", strings.Join(brokers, ","), "--kafka-pages-topic", job.pages,
			"--from-time", tc.from, "--out", path, "--log-level", "warn")
		<-rp.done
		if rp.err != nil {
			t.Fatalf("replay --from-time %s: %v\n%s", tc.from, rp.err, rp.log.String())
		}
		if got := len(readResultsFile(t, path)); got != tc.want {
			t.Fatalf("replay from %s gave %d results, want %d", tc.from, got, tc.want)
		}
	}
	if n := site.Stats().Requests - requests; n != 0 {
		t.Fatalf("replays sent %d requests to the site", n)
	}
}

// sameResult compares what replay must reproduce: everything but the
// elapsed time (a page keeps the timings of its last attempt only).
func sameResult(a, b record.Result) bool {
	a.ElapsedMS, b.ElapsedMS = 0, 0
	return reflect.DeepEqual(a, b)
}
