package source

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/record"
)

// A parked task's delay record decodes back into the same message, with
// its park count and last error; a binary body survives as base64.
func TestDelayRecordRoundTrip(t *testing.T) {
	u, _ := url.Parse("https://shop.example/p/42")
	task := record.Task{
		Msg: record.Message{URL: u.String(), Key: "sku-42", Session: "s1", Meta: json.RawMessage(`{"c":1}`),
			Method: "POST", Body: "\xff\x00binary", Headers: map[string]string{"X-A": "b"}},
		URL: u, Parks: 2, Origin: record.Origin{RawKey: []byte("k")},
	}
	due := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d := record.Park(task, due, &record.Error{Class: "rate_limited", Message: "429"})
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	msg, got, parks, last, err := DecodeDelayed(raw, MaxMessageBytes)
	if err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	if got.String() != u.String() || parks != 3 || last == nil || last.Class != "rate_limited" {
		t.Fatalf("url %v parks %d last %+v", got, parks, last)
	}
	if msg.Body != task.Msg.Body || msg.Key != "sku-42" || msg.Session != "s1" || string(msg.Meta) != `{"c":1}` || msg.Headers["X-A"] != "b" {
		t.Fatalf("message %+v, want %+v", msg, task.Msg)
	}
	if !delayDue(raw).Equal(due) {
		t.Fatalf("due %v, want %v", delayDue(raw), due)
	}
	if string(d.RecordKey) != "k" {
		t.Fatalf("record key %q", d.RecordKey)
	}
}

// FuzzDecodeDelayed: a delay record never panics the decoder, which
// fails only with class bad_input, and what it accepts has an http(s) URL
// and at least one park.
func FuzzDecodeDelayed(f *testing.F) {
	for _, s := range []string{
		`{"schema":1,"url":"https://x/p","not_before":"2026-01-01T00:00:00Z","attempts":1}`,
		`{"schema":1,"url":"https://x/p","not_before":"2026-01-01T00:00:00Z","attempts":3,"error":{"class":"rate_limited","message":"m"}}`,
		`{"url":"https://x/p","bogus":1,"attempts":1}`,
		`{"url":"ftp://x/p"}`,
		`{"not_before": 5}`,
		`https://x/p`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		_ = delayDue(raw)
		_, u, parks, _, err := DecodeDelayed(raw, MaxMessageBytes)
		if err != nil {
			if failure.ClassOf(err) != failure.BadInput {
				t.Fatalf("error of class %s: %v", failure.ClassOf(err), err)
			}
			return
		}
		if u == nil || (u.Scheme != "http" && u.Scheme != "https") || parks < 1 {
			t.Fatalf("accepted %q as %v with %d parks", raw, u, parks)
		}
	})
}

// Merge runs its sources at once into one output, keeps each element,
// and returns the first error after stopping the others.
func TestMergeRunsAllAndStopsOnError(t *testing.T) {
	ctx := t.Context()
	count := func(from, n int) func(context.Context, flow.Emit[record.Task]) error {
		return func(stop context.Context, emit flow.Emit[record.Task]) error {
			for i := range n {
				if err := emit(record.Task{Origin: record.Origin{Offset: int64(from + i)}}); err != nil {
					return nil
				}
			}
			return nil
		}
	}
	var mu sync.Mutex
	seen := map[int64]bool{}
	sink := flow.NewSink("sink", 1, func(ctx context.Context, in flow.Inbox[record.Task]) error {
		for {
			task, ok := in.Recv(ctx)
			if !ok {
				return nil
			}
			mu.Lock()
			seen[task.Origin.Offset] = true
			mu.Unlock()
		}
	})
	merged := Merge("merged", count(0, 50), count(1000, 50))
	flow.Connect(merged, sink)
	if err := flow.Run(ctx, ctx, merged, sink); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 100 {
		t.Fatalf("%d elements, want 100", len(seen))
	}

	boom := errors.New("boom")
	waiting := func(stop context.Context, emit flow.Emit[record.Task]) error {
		<-stop.Done() // stopped by the other's error
		return nil
	}
	failing := func(context.Context, flow.Emit[record.Task]) error { return boom }
	drain := flow.NewSink("sink", 1, func(ctx context.Context, in flow.Inbox[record.Task]) error {
		for {
			if _, ok := in.Recv(ctx); !ok {
				return nil
			}
		}
	})
	merged = Merge("merged", waiting, failing)
	flow.Connect(merged, drain)
	if err := flow.Run(ctx, ctx, merged, drain); !errors.Is(err, boom) {
		t.Fatalf("error %v, want %v", err, boom)
	}
}
