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
	"github.com/sluicehq/sluice/stages/source"
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
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	return l.produce(ctx, l.crawler.Discovered(o))
}

// produce writes msgs to the links topic, keyed by host, and blocks until
// the broker has them (acks=all), ctx ends or the timeout passes.
func (l *linksWriter) produce(ctx context.Context, msgs []record.Message) error {
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
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	if err := l.w.WriteMessages(ctx, km...); err != nil {
		l.lost.Add(int64(len(km)))
		return fmt.Errorf("links to %s: %w", l.w.Topic, err)
	}
	l.written.Add(int64(len(km)))
	return nil
}

// sitemapBatch is how many sitemap URLs are produced in one write.
const sitemapBatch = 500

// sitemaps reads the crawl's sitemaps (bounded as in file mode) and
// produces their URLs that the seen-set has not seen to the links topic,
// in batches, so that the run consumes them like any input; a restart
// with the crawl's state does not produce them again. It returns when the
// sitemaps are read or ctx ends. URLs marked seen whose batch could not
// be produced are counted lost and logged, like lost links.
func (l *linksWriter) sitemaps(ctx context.Context, sc source.SitemapConfig) {
	var batch []record.Message
	produced, seen, lost := 0, 0, 0
	flush := func() {
		if err := l.produce(ctx, batch); err != nil {
			lost += len(batch)
			sc.Logger.Error().Err(err).Int("urls", len(batch)).Msg("crawl: sitemap URLs lost")
		} else {
			produced += len(batch)
		}
		batch = batch[:0]
	}
	err := source.Sitemaps(ctx, sc, func(m record.Message) error {
		m, ok, err := l.crawler.Admit(m)
		if err != nil || !ok {
			seen++
			return nil
		}
		if batch = append(batch, m); len(batch) >= sitemapBatch {
			flush()
		}
		return nil
	})
	flush()
	if err != nil {
		sc.Logger.Error().Err(err).Msg("crawl: sitemaps")
	}
	sc.Logger.Info().Int("produced", produced).Int("not_new", seen).Int("lost", lost).Str("topic", l.w.Topic).Msg("sitemap URLs produced")
}

func (l *linksWriter) close() error { return l.w.Close() }
