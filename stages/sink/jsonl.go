// Package sink holds sluice's sinks: JSONL files or stdout here, Kafka
// topics in kafka.go. A sink acknowledges an input only after every record
// for it is durable.
package sink

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/record"
)

// JSONLConfig configures a JSONL sink. The zero value writes results to
// stdout in batches of 256, flushed at least every 200 ms.
type JSONLConfig struct {
	// Path of the results file; "" or "-" means Writer, or stdout when
	// Writer is nil. The file is created or appended to.
	Path string
	// Writer replaces stdout when Path is "" or "-" (tests).
	Writer io.Writer
	// PagesPath, when set, receives the Page records too.
	PagesPath string
	// DeadPath receives dead letters; "" means the results file.
	DeadPath string
	// BatchSize is how many outputs are written per fsync. 0 means 256.
	BatchSize int
	// FlushInterval bounds how long a partial batch waits. 0 means 200 ms.
	FlushInterval time.Duration
	// QueueSize is the capacity of the sink's input queue. 0 means BatchSize.
	QueueSize int
	// OnDone, if set, is called from the sink's goroutine for every output
	// once it is durable, just before it is acknowledged: what must follow
	// an output (a crawl producing the page's links) is done before its
	// input can be committed, so a crash between the two repeats the
	// input rather than losing the links.
	OnDone func(record.Output)
}

// JSONL writes outputs as JSON lines. Every batch is written, flushed and
// fsync'd before its inputs are acknowledged.
type JSONL struct {
	cfg   JSONLConfig
	files []*os.File // files opened here, closed by run
	res   *bufio.Writer
	resF  *os.File
	pages *bufio.Writer
	pageF *os.File
	dead  *bufio.Writer
	deadF *os.File
	sink  *flow.Sink[record.Output]

	writing atomic.Int64                // when the batch being written began (unix ns), 0 between batches
	failed  atomic.Pointer[failedWrite] // the write that ended the sink, if any
}

type failedWrite struct{ err error }

// StuckAfter is how long a batch write may take before Ready reports the
// sink as not writable.
const StuckAfter = 10 * time.Second

// Ready reports whether the sink can write: an error if a write failed, or
// if the batch being written has taken longer than StuckAfter (a full disk
// or a reader that stopped reading, say). Safe for concurrent use.
func (j *JSONL) Ready() error {
	if f := j.failed.Load(); f != nil {
		return f.err
	}
	if began := j.writing.Load(); began != 0 {
		if d := time.Since(time.Unix(0, began)); d > StuckAfter {
			return fmt.Errorf("a batch write has not returned for %s", d.Round(time.Second))
		}
	}
	return nil
}

// NewJSONL opens the output files and builds the sink. The files are
// closed when the pipeline finishes.
func NewJSONL(cfg JSONLConfig) (*JSONL, error) {
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 256
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 200 * time.Millisecond
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = cfg.BatchSize
	}
	if cfg.BatchSize < 1 || cfg.QueueSize < 1 || cfg.FlushInterval < 0 {
		return nil, fmt.Errorf("jsonl config: batch size %d, queue size %d and flush interval %v must be positive", cfg.BatchSize, cfg.QueueSize, cfg.FlushInterval)
	}
	j := &JSONL{cfg: cfg}
	var err error
	switch {
	case cfg.Path != "" && cfg.Path != "-":
		if j.resF, err = j.open(cfg.Path); err != nil {
			return nil, err
		}
		j.res = bufio.NewWriterSize(j.resF, 256<<10)
	case cfg.Writer != nil:
		j.res = bufio.NewWriterSize(cfg.Writer, 256<<10)
	default:
		j.resF = os.Stdout
		j.res = bufio.NewWriterSize(os.Stdout, 256<<10)
	}
	j.dead, j.deadF = j.res, j.resF
	if cfg.PagesPath != "" {
		if j.pageF, err = j.open(cfg.PagesPath); err != nil {
			j.closeFiles()
			return nil, err
		}
		j.pages = bufio.NewWriterSize(j.pageF, 1<<20)
	}
	if cfg.DeadPath != "" {
		if j.deadF, err = j.open(cfg.DeadPath); err != nil {
			j.closeFiles()
			return nil, err
		}
		j.dead = bufio.NewWriterSize(j.deadF, 64<<10)
	}
	j.sink = flow.NewSink("sink", cfg.QueueSize, j.run)
	return j, nil
}

