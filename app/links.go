package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sync/atomic"
	"time"

	kgo "github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/crawl"
	"github.com/sluicehq/sluice/kafka"
	"github.com/sluicehq/sluice/record"
)

// linksWriter produces the links a Kafka-mode crawl follows to the links
// topic (the input topic unless --links-topic), keyed by host so that one
// host's URLs land in one partition, and so with one consumer and its
// seen-set.
type linksWriter struct {
	crawler *crawl.Crawler
	w       *kgo.Writer
	timeout time.Duration
	written atomic.Int64
	lost    atomic.Int64
}

// newLinksWriter builds the writer over the run's Kafka client, as the
// Kafka sink builds its writers (the Java client's partitioner, acks=all).
func newLinksWriter(client *kafka.Client, topic string, crawler *crawl.Crawler) *linksWriter {
	return &linksWriter{crawler: crawler, timeout: 30 * time.Second, w: &kgo.Writer{
		Addr:            kgo.TCP(client.Brokers...),
		Topic:           topic,
		Transport:       client.Transport,
		Balancer:        &kgo.Murmur2Balancer{},
		RequiredAcks:    kgo.RequireAll,
		BatchTimeout:    time.Millisecond,
		BatchSize:       1000,
		MaxAttempts:     5,
		WriteBackoffMin: 50 * time.Millisecond,
		WriteBackoffMax: time.Second,
	}}
}

// write produces the links of o that the crawl follows. It blocks until
// the broker has them (acks=all) or the timeout passes; it is called from
// the sink's goroutine, so a slow broker slows the sink, not memory.
func (l *linksWriter) write(o record.Output) error {
	msgs := l.crawler.Discovered(o)
	if len(msgs) == 0 {
		return nil
	}
	km := make([]kgo.Message, 0, len(msgs))
	for _, m := range msgs {
		u, err := url.Parse(m.URL)
		if err != nil {
			continue
		}
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		km = append(km, kgo.Message{Key: []byte(u.Host), Value: b})
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	if err := l.w.WriteMessages(ctx, km...); err != nil {
		l.lost.Add(int64(len(km)))
		return fmt.Errorf("links to %s: %w", l.w.Topic, err)
	}
	l.written.Add(int64(len(km)))
	return nil
}

func (l *linksWriter) close() error { return l.w.Close() }
