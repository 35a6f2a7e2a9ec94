package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/stages/parse"
	"github.com/sluicehq/sluice/stages/sink"
)

// replayItem is one stored page on its way to being parsed again, or a
// record that is not a page (Dead set).
type replayItem struct {
	Page *record.Page
	Dead *record.DeadLetter
	Ack  record.Ack
}

// replayConfig is one replay: where the pages come from, where results go.
type replayConfig struct {
	Kafka      kafkaConfig
	PagesFile  string
	FromOffset int64     // -1: the beginning
	FromTime   time.Time // zero: use FromOffset
	Out        string
	OutWriter  io.Writer
	Rules      *parse.Rules
	Log        zerolog.Logger
}

const replayUsage = `pipeline replay parses stored pages again, with no network access to
the pages' sites: from the pages topic (--brokers, --pages-topic) from an
offset or a time up to its end when the replay starts, or from a pages JSONL
file (--pages-file), into a results JSONL file (--out) or topic
(--results-topic).
`

func cmdReplay(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, replayUsage); fs.PrintDefaults() }
	pagesFile := fs.String("pages-file", "", "replay the pages of this JSONL file (written by run --pages) instead of a topic")
	from := fs.Int64("from-offset", -1, "start at this offset in every partition of the pages topic (-1: the beginning)")
	fromTime := fs.String("from-time", "", "start at the first page stored at or after this time (RFC 3339)")
	out := fs.String("out", "-", "results JSONL file, - for stdout (unless --results-topic)")
	rules := fs.String("rules", "", "extraction rules (YAML); default: the built-in rules")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	config := fs.String("config", "", "job config file (YAML); replay uses its kafka: section and rules")
	fillKafka := kafkaFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v", fs.Args())
	}
	log, _, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	var kc kafkaConfig
	rulesFile := *rules
	if *config != "" {
		fc, err := loadConfig(*config)
		if err != nil {
			return usageError{err}
		}
		kc = fc.Kafka
		if rulesFile == "" {
			rulesFile = fc.Rules
		}
	}
	if err := fillKafka(&kc); err != nil {
		return err
	}
	cfg := replayConfig{Kafka: kc, PagesFile: *pagesFile, FromOffset: *from, Out: *out, Log: log}
	if *out == "-" {
		cfg.OutWriter = stdout
	}
	if *fromTime != "" {
		if cfg.FromTime, err = time.Parse(time.RFC3339, *fromTime); err != nil {
			return usagef("--from-time: %v", err)
		}
	}
	if (cfg.PagesFile == "") == (kc.PagesTopic == "") {
		return usagef("give exactly one of --pages-topic and --pages-file")
	}
	cfg.Rules = parse.DefaultRules()
	if rulesFile != "" {
		if cfg.Rules, err = parse.LoadRules(rulesFile); err != nil {
			return usageError{err}
		}
	}
	sum, err := runReplay(context.Background(), cfg)
	fmt.Fprintf(stderr, "replay: %d pages read, %d results, %d not pages, %d errors\n", sum.Read, sum.OK+sum.errorCount(), sum.Errors["dead_letter"], sum.errorCount()-sum.Errors["dead_letter"])
	return err
}

// runReplay builds pages → parse → sink and runs it until every page up to
// the end found at start is written, or a signal stops it.
func runReplay(ctx context.Context, cfg replayConfig) (summary, error) {
	sum := summary{Errors: map[string]int{}}
	var mu sync.Mutex
	count := func(o record.Output) {
		mu.Lock()
		defer mu.Unlock()
		sum.Written++
		switch {
		case o.Dead != nil:
			sum.Errors["dead_letter"]++
		case o.Result.Error != nil:
			sum.Errors[o.Result.Error.Class]++
		default:
			sum.OK++
		}
	}
	var src *flow.Source[replayItem]
	var closers []func() error
	if cfg.PagesFile != "" {
		src = pagesFromFile(cfg.PagesFile)
	} else {
		dialer, transport, err := cfg.Kafka.connect()
		if err != nil {
			return sum, err
		}
		closers = append(closers, func() error { transport.CloseIdleConnections(); return nil })
		src = pagesFromTopic(cfg, dialer, transport)
	}
	st, err := parse.NewStage(parse.Config{Rules: cfg.Rules})
	if err != nil {
		return sum, err
	}
	reparse := flow.NewMap("parse", 2*runtime.GOMAXPROCS(0), runtime.GOMAXPROCS(0), func(it replayItem) record.Output {
		if it.Dead != nil {
			return record.Output{Dead: it.Dead, Ack: it.Ack}
		}
		return record.Output{Result: st.Reparse(it.Page), Ack: it.Ack}
	})
	var out *flow.Sink[record.Output]
	if cfg.Kafka.ResultsTopic != "" {
		k, err := sink.NewKafka(sink.KafkaConfig{Brokers: cfg.Kafka.Brokers, ResultsTopic: cfg.Kafka.ResultsTopic,
			DeadTopic: cfg.Kafka.DeadTopic, OnDone: count, Logger: cfg.Log})
		if err != nil {
			return sum, usageError{err}
		}
		out = k.Sink()
	} else {
		j, err := sink.NewJSONL(sink.JSONLConfig{Path: cfg.Out, Writer: cfg.OutWriter, OnDone: count})
		if err != nil {
			return sum, err
		}
		out = j.Sink()
	}
	flow.Connect[replayItem](src, reparse)
	flow.Connect[record.Output](reparse, out)
	hard, soft, stop := signalContexts(ctx, 30*time.Second, cfg.Log)
	defer stop()
	start := time.Now()
	err = flow.Run(hard, soft, src, reparse, out)
	err = errors.Join(err, closeAll(closers))
	mu.Lock()
	defer mu.Unlock()
	sum.Elapsed = time.Since(start)
	sum.Read = src.Stats().Processed()
	return sum, err
}

