package app

// End-to-end tests of the delay path (docs/kafka.md#delay-topic) on a real
// broker: the pipeline process parks what a paused domain holds on the
// delay topic, commits the input past it, and reads it back when due.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

// answerServer is a site on addr (a 127.0.0.x address of its own, so it
// is a domain of its own) whose answer to its n-th request (from 1) is
// given by answer: a status and, for a 429, its Retry-After seconds. A
// 200 is a product page. hits counts the requests.
func answerServer(t *testing.T, addr string, answer func(n int64) (status int, retryAfter string)) (base string, hits *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	hits = &atomic.Int64{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, ra := answer(hits.Add(1))
		if status != http.StatusOK {
			if ra != "" {
				w.Header().Set("Retry-After", ra)
			}
			w.WriteHeader(status)
			return
		}
		fmt.Fprintf(w, `<html><h1>Item %s</h1><span class="price">$1.00</span></html>`, r.URL.Path)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL, hits
}

// sitesOn starts one catalog site of n products on each 127.0.0.x host
// given, and returns their product URLs.
func sitesOn(t *testing.T, n int, hosts ...int) []string {
	t.Helper()
	var urls []string
	for _, h := range hosts {
		site, err := testbed.StartSite(testbed.SiteConfig{Products: n, Addr: fmt.Sprintf("127.0.0.%d:0", h)})
		if err != nil {
			t.Skipf("cannot start a site on 127.0.0.%d: %v", h, err)
		}
		t.Cleanup(func() { _ = site.Close() })
		urls = append(urls, productURLs(site, n)...)
	}
	return urls
}

// pathsOf returns n URLs under base.
func pathsOf(base string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = base + "/item/" + strconv.Itoa(i+1)
	}
	return out
}

// interleave merges lists round-robin, so every partition gets some of each.
func interleave(lists ...[]string) []string {
	var out []string
	for i := 0; ; i++ {
		more := false
		for _, l := range lists {
			if i < len(l) {
				out = append(out, l[i])
				more = true
			}
		}
		if !more {
			return out
		}
	}
}

// readDelay reads the delay topic: per URL, its delay records.
func readDelay(t *testing.T, brokers []string, topic string) map[string][]record.Delayed {
	t.Helper()
	out := map[string][]record.Delayed{}
	for _, m := range testbed.ReadKafka(t, brokers, topic) {
		var d record.Delayed
		if err := json.Unmarshal(m.Value, &d); err != nil {
			t.Fatalf("delay record %q: %v", m.Value, err)
		}
		out[d.URL] = append(out[d.URL], d)
	}
	return out
}

// committedSum is the sum of group's committed offsets on topic.
func committedSum(t *testing.T, brokers []string, group, topic string, partitions int) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := testbed.CommittedOffsets(ctx, brokers, group, topic, partitions)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, o := range offs {
		n += max(o, 0)
	}
	return n
}

