package sink

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/record"
)

// This file is the conformance suite that every sink runs (JSONL in
// jsonl_test.go, Kafka in kafka_test.go): what a sink promises the
// pipeline, checked the same way for each.

// sinkOptions are the knobs the suite turns on a sink under test.
type sinkOptions struct {
	BatchSize     int
	FlushInterval time.Duration
	OnDone        func(record.Output)
}

// written is what a store holds, each record with its key.
type written struct {
	Results []keyed[record.Result]
	Pages   []keyed[record.Page]
	Dead    []keyed[record.DeadLetter]
}

type keyed[T any] struct {
	Key   string
	Value T
}

// sinkUnderTest is one sink implementation, as the suite sees it.
type sinkUnderTest struct {
	// open builds a sink writing to a fresh store and a function reading
	// back everything durable in that store.
	open func(t *testing.T, o sinkOptions) (*flow.Sink[record.Output], func(t *testing.T) written)
	// broken builds a sink whose store refuses every write.
	broken func(t *testing.T, o sinkOptions) *flow.Sink[record.Output]
}

// ackLog records acknowledgements.
type ackLog struct {
	mu    sync.Mutex
	count map[int]int
}

func (a *ackLog) ack(i int) record.Ack {
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.count == nil {
			a.count = map[int]int{}
		}
		a.count[i]++
	}
}

func (a *ackLog) total() (distinct, calls int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range a.count {
		calls += n
	}
	return len(a.count), calls
}

func (a *ackLog) times(i int) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.count[i]
}

// outputs makes n outputs of every kind: a result, a result with its page,
// an error result, and a dead letter with bytes that are not UTF-8.
func outputs(n int, acks *ackLog) []record.Output {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	out := make([]record.Output, n)
	for i := range out {
		u := fmt.Sprintf("http://shop.test/product/%d", i)
		name := fmt.Sprintf("Product %d", i)
		o := record.Output{Ack: acks.ack(i)}
		switch i % 4 {
		case 0, 1:
			o.Result = &record.Result{Schema: record.SchemaVersion, URL: u, FinalURL: u, Status: 200, FetchedAt: at,
				Attempts: 1, Proxy: "p1", Fields: map[string]any{"name": name}, Links: []string{u + "/next"}}
			if i%4 == 1 {
				o.Page = &record.Page{Schema: record.SchemaVersion, URL: u, FinalURL: u, Method: "GET", Status: 200,
					Header: map[string][]string{"Content-Type": {"text/html"}}, Body: []byte("<h1>" + name + "</h1>"), FetchedAt: at}
			}
		case 2:
			o.Result = &record.Result{Schema: record.SchemaVersion, URL: u, Status: 503, FetchedAt: at, Attempts: 4,
				Fields: map[string]any{}, Links: []string{}, Error: &record.Error{Class: "server_error", Message: "503"}}
		case 3:
			o.Dead = &record.DeadLetter{Schema: record.SchemaVersion, Value: []byte(fmt.Sprintf("\xff%d", i)), Key: []byte(fmt.Sprintf("k%d", i)),
				Topic: "urls", Partition: i % 3, Offset: int64(i), Error: record.Error{Class: "bad_input", Message: "not UTF-8"}, At: at}
		}
		out[i] = o
	}
	return out
}

// runSink runs sink with outs sent in and the input closed, and returns
// Run's error.
func runSink(hard context.Context, sink *flow.Sink[record.Output], outs []record.Output) error {
	src := flow.NewSource("feed", func(stop context.Context, emit flow.Emit[record.Output]) error {
		for _, o := range outs {
			if err := emit(o); err != nil {
				return nil
			}
		}
		return nil
	})
	flow.Connect[record.Output](src, sink)
	return flow.Run(hard, context.Background(), src, sink)
}

