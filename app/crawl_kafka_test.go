package app

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

// TestCrawlKafkaLinks: in Kafka mode the links a page's crawl follows are
// produced to the input topic, keyed by host, and consumed again: from
// one start URL on the topic, every page of the site is fetched once,
// nothing robots.txt disallows and nothing out of scope.
func TestCrawlKafkaLinks(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	const pages = 300
	cw := startCrawlWorld(t, pages, 2)
	input := testbed.CreateKafkaTopic(t, brokers, "crawl-urls", 3)
	results := testbed.CreateKafkaTopic(t, brokers, "crawl-results", 2)
	testbed.ProduceKafka(t, brokers, input, []kafka.Message{{Value: []byte(cw.site.URL())}})

	cfg := cw.job(t, t.TempDir(), 1000)
	cfg.URLReader = nil
	cfg.Kafka = Defaults().Kafka
	cfg.Kafka.Brokers = brokers
	cfg.Kafka.Topic, cfg.Kafka.Group, cfg.Kafka.ResultsTopic = input, testbed.UniqueName("crawl"), results
	cfg.Kafka.DeadTopic = results + ".dead"
	cfg.Kafka.SessionTimeout = 3 * time.Second
	cfg.Kafka.CommitInterval = 200 * time.Millisecond
	if err := testbed.CreateTopics(context.Background(), brokers, 1, cfg.Kafka.DeadTopic); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := runInBackground(ctx, cfg)
	want := pages + pages/10 // every page, and a robots refusal per /private/ link
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ends, err := testbed.EndOffsets(ctx, brokers, results)
		if err != nil {
			t.Fatal(err)
		}
		n := int64(0)
		for _, e := range ends {
			n += e
		}
		if n >= int64(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d results after 2 minutes, want %d; hits %d", n, want, len(cw.site.Hits()))
		}
		select {
		case r := <-done:
			t.Fatalf("run ended early: %v", r.err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()
	<-done
	checkEveryPageOnce(t, cw.site)
	ok, robots := 0, 0
	for _, m := range testbed.ReadKafka(t, brokers, results) {
		var r record.Result
		if err := json.Unmarshal(m.Value, &r); err != nil {
			t.Fatal(err)
		}
		switch {
		case r.Error == nil:
			ok++
		case r.Error.Class == string(failure.Robots):
			robots++
		}
	}
	if ok != pages || robots != pages/10 {
		t.Errorf("%d ok, %d robots; want %d, %d", ok, robots, pages, pages/10)
	}
	// Links are keyed by host.
	for _, m := range testbed.ReadKafka(t, brokers, input)[1:] {
		var msg record.Message
		if err := json.Unmarshal(m.Value, &msg); err != nil {
			t.Fatal(err)
		}
		if want := strings.TrimPrefix(strings.TrimSuffix(cw.site.URL(), "/"), "http://"); string(m.Key) != want || msg.Depth < 1 || msg.Parent == "" {
			t.Fatalf("link record key %q (want %q), message %+v", m.Key, want, msg)
		}
	}
}

// TestCrawlKafkaSitemaps: in Kafka mode the sitemap's URLs are produced
// to the links topic at start, keyed by host, and consumed like any
// input: every URL the sitemap lists (on its own host) ends as a result
// exactly once. A restart with the crawl's state produces none of them
// again.
func TestCrawlKafkaSitemaps(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	const pages = 300
	want := pages - 1 + testbed.Orphans // /p/1 … and the orphans; not the home page, not the other host
	cw := startCrawlWorld(t, pages, 2)
	input := testbed.CreateKafkaTopic(t, brokers, "sitemap-urls", 3)
	results := testbed.CreateKafkaTopic(t, brokers, "sitemap-results", 2)
	state := t.TempDir()

	cfg := cw.job(t, state, 1000)
	cfg.URLReader = nil
	cfg.Crawl.Sitemaps = []string{cw.site.URL() + "sitemap.xml"}
	cfg.Crawl.MaxDepth = 0
	cfg.Kafka = Defaults().Kafka
	cfg.Kafka.Brokers = brokers
	cfg.Kafka.Topic, cfg.Kafka.Group, cfg.Kafka.ResultsTopic = input, testbed.UniqueName("sitemap"), results
	cfg.Kafka.DeadTopic = results + ".dead"
	cfg.Kafka.SessionTimeout = 3 * time.Second
	cfg.Kafka.CommitInterval = 200 * time.Millisecond
	if err := testbed.CreateTopics(context.Background(), brokers, 1, cfg.Kafka.DeadTopic); err != nil {
		t.Fatal(err)
	}
	sum := func(topic string) int64 {
		ends, err := testbed.EndOffsets(context.Background(), brokers, topic)
		if err != nil {
			t.Fatal(err)
		}
		n := int64(0)
		for _, e := range ends {
			n += e
		}
		return n
	}
	// runUntil runs the job until cond holds, then stops it.
	runUntil := func(log *syncBuffer, what string, cond func() bool) {
		t.Helper()
		c := cfg
		c.Log = zerolog.New(log)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := runInBackground(ctx, c)
		deadline := time.Now().Add(2 * time.Minute)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("no %s after 2 minutes; hits %d", what, len(cw.site.Hits()))
			}
			select {
			case r := <-done:
				t.Fatalf("run ended early: %v", r.err)
			case <-time.After(50 * time.Millisecond):
			}
		}
		cancel()
		if r := <-done; r.err != nil {
			t.Fatalf("run: %v", r.err)
		}
	}
	produced := func(log *syncBuffer) (line map[string]any) {
		for _, l := range strings.Split(log.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["message"] == "sitemap URLs produced" {
				return m
			}
		}
		return nil
	}

	log1 := &syncBuffer{}
	runUntil(log1, "results", func() bool { return produced(log1) != nil && sum(results) >= int64(want) })
	if p := produced(log1); p["produced"] != float64(want) || p["lost"] != float64(0) {
		t.Errorf("first run: %v", p)
	}
	hits := cw.site.Hits()
	for i := 1; i < pages; i++ {
		if n := hits[fmt.Sprintf("/p/%d", i)]; n != 1 {
			t.Errorf("/p/%d requested %d times", i, n)
		}
	}
	for i := range testbed.Orphans {
		if n := hits[fmt.Sprintf("/orphan/%d", i)]; n != 1 {
			t.Errorf("/orphan/%d requested %d times", i, n)
		}
	}
	if hits["/"] != 0 || len(cw.site.OtherHits()) != 0 {
		t.Errorf("home %d, other host %v: not listed (or not allowed) in the sitemap", hits["/"], cw.site.OtherHits())
	}
	urls := map[string]int{}
	for _, m := range testbed.ReadKafka(t, brokers, results) {
		var r record.Result
		if err := json.Unmarshal(m.Value, &r); err != nil {
			t.Fatal(err)
		}
		if r.Error != nil {
			t.Errorf("%s: %+v", r.URL, r.Error)
		}
		urls[r.URL]++
	}
	if len(urls) != want {
		t.Errorf("%d distinct results, want %d", len(urls), want)
	}
	for u, n := range urls {
		if n != 1 {
			t.Errorf("%s: %d results", u, n)
		}
	}
	host := strings.TrimPrefix(strings.TrimSuffix(cw.site.URL(), "/"), "http://")
	in := testbed.ReadKafka(t, brokers, input)
	if len(in) != want {
		t.Errorf("%d URL messages on the input topic, want %d", len(in), want)
	}
	for _, m := range in {
		var msg record.Message
		if err := json.Unmarshal(m.Value, &msg); err != nil {
			t.Fatal(err)
		}
		if string(m.Key) != host || msg.Depth != 0 {
			t.Fatalf("sitemap record key %q (want %q), message %+v", m.Key, host, msg)
		}
	}

	// A restart with the crawl's state: the sitemaps are read again, and
	// every URL is known to the seen-set, so none is produced.
	log2 := &syncBuffer{}
	runUntil(log2, "sitemap line", func() bool { return produced(log2) != nil })
	if p := produced(log2); p["produced"] != float64(0) || p["not_new"] != float64(want) {
		t.Errorf("restart: %v", p)
	}
	if n := sum(input); n != int64(want) {
		t.Errorf("after the restart %d URL messages on the input topic, want %d", n, want)
	}
}