// endSum is the sum of topic's end offsets: the records it holds.
func endSum(t *testing.T, brokers []string, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := testbed.EndOffsets(ctx, brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range ends {
		n += e
	}
	return n
}

// TestKafkaDelayParksAPausedDomain: four domains share four partitions;
// one answers only 429 with Retry-After: 120. The other three finish and
// the input is committed to its end (lag 0), while the slow domain's URLs
// wait on the delay topic, due 120 s after their 429.
func TestKafkaDelayParksAPausedDomain(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	urls := sitesOn(t, 40, 2, 3, 4)
	slowBase, slowHits := answerServer(t, "127.0.0.5:0", func(int64) (int, string) { return http.StatusTooManyRequests, "120" })
	slow := pathsOf(slowBase, 20)
	values := interleave(urls[:40], urls[40:80], urls[80:], slow)
	const partitions, window = 4, 16
	job := newKafkaJob(t, brokers, partitions, window)
	delay := testbed.CreateKafkaTopic(t, brokers, "delay", partitions)
	testbed.ProduceKafka(t, brokers, job.input, testbed.Spread(values, partitions))

	before := time.Now()
	p := startPipeline(t, "pipeline", job.args("--kafka-park-after", "1s", "--kafka-delay-topic", delay)...)
	eventually(t, "the input committed to its end", func() bool {
		return committedSum(t, brokers, job.group, job.input, partitions) == int64(len(values))
	}, p)
	after := time.Now()
	p.stop()

	results, dead := job.outputs(t)
	checkProducts(t, results, urls)
	if len(dead) != 0 {
		t.Fatalf("dead letters: %v", dead)
	}
	for _, u := range slow {
		if len(results[u]) != 0 {
			t.Fatalf("%s has a result %+v; it should wait on the delay topic", u, results[u][0])
		}
	}
	parked := readDelay(t, brokers, delay)
	for _, u := range slow {
		ds := parked[u]
		if len(ds) == 0 {
			t.Fatalf("%s is not on the delay topic", u)
		}
		d := ds[0]
		lo, hi := before.Add(120*time.Second), after.Add(121*time.Second)
		if d.NotBefore.Before(lo) || d.NotBefore.After(hi) {
			t.Errorf("%s not_before %v, want within [%v, %v] (its 429's time + 120 s)", u, d.NotBefore, lo, hi)
		}
		if d.Attempts != 1 || d.Schema != record.SchemaVersion {
			t.Errorf("%s: attempts %d schema %d, want 1 and %d", u, d.Attempts, d.Schema, record.SchemaVersion)
		}
		if d.Error == nil || d.Error.Class != "rate_limited" {
			t.Errorf("%s: error %+v, want class rate_limited", u, d.Error)
		}
	}
	if len(parked) != len(slow) {
		t.Errorf("%d URLs on the delay topic, want only the %d of the paused domain", len(parked), len(slow))
	}
	// The paused domain was asked once per worker that reached it at most,
	// not once per URL.
	if n := slowHits.Load(); n >= int64(len(slow)) {
		t.Errorf("the paused domain got %d requests for %d URLs", n, len(slow))
	}
	t.Logf("%d inputs committed; %d parked; the paused domain got %d requests", len(values), len(parked), slowHits.Load())
}

// TestKafkaDelayRetriesWhenDue: a domain answers its first request with
// 429, Retry-After: 2, and recovers; another answers 429 forever. The
// first's URLs are parked, read back when due and end as results; the
// second's are parked max_parks times and end as error results of class
// rate_limited. Both inputs' groups are committed to their ends.
func TestKafkaDelayRetriesWhenDue(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	urls := sitesOn(t, 20, 2)
	flakyBase, _ := answerServer(t, "127.0.0.6:0", func(n int64) (int, string) {
		if n == 1 {
			return http.StatusTooManyRequests, "2"
		}
		return http.StatusOK, ""
	})
	neverBase, _ := answerServer(t, "127.0.0.7:0", func(int64) (int, string) { return http.StatusTooManyRequests, "2" })
	flaky, never := pathsOf(flakyBase, 10), pathsOf(neverBase, 10)
	values := interleave(urls, flaky, never)
	const partitions, maxParks = 2, 2
	job := newKafkaJob(t, brokers, partitions, 32)
	delay := testbed.CreateKafkaTopic(t, brokers, "delay", partitions)
	testbed.ProduceKafka(t, brokers, job.input, testbed.Spread(values, partitions))

	p := startPipeline(t, "pipeline", job.args("--kafka-park-after", "1s", "--kafka-delay-topic", delay,
		"--kafka-max-parks", strconv.Itoa(maxParks))...)
	var results map[string][]record.Result
	eventually(t, "a result for every input", func() bool {
		results, _ = job.outputs(t)
		return len(results) == len(values)
	}, p)
	eventually(t, "both groups committed to their ends", func() bool {
		return committedSum(t, brokers, job.group, job.input, partitions) == int64(len(values)) &&
			committedSum(t, brokers, job.group+".delay", delay, partitions) == endSum(t, brokers, delay)
	}, p)
	p.stop()

	checkProducts(t, results, urls)
	for _, u := range flaky {
		if r := results[u][0]; r.Error != nil || r.Status != http.StatusOK {
			t.Errorf("%s: status %d error %+v, want a result once due", u, r.Status, r.Error)
		}
	}
	for _, u := range never {
		if r := results[u][0]; r.Error == nil || r.Error.Class != "rate_limited" {
			t.Errorf("%s: error %+v, want an error result of class rate_limited", u, r.Error)
		}
	}
	parked := readDelay(t, brokers, delay)
	for _, u := range flaky {
		if len(parked[u]) == 0 {
			t.Errorf("%s was never parked", u)
		}
	}
	for _, u := range never {
		most := 0
		for _, d := range parked[u] {
			most = max(most, d.Attempts)
		}
		if most != maxParks {
			t.Errorf("%s parked up to attempts %d, want %d (max_parks)", u, most, maxParks)
		}
	}
	for _, u := range urls {
		if len(parked[u]) != 0 {
			t.Errorf("%s of a healthy domain was parked", u)
		}
	}
}

// TestKafkaDelayKill9 kills the pipeline with SIGKILL twice while a domain
// that answers 429 (Retry-After: 1) keeps the delay path busy, its URLs
// parked and read back over and over; then the domain recovers. At the
// end every input has a result and both groups are committed to their
// ends: nothing parked was lost to a kill.
func TestKafkaDelayKill9(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	urls := sitesOn(t, 400, 2, 3, 4)
	var refusing atomic.Bool // the moody domain answers 429 until the kills are over
	refusing.Store(true)
	moodyBase, _ := answerServer(t, "127.0.0.8:0", func(int64) (int, string) {
		if refusing.Load() {
			return http.StatusTooManyRequests, "1"
		}
		return http.StatusOK, ""
	})
	moody := pathsOf(moodyBase, 200)
	values := interleave(urls[:400], urls[400:800], urls[800:], moody)
	const partitions, window, kills = 4, 64, 2
	job := newKafkaJob(t, brokers, partitions, window)
	delay := testbed.CreateKafkaTopic(t, brokers, "delay", partitions)
	testbed.ProduceKafka(t, brokers, job.input, testbed.Spread(values, partitions))
	args := job.args("--kafka-park-after", "500ms", "--kafka-delay-topic", delay, "--kafka-max-parks", "1000", "--concurrency", "8")

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	p := startPipeline(t, "pipeline#1", args...)
	for k := 1; k <= kills; k++ {
		// Some way into this process's run, while parked inputs wait on
		// the delay topic (its group has not read them all).
		at := min(job.written(t)+int64(50+rng.IntN(len(values)/6)), int64(len(urls)))
		eventually(t, fmt.Sprintf("%d records written and parked ones waiting", at), func() bool {
			return job.written(t) >= at && committedSum(t, brokers, job.group+".delay", delay, partitions) < endSum(t, brokers, delay)
		}, p)
		_ = p.signal(syscall.SIGKILL)
		t.Logf("kill %d at %d records written, %d parked, %d of them read back and committed", k, job.written(t),
			endSum(t, brokers, delay), committedSum(t, brokers, job.group+".delay", delay, partitions))
		p = startPipeline(t, fmt.Sprintf("pipeline#%d", k+1), args...)
	}
	refusing.Store(false)
	var results map[string][]record.Result
	eventually(t, "a result for every input", func() bool {
		if job.written(t) < int64(len(values)) {
			return false
		}
		results, _ = job.outputs(t)
		return len(results) == len(values)
	}, p)
	eventually(t, "both groups committed to their ends", func() bool {
		return committedSum(t, brokers, job.group, job.input, partitions) == int64(len(values)) &&
			committedSum(t, brokers, job.group+".delay", delay, partitions) == endSum(t, brokers, delay)
	}, p)
	p.stop()
	checkProducts(t, results, urls)
	// The moody domain answered once it stopped refusing: every one of its
	// URLs, parked again and again across the kills, ends as a result.
	for _, u := range moody {
		if r := results[u][0]; r.Error != nil || r.Status != http.StatusOK {
			t.Errorf("%s: status %d error %+v", u, r.Status, r.Error)
		}
	}
	parked := readDelay(t, brokers, delay)
	if len(parked) != len(moody) {
		t.Errorf("%d URLs parked, want the moody domain's %d", len(parked), len(moody))
	}
	// A kill delivers again at most a window per partition of each of the
	// two groups.
	dups, bound := duplicates(results, nil), 2*partitions*window*kills
	t.Logf("%d inputs, all with a result; %d delay records for %d URLs; %d duplicate results after %d kills (bound %d)",
		len(values), endSum(t, brokers, delay), len(parked), dups, kills, bound)
	if dups > bound {
		t.Errorf("%d duplicates, more than the bound %d", dups, bound)
	}
}
