package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/record"
)

// Record kinds, in the "record" header of every message the Kafka sink writes.
const (
	KindResult     = "result"
	KindPage       = "page"
	KindDeadLetter = "dead_letter"
	KindDelayed    = "delayed"
)

// KafkaConfig configures the Kafka sink. Brokers, ResultsTopic and
// DeadTopic are required; every other zero value is a documented default.
type KafkaConfig struct {
	// Brokers are the bootstrap addresses, host:port.
	Brokers []string
	// Transport carries client id, TLS and SASL; nil means a plain
	// transport of the sink's own, closed when the sink finishes.
	Transport *kafka.Transport
	// ResultsTopic receives one Result per input, key = URL.
	ResultsTopic string
	// PagesTopic, when set, receives the Page of every fetched input, key =
	// URL, compressed with PagesCompression.
	PagesTopic string
	// DeadTopic receives the dead letters, key = the input record's key.
	DeadTopic string
	// DelayTopic, when set, receives the parked inputs (record.Delayed),
	// key = the input record's key (see delay.go). Outputs with Delay set
	// are refused when it is empty.
	DelayTopic string
	// PagesCompression compresses the pages topic's batches; 0 means zstd.
	PagesCompression kafka.Compression

	// BatchSize is how many outputs are written per round. 0 means 256.
	BatchSize int
	// FlushInterval bounds how long a partial batch waits. 0 means 20 ms.
	FlushInterval time.Duration
	// BatchTimeout is the kafka-go writer's own wait for a fuller batch
	// (its default of 1 s would slow every write). 0 means 5 ms.
	BatchTimeout time.Duration
	// MaxRecordBytes caps one record: a page beyond it keeps a prefix of its
	// body (marked truncated), a result loses its links. 0 means 1,000,000
	// (within a broker's default message.max.bytes).
	MaxRecordBytes int
	// WriteTimeout bounds one write round to the brokers; a round that fails
	// or times out is tried again. 0 means 30 s.
	WriteTimeout time.Duration
	// RetryMax caps the pause between rounds of a failing write, which are
	// retried for as long as the pipeline runs (a broker restart is waited
	// out; nothing is acknowledged meanwhile). 0 means 5 s.
	RetryMax time.Duration
	// QueueSize is the capacity of the sink's input queue. 0 means BatchSize.
	QueueSize int
	// OnDone, if set, is called from the sink's goroutine for every output
	// once it is durable, just before it is acknowledged: what must follow
	// an output (a crawl producing the page's links) is done before its
	// input can be committed, so a crash between the two repeats the
	// input rather than losing the links.
	OnDone func(record.Output)
	// Logger receives warnings about failed writes.
	Logger zerolog.Logger
}

func (c *KafkaConfig) setDefaults() {
	if c.PagesCompression == 0 {
		c.PagesCompression = kafka.Zstd
	}
	if c.BatchSize == 0 {
		c.BatchSize = 256
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = 20 * time.Millisecond
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = 5 * time.Millisecond
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = 1_000_000
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.RetryMax == 0 {
		c.RetryMax = 5 * time.Second
	}
	if c.QueueSize == 0 {
		c.QueueSize = c.BatchSize
	}
}

// Validate reports every invalid setting.
func (c *KafkaConfig) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("no brokers"))
	}
	if c.ResultsTopic == "" || c.DeadTopic == "" {
		errs = append(errs, errors.New("the results and dead-letter topics are required"))
	}
	if c.BatchSize < 1 || c.QueueSize < 1 || c.MaxRecordBytes < 4096 {
		errs = append(errs, fmt.Errorf("batch size %d and queue size %d must be positive, max record bytes %d at least 4096",
			c.BatchSize, c.QueueSize, c.MaxRecordBytes))
	}
	if c.FlushInterval < 0 || c.BatchTimeout < 0 || c.WriteTimeout <= 0 || c.RetryMax <= 0 {
		errs = append(errs, errors.New("flush interval, batch timeout, write timeout and retry max must not be negative"))
	}
	return errors.Join(errs...)
}

