package soak

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/testbed"
)

func TestSlope(t *testing.T) {
	for _, c := range []struct {
		name string
		ps   []point
		want float64
	}{
		{"empty", nil, 0},
		{"one point", []point{{0, 5}}, 0},
		{"flat", []point{{0, 5}, {10, 5}, {20, 5}}, 0},
		{"one per second", []point{{0, 0}, {1, 1}, {2, 2}, {3, 3}}, 60},
		{"noisy down", []point{{0, 10}, {30, 6}, {60, 4}, {90, 0}}, -6.4},
		{"same time", []point{{5, 1}, {5, 2}}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := slope(c.ps); math.Abs(got-c.want) > 1e-9 {
				t.Errorf("slope = %v, want %v", got, c.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := Config{Brokers: []string{"127.0.0.1:9092"}, Binary: "pipeline"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]Config{
		"no broker":      {Binary: "pipeline"},
		"no binary":      {Brokers: ok.Brokers},
		"one member":     {Brokers: ok.Brokers, Binary: "pipeline", Members: 1},
		"few partitions": {Brokers: ok.Brokers, Binary: "pipeline", Members: 3, Partitions: 2},
		"few samples":    {Brokers: ok.Brokers, Binary: "pipeline", Duration: time.Minute, Sample: 20 * time.Second},
	} {
		if c.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestSoakReconciles runs the soak machinery for a short while with tiny
// intervals against the real broker and real member processes (the
// pipeline binary, built here): every input produced must end as a
// result, an error result or a dead letter, duplicates within the bound,
// and no member may crash. The leak bounds are not asserted: half a
// minute is too short to tell a slope from warm-up on a shared machine
// (.ci/check-soak.sh runs two minutes and does).
func TestSoakReconciles(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	if testing.Short() {
		t.Skip("builds the pipeline binary and runs member processes")
	}
	bin := filepath.Join(t.TempDir(), "pipeline")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/sluicehq/sluice/cmd/pipeline").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var log bytes.Buffer
	rep, err := Run(context.Background(), Config{
		Brokers: brokers, Binary: bin, Members: 2, Partitions: 4, Rate: 5,
		Duration: 15 * time.Second, Sample: time.Second, Churn: 1500 * time.Millisecond, Drain: 2 * time.Minute,
		MaxGoroutineSlope: math.Inf(1), MaxFDSlope: math.Inf(1), Log: &log,
	})
	if rep == nil {
		t.Fatalf("no report: %v\n%s", err, log.String())
	}
	var out bytes.Buffer
	rep.Print(&out)
	rec := rep.Reconciliation
	if err != nil || rec.Lost != 0 || rec.Produced < 50 || rec.OK == 0 || rec.Dead == 0 || rec.Duplicates > rep.DupBound {
		t.Fatalf("soak: %v\n%s\n%s", err, log.String(), out.String())
	}
	if e := rep.Events; e.Kill9 == 0 || e.Term == 0 || e.ProxyKills == 0 || e.ModeSwitches == 0 || e.SinkSlow == 0 {
		t.Errorf("not every kind of churn ran: %+v", e)
	}
	if testing.Verbose() {
		t.Logf("%s\n%s", log.String(), out.String())
	}
	if !strings.Contains(out.String(), "| m0.1 | goroutines |") {
		t.Errorf("report lacks the anchor's goroutines:\n%s", out.String())
	}
}

// TestVerdict: the report fails on goroutines or fds of the anchor
// growing past their bounds over the second half, on a lost input, on
// duplicates past the bound and on a crash, and passes otherwise.
func TestVerdict(t *testing.T) {
	build := func(goroutinesPerMin, fdMax float64, rec Reconciliation, ev events) *Report {
		s := &soak{cfg: Config{Partitions: 2}.withDefaults(), series: map[string]*series{}, events: ev}
		s.all = []*member{{name: "m0.1"}, {name: "m1.1", slot: 1}}
		for sec := 0.0; sec <= 600; sec += 10 {
			s.add("goroutines", "m0.1", point{sec, 70 + goroutinesPerMin*sec/60})
			s.add("fds", "m0.1", point{sec, min(20+sec, fdMax)})
			s.add("goroutines", "m1.1", point{sec, 1000 * sec}) // not the anchor: reported, not judged
		}
		return s.report(600, rec)
	}
	fine := Reconciliation{Produced: 100, OK: 100}
	calm := events{Starts: 3, Kill9: 1}
	if err := build(1, 30, fine, calm).verdict(); err != nil {
		t.Errorf("calm soak failed: %v", err)
	}
	for name, c := range map[string]struct {
		rep  *Report
		want string
	}{
		"goroutine slope": {build(100, 30, fine, calm), "leak: goroutines"},
		"fd max":          {build(1, 1000, fine, calm), "leak: fds"},
		"lost":            {build(1, 30, Reconciliation{Produced: 100, OK: 99, Lost: 1, LostIDs: []int{7}}, calm), "lost: 1 of 100"},
		"duplicates":      {build(1, 30, Reconciliation{Produced: 100, OK: 100, Duplicates: 1000}, calm), "duplicates: 1000, above the bound of 512"},
		"crash":           {build(1, 30, fine, events{Starts: 3, Unexpected: 1}), "crash:"},
		"interrupted":     {build(1, 30, Reconciliation{Produced: 100, Lost: -1}, calm), "not reconciled"},
	} {
		err := c.rep.verdict()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: verdict %v, want %q", name, err, c.want)
		}
	}
}

// TestDumpStuck serves a member's /metrics and goroutine dump on
// loopback: the dump of a soak whose lag does not drain keeps the
// member's Kafka and stage lines and its goroutines, and drops the rest.
func TestDumpStuck(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "go_goroutines 80\nsluice_kafka_lag{partition=\"3\"} 324\nsluice_stage_queue_depth{stage=\"fetch\"} 7\nprocess_open_fds 20\n")
	})
	mux.HandleFunc("GET /debug/pprof/goroutine", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "goroutine profile: total 1 (debug=%s)\n1 @ 0x1\n#\tkafka.(*Kafka).fetch\n", r.URL.Query().Get("debug"))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	m := &member{name: "m1.2", done: make(chan struct{}), metrics: strings.TrimPrefix(srv.URL, "http://")}
	gone := &member{name: "m2.1", done: make(chan struct{})}
	close(gone.done) // exited: not asked
	var log strings.Builder
	s := &soak{cfg: Config{LogDir: t.TempDir(), Log: &log}, http: srv.Client(), members: []*member{m, gone}, start: time.Now()}
	s.dumpStuck(t.Context())

	data, err := os.ReadFile(filepath.Join(s.cfg.LogDir, "m1.2.stuck.txt"))
	if err != nil {
		t.Fatal(err)
	}
	got := string(data)
	for _, want := range []string{"sluice_kafka_lag{partition=\"3\"} 324", "sluice_stage_queue_depth", "(debug=1)", "kafka.(*Kafka).fetch"} {
		if !strings.Contains(got, want) {
			t.Errorf("dump lacks %q:\n%s", want, got)
		}
	}
	for _, unwanted := range []string{"go_goroutines", "process_open_fds"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("dump keeps %q:\n%s", unwanted, got)
		}
	}
	if _, err := os.Stat(filepath.Join(s.cfg.LogDir, "m2.1.stuck.txt")); err == nil {
		t.Error("an exited member was dumped")
	}
	if !strings.Contains(log.String(), "m1.2.stuck.txt") {
		t.Errorf("the soak's log does not name the dump: %q", log.String())
	}
}
