package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

func TestKafkaConformance(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	runConformance(t, sinkUnderTest{
		open: func(t *testing.T, o sinkOptions) (*flow.Sink[record.Output], func(*testing.T) written) {
			cfg := kafkaTopics(t, brokers, 3)
			cfg.BatchSize, cfg.FlushInterval, cfg.OnDone = o.BatchSize, o.FlushInterval, o.OnDone
			k, err := NewKafka(cfg)
			if err != nil {
				t.Fatal(err)
			}
			return k.Sink(), func(t *testing.T) written { return readKafkaStore(t, brokers, cfg) }
		},
		broken: func(t *testing.T, o sinkOptions) *flow.Sink[record.Output] {
			// Real brokers that refuse every record: the topics accept
			// records of at most 64 bytes.
			cfg := kafkaTopics(t, brokers, 1)
			for _, topic := range []string{cfg.ResultsTopic, cfg.PagesTopic, cfg.DeadTopic} {
				setTopicConfig(t, brokers, topic, "max.message.bytes", "64")
			}
			cfg.BatchSize, cfg.FlushInterval, cfg.OnDone = o.BatchSize, o.FlushInterval, o.OnDone
			k, err := NewKafka(cfg)
			if err != nil {
				t.Fatal(err)
			}
			return k.Sink()
		},
	})
}

func kafkaTopics(t *testing.T, brokers []string, partitions int) KafkaConfig {
	return KafkaConfig{
		Brokers:      brokers,
		ResultsTopic: testbed.CreateKafkaTopic(t, brokers, "results", partitions),
		PagesTopic:   testbed.CreateKafkaTopic(t, brokers, "pages", partitions),
		DeadTopic:    testbed.CreateKafkaTopic(t, brokers, "dead", partitions),
		Logger:       zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	}
}

func setTopicConfig(t *testing.T, brokers []string, topic, key, value string) {
	t.Helper()
	c, done := testbed.KafkaClient(brokers)
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.IncrementalAlterConfigs(ctx, &kafka.IncrementalAlterConfigsRequest{Resources: []kafka.IncrementalAlterConfigsRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic,
		Configs: []kafka.IncrementalAlterConfigsRequestConfig{{Name: key, Value: value, ConfigOperation: kafka.ConfigOperationSet}},
	}}})
	if err == nil && len(res.Resources) == 1 {
		err = res.Resources[0].Error
	}
	if err != nil {
		t.Fatalf("set %s=%s on %s: %v", key, value, topic, err)
	}
}

// readKafkaStore reads the three topics back, checking every record's
// headers on the way.
func readKafkaStore(t *testing.T, brokers []string, cfg KafkaConfig) written {
	t.Helper()
	var w written
	readTopic(t, brokers, cfg.ResultsTopic, KindResult, &w.Results)
	readTopic(t, brokers, cfg.PagesTopic, KindPage, &w.Pages)
	readTopic(t, brokers, cfg.DeadTopic, KindDeadLetter, &w.Dead)
	return w
}

func readTopic[T any](t *testing.T, brokers []string, topic, kind string, out *[]keyed[T]) {
	t.Helper()
	for _, m := range testbed.ReadKafka(t, brokers, topic) {
		h := map[string]string{}
		for _, x := range m.Headers {
			h[x.Key] = string(x.Value)
		}
		if h["schema"] != "1" || h["record"] != kind {
			t.Fatalf("%s: headers %v", topic, h)
		}
		var v T
		if err := json.Unmarshal(m.Value, &v); err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
		*out = append(*out, keyed[T]{Key: string(m.Key), Value: v})
	}
}

