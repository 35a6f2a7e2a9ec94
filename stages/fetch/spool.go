package fetch

import (
	"errors"
	"fmt"
	"io"
	"net/http"
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
	bodies  bodyPool // buffers of bodies of known length (bodypool.go)
}

// body is a body as read: in memory (data, holding held bytes of the
// budget until it is passed on) or spooled.
type body struct {
	data      []byte
	spool     *record.Spool
	truncated bool
	held      int64
	buf       *[]byte // the pooled buffer that data lives in; nil if none
}

// readChunk is the unit in which bodies are read and budgeted.
const readChunk = 32 << 10

// chunks holds read buffers for bodies whose length is not known in
// advance (chunked, or decoded) and for the part of a body that goes to a
// spool file. A sync.Pool keeps no more than the garbage collector lets it
// keep: at most about the buffers in use between two collections.
var chunks = sync.Pool{New: func() any { return new([readChunk]byte) }}

// read reads r up to limit bytes. A longer body is an error of class
// too_large, or, with truncate, cut at limit and marked truncated. Errors
// from r are returned as they are, for the caller to classify; spool
// failures are internal errors.
//
// size is the body's length when it is known (the Content-Length of a
// body that is not decoded), or -1. A known body that is kept in memory is
// read straight into one buffer of exactly that size; an unknown one is
// read through a pooled chunk into a buffer grown by append.
func (sp *spooler) read(r io.Reader, limit int64, truncate bool, size int64) (b body, err error) {
	var mem []byte // the body in memory, while file is nil
	var file *os.File
	var n int64
	defer func() {
		if err != nil {
			sp.budget.Give(b.held)
			b.held = 0
			sp.bodies.put(b.buf)
			b.buf = nil
			if file != nil {
				_ = file.Close()
				_ = os.Remove(file.Name())
			}
		}
	}()
	if size > 0 && size <= limit && (sp.threshold < 0 || size <= sp.threshold) {
		if b.buf = sp.bodies.get(size); b.buf != nil {
			mem = (*b.buf)[:0:size] // capped at size, as a buffer of exactly size would be
		} else {
			mem = make([]byte, 0, size)
		}
	}
	var chunk *[readChunk]byte
	defer func() {
		if chunk != nil {
			chunks.Put(chunk)
		}
	}()
	lr := io.LimitReader(r, limit+1)
	for {
		// Read into mem's spare capacity when it has some, else into a
		// chunk; never more than readChunk at once, the budget's unit.
		var p []byte
		direct := file == nil && len(mem) < cap(mem)
		if direct {
			p = mem[len(mem):min(cap(mem), len(mem)+readChunk)]
		} else {
			if chunk == nil {
				chunk = chunks.Get().(*[readChunk]byte)
			}
			p = chunk[:]
		}
		k, rerr := lr.Read(p)
		if k > 0 {
			n += int64(k)
			if file == nil && (sp.threshold < 0 || n <= sp.threshold) && sp.budget.Take(int64(k)) {
				if direct {
					mem = mem[:len(mem)+k]
				} else {
					mem = append(mem, p[:k]...)
				}
				b.held += int64(k)
			} else {
				if file == nil {
					if file, err = sp.create(); err != nil {
						return b, err
					}
					if _, err = file.Write(mem); err != nil {
						return b, spoolErr(err)
					}
					sp.budget.Give(b.held)
					b.held = 0
					mem = nil
					sp.bodies.put(b.buf)
					b.buf = nil
				}
				if _, err = file.Write(p[:k]); err != nil {
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
		if n > 0 {
			b.data = mem[:n]
		}
		if b.buf != nil && !sameArray(b.data, *b.buf) {
			// The body outgrew its hint and moved (or is empty): the
			// pooled buffer holds none of it.
			sp.bodies.put(b.buf)
			b.buf = nil
		}
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

// knownSize is the length of the body that r reads: resp's Content-Length
// when r is resp's body as it came (not decoded), else -1.
func knownSize(resp *http.Response, r io.Reader) int64 {
	if r != io.Reader(resp.Body) {
		return -1
	}
	return resp.ContentLength
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
