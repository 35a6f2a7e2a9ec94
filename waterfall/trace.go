// Package waterfall records fetch spans and draws them as a request
// waterfall: Writer appends spans to a JSON-lines trace file (`--trace`),
// Read reads one back, and Render turns spans into one self-contained HTML
// page (inline script and style, no network) with one bar per attempt,
// its phases coloured, grouped by proxy, zoomable, and a per-proxy summary
// table.
package waterfall

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/sluicehq/sluice/record"
)

// Writer appends spans to a trace as JSON lines. Its Write fits
// fetch.Config.Trace. Safe for concurrent use; a write error is kept and
// returned by Close, and later spans are dropped.
type Writer struct {
	max int64 // spans kept at most; later ones are counted in dropped

	mu      sync.Mutex // guards everything below
	bw      *bufio.Writer
	f       *os.File // nil when writing to a caller's io.Writer
	n       int64
	dropped int64
	err     error
}

// DefaultMaxSpans bounds a trace file when Create is given 0: about 100 MB
// of spans.
const DefaultMaxSpans = 250000

// Create creates (or truncates) the trace file at path, which will hold at
// most maxSpans spans (0 means DefaultMaxSpans, negative means no limit).
func Create(path string, maxSpans int64) (*Writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	w := NewWriter(f, maxSpans)
	w.f = f
	return w, nil
}

// NewWriter writes the trace to w (see Create for maxSpans); Close flushes
// but does not close w.
func NewWriter(w io.Writer, maxSpans int64) *Writer {
	if maxSpans == 0 {
		maxSpans = DefaultMaxSpans
	}
	return &Writer{bw: bufio.NewWriterSize(w, 256<<10), max: maxSpans}
}

// Write appends one span. It blocks only while the buffer is written out.
func (w *Writer) Write(sp record.Span) {
	w.mu.Lock()
	full := w.max > 0 && w.n >= w.max
	if full {
		w.dropped++
	}
	w.mu.Unlock()
	if full {
		return
	}
	b, err := json.Marshal(sp)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil || w.bw == nil {
		return
	}
	if w.max > 0 && w.n >= w.max {
		w.dropped++
		return
	}
	if err != nil {
		w.err = fmt.Errorf("trace: encode span: %w", err)
		return
	}
	b = append(b, '\n')
	if _, err := w.bw.Write(b); err != nil {
		w.err = fmt.Errorf("trace: %w", err)
		return
	}
	w.n++
}

// Spans returns how many spans were written.
func (w *Writer) Spans() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// Dropped returns how many spans were left out past the limit.
func (w *Writer) Dropped() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped
}

// Close flushes the trace and closes its file; later writes are dropped.
// It returns the first error met.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.bw == nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil && w.err == nil {
		w.err = fmt.Errorf("trace: %w", err)
	}
	w.bw = nil
	if w.f != nil {
		if err := w.f.Close(); err != nil && w.err == nil {
			w.err = fmt.Errorf("trace: %w", err)
		}
	}
	return w.err
}

// ReadStats says what Read met besides the spans it returned.
type ReadStats struct {
	Lines   int // non-blank lines read
	Bad     int // lines that were not a span (kept out)
	Dropped int // spans past the limit (kept out)
}

// maxLineBytes caps one trace line; a span is a few hundred bytes.
const maxLineBytes = 1 << 20

// Read reads a JSON-lines trace, keeping at most limit spans (limit <= 0
// means no limit). Lines that are not spans are counted, not fatal; a line
// longer than 1 MiB or a read error is.
func Read(r io.Reader, limit int) ([]record.Span, ReadStats, error) {
	var st ReadStats
	var out []record.Span
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLineBytes)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		st.Lines++
		var sp record.Span
		if err := json.Unmarshal(line, &sp); err != nil || sp.End.IsZero() {
			st.Bad++
			continue
		}
		if limit > 0 && len(out) >= limit {
			st.Dropped++
			continue
		}
		out = append(out, sp)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return out, st, fmt.Errorf("trace: line %d is longer than %d bytes", st.Lines+1, maxLineBytes)
		}
		return out, st, fmt.Errorf("trace: %w", err)
	}
	return out, st, nil
}

// ReadFile reads the trace file at path (see Read).
func ReadFile(path string, limit int) ([]record.Span, ReadStats, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, ReadStats{}, fmt.Errorf("trace: %w", err)
	}
	defer f.Close()
	return Read(f, limit)
}