func runConformance(t *testing.T, s sinkUnderTest) {
	t.Run("every output written then acknowledged once", func(t *testing.T) {
		acks := &ackLog{}
		outs := outputs(400, acks)
		var read func(*testing.T) written
		var sink *flow.Sink[record.Output]
		checked := 0
		sink, read = s.open(t, sinkOptions{BatchSize: 64, FlushInterval: 10 * time.Millisecond, OnDone: func(o record.Output) {
			// When an output is acknowledged its records are already
			// durable: read the store back at a few of them.
			if o.Result != nil && o.Result.URL == "http://shop.test/product/101" || o.Dead != nil && string(o.Dead.Key) == "k303" {
				checked++
				w := read(t)
				if !hasOutput(w, o) {
					t.Errorf("acknowledged before durable: %+v", o)
				}
			}
		}})
		if err := runSink(context.Background(), sink, outs); err != nil {
			t.Fatal(err)
		}
		if checked != 2 {
			t.Fatalf("checked %d outputs at their ack, want 2", checked)
		}
		if distinct, calls := acks.total(); distinct != len(outs) || calls != len(outs) {
			t.Fatalf("%d outputs acknowledged in %d calls, want %d once each", distinct, calls, len(outs))
		}
		if st := sink.Stats(); st.Processed() != uint64(len(outs)) || st.InFlight() != 0 {
			t.Fatalf("stats: processed %d, in flight %d", st.Processed(), st.InFlight())
		}
		w := read(t)
		if len(w.Results) != 300 || len(w.Pages) != 100 || len(w.Dead) != 100 {
			t.Fatalf("store holds %d results, %d pages, %d dead letters; want 300, 100, 100", len(w.Results), len(w.Pages), len(w.Dead))
		}
		for _, o := range outs {
			if !hasOutput(w, o) {
				t.Fatalf("output missing from the store: %+v", o)
			}
		}
		for _, r := range w.Results {
			if r.Key != r.Value.URL || r.Value.Schema != record.SchemaVersion {
				t.Fatalf("result keyed %q with schema %d: %+v", r.Key, r.Value.Schema, r.Value)
			}
		}
		for _, p := range w.Pages {
			if p.Key != p.Value.URL || p.Value.Schema != record.SchemaVersion {
				t.Fatalf("page keyed %q with schema %d", p.Key, p.Value.Schema)
			}
		}
	})

	t.Run("closing the input flushes a partial batch", func(t *testing.T) {
		acks := &ackLog{}
		outs := outputs(10, acks)
		sink, read := s.open(t, sinkOptions{BatchSize: 1000, FlushInterval: time.Hour})
		if err := runSink(context.Background(), sink, outs); err != nil {
			t.Fatal(err)
		}
		if distinct, _ := acks.total(); distinct != 10 {
			t.Fatalf("%d of 10 acknowledged", distinct)
		}
		if w := read(t); len(w.Results)+len(w.Dead) != 10 {
			t.Fatalf("store holds %d results and %d dead letters, want 10 in all", len(w.Results), len(w.Dead))
		}
	})

	t.Run("a hard stop leaves pending outputs unacknowledged", func(t *testing.T) {
		acks := &ackLog{}
		outs := outputs(10, acks)
		sink, read := s.open(t, sinkOptions{BatchSize: 1000, FlushInterval: time.Hour})
		hard, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		src := flow.NewSource("feed", func(stop context.Context, emit flow.Emit[record.Output]) error {
			for _, o := range outs {
				if err := emit(o); err != nil {
					return nil
				}
			}
			<-hard.Done() // keep the input open: nothing asks for a flush
			return nil
		})
		flow.Connect[record.Output](src, sink)
		go func() { done <- flow.Run(hard, context.Background(), src, sink) }()
		for sink.Stats().InFlight() < 10 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if distinct, _ := acks.total(); distinct != 0 {
			t.Fatalf("%d outputs acknowledged after a hard stop before any write", distinct)
		}
		if w := read(t); len(w.Results)+len(w.Pages)+len(w.Dead) != 0 {
			t.Fatalf("store holds %d records", len(w.Results)+len(w.Pages)+len(w.Dead))
		}
	})

	t.Run("failed writes are never acknowledged", func(t *testing.T) {
		acks := &ackLog{}
		outs := outputs(20, acks)
		sink := s.broken(t, sinkOptions{BatchSize: 8, FlushInterval: 10 * time.Millisecond})
		// A sink may give up with an error or keep retrying: either way,
		// within the run nothing may be acknowledged.
		hard, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = runSink(hard, sink, outs)
		if distinct, _ := acks.total(); distinct != 0 {
			t.Fatalf("%d outputs acknowledged by a sink whose writes fail", distinct)
		}
	})
}

// hasOutput reports whether every record of o is in w.
func hasOutput(w written, o record.Output) bool {
	if o.Result != nil && !contains(w.Results, func(r record.Result) bool {
		return r.URL == o.Result.URL && r.Status == o.Result.Status && (r.Error == nil) == (o.Result.Error == nil) &&
			r.FetchedAt.Equal(o.Result.FetchedAt) && len(r.Fields) == len(o.Result.Fields)
	}) {
		return false
	}
	if o.Page != nil && !contains(w.Pages, func(p record.Page) bool {
		return p.URL == o.Page.URL && bytes.Equal(p.Body, o.Page.Body)
	}) {
		return false
	}
	if o.Dead != nil && !contains(w.Dead, func(d record.DeadLetter) bool {
		return bytes.Equal(d.Value, o.Dead.Value) && bytes.Equal(d.Key, o.Dead.Key) && d.Offset == o.Dead.Offset &&
			d.Partition == o.Dead.Partition && d.Topic == o.Dead.Topic && d.Error == o.Dead.Error
	}) {
		return false
	}
	return true
}

func contains[T any](xs []keyed[T], match func(T) bool) bool {
	for _, x := range xs {
		if match(x.Value) {
			return true
		}
	}
	return false
}
