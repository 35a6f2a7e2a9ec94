package sink

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	gowarc "github.com/nlnwa/gowarc/v2"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/record"
)

// WARCConfig configures a WARC writer. Dir is required; every other zero
// value is a documented default.
type WARCConfig struct {
	// Dir receives the .warc.gz files; it is created if missing.
	Dir string
	// Prefix starts every file name. "" means "sluice".
	Prefix string
	// MaxSize is the size in bytes (compressed) past which a file is
	// closed and the next output starts a new one. The records of one
	// output are never split across files. 0 means 1 GiB.
	MaxSize int64
	// BatchSize is how many outputs are written per fsync. 0 means 256.
	BatchSize int
	// FlushInterval bounds how long a partial batch waits. 0 means 200 ms.
	FlushInterval time.Duration
	// QueueSize is the capacity of the writer's input queue. 0 means BatchSize.
	QueueSize int
	// Software names the writer in every file's warcinfo record. "" means
	// "sluice".
	Software string
	// OnDone, if set, is called from the writer's goroutine for every
	// output once its records are durable (and, used as a sink, acknowledged).
	OnDone func(record.Output)
	// Now is the clock for file names and record dates; nil means time.Now.
	Now func() time.Time
}

func (c *WARCConfig) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = "sluice"
	}
	if c.MaxSize == 0 {
		c.MaxSize = 1 << 30
	}
	if c.BatchSize == 0 {
		c.BatchSize = 256
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = 200 * time.Millisecond
	}
	if c.QueueSize == 0 {
		c.QueueSize = c.BatchSize
	}
	if c.Software == "" {
		c.Software = "sluice"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every invalid setting.
func (c *WARCConfig) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("no directory"))
	}
	if strings.ContainsAny(c.Prefix, `/\`) {
		errs = append(errs, fmt.Errorf("prefix %q must not contain a path separator", c.Prefix))
	}
	if c.MaxSize < 1 || c.BatchSize < 1 || c.QueueSize < 1 || c.FlushInterval < 0 {
		errs = append(errs, fmt.Errorf("max size %d, batch size %d and queue size %d must be positive, flush interval %v not negative",
			c.MaxSize, c.BatchSize, c.QueueSize, c.FlushInterval))
	}
	return errors.Join(errs...)
}

// WARC writes outputs as WARC 1.1 records into gzip-per-record .warc.gz
// files, rotated at a size: the page of an output as a request and a
// response record, its result and a dead letter as metadata records
// (docs/warc.md). Every batch is written and fsync'd before it is passed
// on (Flow) or acknowledged (Sink).
//
// A WARC is used either as a sink of its own (Sink) or as a stage in front
// of another sink (Flow), never both.
type WARC struct {
	cfg   WARCConfig
	sink  *flow.Sink[record.Output]
	stage *flow.Stage[record.Output, record.Output]

	// The open file; only the writer's goroutine touches these.
	file   *os.File
	buf    *bufio.Writer
	size   int64 // bytes in file, buffered ones included
	serial int
	gz     *gzip.Writer
	infoID string   // WARC-Record-ID of the open file's warcinfo record
	files  []string // every file written, in order

	writing atomic.Int64                // when the batch being written began (unix ns), 0 between batches
	failed  atomic.Pointer[failedWrite] // the write that ended the writer, if any
	written atomic.Int64                // records written
}

// NewWARC validates cfg, creates the directory and builds the writer.
// Files are opened when the first output arrives and closed when the
// pipeline finishes.
func NewWARC(cfg WARCConfig) (*WARC, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("warc config: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("warc: %w", err)
	}
	w := &WARC{cfg: cfg, gz: gzip.NewWriter(nil)}
	w.sink = flow.NewSink("warc", cfg.QueueSize, func(ctx context.Context, in flow.Inbox[record.Output]) error {
		return w.run(ctx, in, func(batch []record.Output) error {
			for _, o := range batch {
				o.Ack.Done()
				if cfg.OnDone != nil {
					cfg.OnDone(o)
				}
			}
			w.sink.Stats().Done(len(batch))
			return nil
		})
	})
	w.stage = flow.NewStage("warc", cfg.QueueSize, func(ctx context.Context, in flow.Inbox[record.Output], out flow.Outbox[record.Output]) error {
		return w.run(ctx, in, func(batch []record.Output) error {
			for _, o := range batch {
				if cfg.OnDone != nil {
					cfg.OnDone(o)
				}
				if err := out.Send(ctx, o); err != nil {
					return err // hard stop: the rest is not passed on, so never acknowledged
				}
			}
			return nil
		})
	})
	return w, nil
}

// Sink returns the writer as a sink: it acknowledges every output once its
// records are durable.
func (w *WARC) Sink() *flow.Sink[record.Output] { return w.sink }

// Flow returns the writer as a stage: it passes every output on, unchanged,
// once its records are durable, and acknowledges nothing itself; the sink
// after it does, after its own durable write.
func (w *WARC) Flow() *flow.Stage[record.Output, record.Output] { return w.stage }

// BatchSize returns the most outputs the writer holds besides its queue.
func (w *WARC) BatchSize() int { return w.cfg.BatchSize }

// Files returns the paths of the files written so far, oldest first. Call
// it once the pipeline has finished.
func (w *WARC) Files() []string { return append([]string(nil), w.files...) }

// Records returns how many WARC records were written. Safe for concurrent use.
func (w *WARC) Records() int64 { return w.written.Load() }

// Ready reports whether the writer can write: an error if a write failed,
// or if the batch being written has taken longer than StuckAfter. Safe for
// concurrent use.
func (w *WARC) Ready() error {
	if f := w.failed.Load(); f != nil {
		return f.err
	}
	if began := w.writing.Load(); began != 0 {
		if d := time.Since(time.Unix(0, began)); d > StuckAfter {
			return fmt.Errorf("a WARC batch write has not returned for %s", d.Round(time.Second))
		}
	}
	return nil
}

// run batches outputs, writes each batch durably, then hands it to done.
func (w *WARC) run(ctx context.Context, in flow.Inbox[record.Output], done func([]record.Output) error) (err error) {
	defer func() { err = errors.Join(err, w.closeFile()) }()
	batch := make([]record.Output, 0, w.cfg.BatchSize)
	timer := time.NewTimer(w.cfg.FlushInterval)
	timer.Stop()
	defer timer.Stop()
	var timerC <-chan time.Time
	for {
		o, st := in.RecvBefore(ctx, timerC)
		switch st {
		case flow.Got:
			if len(batch) == 0 {
				timer.Reset(w.cfg.FlushInterval)
				timerC = timer.C
			}
			batch = append(batch, o)
			if len(batch) < w.cfg.BatchSize {
				continue
			}
		case flow.TimedOut:
		case flow.Closed:
			if err := w.commit(batch); err != nil {
				return err
			}
			if len(batch) > 0 {
				_ = done(batch) // fails only on a hard stop
			}
			return nil
		case flow.Canceled:
			return nil // hard stop: what is not durable stays unacknowledged
		}
		timer.Stop()
		timerC = nil
		if err := w.commit(batch); err != nil {
			return err
		}
		if err := done(batch); err != nil {
			return nil
		}
		batch = batch[:0]
	}
}

// commit writes the records of a batch, flushes and fsyncs the file.
func (w *WARC) commit(batch []record.Output) (err error) {
	if len(batch) == 0 {
		return nil
	}
	w.writing.Store(time.Now().UnixNano())
	defer func() {
		w.writing.Store(0)
		if err != nil {
			w.failed.Store(&failedWrite{err})
		}
	}()
	for _, o := range batch {
		recs, err := w.records(o)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			continue
		}
		if err := w.writeAll(recs); err != nil {
			return err
		}
	}
	if w.file == nil {
		return nil
	}
	if err := w.buf.Flush(); err != nil {
		return fmt.Errorf("write warc: %w", err)
	}
	if err := w.file.Sync(); err != nil {
		return fmt.Errorf("sync warc: %w", err)
	}
	return nil
}

// writeAll writes the records of one output into one file, rotating
// before them when the file is full.
func (w *WARC) writeAll(recs []gowarc.WarcRecord) error {
	defer func() {
		for _, r := range recs {
			_ = r.Close()
		}
	}()
	if w.file != nil && w.size >= w.cfg.MaxSize {
		if err := w.closeFile(); err != nil {
			return err
		}
	}
	if w.file == nil {
		if err := w.openFile(); err != nil {
			return err
		}
	}
	for _, r := range recs {
		if err := w.writeRecord(r); err != nil {
			return err
		}
	}
	return nil
}

// writeRecord writes one record as its own gzip member.
func (w *WARC) writeRecord(r gowarc.WarcRecord) error {
	if w.infoID != "" && r.Type() != gowarc.Warcinfo {
		r.WarcHeader().SetId(gowarc.WarcWarcinfoID, w.infoID)
	}
	cw := &countingWriter{w: w.buf}
	w.gz.Reset(cw)
	if _, _, err := gowarc.NewMarshaler().Marshal(w.gz, r, 0); err != nil {
		return fmt.Errorf("write warc: %w", err)
	}
	if err := w.gz.Close(); err != nil {
		return fmt.Errorf("write warc: %w", err)
	}
	w.size += cw.n
	w.written.Add(1)
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
