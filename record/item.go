package record

import (
	"net/http"
	"net/url"
	"time"

	"sluice/flow"
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
	Ack      flow.Ack
}

// Fetched is a Task after the fetch stage: the response, or the error of the
// last attempt.
type Fetched struct {
	Task      Task
	FinalURL  string
	Status    int
	Header    http.Header
	Body      []byte
	Truncated bool
	Attempts  int
	Proxy     string // proxy id of the last attempt
	Started   time.Time
	Elapsed   time.Duration
	Timings   Timings
	Err       error
}

// Output is what the sink writes for one input: a Result, optionally the
// Page for replay, or a DeadLetter. Ack is called once all are durable.
type Output struct {
	Result *Result
	Page   *Page
	Dead   *DeadLetter
	Ack    flow.Ack
}
