package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/testbed"
)

// envKafkaBrokers names the broker list that turns on the Kafka mode.
const envKafkaBrokers = "SLUICE_KAFKA_BROKERS"

// errIncorrect is what Report.Err wraps: a peer crashed or wrote records
// that do not match the site. A slow peer is never an error.
var errIncorrect = errors.New("incorrect results")

// Config is one comparison. The zero value is not useful: N, Proxies and
// Concurrency must be set (mainErr's flags give the defaults).
type Config struct {
	N           int           // URLs per run
	Proxies     int           // proxies in the farm
	Latency     time.Duration // the site's answer latency
	PageBytes   int           // product page size
	Concurrency []int         // a run of every peer at each
	Peers       []string      // peerFloor, peerColly, peerSluice; nil: all
	Root        string        // the checkout to build pipeline from
	Pipeline    string        // a prebuilt pipeline binary; "": build from Root
	SluiceFlags []string      // more flags for every pipeline run, after the harness's own
	// CollyKeepAlive turns keep-alives back on in Colly's transport.
	CollyKeepAlive bool
	PeerTimeout    time.Duration // 0: 10 minutes

	KafkaBrokers    []string // nil: no Kafka mode
	KafkaC          int      // concurrency of the Kafka run; 0: 200
	KafkaPartitions int      // partitions of the input topic; 0: 4

	Profile    []int  // concurrencies to profile sluice at
	ProfileDir string // "": a new temp dir
	Verbose    bool   // print each peer's output after its run
	// Repeat runs every peer this many times at each concurrency and
	// reports the run with the median pages/s (a failed run, if any,
	// instead); 0 means 1.
	Repeat int
}

// Row is one peer at one concurrency.
type Row struct {
	Peer    string
	C       int
	N       int
	Usage   usage
	Verify  verification
	Fetches int64  // product requests the site received during the run
	Err     error  // the peer could not run or did not exit 0
	Output  string // the tail of the peer's stdout and stderr
}

// Rate is correct pages per second of wall time.
func (r Row) Rate() float64 {
	if r.Usage.Wall <= 0 {
		return 0
	}
	return float64(r.Verify.Correct) / r.Usage.Wall.Seconds()
}

// CPUPer1k is CPU seconds per 1,000 pages.
func (r Row) CPUPer1k() float64 { return r.Usage.CPU.Seconds() / float64(r.N) * 1000 }

// RSSMB is the peak RSS in MiB.
func (r Row) RSSMB() float64 { return float64(r.Usage.MaxRSS) / (1 << 20) }

// Correct reports whether the row ran and its records are all correct.
func (r Row) Correct() bool { return r.Err == nil && r.Verify.OK() }

// Report is the outcome of Run.
type Report struct {
	Rows     []Row
	Kafka    *KafkaResult
	Profiles []Profile
	LoadAvg  [2]string // /proc/loadavg at start and end
	RSSFloor int64     // bytes; see world.rssFloor
}

// Err is errIncorrect (with the failures) when any peer crashed or wrote
// wrong records; nil otherwise, however slow.
func (rep *Report) Err() error {
	var fails []string
	for _, r := range rep.Rows {
		switch {
		case r.Err != nil:
			fails = append(fails, fmt.Sprintf("%s c=%d: %v", r.Peer, r.C, r.Err))
		case !r.Verify.OK():
			fails = append(fails, fmt.Sprintf("%s c=%d: %s: %s", r.Peer, r.C, r.Verify, strings.Join(r.Verify.Examples, "; ")))
		}
	}
	if k := rep.Kafka; k != nil {
		switch {
		case k.Err != nil:
			fails = append(fails, fmt.Sprintf("kafka: %v", k.Err))
		case !k.Row.Verify.OK() || k.Dead > 0:
			fails = append(fails, fmt.Sprintf("kafka: %s, %d dead letters: %s", k.Row.Verify, k.Dead, strings.Join(k.Row.Verify.Examples, "; ")))
		}
	}
	if len(fails) == 0 {
		return nil
	}
	return fmt.Errorf("%w:\n  %s", errIncorrect, strings.Join(fails, "\n  "))
}

// world is the testbed and the files every peer reads.
type world struct {
	cfg      Config
	site     *testbed.Site
	farm     *testbed.Farm
	dir      string
	urls     string // URL file
	proxies  string // proxy list file
	rules    string // rules file
	pipeline string // the pipeline binary
	self     string // this binary, run again for the floor and Colly
}

