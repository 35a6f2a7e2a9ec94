// Package record defines the records that travel through sluice and leave it:
// the URL message that comes in, the Result and Page that go out, the dead
// letter for input that cannot be understood, and the classified error that a
// failed input carries. Every record written out carries SchemaVersion.
package record

import (
	"encoding/json"
	"time"
)

// SchemaVersion is written into every outgoing record. Consumers should
// reject versions they do not know.
const SchemaVersion = 1

// Message is one URL message: a line of an input file or the value of an
// input topic record. A bare URL line is a Message with only URL set.
// Method, Body and Headers shape the request (see request.go and
// docs/requests.md); empty means the job config's (GET, no body).
type Message struct {
	URL     string          `json:"url"`
	Key     string          `json:"key,omitempty"`
	Session string          `json:"session,omitempty"`
	Meta    json.RawMessage `json:"meta,omitempty"`
	Method  string          `json:"method,omitempty"`
	// Body is the request body. A message may give it as text (body) or
	// as standard base64 (body_base64); the decoder leaves it here either
	// way and clears BodyBase64.
	Body       string            `json:"body,omitempty"`
	BodyBase64 string            `json:"body_base64,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
	// Depth is how many links a crawl followed from a start URL to this
	// one (0: a start URL); Parent is the page it was found on.
	Depth  int    `json:"depth,omitempty"`
	Parent string `json:"parent,omitempty"`
}

// Error is the classified error of a failed input, as written in a Result
// (`{"class": ..., "message": ...}`).
type Error struct {
	Class   string `json:"class"`
	Message string `json:"message"`
}

// Parser names the rule set that produced a Result's fields.
type Parser struct {
	Rules   string `json:"rules"`
	Version string `json:"version"`
}

// Result is the outcome of one input: key = URL. A permanent failure is a
// Result with Error set, never a silence.
type Result struct {
	Schema    int       `json:"schema"`
	URL       string    `json:"url"`
	Key       string    `json:"key,omitempty"`
	FinalURL  string    `json:"final_url,omitempty"`
	Status    int       `json:"status"`
	FetchedAt time.Time `json:"fetched_at"`
	ElapsedMS int64     `json:"elapsed_ms"`
	Attempts  int       `json:"attempts"`
	Proxy     string    `json:"proxy,omitempty"`
	// Fields holds one key per field of the matching rule. A value is
	// any JSON: a string, a number, a boolean, a list or an object; nil
	// (JSON null) means the field matched nothing.
	Fields map[string]any `json:"fields"`
	// Structured is the page's structured data; nil (left out) when the
	// page has none.
	Structured *Structured     `json:"structured,omitempty"`
	Links      []string        `json:"links"`
	Truncated  bool            `json:"truncated,omitempty"`
	Parser     *Parser         `json:"parser,omitempty"`
	Meta       json.RawMessage `json:"meta,omitempty"`
	Depth      int             `json:"depth,omitempty"`  // from the URL message (crawl)
	Parent     string          `json:"parent,omitempty"` // from the URL message (crawl)
	Error      *Error          `json:"error"`
}

// Structured is the structured data of a page (docs/extraction.md): its
// JSON-LD blocks (a top-level array is flattened into the list), its
// microdata items in the JSON form of the HTML microdata spec, and its
// OpenGraph properties (the first of each). Empty parts are left out.
type Structured struct {
	JSONLD    []any             `json:"json_ld,omitempty"`
	Microdata []any             `json:"microdata,omitempty"`
	OpenGraph map[string]string `json:"opengraph,omitempty"`
}

// Timings are the phases of the last fetch attempt, as offsets from its start.
type Timings struct {
	DNSMS       int64 `json:"dns_ms"`
	ConnectMS   int64 `json:"connect_ms"`
	TLSMS       int64 `json:"tls_ms"`
	FirstByteMS int64 `json:"first_byte_ms"`
	TotalMS     int64 `json:"total_ms"`
}

// Page is a raw fetched page kept for replay: key = URL. Body holds the
// bytes as received after content decoding; writers compress the record.
type Page struct {
	Schema    int                 `json:"schema"`
	URL       string              `json:"url"`
	Key       string              `json:"key,omitempty"`
	FinalURL  string              `json:"final_url"`
	Method    string              `json:"method"`
	Status    int                 `json:"status"`
	Header    map[string][]string `json:"header"`
	Body      []byte              `json:"body"`
	Truncated bool                `json:"truncated,omitempty"`
	FetchedAt time.Time           `json:"fetched_at"`
	Attempts  int                 `json:"attempts"`
	Proxy     string              `json:"proxy,omitempty"`
	Timings   Timings             `json:"timings"`
	Meta      json.RawMessage     `json:"meta,omitempty"`
}

// DeadLetter holds input that could not even be understood: the original
// bytes, where they came from and why they were refused.
type DeadLetter struct {
	Schema    int       `json:"schema"`
	Value     []byte    `json:"value"`
	Key       []byte    `json:"key,omitempty"`
	Topic     string    `json:"topic,omitempty"`
	Partition int       `json:"partition"`
	Offset    int64     `json:"offset"`
	Error     Error     `json:"error"`
	At        time.Time `json:"at"`
}

// Span is one fetch attempt, for the request waterfall (`--trace FILE`).
// Times are absolute; a phase that did not happen (no DNS lookup on a
// reused connection, say) has a zero time and is omitted.
type Span struct {
	Schema       int        `json:"schema"`
	URL          string     `json:"url"`
	Domain       string     `json:"domain"`
	Proxy        string     `json:"proxy"`
	Attempt      int        `json:"attempt"`
	Enqueued     time.Time  `json:"enqueued"`
	WaitStart    time.Time  `json:"wait_start"` // the attempt began waiting for its domain's token
	WaitEnd      time.Time  `json:"wait_end"`   // the rate-limit token was granted
	Start        time.Time  `json:"start"`
	DNSStart     *time.Time `json:"dns_start,omitempty"`
	DNSDone      *time.Time `json:"dns_done,omitempty"`
	ConnectStart *time.Time `json:"connect_start,omitempty"`
	ConnectDone  *time.Time `json:"connect_done,omitempty"`
	TLSStart     *time.Time `json:"tls_start,omitempty"`
	TLSDone      *time.Time `json:"tls_done,omitempty"`
	FirstByte    *time.Time `json:"first_byte,omitempty"`
	End          time.Time  `json:"end"`
	Status       int        `json:"status"`
	Bytes        int64      `json:"bytes"`
	Reused       bool       `json:"reused"`
	Error        string     `json:"error,omitempty"` // failure class
	// Probation says the proxy was on probation when leased (a probe, or
	// its cap below its maximum); Cap is its cap then (0: none known).
	Probation bool `json:"probation,omitempty"`
	Cap       int  `json:"cap,omitempty"`
	// Late says the lease ran far past its expected time: a soft failure
	// of the proxy. Hedge says this attempt is the hedge of a late one.
	Late  bool `json:"late,omitempty"`
	Hedge bool `json:"hedge,omitempty"`
}
