package app

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sluicehq/sluice/stages/parse"
)

// TestFileInputNeverParks: kafka.park_after applies to a Kafka input only.
// Reading a file, an input whose domain answers 429 with a Retry-After
// longer than park_after is held and retried as before, and ends as a
// result.
func TestFileInputNeverParks(t *testing.T) {
	base, hits := answerServer(t, "127.0.0.1:0", func(n int64) (int, string) {
		if n == 1 {
			return http.StatusTooManyRequests, "1"
		}
		return http.StatusOK, ""
	})
	urls := pathsOf(base, 3)
	cfg := jobConfig{
		URLReader: strings.NewReader(strings.Join(urls, "\n") + "\n"),
		Out:       filepath.Join(t.TempDir(), "results.jsonl"),
		Direct:    true,
		Rules:     parse.DefaultRules(),
		Drain:     10 * time.Second,
		Log:       zerolog.Nop(),
	}
	cfg.Fetch.Concurrency = 2
	cfg.Fetch.DomainRate = -1
	cfg.Fetch.Policy.AllowLoopback = true
	cfg.Observe.Progress = "off"
	cfg.Observe.StallAfter = -1
	cfg.Kafka.ParkAfter, cfg.Kafka.MaxParks = 10*time.Millisecond, 1
	sum, err := runJob(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Parked != 0 || sum.OK != len(urls) || sum.Written != len(urls) {
		t.Fatalf("parked %d, ok %d, written %d; want 0, %d, %d (errors %v)", sum.Parked, sum.OK, sum.Written, len(urls), len(urls), sum.Errors)
	}
	if n := hits.Load(); n != int64(len(urls))+1 {
		t.Fatalf("%d requests, want %d: one 429, then each URL once", n, len(urls)+1)
	}
	results := readResultsFile(t, cfg.Out)
	retried := 0
	for _, u := range urls {
		if rs := results[u]; len(rs) != 1 || rs[0].Error != nil {
			t.Fatalf("%s: %+v", u, rs)
		} else if rs[0].Attempts == 2 {
			retried++
		}
	}
	if retried != 1 {
		t.Fatalf("%d inputs took 2 attempts, want the one that met the 429", retried)
	}
}