// Run starts the testbed, runs every peer at every concurrency, then the
// Kafka mode and the profiles, and prints the tables to out as it goes.
// It returns an error only when the comparison could not be made; wrong
// records are in the Report (see Report.Err).
func Run(ctx context.Context, cfg Config, out io.Writer) (*Report, error) {
	if cfg.N < 1 || cfg.Proxies < 1 || len(cfg.Concurrency) == 0 {
		return nil, fmt.Errorf("config: N, Proxies and Concurrency must be set")
	}
	if cfg.Peers == nil {
		cfg.Peers = []string{peerFloor, peerColly, peerSluice}
	}
	if cfg.PeerTimeout <= 0 {
		cfg.PeerTimeout = 10 * time.Minute
	}
	if cfg.Repeat <= 0 {
		cfg.Repeat = 1
	}
	if cfg.KafkaC <= 0 {
		cfg.KafkaC = 200
	}
	if cfg.KafkaPartitions <= 0 {
		cfg.KafkaPartitions = 4
	}
	rep := &Report{}
	rep.LoadAvg[0] = loadAvg()

	w, err := startWorld(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer w.close()

	rep.RSSFloor = w.rssFloor(ctx)
	fmt.Fprintf(out, "## sluice vs Colly vs the floor\n\n")
	fmt.Fprintf(out, "%d URLs per run; %d local proxies; pages of %d bytes after %v; %s, GOMAXPROCS %d, %d CPUs; load average at start %s\n\n",
		cfg.N, cfg.Proxies, cfg.PageBytes, cfg.Latency, runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), rep.LoadAvg[0])
	fmt.Fprintf(out, "Peak RSS as measured for a program that does nothing (the launcher's share): %.1f MB\n\n", float64(rep.RSSFloor)/(1<<20))
	for _, c := range cfg.Concurrency {
		runs := make(map[string][]Row)
		for i := range cfg.Repeat { // peers take turns, so that a busy spell on the machine is shared
			for _, peer := range cfg.Peers {
				if err := ctx.Err(); err != nil {
					return rep, err
				}
				r := w.runPeer(ctx, peer, c)
				runs[peer] = append(runs[peer], r)
				fmt.Fprintf(out, "ran %-6s c=%-4d #%d %s\n", peer, c, i+1, rowLine(r))
				if cfg.Verbose && r.Output != "" {
					fmt.Fprintln(out, indent(r.Output))
				}
			}
		}
		for _, peer := range cfg.Peers {
			rep.Rows = append(rep.Rows, medianRow(runs[peer]))
		}
	}
	rep.LoadAvg[1] = loadAvg()
	fmt.Fprintln(out)
	printTable(out, rep)
	printRatios(out, rep)

	if len(cfg.KafkaBrokers) > 0 && hasPeer(cfg.Peers, peerSluice) {
		k := w.runKafka(ctx)
		rep.Kafka = &k
		printKafka(out, rep)
	}
	if len(cfg.Profile) > 0 && hasPeer(cfg.Peers, peerSluice) {
		dir := cfg.ProfileDir
		if dir == "" {
			if dir, err = os.MkdirTemp("", "sluice-profiles-"); err != nil {
				return rep, err
			}
		} else if err := os.MkdirAll(dir, 0o755); err != nil {
			return rep, err
		}
		for _, c := range cfg.Profile {
			p := w.profile(ctx, c, dir, rep)
			rep.Profiles = append(rep.Profiles, p)
			printProfile(out, p)
		}
	}
	fmt.Fprintf(out, "\nload average at end: %s\n", loadAvg())
	return rep, nil
}

// medianRow returns the first failed run, or else the run with the
// median pages/s (the lower middle one for an even count).
func medianRow(rows []Row) Row {
	for _, r := range rows {
		if !r.Correct() {
			return r
		}
	}
	sorted := slices.Clone(rows)
	slices.SortFunc(sorted, func(a, b Row) int { return cmp.Compare(a.Rate(), b.Rate()) })
	return sorted[(len(sorted)-1)/2]
}

func hasPeer(peers []string, p string) bool {
	for _, x := range peers {
		if x == p {
			return true
		}
	}
	return false
}

