package sink

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/record"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// feed runs n outputs through a JSONL sink; check is called from each ack
// with the number of outputs acknowledged so far.
func feed(t *testing.T, j *JSONL, outs []record.Output) error {
	t.Helper()
	src := flow.NewSource("feed", func(stop context.Context, emit flow.Emit[record.Output]) error {
		for _, o := range outs {
			if err := emit(o); err != nil {
				return err
			}
		}
		return nil
	})
	flow.Connect[record.Output](src, j.Sink())
	return flow.Run(context.Background(), context.Background(), src, j.Sink())
}

func lines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestJSONLAcksOnlyDurableOutputs(t *testing.T) {
	dir := t.TempDir()
	res := filepath.Join(dir, "results.jsonl")
	pages := filepath.Join(dir, "pages.jsonl")
	dead := filepath.Join(dir, "dead.jsonl")
	var acked, done atomic.Int64
	var outs []record.Output
	const n = 1000
	for i := 0; i < n; i++ {
		o := record.Output{Ack: func() {
			// An ack may only fire once its line is on disk (checked
			// on every 50th ack: reading the files is slow).
			if acked.Load()%50 != 0 {
				acked.Add(1)
				return
			}
			if got := len(lines(t, res)) + len(lines(t, dead)); int64(got) <= acked.Load() {
				t.Errorf("ack %d fired with only %d lines written", acked.Load()+1, got)
			}
			acked.Add(1)
		}}
		if i%100 == 99 {
			o.Dead = &record.DeadLetter{Schema: 1, Value: []byte("garbage"), Offset: int64(i)}
		} else {
			o.Result = &record.Result{Schema: 1, URL: "http://a.example/" + string(rune('a'+i%26))}
			o.Page = &record.Page{Schema: 1, URL: o.Result.URL, Body: []byte("<html>")}
		}
		outs = append(outs, o)
	}
	j, err := NewJSONL(JSONLConfig{Path: res, PagesPath: pages, DeadPath: dead, BatchSize: 64, FlushInterval: time.Millisecond,
		OnDone: func(record.Output) { done.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := feed(t, j, outs); err != nil {
		t.Fatal(err)
	}
	if acked.Load() != n || done.Load() != n {
		t.Fatalf("acked %d, done %d, want %d", acked.Load(), done.Load(), n)
	}
	if r, p, d := len(lines(t, res)), len(lines(t, pages)), len(lines(t, dead)); r != 990 || p != 990 || d != 10 {
		t.Fatalf("results %d pages %d dead %d", r, p, d)
	}
	if st := j.Sink().Stats(); st.Processed() != n || st.InFlight() != 0 {
		t.Fatalf("stats processed %d in flight %d", st.Processed(), st.InFlight())
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestJSONLWriteFailureAcksNothing(t *testing.T) {
	var acked atomic.Int64
	outs := make([]record.Output, 10)
	for i := range outs {
		outs[i] = record.Output{Result: &record.Result{URL: "http://a.example/"}, Ack: func() { acked.Add(1) }}
	}
	j, err := NewJSONL(JSONLConfig{Writer: failWriter{}, BatchSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	err = feed(t, j, outs)
	if err == nil {
		t.Fatal("want the write error")
	}
	if acked.Load() != 0 {
		t.Fatalf("%d outputs acknowledged although nothing was written", acked.Load())
	}
}