// Kafka writes outputs to Kafka topics: results, pages and dead letters,
// each with acks from all in-sync replicas. An input is acknowledged only
// once every record written for it is acknowledged by the brokers.
type Kafka struct {
	cfg     KafkaConfig
	tr      *kafka.Transport
	ownTr   bool
	results *kafka.Writer
	pages   *kafka.Writer
	dead    *kafka.Writer
	delay   *kafka.Writer // nil without a delay topic
	sink    *flow.Sink[record.Output]
	log     zerolog.Logger

	mu       sync.Mutex // guards the fields below
	written  map[string]uint64
	writeErr error // the last write error while retrying, nil once a write succeeds
	failed   error // the error that ended the sink
}

// Ready reports whether the sink can write: an error while writes fail
// (and are being retried) or after a write failed for good. Safe for
// concurrent use.
func (k *Kafka) Ready() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.failed != nil {
		return k.failed
	}
	if k.writeErr != nil {
		return fmt.Errorf("writes failing: %w", k.writeErr)
	}
	return nil
}

// Written returns the records written so far, by topic. Safe for
// concurrent use.
func (k *Kafka) Written() map[string]uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]uint64, len(k.written))
	for t, n := range k.written {
		out[t] = n
	}
	return out
}

// DeadTopic is the dead-letter topic.
func (k *Kafka) DeadTopic() string { return k.cfg.DeadTopic }

// BatchSize is the most outputs the sink holds besides its queue.
func (k *Kafka) BatchSize() int { return k.cfg.BatchSize }

func (k *Kafka) noteWrite(topic string, n int, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.writeErr = err
	if err == nil {
		if k.written == nil {
			k.written = map[string]uint64{}
		}
		k.written[topic] += uint64(n)
	}
}

// NewKafka validates cfg and builds the sink. It connects to nothing until
// the pipeline runs; then it first checks that its topics exist.
func NewKafka(cfg KafkaConfig) (*Kafka, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka sink config: %w", err)
	}
	k := &Kafka{cfg: cfg, tr: cfg.Transport, log: cfg.Logger.With().Str("stage", "sink").Logger()}
	if k.tr == nil {
		k.tr, k.ownTr = &kafka.Transport{}, true
	}
	k.results = k.writer(cfg.ResultsTopic, 0)
	k.dead = k.writer(cfg.DeadTopic, 0)
	if cfg.PagesTopic != "" {
		k.pages = k.writer(cfg.PagesTopic, cfg.PagesCompression)
	}
	if cfg.DelayTopic != "" {
		k.delay = k.writer(cfg.DelayTopic, 0)
	}
	k.sink = flow.NewSink("sink", cfg.QueueSize, k.run)
	return k, nil
}

func (k *Kafka) writer(topic string, comp kafka.Compression) *kafka.Writer {
	return &kafka.Writer{
		Addr:            kafka.TCP(k.cfg.Brokers...),
		Topic:           topic,
		Transport:       k.tr,
		Balancer:        &kafka.Murmur2Balancer{}, // the Java client's partitioner: same key, same partition
		RequiredAcks:    kafka.RequireAll,
		BatchTimeout:    k.cfg.BatchTimeout,
		BatchSize:       k.cfg.BatchSize,
		BatchBytes:      int64(k.cfg.MaxRecordBytes) + 8<<10,
		MaxAttempts:     3,
		WriteBackoffMin: 50 * time.Millisecond,
		WriteBackoffMax: 500 * time.Millisecond,
		ReadTimeout:     k.cfg.WriteTimeout,
		WriteTimeout:    k.cfg.WriteTimeout,
		Compression:     comp,
		ErrorLogger:     kafka.LoggerFunc(func(f string, a ...any) { k.log.Debug().Msgf(f, a...) }),
	}
}

// Sink returns the stage to connect into a pipeline.
func (k *Kafka) Sink() *flow.Sink[record.Output] { return k.sink }

