package source

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/record"
)

// LinesConfig configures a line source. The zero value reads stdin.
type LinesConfig struct {
	// Path of the input file; "" or "-" reads Reader, or stdin when Reader is nil.
	Path string
	// Reader, when Path is "" or "-", replaces stdin (tests).
	Reader io.Reader
	// MaxLineBytes caps one line; a longer line becomes a bad_input error
	// result. 0 means MaxMessageBytes.
	MaxLineBytes int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Lines returns a source of Tasks, one per non-blank line. Blank lines are
// skipped; every other line becomes a Task, with Err set when it is not a
// URL message. The source stops at end of input or when its stop context
// ends; a read error ends it with that error.
//
// Stdin is read by a helper goroutine, because a read from a terminal or
// pipe cannot be interrupted: on stop the source returns at once and the
// helper ends at the next line or end of input.
func Lines(cfg LinesConfig) (*flow.Source[record.Task], error) {
	run, err := readTasks(cfg)
	if err != nil {
		return nil, err
	}
	return flow.NewSource("source", run), nil
}

// readTasks opens the input of cfg and returns the run of a lines source:
// it reads until end of input or stop, passing each Task to emit.
func readTasks(cfg LinesConfig) (func(stop context.Context, emit flow.Emit[record.Task]) error, error) {
	if cfg.MaxLineBytes <= 0 {
		cfg.MaxLineBytes = MaxMessageBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var r io.Reader
	var closer io.Closer
	switch {
	case cfg.Path != "" && cfg.Path != "-":
		f, err := os.Open(cfg.Path)
		if err != nil {
			return nil, fmt.Errorf("open input: %w", err)
		}
		r, closer = f, f
	case cfg.Reader != nil:
		r = cfg.Reader
	default:
		r = os.Stdin
	}
	name := cfg.Path
	if name == "" {
		name = "-"
	}
	return func(stop context.Context, emit flow.Emit[record.Task]) error {
		if closer != nil {
			defer closer.Close()
		}
		// The reader stops when the source returns, unless it is blocked
		// in a read that cannot be interrupted (stdin).
		readCtx, stopReading := context.WithCancel(stop)
		defer stopReading()
		lines := make(chan line)
		readErr := make(chan error, 1)
		go func() { // owner: the source; ends at end of input, after an error, or once the source has returned
			readErr <- guardRead(func() error { return readLines(readCtx, r, cfg.MaxLineBytes, lines) })
		}()
		for {
			select {
			case <-stop.Done():
				return nil
			case ln, ok := <-lines:
				if !ok {
					if err := <-readErr; err != nil {
						return fmt.Errorf("read %s: %w", name, err)
					}
					return nil
				}
				if err := emit(lineTask(ln, cfg)); err != nil {
					return nil
				}
			}
		}
	}, nil
}

// guardRead runs read, turning a panic (in the reader, say) into an
// error: the helper goroutine is not the source's own, so flow's guard
// does not cover it.
func guardRead(read func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return read()
}

type line struct {
	n       int64
	data    []byte
	tooLong bool
}

func lineTask(ln line, cfg LinesConfig) record.Task {
	t := record.Task{
		Origin:   record.Origin{Offset: ln.n, Raw: ln.data},
		Enqueued: cfg.Now(),
	}
	if ln.tooLong {
		_, _, t.Err = Decode(make([]byte, cfg.MaxLineBytes+1), cfg.MaxLineBytes)
		return t
	}
	t.Msg, t.URL, t.Err = Decode(ln.data, cfg.MaxLineBytes)
	return t
}

// readLines sends the non-blank lines of r, numbered from 1, until end of
// input or stop; it closes out when it returns. A line longer than limit is
// sent cut to limit bytes with tooLong set, and the rest of it is skipped.
func readLines(stop context.Context, r io.Reader, limit int, out chan<- line) error {
	defer close(out)
	br := bufio.NewReaderSize(r, 64<<10)
	var n int64
	for {
		data, tooLong, err := readLine(br, limit)
		if len(data) > 0 || tooLong || err == nil {
			n++
		}
		if len(bytes.TrimSpace(data)) > 0 || tooLong {
			select {
			case out <- line{n: n, data: data, tooLong: tooLong}:
			case <-stop.Done():
				return nil
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// readLine reads one line without its newline, keeping at most limit bytes.
func readLine(br *bufio.Reader, limit int) (data []byte, tooLong bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			data = append(data, chunk...)
			if len(bytes.TrimRight(data, "\r\n")) > limit {
				tooLong = true
				data = data[:limit]
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimRight(data, "\r\n"), tooLong, err
	}
}
