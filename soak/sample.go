package soak

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The per-process series scraped from each member's /metrics (the
// Prometheus process and Go collectors sluice registers).
var processSeries = []struct{ name, metric string }{
	{"rss_mb", "process_resident_memory_bytes"},
	{"heap_mb", "go_memstats_heap_alloc_bytes"},
	{"goroutines", "go_goroutines"},
	{"fds", "process_open_fds"},
}

// point is one sample: seconds since the soak started, and the value.
type point struct{ t, v float64 }

// series is one quantity of one member lifetime (or of the group).
type series struct {
	name   string // "goroutines"
	owner  string // "m0.1", or "group"
	points []point
}

// scrape reads the process series of one member's /metrics. Bytes are
// reported in MB.
func scrape(ctx context.Context, client *http.Client, addr string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	want := map[string]string{}
	for _, s := range processSeries {
		want[s.metric] = s.name
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		key, found := want[name]
		if !ok || !found {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		if strings.HasSuffix(name, "_bytes") {
			v /= 1 << 20
		}
		out[key] = v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) != len(processSeries) {
		return nil, fmt.Errorf("/metrics lacks some of %v (got %v)", processSeries, out)
	}
	return out, nil
}

// slope is the least-squares slope of points, per minute; 0 with fewer
// than two points.
func slope(ps []point) float64 {
	if len(ps) < 2 {
		return 0
	}
	var st, sv float64
	for _, p := range ps {
		st += p.t
		sv += p.v
	}
	n := float64(len(ps))
	mt, mv := st/n, sv/n
	var num, den float64
	for _, p := range ps {
		num += (p.t - mt) * (p.v - mv)
		den += (p.t - mt) * (p.t - mt)
	}
	if den == 0 {
		return 0
	}
	return num / den * 60
}

// within returns the points with from <= t <= to.
func within(ps []point, from, to float64) []point {
	var out []point
	for _, p := range ps {
		if p.t >= from && p.t <= to {
			out = append(out, p)
		}
	}
	return out
}

func maxOf(ps []point) float64 {
	m := 0.0
	for i, p := range ps {
		if i == 0 || p.v > m {
			m = p.v
		}
	}
	return m
}

// dumpStuck writes, for every live member, what shows why the group's lag
// does not reach 0: its Kafka and stage lines of /metrics (assigned
// partitions, committed offsets, lag, queues) and its goroutines (a reader
// blocked, a task held), into the member log directory if there is one,
// else into the soak's log.
func (s *soak) dumpStuck(ctx context.Context) {
	s.mu.Lock()
	ms := append([]*member(nil), s.members...)
	s.mu.Unlock()
	for _, m := range ms {
		if m == nil || m.exited() {
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "== %s at %.1fs, lag not draining\n", m.name, s.elapsed())
		for _, part := range []struct{ path, keep string }{
			{"/metrics", "sluice_kafka_|sluice_stage_|sluice_fetch_|sluice_domain_requests_in_flight|sluice_stalled"},
			{"/debug/pprof/goroutine?debug=1", ""},
		} {
			body, err := get(ctx, s.http, "http://"+m.metricsAddr()+part.path)
			if err != nil {
				fmt.Fprintf(&b, "GET %s: %v\n", part.path, err)
				continue
			}
			for line := range strings.Lines(body) {
				if part.keep == "" || keepLine(line, strings.Split(part.keep, "|")) {
					b.WriteString(line)
				}
			}
		}
		if s.cfg.LogDir == "" {
			_, _ = io.WriteString(s.cfg.Log, b.String())
			continue
		}
		path := filepath.Join(s.cfg.LogDir, m.name+".stuck.txt")
		if err := os.WriteFile(path, []byte(b.String()), 0o600); err == nil {
			fmt.Fprintf(s.cfg.Log, "%6.1fs stuck: %s's partitions, queues and goroutines in %s\n", s.elapsed(), m.name, path)
		}
	}
}

func keepLine(line string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

// get reads at most 8 MiB of url's body.
func get(ctx context.Context, client *http.Client, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return string(body), err
}