func (k *Kafka) run(ctx context.Context, in flow.Inbox[record.Output]) (err error) {
	defer func() {
		for _, w := range []*kafka.Writer{k.results, k.pages, k.dead, k.delay} {
			if w != nil {
				err = errors.Join(err, w.Close())
			}
		}
		if k.ownTr {
			k.tr.CloseIdleConnections()
		}
	}()
	if err := k.checkTopics(ctx); err != nil {
		return err
	}
	batch := make([]record.Output, 0, k.cfg.BatchSize)
	timer := time.NewTimer(k.cfg.FlushInterval)
	timer.Stop()
	defer timer.Stop()
	var timerC <-chan time.Time
	for {
		o, st := in.RecvBefore(ctx, timerC)
		switch st {
		case flow.Got:
			if len(batch) == 0 {
				timer.Reset(k.cfg.FlushInterval)
				timerC = timer.C
			}
			batch = append(batch, o)
			if len(batch) < k.cfg.BatchSize {
				continue
			}
		case flow.TimedOut:
		case flow.Closed:
			return k.commit(ctx, batch)
		case flow.Canceled:
			return nil // hard stop: what is not durable stays unacknowledged
		}
		timer.Stop()
		timerC = nil
		if err := k.commit(ctx, batch); err != nil {
			k.mu.Lock()
			k.failed = err
			k.mu.Unlock()
			return err
		}
		batch = batch[:0]
	}
}

// checkTopics fails when a topic does not exist, so that a misspelt name
// is an error at start rather than a pipeline that never acknowledges.
// While the brokers cannot be reached it keeps trying, until ctx ends.
func (k *Kafka) checkTopics(ctx context.Context) error {
	topics := []string{k.cfg.ResultsTopic, k.cfg.DeadTopic}
	if k.cfg.PagesTopic != "" {
		topics = append(topics, k.cfg.PagesTopic)
	}
	if k.cfg.DelayTopic != "" {
		topics = append(topics, k.cfg.DelayTopic)
	}
	c := &kafka.Client{Addr: kafka.TCP(k.cfg.Brokers...), Transport: k.tr, Timeout: k.cfg.WriteTimeout}
	pause := 100 * time.Millisecond
	for {
		md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
		if err == nil {
			ok := 0
			for _, t := range md.Topics {
				if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
					return fmt.Errorf("kafka sink: topic %q does not exist", t.Name)
				}
				if t.Error == nil {
					ok++
				}
			}
			if ok == len(topics) {
				return nil
			}
		}
		k.log.Warn().Err(err).Strs("topics", topics).Msg("cannot check the output topics yet; retrying")
		if !sleepCtx(ctx, pause) {
			return nil // hard stop before anything was written
		}
		pause = min(2*pause, k.cfg.RetryMax)
	}
}