// pagesFromFile reads Page records, one JSON object per line.
func pagesFromFile(path string) *flow.Source[replayItem] {
	return flow.NewSource("pages", func(stop context.Context, emit flow.Emit[replayItem]) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		var n int64
		for sc.Scan() && stop.Err() == nil {
			n++
			if err := emit(decodePage(sc.Bytes(), "", 0, n)); err != nil {
				return nil
			}
		}
		return sc.Err()
	})
}

// decodePage decodes one stored page; a record that is not a page becomes a
// dead letter, so that nothing read is lost without a trace.
func decodePage(b []byte, topic string, partition int, offset int64) replayItem {
	var p record.Page
	err := json.Unmarshal(b, &p)
	if err == nil && (p.Schema != record.SchemaVersion || p.URL == "") {
		err = fmt.Errorf("schema %d, url %q", p.Schema, p.URL)
	}
	if err == nil {
		return replayItem{Page: &p}
	}
	raw := b
	if len(raw) > 64<<10 {
		raw = raw[:64<<10]
	}
	return replayItem{Dead: &record.DeadLetter{
		Schema: record.SchemaVersion, Value: append([]byte(nil), raw...), Topic: topic, Partition: partition, Offset: offset,
		Error: record.Error{Class: string(failure.BadInput), Message: "not a page record: " + err.Error()}, At: time.Now().UTC(),
	}}
}

// pagesFromTopic reads every partition of the pages topic from the start
// offset (or time) up to the end offset it finds when it starts.
func pagesFromTopic(cfg replayConfig, dialer *kafka.Dialer, transport *kafka.Transport) *flow.Source[replayItem] {
	kc := cfg.Kafka
	return flow.NewSource("pages", func(stop context.Context, emit flow.Emit[replayItem]) error {
		firsts, ends, err := offsetRange(stop, kc.Brokers, transport, kc.PagesTopic)
		if err != nil {
			return err
		}
		items := make(chan replayItem)
		errs := make(chan error, len(ends))
		ctx, cancel := context.WithCancel(stop)
		defer cancel()
		var wg sync.WaitGroup
		for p, end := range ends {
			wg.Add(1)
			go func() { // owner: this source; ends at the partition's end or stop
				defer wg.Done()
				errs <- readPages(ctx, cfg, dialer, p, firsts[p], end, items)
			}()
		}
		go func() { wg.Wait(); close(items) }()
		for it := range items {
			if err := emit(it); err != nil {
				cancel()
			}
		}
		close(errs)
		var all []error
		for err := range errs {
			all = append(all, err)
		}
		return errors.Join(all...)
	})
}

func readPages(ctx context.Context, cfg replayConfig, dialer *kafka.Dialer, partition int, first, end int64, out chan<- replayItem) error {
	if first >= end || cfg.FromOffset >= end {
		return nil // nothing stored
	}
	kc := cfg.Kafka
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: kc.Brokers, Topic: kc.PagesTopic, Partition: partition, Dialer: dialer,
		MaxWait: 250 * time.Millisecond, MaxBytes: 8 << 20, QueueCapacity: 32})
	defer r.Close()
	switch {
	case !cfg.FromTime.IsZero():
		if err := r.SetOffsetAt(ctx, cfg.FromTime); err != nil {
			return fmt.Errorf("partition %d: seek to %s: %w", partition, cfg.FromTime.Format(time.RFC3339), err)
		}
	case cfg.FromOffset >= 0:
		if err := r.SetOffset(cfg.FromOffset); err != nil {
			return err
		}
	default:
		if err := r.SetOffset(kafka.FirstOffset); err != nil {
			return err
		}
	}
	if off := r.Offset(); off == kafka.LastOffset || off >= end {
		return nil // nothing stored after the start
	}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("partition %d: %w", partition, err)
		}
		if m.Offset >= end {
			return nil
		}
		select {
		case out <- decodePage(m.Value, m.Topic, m.Partition, m.Offset):
		case <-ctx.Done():
			return nil
		}
		if m.Offset == end-1 {
			return nil
		}
	}
}

// offsetRange returns, for every partition of topic, the first offset
// stored and the offset after the last one.
func offsetRange(ctx context.Context, brokers []string, tr *kafka.Transport, topic string) (firsts, ends map[int]int64, err error) {
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr, Timeout: 10 * time.Second}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, nil, fmt.Errorf("pages topic: %w", err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return nil, nil, fmt.Errorf("pages topic %q: %v", topic, md.Topics[0].Error)
	}
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	res, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, nil, fmt.Errorf("pages topic offsets: %w", err)
	}
	firsts, ends = map[int]int64{}, map[int]int64{}
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, nil, fmt.Errorf("pages topic partition %d: %w", po.Partition, po.Error)
		}
		firsts[po.Partition], ends[po.Partition] = po.FirstOffset, po.LastOffset
	}
	return firsts, ends, nil
}