// TestKafkaSinkLargeRecords writes a page far over the record cap and a
// result with a huge list of links: both are written within the cap, the
// page cut and marked truncated.
func TestKafkaSinkLargeRecords(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	cfg := kafkaTopics(t, brokers, 1)
	cfg.MaxRecordBytes = 200_000
	k, err := NewKafka(cfg)
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("<p>lorem ipsum</p>"), 100_000) // 1.8 MB
	links := make([]string, 20_000)
	for i := range links {
		links[i] = "http://shop.test/a/rather/long/link/" + strings.Repeat("x", 20)
	}
	u := "http://shop.test/big"
	acks := &ackLog{}
	out := record.Output{
		Result: &record.Result{Schema: 1, URL: u, Status: 200, Fields: map[string]any{}, Links: links},
		Page:   &record.Page{Schema: 1, URL: u, Status: 200, Body: body},
		Ack:    acks.ack(0),
	}
	if err := runSink(context.Background(), k.Sink(), []record.Output{out}); err != nil {
		t.Fatal(err)
	}
	if acks.times(0) != 1 {
		t.Fatal("the large output was not acknowledged")
	}
	w := readKafkaStore(t, brokers, cfg)
	if len(w.Pages) != 1 || len(w.Results) != 1 {
		t.Fatalf("%d pages and %d results", len(w.Pages), len(w.Results))
	}
	p := w.Pages[0].Value
	if !p.Truncated || len(p.Body) == 0 || !bytes.HasPrefix(body, p.Body) || len(p.Body) > cfg.MaxRecordBytes {
		t.Fatalf("page: truncated %v, %d body bytes", p.Truncated, len(p.Body))
	}
	if r := w.Results[0].Value; len(r.Links) != 0 || r.Error != nil {
		t.Fatalf("result kept %d links, error %v", len(r.Links), r.Error)
	}
}

func TestKafkaSinkMissingTopic(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	cfg := kafkaTopics(t, brokers, 1)
	cfg.ResultsTopic = testbed.UniqueName("no-such-topic")
	k, err := NewKafka(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = runSink(context.Background(), k.Sink(), nil)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing topic: %v", err)
	}
}

// TestKafkaSinkAcksOnlyWhenEveryWriteSucceeded breaks only the pages
// topic: results are written, but no input whose page was refused is
// acknowledged.
func TestKafkaSinkAcksOnlyWhenEveryWriteSucceeded(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	cfg := kafkaTopics(t, brokers, 1)
	setTopicConfig(t, brokers, cfg.PagesTopic, "max.message.bytes", "64")
	k, err := NewKafka(cfg)
	if err != nil {
		t.Fatal(err)
	}
	acks := &ackLog{}
	outs := outputs(8, acks) // output 1 and 5 carry a page
	err = runSink(context.Background(), k.Sink(), outs)
	if err == nil {
		t.Fatal("a refused page did not fail the sink")
	}
	for _, i := range []int{1, 5} {
		if acks.times(i) != 0 {
			t.Fatalf("output %d acknowledged though its page was refused", i)
		}
	}
	if w := readKafkaStore(t, brokers, cfg); len(w.Pages) != 0 {
		t.Fatalf("%d pages written", len(w.Pages))
	}
}

// BenchmarkKafkaSink writes outputs (a result and an 8 KiB page each)
// through the Kafka sink to a real broker, acks=all.
func BenchmarkKafkaSink(b *testing.B) {
	brokers := testbed.KafkaBrokers(b)
	page := bytes.Repeat([]byte("<p>product text</p>"), 8<<10/19)
	cfg := KafkaConfig{
		Brokers:      brokers,
		ResultsTopic: testbed.CreateKafkaTopic(b, brokers, "bench-results", 4),
		PagesTopic:   testbed.CreateKafkaTopic(b, brokers, "bench-pages", 4),
		DeadTopic:    testbed.CreateKafkaTopic(b, brokers, "bench-dead", 1),
	}
	k, err := NewKafka(cfg)
	if err != nil {
		b.Fatal(err)
	}
	outs := make([]record.Output, b.N)
	for i := range outs {
		u := "http://shop.test/p/" + strconv.Itoa(i)
		name := "Product " + strconv.Itoa(i)
		outs[i] = record.Output{
			Result: &record.Result{Schema: 1, URL: u, Status: 200, Fields: map[string]any{"name": name}, Links: []string{}},
			Page:   &record.Page{Schema: 1, URL: u, Status: 200, Body: page},
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	if err := runSink(context.Background(), k.Sink(), outs); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "outputs/s")
}
