package app

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/testbed"
)

// TestKafkaRebalanceChurn runs up to three member processes of one group
// on a 12-partition topic of 20,000 URLs (a catalog site behind a farm of
// local proxies) and starts, stops (SIGTERM) and kills (SIGKILL) members
// every few seconds for about two minutes, or until every input is done.
// A sampler reads the group's committed offsets from the broker every
// 200 ms: none may ever move backwards. At the end every URL has a result,
// and the duplicates stay under the bound the settings give: a killed
// member loses at most a window of delivered, uncommitted inputs per
// partition it owns; a member that gives its partitions up in a rebalance
// or a graceful stop waits for what it has in flight and drops what it has
// not started, so only the inputs still unfinished when its revoke wait
// ran out (it logs how many) can come again.
func TestKafkaRebalanceChurn(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	const (
		n          = 20000
		partitions = 12
		window     = 32
		maxMembers = 3
		churnFor   = 2 * time.Minute
		every      = 3 * time.Second
	)
	site, err := testbed.StartSite(testbed.SiteConfig{Products: n, PageBytes: 2 << 10, Latency: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	farm, err := testbed.StartFarm(testbed.FarmConfig{N: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	proxies := filepath.Join(t.TempDir(), "proxies.txt")
	write(t, proxies, strings.Join(farm.URLs(), "\n")+"\n")

	job := newKafkaJob(t, brokers, partitions, window)
	urls := productURLs(site, n)
	testbed.ProduceKafka(t, brokers, job.input, testbed.Spread(urls, partitions))
	// Each member fetches at most 4 pages at a time from a site that takes
	// 20 ms a page, so the run lasts about as long as the churn; a
	// revocation waits at most 1 s (half the 3 s session timeout would
	// allow 1.5 s).
	args := job.args("--proxies", proxies, "--concurrency", "4", "--kafka-revoke-wait", "1s",
		"--log-level", "info", "--stats-interval", "1m")

	// The sampler: committed offsets never move backwards.
	samples, backwards := sampleCommits(t, job, partitions)

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	var running, stopping, all []*proc
	start := func() {
		// The client id names the member in the group (member ids are the
		// client id and a suffix), so the test can see what it owns.
		id := fmt.Sprintf("member%d", len(all)+1)
		p := startPipeline(t, id, append(args, "--kafka-client-id", id)...)
		running = append(running, p)
		all = append(all, p)
	}
	take := func() *proc {
		i := rng.IntN(len(running))
		p := running[i]
		running = append(running[:i], running[i+1:]...)
		return p
	}
	done := func() bool {
		c := job.committed(t)
		var sum int64
		for _, off := range c {
			sum += max(off, 0)
		}
		return sum == n
	}
	for range maxMembers {
		start()
	}
	var starts, stops, kills int
	var killBound int // Σ over kills: partitions the member owned × window
	owned := func(p *proc) int {
		n := 0
		for id, ps := range job.assignments(t) {
			if strings.HasPrefix(id, p.name+"-") {
				n += len(ps)
			}
		}
		if n == 0 {
			n = partitions // mid-rebalance the group shows none: assume all
		}
		return n
	}
	began := time.Now()
	for time.Since(began) < churnFor && !done() {
		time.Sleep(every)
		// Members that exited by themselves are a failure.
		for _, p := range running {
			if p.exited() {
				t.Fatalf("%s exited unasked (%v):\n%s", p.name, p.err, lastBytes(p.log.String(), 3000))
			}
		}
		switch ev := rng.IntN(3); {
		case len(running) < 2 || (ev == 0 && len(running) < maxMembers):
			start()
			starts++
		case ev == 1:
			p := take()
			_ = p.cmd.Process.Signal(syscall.SIGTERM) // drains on its own; checked below
			stopping = append(stopping, p)
			stops++
		default:
			p := take()
			n := owned(p)
			_ = p.signal(syscall.SIGKILL)
			kills++
			killBound += n * window
		}
	}
	churned := time.Since(began)
	if len(running) == 0 {
		start()
	}
	eventually(t, "every input committed", done, running...)
	for _, p := range running {
		p.stop()
	}
	for _, p := range stopping {
		if err := p.signal(syscall.SIGTERM); err != nil {
			t.Errorf("%s: exit after SIGTERM: %v\n%s", p.name, err, lastBytes(p.log.String(), 3000))
		}
	}
	nSamples, nBackwards := samples(), backwards()

	results, _ := job.outputs(t)
	missing := 0
	for _, u := range urls {
		if len(results[u]) == 0 {
			missing++
		}
	}
	failed := 0
	for _, rs := range results {
		if rs[0].Error != nil {
			failed++
		}
	}
	var abandoned int
	for _, p := range all {
		abandoned += sumField(p.log.String(), "abandoned")
	}
	dups := duplicates(results, nil)
	bound := killBound + abandoned
	t.Logf("%d inputs over %d partitions, %d members in all; churn for %v: %d starts, %d graceful stops, %d kills",
		n, partitions, len(all), churned.Round(time.Second), starts, stops, kills)
	t.Logf("results: %d URLs, %d missing, %d error results; %d duplicates (bound %d = window %d × %d partitions owned by the %d killed members + %d inputs unfinished when a revoke wait ran out; the loose bound %d kills × %d partitions × %d = %d)",
		len(results), missing, failed, dups, bound, window, killBound/window, kills, abandoned, kills, partitions, window, kills*partitions*window)
	t.Logf("committed offsets sampled %d times every 200 ms: %d moved backwards", nSamples, nBackwards)
	if missing > 0 {
		t.Errorf("%d of %d URLs have no result", missing, n)
	}
	if nBackwards > 0 {
		t.Errorf("committed offsets moved backwards %d times", nBackwards)
	}
	if nSamples < 10 {
		t.Errorf("only %d samples of the committed offsets", nSamples)
	}
	if dups > bound {
		t.Errorf("%d duplicates, more than the bound %d", dups, bound)
	}
}

var fieldRE = map[string]*regexp.Regexp{}

// sumField adds up the integer field name of every JSON log line in log.
func sumField(log, name string) int {
	re, ok := fieldRE[name]
	if !ok {
		re = regexp.MustCompile(`"` + regexp.QuoteMeta(name) + `":(\d+)`)
		fieldRE[name] = re
	}
	sum := 0
	for _, m := range re.FindAllStringSubmatch(log, -1) {
		v, _ := strconv.Atoi(m[1])
		sum += v
	}
	return sum
}

// sampleCommits reads the group's committed offsets every 200 ms until
// the test ends and counts the samples and the partitions whose committed
// offset was below the one seen before.
func sampleCommits(t *testing.T, job *kafkaJob, partitions int) (samples, backwards func() int) {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var n, back int
	var wg sync.WaitGroup
	wg.Go(func() { // owner: the test; ends at its cleanup
		last := map[int]int64{}
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
			offs, err := testbed.CommittedOffsets(qctx, job.brokers, job.group, job.input, partitions)
			qcancel()
			if err != nil {
				continue // the coordinator is busy with a rebalance: try again
			}
			mu.Lock()
			n++
			for p, off := range offs {
				if off < 0 {
					continue // none yet
				}
				if prev, ok := last[p]; ok && off < prev {
					back++
					t.Logf("partition %d: committed offset went from %d back to %d", p, prev, off)
				}
				last[p] = max(last[p], off)
			}
			mu.Unlock()
		}
	})
	stop := sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stop)
	samples = func() int { stop(); mu.Lock(); defer mu.Unlock(); return n }
	backwards = func() int { stop(); mu.Lock(); defer mu.Unlock(); return back }
	return samples, backwards
}