// commit writes a batch to its topics and acknowledges its inputs once
// every write has succeeded. It returns nil without acknowledging when ctx
// ends first, and an error when a write fails for good.
func (k *Kafka) commit(ctx context.Context, batch []record.Output) error {
	if len(batch) == 0 {
		return nil
	}
	var res, pages, dead, delayed []kafka.Message
	for _, o := range batch {
		if o.Delay != nil {
			m, err := k.delayMessage(o)
			if err != nil {
				return err
			}
			delayed = append(delayed, m)
		}
		if o.Result != nil {
			m, err := k.resultMessage(o.Result)
			if err != nil {
				return err
			}
			res = append(res, m)
		}
		if o.Page != nil && k.pages != nil {
			if m, ok := k.pageMessage(o.Page); ok {
				pages = append(pages, m)
			}
		}
		if o.Dead != nil {
			m, err := k.deadMessage(o.Dead)
			if err != nil {
				return err
			}
			dead = append(dead, m)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i, job := range []struct {
		w    *kafka.Writer
		msgs []kafka.Message
	}{{k.results, res}, {k.pages, pages}, {k.dead, dead}, {k.delay, delayed}} {
		if len(job.msgs) == 0 {
			continue
		}
		wg.Add(1)
		go func() { // owner: commit; ends with the write
			defer wg.Done()
			errs[i] = k.write(ctx, job.w, job.msgs)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil // hard stop: the batch stays unacknowledged
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, o := range batch {
		if k.cfg.OnDone != nil {
			k.cfg.OnDone(o) // before the ack: see OnDone
		}
		o.Ack.Done()
	}
	k.sink.Stats().Done(len(batch))
	return nil
}

// write writes msgs, writing again those that failed, with a growing
// pause, until all are written, one fails for good, or ctx ends.
func (k *Kafka) write(ctx context.Context, w *kafka.Writer, msgs []kafka.Message) error {
	pause := 100 * time.Millisecond
	for {
		wctx, cancel := context.WithTimeout(ctx, k.cfg.WriteTimeout)
		err := w.WriteMessages(wctx, msgs...)
		cancel()
		if err == nil {
			k.noteWrite(w.Topic, len(msgs), nil)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		k.noteWrite(w.Topic, 0, err)
		var werrs kafka.WriteErrors
		if errors.As(err, &werrs) && len(werrs) == len(msgs) {
			var failed []kafka.Message
			for i, e := range werrs {
				if e == nil {
					continue
				}
				if permanent(e) {
					return fmt.Errorf("write to %s: %w", w.Topic, e)
				}
				failed = append(failed, msgs[i])
			}
			msgs = failed
		} else if permanent(err) {
			return fmt.Errorf("write to %s: %w", w.Topic, err)
		}
		k.log.Warn().Err(err).Str("topic", w.Topic).Int("records", len(msgs)).Dur("pause", pause).Msg("write failed; retrying")
		if !sleepCtx(ctx, pause) {
			return ctx.Err()
		}
		pause = min(2*pause, k.cfg.RetryMax)
	}
}

// permanent reports whether another try cannot succeed.
func permanent(err error) bool {
	var tooLarge kafka.MessageTooLargeError
	if errors.As(err, &tooLarge) {
		return true
	}
	var ke kafka.Error
	return errors.As(err, &ke) && !ke.Temporary()
}

func headers(kind string) []kafka.Header {
	return []kafka.Header{
		{Key: "schema", Value: []byte(strconv.Itoa(record.SchemaVersion))},
		{Key: "record", Value: []byte(kind)},
		{Key: "content-type", Value: []byte("application/json")},
	}
}

// limit is the largest value for a record with the given key.
func (k *Kafka) limit(key string) int { return k.cfg.MaxRecordBytes - len(key) - 256 }

func (k *Kafka) resultMessage(r *record.Result) (kafka.Message, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encode result: %w", err)
	}
	if len(b) > k.limit(r.URL) {
		// Too large for the topic: keep the fields, drop the links and
		// the structured data; failing that, say so in the result itself.
		cp := *r
		cp.Links, cp.Structured = []string{}, nil
		if b, err = json.Marshal(&cp); err == nil && len(b) > k.limit(r.URL) {
			cp.Fields, cp.Meta = map[string]any{}, nil
			cp.Error = &record.Error{Class: string(failure.TooLarge), Message: fmt.Sprintf("result exceeds the record cap of %d bytes", k.cfg.MaxRecordBytes)}
			b, err = json.Marshal(&cp)
		}
		if err != nil {
			return kafka.Message{}, fmt.Errorf("encode result: %w", err)
		}
	}
	return kafka.Message{Key: []byte(r.URL), Value: b, Headers: headers(KindResult)}, nil
}

// pageMessage encodes a page within the record cap, cutting its body (and
// marking it truncated) when needed. A page that cannot fit even without a
// body is not written (ok = false): pages are for replay, and the result
// has already been written.
func (k *Kafka) pageMessage(p *record.Page) (kafka.Message, bool) {
	limit := k.limit(p.URL)
	b, err := json.Marshal(p)
	for err == nil && len(b) > limit && len(p.Body) > 0 {
		cp := *p
		// The body is base64 in JSON: 4 bytes for every 3.
		cut := (len(b)-limit)*3/4 + 4
		cp.Body = p.Body[:max(0, len(p.Body)-cut)]
		cp.Truncated = true
		p = &cp
		b, err = json.Marshal(p)
	}
	if err != nil || len(b) > limit {
		k.log.Warn().Err(err).Str("url", p.URL).Int("bytes", len(b)).Msg("page too large for the pages topic; not kept")
		return kafka.Message{}, false
	}
	return kafka.Message{Key: []byte(p.URL), Value: b, Headers: headers(KindPage)}, true
}

func (k *Kafka) deadMessage(d *record.DeadLetter) (kafka.Message, error) {
	cp := *d
	if len(cp.Key) > 4096 {
		cp.Key = cp.Key[:4096]
	}
	if room := (k.limit(string(cp.Key)) - 4096) * 3 / 4; len(cp.Value) > room {
		cp.Value = cp.Value[:room]
	}
	b, err := json.Marshal(&cp)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encode dead letter: %w", err)
	}
	return kafka.Message{Key: cp.Key, Value: b, Headers: headers(KindDeadLetter)}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