func (j *JSONL) open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open output: %w", err)
	}
	j.files = append(j.files, f)
	return f, nil
}

func (j *JSONL) closeFiles() error {
	var errs []error
	for _, f := range j.files {
		errs = append(errs, f.Close())
	}
	j.files = nil
	return errors.Join(errs...)
}

// Sink returns the stage to connect into a pipeline.
func (j *JSONL) Sink() *flow.Sink[record.Output] { return j.sink }

func (j *JSONL) run(ctx context.Context, in flow.Inbox[record.Output]) (err error) {
	defer func() { err = errors.Join(err, j.closeFiles()) }()
	batch := make([]record.Output, 0, j.cfg.BatchSize)
	var timer *time.Timer
	var timerC <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		o, st := in.RecvBefore(ctx, timerC)
		switch st {
		case flow.Got:
			if len(batch) == 0 {
				if timer == nil {
					timer = time.NewTimer(j.cfg.FlushInterval)
				} else {
					timer.Reset(j.cfg.FlushInterval)
				}
				timerC = timer.C
			}
			batch = append(batch, o)
			if len(batch) < j.cfg.BatchSize {
				continue
			}
		case flow.TimedOut:
		case flow.Closed:
			return j.commit(batch)
		case flow.Canceled:
			// Hard stop: what is not durable stays unacknowledged.
			return nil
		}
		timer.Stop()
		timerC = nil
		if err := j.commit(batch); err != nil {
			return err
		}
		batch = batch[:0]
	}
}

// commit writes a batch, flushes and fsyncs every file it touched, then
// acknowledges the batch's inputs.
func (j *JSONL) commit(batch []record.Output) (err error) {
	if len(batch) == 0 {
		return nil
	}
	j.writing.Store(time.Now().UnixNano())
	defer func() {
		j.writing.Store(0)
		if err != nil {
			j.failed.Store(&failedWrite{err})
		}
	}()
	for _, o := range batch {
		if o.Result != nil {
			if err := writeLine(j.res, o.Result); err != nil {
				return err
			}
		}
		if o.Page != nil && j.pages != nil {
			if err := writeLine(j.pages, o.Page); err != nil {
				return err
			}
		}
		if o.Dead != nil {
			if err := writeLine(j.dead, o.Dead); err != nil {
				return err
			}
		}
	}
	for _, w := range []struct {
		b *bufio.Writer
		f *os.File
	}{{j.res, j.resF}, {j.pages, j.pageF}, {j.dead, j.deadF}} {
		if w.b == nil {
			continue
		}
		if err := w.b.Flush(); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
		if err := syncFile(w.f); err != nil {
			return fmt.Errorf("sync output: %w", err)
		}
	}
	for _, o := range batch {
		if j.cfg.OnDone != nil {
			j.cfg.OnDone(o) // before the ack: see OnDone
		}
		o.Ack.Done()
	}
	j.sink.Stats().Done(len(batch))
	return nil
}

func writeLine(w *bufio.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// syncFile fsyncs f; a pipe, terminal or nil file (a test writer) has
// nothing to sync.
func syncFile(f *os.File) error {
	if f == nil {
		return nil
	}
	err := f.Sync()
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EBADF) {
		return nil
	}
	return err
}

// BatchSize returns the most outputs the sink holds before writing them.
func (j *JSONL) BatchSize() int { return j.cfg.BatchSize }
