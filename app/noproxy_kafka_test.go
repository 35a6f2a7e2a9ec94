package app

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/testbed"
)

// TestKafkaNoProxyWaitsThenResumes: a streaming run whose every proxy is
// a blackhole writes and commits nothing, keeps running without spinning,
// says why (watchdog, /readyz); when one proxy comes back it fetches
// every input, with nothing lost.
func TestKafkaNoProxyWaitsThenResumes(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	const n = 20
	site, err := testbed.StartSite(testbed.SiteConfig{Products: n})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	farm, err := testbed.StartFarm(testbed.FarmConfig{N: 2, FirstSourceIP: 120})
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	var fronts []*testbed.Faulty
	var lines []string
	for i := range 2 {
		f, err := testbed.StartFaulty(testbed.FaultyConfig{Backend: farm.Proxy(i).Addr()})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.Set(testbed.FaultBlackhole); err != nil {
			t.Fatal(err)
		}
		fronts = append(fronts, f)
		lines = append(lines, f.URL())
	}
	proxies := filepath.Join(t.TempDir(), "proxies.txt")
	write(t, proxies, strings.Join(lines, "\n")+"\n")
	addr := freeAddr(t)

	job := newKafkaJob(t, brokers, 1, 64)
	testbed.ProduceKafka(t, brokers, job.input, testbed.Spread(productURLs(site, n), 1))
	p := startPipeline(t, "pipeline", job.args("--proxies", proxies, "--timeout", "1s", "--proxy-cooldown", "200ms",
		"--metrics-addr", addr, "--stall-after", "1s", "--log-level", "info")...)
	defer p.stop()

	// Every proxy down: the readiness check says so once the pool has
	// found none usable.
	eventually(t, "/readyz naming the proxies", func() bool {
		code, body := get(t, "http://"+addr+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "no usable proxy")
	}, p)
	cpu0 := cpuTicks(t, p.cmd.Process.Pid)
	time.Sleep(2 * time.Second)
	if p.exited() {
		t.Fatalf("pipeline exited with every proxy down: %v\n%s", p.err, lastBytes(p.log.String(), 3000))
	}
	if w := job.written(t); w != 0 {
		t.Errorf("%d records written with every proxy down", w)
	}
	for part, off := range job.committed(t) {
		if off > 0 {
			t.Errorf("partition %d committed at %d with nothing fetched", part, off)
		}
	}
	// Not spinning: well under a core's worth of CPU over 2 s (100 ticks/s).
	if used := cpuTicks(t, p.cmd.Process.Pid) - cpu0; used > 100 {
		t.Errorf("%d CPU ticks in 2 s while waiting for a proxy", used)
	}
	if log := p.log.String(); !strings.Contains(log, "proxies_quarantined") {
		t.Errorf("the watchdog did not name the cause:\n%s", lastBytes(log, 3000))
	}

	// One proxy back: everything is fetched and committed.
	if err := fronts[1].Set(testbed.FaultNone); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every input's result", func() bool { return job.written(t) >= n }, p)
	results, _ := job.outputs(t)
	for _, u := range productURLs(site, n) {
		rs := results[u]
		if len(rs) == 0 {
			t.Errorf("%s: no result", u)
			continue
		}
		if last := rs[len(rs)-1]; last.Error != nil {
			t.Errorf("%s: %+v", u, last.Error)
		}
	}
	eventually(t, "the offsets committed", func() bool {
		for _, off := range job.committed(t) {
			if off < n {
				return false
			}
		}
		return true
	}, p)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(b)
}

// cpuTicks is the user plus system CPU time of a process, in clock ticks.
func cpuTicks(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return u + k
}

var _ = syscall.SIGTERM
