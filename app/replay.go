package app

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/reugn/go-streams"
	"github.com/rs/zerolog"
	kgo "github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/kafka"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/stages/parse"
	"github.com/sluicehq/sluice/stages/source"
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
	Kafka      KafkaConfig
	PagesFile  string
	WARCFiles  []string  // WARC files to read pages from, in order
	FromOffset int64     // -1: the beginning
	FromTime   time.Time // zero: use FromOffset
	Out        string
	OutWriter  io.Writer
	Rules      *parse.Rules
	Diff       *parse.Diff // compare with old results; nil: no comparison
	Drain      time.Duration
	Log        zerolog.Logger
}

// ReplayOptions are replay's own flags, besides the config tree.
type ReplayOptions struct {
	PagesFile string // a pages JSONL file instead of the pages topic
	// WARC lists WARC files (.warc or .warc.gz) or directories of them to
	// read the pages from instead of the pages topic (docs/warc.md).
	WARC       []string
	FromOffset int64  // -1: the beginning
	FromTime   string // RFC 3339; "": use FromOffset
	// Diff names an old results JSONL file: replay then reports, per
	// field, how many records the re-parse changed, with examples.
	Diff string
}

// Replay is `pipeline replay`: it parses stored pages again, from the
// pages topic of c's Kafka section (with the same client config, TLS and
// SASL, as run) or from a pages file, into c's outputs.
func Replay(ctx context.Context, c Config, o ReplayOptions, stdout, stderr io.Writer) error {
	log, _, err := newLogger(stderr, c.LogLevel)
	if err != nil {
		return err
	}
	cfg := replayConfig{Kafka: c.Kafka, PagesFile: o.PagesFile, FromOffset: o.FromOffset, Out: c.Out, Drain: c.DrainTimeout, Log: log}
	if c.Out == "-" {
		cfg.OutWriter = stdout
	}
	if o.FromTime != "" {
		if cfg.FromTime, err = time.Parse(time.RFC3339, o.FromTime); err != nil {
			return usagef("--from-time: %v", err)
		}
	}
	given := 0
	for _, set := range []bool{cfg.PagesFile != "", c.Kafka.PagesTopic != "", len(o.WARC) > 0} {
		if set {
			given++
		}
	}
	if given != 1 {
		return usagef("give exactly one of --kafka-pages-topic, --pages-file and --warc")
	}
	if cfg.PagesFile != "" {
		if _, err := os.Stat(cfg.PagesFile); err != nil {
			return usagef("pages-file: %v", err)
		}
		cfg.Kafka.PagesTopic = "" // read from the file only
	}
	if len(o.WARC) > 0 {
		if cfg.WARCFiles, err = warcFiles(o.WARC); err != nil {
			return usageError{err}
		}
		cfg.Kafka.PagesTopic = ""
	}
	cfg.Rules = parse.DefaultRules()
	if c.Rules != "" {
		if cfg.Rules, err = parse.LoadRules(c.Rules); err != nil {
			return usageError{err}
		}
	}
	if o.Diff != "" {
		if cfg.Diff, err = loadDiff(o.Diff); err != nil {
			return usagef("--diff: %v", err)
		}
	}
	sum, err := runReplay(ctx, cfg)
	if cfg.Diff != nil {
		_, _ = cfg.Diff.Report().WriteTo(stderr)
	}
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
		if cfg.Diff != nil {
			cfg.Diff.Add(o.Result)
		}
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
	rp, err := buildReplay(cfg, count)
	if err != nil {
		return sum, err
	}
	drain := cfg.Drain
	if drain <= 0 {
		drain = 30 * time.Second
	}
	hard, soft, stop := signalContexts(ctx, drain, cfg.Log)
	defer stop()
	start := time.Now()
	err = flow.Stream(hard, soft, rp.src, func(s streams.Source) { s.Via(rp.reparse).To(rp.out) })
	err = errors.Join(err, closeAll(rp.closers))
	mu.Lock()
	defer mu.Unlock()
	sum.Elapsed = time.Since(start)
	sum.Read = rp.src.Stats().Processed()
	return sum, err
}

// loadDiff reads the old results a replay is compared with.
func loadDiff(path string) (*parse.Diff, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parse.NewDiff(path, f)
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

// warcFiles expands the --warc arguments: a file is itself, a directory
// stands for its .warc and .warc.gz files in name order (which is the
// order the WARC writer made them in).
func warcFiles(args []string) ([]string, error) {
	var files []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, fmt.Errorf("warc: %w", err)
		}
		if !st.IsDir() {
			files = append(files, a)
			continue
		}
		entries, err := os.ReadDir(a)
		if err != nil {
			return nil, fmt.Errorf("warc: %w", err)
		}
		n := len(files)
		for _, e := range entries {
			if name := e.Name(); !e.IsDir() && (strings.HasSuffix(name, ".warc.gz") || strings.HasSuffix(name, ".warc")) {
				files = append(files, filepath.Join(a, name))
			}
		}
		if len(files) == n {
			return nil, fmt.Errorf("warc: no .warc or .warc.gz file in %s", a)
		}
	}
	return files, nil
}

// pagesFromWARC reads the response records of WARC files as pages; a
// record that cannot be read becomes a dead letter (topic: the file name,
// offset: the record's offset). The results and dead letters a run
// archived are not read: replay makes its own.
func pagesFromWARC(files []string) *flow.Source[replayItem] {
	return flow.NewSource("pages", func(stop context.Context, emit flow.Emit[replayItem]) error {
		for _, path := range files {
			hardStop := false
			err := source.ReadWARCFile(stop, path, 0, func(it source.WARCItem) error {
				var err error
				switch {
				case it.Page != nil:
					err = emit(replayItem{Page: it.Page})
				case it.Bad != nil:
					err = emit(replayItem{Dead: it.Bad})
				}
				hardStop = err != nil
				return err
			})
			if hardStop || stop.Err() != nil {
				return nil
			}
			if err != nil {
				return err
			}
		}
		return nil
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
func pagesFromTopic(cfg replayConfig, client *kafka.Client) *flow.Source[replayItem] {
	kc := cfg.Kafka
	return flow.NewSource("pages", func(stop context.Context, emit flow.Emit[replayItem]) error {
		firsts, ends, err := offsetRange(stop, client, kc.PagesTopic)
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
				errs <- readPages(ctx, cfg, client, p, firsts[p], end, items)
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

func readPages(ctx context.Context, cfg replayConfig, client *kafka.Client, partition int, first, end int64, out chan<- replayItem) error {
	if first >= end || cfg.FromOffset >= end {
		return nil // nothing stored
	}
	kc := cfg.Kafka
	r := client.Reader(kgo.ReaderConfig{Topic: kc.PagesTopic, Partition: partition,
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
		if err := r.SetOffset(kgo.FirstOffset); err != nil {
			return err
		}
	}
	if off := r.Offset(); off == kgo.LastOffset || off >= end {
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
func offsetRange(ctx context.Context, client *kafka.Client, topic string) (firsts, ends map[int]int64, err error) {
	c := client.Admin()
	md, err := c.Metadata(ctx, &kgo.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, nil, fmt.Errorf("pages topic: %w", err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return nil, nil, fmt.Errorf("pages topic %q: %v", topic, md.Topics[0].Error)
	}
	var reqs []kgo.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kgo.FirstOffsetOf(p.ID), kgo.LastOffsetOf(p.ID))
	}
	res, err := c.ListOffsets(ctx, &kgo.ListOffsetsRequest{Topics: map[string][]kgo.OffsetRequest{topic: reqs}})
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
