package parse

import (
	"fmt"
	"net/url"
	"runtime"
	"time"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/record"
)

// Config configures the parse stage. The zero value parses with
// DefaultRules on GOMAXPROCS workers and keeps no pages.
type Config struct {
	// Rules to extract fields with; nil means DefaultRules().
	Rules *Rules
	// Workers is the number of parsing goroutines; 0 means GOMAXPROCS.
	Workers int
	// QueueSize is the capacity of the stage's input queue; 0 means 2 × Workers.
	QueueSize int
	// Limits bound each document (see Limits).
	Limits Limits
	// KeepPages attaches the raw Page to each successful output, for the
	// pages topic.
	KeepPages bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Stage is the parse stage: goquery extraction on a fixed pool of workers
// (go-streams' Map). Every Fetched becomes exactly one Output.
type Stage struct {
	cfg  Config
	flow *flow.Map[record.Fetched, record.Output]
}

// NewStage applies defaults and builds the stage. It starts nothing.
func NewStage(cfg Config) (*Stage, error) {
	if cfg.Rules == nil {
		cfg.Rules = DefaultRules()
	}
	if cfg.Workers == 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 2 * cfg.Workers
	}
	if cfg.Workers < 1 || cfg.QueueSize < 1 {
		return nil, fmt.Errorf("parse config: workers %d and queue size %d must be at least 1", cfg.Workers, cfg.QueueSize)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Stage{cfg: cfg}
	s.flow = flow.NewMap("parse", cfg.QueueSize, cfg.Workers, s.Process)
	return s, nil
}

// Flow returns the stage to connect into a pipeline.
func (s *Stage) Flow() *flow.Map[record.Fetched, record.Output] { return s.flow }

// Process turns one Fetched into its Output. It never panics: a panic in
// extraction becomes an internal error result. Safe for concurrent use.
func (s *Stage) Process(f record.Fetched) (out record.Output) {
	if f.Recycle != nil && !s.cfg.KeepPages {
		// Nothing keeps the body once it is parsed (the result holds
		// copies only): its buffer can take the next body. With
		// KeepPages the Page holds it, so it is left to the collector.
		defer f.Recycle()
	}
	t := f.Task
	out.Ack = t.Ack
	if t.Dead {
		out.Dead = deadLetter(t, f.Err, s.cfg.Now())
		return out
	}
	if !f.Parked.IsZero() { // to the delay topic, nothing to parse
		var last *record.Error
		if f.Err != nil {
			last = errorOf(f.Err)
		}
		out.Delay = record.Park(t, f.Parked, last)
		return out
	}
	res := &record.Result{
		Schema:    record.SchemaVersion,
		URL:       t.Msg.URL,
		Key:       t.Msg.Key,
		FinalURL:  f.FinalURL,
		Status:    f.Status,
		FetchedAt: f.Started.UTC(),
		ElapsedMS: f.Elapsed.Milliseconds(),
		Attempts:  f.Attempts,
		Proxy:     f.Proxy,
		Fields:    map[string]any{},
		Links:     []string{},
		Truncated: f.Truncated,
		Meta:      t.Msg.Meta,
		Depth:     t.Msg.Depth,
		Parent:    t.Msg.Parent,
	}
	if res.URL == "" && t.URL != nil {
		res.URL = t.URL.String()
	}
	if t.URL == nil && res.URL == "" {
		res.URL = string(t.Origin.Raw)
	}
	out.Result = res
	if err := f.LoadBody(); err != nil && f.Err == nil {
		f.Err = failure.New(failure.Internal, failure.ErrPermanent, err)
	}
	if f.Err != nil {
		res.Error = errorOf(f.Err)
		return out
	}
	if s.cfg.KeepPages {
		method := f.Method
		if method == "" {
			method = "GET"
		}
		out.Page = &record.Page{
			Schema: record.SchemaVersion, URL: res.URL, Key: res.Key, FinalURL: f.FinalURL,
			Method: method, Status: f.Status, Header: f.Header, Body: f.Body, Truncated: f.Truncated,
			FetchedAt: res.FetchedAt, Attempts: f.Attempts, Proxy: f.Proxy, Timings: f.Timings, Meta: t.Msg.Meta,
		}
	}
	s.extractInto(res, f)
	return out
}

// Reparse runs extraction again on a stored Page, for replay. It never
// touches the network.
func (s *Stage) Reparse(p *record.Page) *record.Result {
	u, err := parseURL(p.FinalURL, p.URL)
	f := record.Fetched{
		Task:     record.Task{Msg: record.Message{URL: p.URL, Key: p.Key, Meta: p.Meta}, URL: u},
		FinalURL: p.FinalURL, Status: p.Status, Header: p.Header, Body: p.Body, Truncated: p.Truncated,
		Attempts: p.Attempts, Proxy: p.Proxy, Method: p.Method, Started: p.FetchedAt,
		Elapsed: time.Duration(p.Timings.TotalMS) * time.Millisecond,
	}
	if err != nil {
		f.Err = err
	}
	return s.Process(f).Result
}

func (s *Stage) extractInto(res *record.Result, f record.Fetched) {
	defer func() {
		if r := recover(); r != nil {
			res.Error = &record.Error{Class: string(failure.Internal), Message: fmt.Sprintf("parse panicked: %v", r)}
		}
	}()
	pageURL, err := parseURL(f.FinalURL, res.URL)
	if err != nil {
		res.Error = errorOf(err)
		return
	}
	ex, err := s.cfg.Rules.ExtractPage(Input{URL: pageURL, Status: f.Status, Header: f.Header, Body: f.Body}, s.cfg.Limits)
	res.Parser = &record.Parser{Rules: s.cfg.Rules.Name(), Version: s.cfg.Rules.Version()}
	if err != nil {
		res.Error = errorOf(err)
		return
	}
	res.Fields, res.Structured = ex.Fields, ex.Structured
	if ex.Links != nil {
		res.Links = ex.Links
	}
}

func parseURL(final, orig string) (*url.URL, error) {
	s := final
	if s == "" {
		s = orig
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, failure.Errorf(failure.BadInput, "page URL: %v", err)
	}
	return u, nil
}

// errorOf turns any error into the record's classified error.
func errorOf(err error) *record.Error {
	return &record.Error{Class: string(failure.ClassOf(err)), Message: err.Error()}
}

func deadLetter(t record.Task, err error, now time.Time) *record.DeadLetter {
	d := &record.DeadLetter{
		Schema: record.SchemaVersion, Value: t.Origin.Raw, Key: t.Origin.RawKey,
		Topic: t.Origin.Topic, Partition: t.Origin.Partition, Offset: t.Origin.Offset, At: now.UTC(),
	}
	if err == nil {
		err = t.Err
	}
	if err != nil {
		d.Error = *errorOf(err)
	}
	return d
}

// Workers returns the number of parsing goroutines.
func (s *Stage) Workers() int { return s.cfg.Workers }
