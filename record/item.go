package record

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"
)

// Origin says where an input came from: a file line or a topic record.
type Origin struct {
	Topic     string // "" for a file or stdin
	Partition int
	Offset    int64 // the line number (from 1) for a file
	Raw       []byte
	RawKey    []byte
}

// Task is one input on its way through the pipeline: made by a source,
// fetched by the fetch stage. A Task whose Err is set failed before any
// network access (a malformed URL, say) and passes straight through to the
// sink as an error result; with Dead set it becomes a dead letter instead.
type Task struct {
	Msg      Message
	URL      *url.URL // parsed and checked; nil when Err is set
	Origin   Origin
	Enqueued time.Time
	Err      error
	Dead     bool
	Ack      Ack
	// Parks is how many times the input was parked on the delay topic
	// before (its delay record's attempts; 0 for a first delivery), and
	// ParkErr the last error it carried there, nil if none.
	Parks   int
	ParkErr *Error
	// Owned, when not nil, reports whether the source still owns the
	// input (a Kafka partition can be revoked while its inputs wait in a
	// queue). A stage that sees false drops the task before any work: it
	// neither passes it on nor acknowledges it, and the source delivers it
	// again to its next owner. Safe for concurrent use; call it once per
	// decision, since a false answer records the drop.
	Owned func() bool
}

// StillOwned reports whether t's source still owns it (true when the
// source does not say).
func (t Task) StillOwned() bool { return t.Owned == nil || t.Owned() }

// Fetched is a Task after the fetch stage: the response, or the error of the
// last attempt.
type Fetched struct {
	Task     Task
	FinalURL string
	Status   int
	Header   http.Header
	Body     []byte
	// Recycle, when set, hands Body's buffer back to the fetch stage for
	// another body. The holder that is last done with Body calls it, once
	// (further calls do nothing); after that neither Body nor any copy of
	// it may be read. A holder that passes Body on (to a Page) leaves
	// Recycle uncalled: the buffer is then the garbage collector's, as is
	// Body when Recycle is nil.
	Recycle func()
	// Spool, when set, holds the body instead of Body: the fetch stage
	// wrote a large body to a temporary file. LoadBody reads it in.
	Spool     *Spool
	Truncated bool
	Attempts  int
	Proxy     string // proxy id of the last attempt
	Method    string // request method of the last attempt ("" before one)
	Started   time.Time
	Elapsed   time.Duration
	Timings   Timings
	Err       error
	// Parked, when not zero, says the task could not be attempted soon
	// enough and is to be parked on the delay topic until this time (see
	// docs/kafka.md); Err is then the last attempt's error, nil if none.
	Parked time.Time
}

// Spool is a response body in a temporary file.
type Spool struct {
	Path string
	Size int64
}

// LoadBody reads a spooled body into Body and removes the file; it does
// nothing when the body is not spooled. The file is removed even when the
// read fails.
func (f *Fetched) LoadBody() error {
	if f.Spool == nil {
		return nil
	}
	sp := f.Spool
	f.Spool = nil
	defer os.Remove(sp.Path)
	b, err := os.ReadFile(sp.Path)
	if err != nil {
		return fmt.Errorf("read spooled body: %w", err)
	}
	if int64(len(b)) != sp.Size {
		return fmt.Errorf("spooled body has %d bytes, want %d", len(b), sp.Size)
	}
	f.Body = b
	return nil
}

// Output is what the sink writes for one input: a Result, optionally the
// Page for replay, or a DeadLetter. Ack is called once all are durable.
type Output struct {
	Result *Result
	Page   *Page
	Dead   *DeadLetter
	// Delay, when set, replaces the Result: the input goes to the delay
	// topic, to be tried again once due.
	Delay *Delayed
	Ack   Ack
}
