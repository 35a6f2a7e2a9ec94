package sink

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/record"
)

func TestJSONLConformance(t *testing.T) {
	runConformance(t, sinkUnderTest{
		open: func(t *testing.T, o sinkOptions) (*flow.Sink[record.Output], func(*testing.T) written) {
			dir := t.TempDir()
			cfg := JSONLConfig{
				Path: filepath.Join(dir, "results.jsonl"), PagesPath: filepath.Join(dir, "pages.jsonl"),
				DeadPath: filepath.Join(dir, "dead.jsonl"), BatchSize: o.BatchSize, FlushInterval: o.FlushInterval, OnDone: o.OnDone,
			}
			j, err := NewJSONL(cfg)
			if err != nil {
				t.Fatal(err)
			}
			return j.Sink(), func(t *testing.T) written {
				var w written
				readJSONL(t, cfg.Path, func(r record.Result) string { return r.URL }, &w.Results)
				readJSONL(t, cfg.PagesPath, func(p record.Page) string { return p.URL }, &w.Pages)
				readJSONL(t, cfg.DeadPath, func(d record.DeadLetter) string { return string(d.Key) }, &w.Dead)
				return w
			}
		},
		broken: func(t *testing.T, o sinkOptions) *flow.Sink[record.Output] {
			j, err := NewJSONL(JSONLConfig{Writer: failWriter{}, BatchSize: o.BatchSize, FlushInterval: o.FlushInterval, OnDone: o.OnDone})
			if err != nil {
				t.Fatal(err)
			}
			return j.Sink()
		},
	})
}

func readJSONL[T any](t *testing.T, path string, key func(T) string, out *[]keyed[T]) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		*out = append(*out, keyed[T]{Key: key(v), Value: v})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}
