package app

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

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
