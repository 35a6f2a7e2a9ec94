package fetch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/governor"
	"github.com/sluicehq/sluice/record"
)

// spooler reads response bodies: up to its threshold in memory, as long as
// the stage's body budget allows, and the rest into a temporary file.
// Safe for concurrent use.
type spooler struct {
	parent    string // where the spool directory is made; "" = os.TempDir()
	threshold int64  // < 0: never spool
	budget    *governor.Budget

	mu      sync.Mutex // guards dir
	dir     string     // made on first use, removed by close
	spooled atomic.Int64
}

// body is a body as read: in memory (data, holding held bytes of the
// budget until it is passed on) or spooled.
type body struct {
	data      []byte
	spool     *record.Spool
	truncated bool
	held      int64
}

// readChunk is the unit in which bodies are read and budgeted.
const readChunk = 32 << 10

// read reads r up to limit bytes. A longer body is an error of class
// too_large, or, with truncate, cut at limit and marked truncated. Errors
// from r are returned as they are, for the caller to classify; spool
// failures are internal errors.
func (sp *spooler) read(r io.Reader, limit int64, truncate bool) (b body, err error) {
	var buf bytes.Buffer
	var file *os.File
	var n int64
	defer func() {
		if err != nil {
			sp.budget.Give(b.held)
			b.held = 0
			if file != nil {
				_ = file.Close()
				_ = os.Remove(file.Name())
			}
		}
	}()
	chunk := make([]byte, readChunk)
	lr := io.LimitReader(r, limit+1)
	for {
		k, rerr := lr.Read(chunk)
		if k > 0 {
			n += int64(k)
			if file == nil && (sp.threshold < 0 || n <= sp.threshold) && sp.budget.Take(int64(k)) {
				buf.Write(chunk[:k])
				b.held += int64(k)
			} else {
				if file == nil {
					if file, err = sp.create(); err != nil {
						return b, err
					}
					if _, err = file.Write(buf.Bytes()); err != nil {
						return b, spoolErr(err)
					}
					sp.budget.Give(b.held)
					b.held = 0
					buf = bytes.Buffer{}
				}
				if _, err = file.Write(chunk[:k]); err != nil {
					return b, spoolErr(err)
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return b, rerr
		}
	}
	if n > limit {
		if !truncate {
			return b, failure.Errorf(failure.TooLarge, "body exceeds %d bytes", limit)
		}
		b.truncated, n = true, limit
	}
	if file == nil {
		b.data = buf.Bytes()[:n]
		return b, nil
	}
	if b.truncated {
		if err = file.Truncate(limit); err != nil {
			return b, spoolErr(err)
		}
	}
	if err = file.Close(); err != nil {
		return b, spoolErr(err)
	}
	sp.spooled.Add(1)
	b.spool = &record.Spool{Path: file.Name(), Size: n}
	return b, nil
}

func spoolErr(err error) error {
	return failure.New(failure.Internal, failure.ErrRetryable, fmt.Errorf("spool body: %w", err))
}

// create makes a temporary file in the spool directory, making the
// directory on first use.
func (sp *spooler) create() (*os.File, error) {
	sp.mu.Lock()
	if sp.dir == "" {
		d, err := os.MkdirTemp(sp.parent, "sluice-spool-")
		if err != nil {
			sp.mu.Unlock()
			return nil, spoolErr(err)
		}
		sp.dir = d
	}
	dir := sp.dir
	sp.mu.Unlock()
	f, err := os.CreateTemp(dir, "body-")
	if err != nil {
		return nil, spoolErr(err)
	}
	return f, nil
}

// close removes the spool directory with any file still in it (bodies of
// a run stopped before they were parsed).
func (sp *spooler) close() error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.dir == "" {
		return nil
	}
	err := os.RemoveAll(sp.dir)
	sp.dir = ""
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove spool directory: %w", err)
	}
	return nil
}