// startWorld starts the site and the farm, writes the input files and
// builds the pipeline binary.
func startWorld(ctx context.Context, cfg Config) (*world, error) {
	w := &world{cfg: cfg}
	var err error
	if w.self, err = os.Executable(); err != nil {
		return nil, err
	}
	if w.dir, err = os.MkdirTemp("", "sluice-compare-"); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			w.close()
		}
	}()
	if hasPeer(cfg.Peers, peerSluice) {
		w.pipeline = cfg.Pipeline
		if w.pipeline == "" {
			if w.pipeline, err = buildPipeline(ctx, cfg.Root, w.dir); err != nil {
				return nil, err
			}
		}
	}
	w.site, err = testbed.StartSite(testbed.SiteConfig{Products: cfg.N, PageBytes: cfg.PageBytes, Latency: cfg.Latency})
	if err != nil {
		return nil, err
	}
	w.farm, err = testbed.StartFarm(testbed.FarmConfig{N: cfg.Proxies})
	if err != nil {
		return nil, err
	}
	var urls strings.Builder
	for id := 1; id <= cfg.N; id++ {
		urls.WriteString(w.site.ProductURL(id))
		urls.WriteByte('\n')
	}
	w.urls = filepath.Join(w.dir, "urls.txt")
	w.proxies = filepath.Join(w.dir, "proxies.txt")
	w.rules = filepath.Join(w.dir, "rules.yaml")
	for name, body := range map[string]string{
		w.urls:    urls.String(),
		w.proxies: strings.Join(w.farm.URLs(), "\n") + "\n",
		w.rules:   rulesYAML(),
	} {
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			return nil, err
		}
	}
	ok = true
	return w, nil
}

func (w *world) close() {
	if w.farm != nil {
		_ = w.farm.Close()
	}
	if w.site != nil {
		_ = w.site.Close()
	}
	if w.dir != "" {
		_ = os.RemoveAll(w.dir)
	}
}

// runPeer runs one peer over every URL at concurrency c as a child
// process and checks its records.
func (w *world) runPeer(ctx context.Context, peer string, c int) Row {
	row := Row{Peer: peer, C: c, N: w.cfg.N}
	out := filepath.Join(w.dir, fmt.Sprintf("out-%s-%d.jsonl", peer, c))
	defer os.Remove(out)
	ctx, cancel := context.WithTimeout(ctx, w.cfg.PeerTimeout)
	defer cancel()
	ru := out + ".rusage"
	defer os.Remove(ru)
	var cmd *exec.Cmd
	if peer == peerSluice {
		cmd = w.spawn(ctx, ru, w.pipeline, sluiceArgs(sluiceRun{
			Proxies: w.proxies, Rules: w.rules, Extra: w.cfg.SluiceFlags, Concurrency: c, URLs: w.urls, Out: out,
		})...)
	} else {
		cmd = w.spawn(ctx, ru, w.self, childArgs(peer, w.urls, w.proxies, out, c, w.cfg.CollyKeepAlive)...)
	}
	var uerr error
	w.site.ResetStats()
	tail, start, err := startChild(cmd)
	if err != nil {
		row.Err = err
		return row
	}
	err = cmd.Wait()
	row.Usage, uerr = readSpawnUsage(ru, time.Since(start))
	row.Fetches = w.site.Stats().Requests
	row.Output = tail.String()
	if err != nil {
		row.Err = exitError(peer, err, tail)
	} else if uerr != nil {
		row.Err = uerr
	}
	row.Verify, err = verifyFile(out, w.site.URL(), w.cfg.N)
	if err != nil && row.Err == nil {
		row.Err = err
	}
	return row
}

// spawn returns the command that runs prog through the launcher (see
// spawnFlag), which writes prog's rusage to rusageFile. Canceling ctx
// sends the launcher SIGTERM, which it passes on; past cmd.WaitDelay it
// is killed, and prog with it.
func (w *world) spawn(ctx context.Context, rusageFile, prog string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, w.self, append([]string{spawnFlag, rusageFile, prog}, args...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	return cmd
}

// rssFloor is the peak RSS the launcher reports for a program that does
// nothing (true(1)): the least any peer can show. 0 when unknown.
func (w *world) rssFloor(ctx context.Context) int64 {
	prog, err := exec.LookPath("true")
	if err != nil {
		return 0
	}
	ru := filepath.Join(w.dir, "true.rusage")
	defer os.Remove(ru)
	cmd := w.spawn(ctx, ru, prog)
	if err := cmd.Run(); err != nil {
		return 0
	}
	u, err := readSpawnUsage(ru, 0)
	if err != nil {
		return 0
	}
	return u.MaxRSS
}

// loadAvg returns the first three fields of /proc/loadavg, or "unknown".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
