package sink

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/stages/source"
)

func TestWARCConformance(t *testing.T) {
	runConformance(t, sinkUnderTest{
		open: func(t *testing.T, o sinkOptions) (*flow.Sink[record.Output], func(*testing.T) written) {
			dir := t.TempDir()
			w, err := NewWARC(WARCConfig{Dir: dir, MaxSize: 64 << 10, BatchSize: o.BatchSize, FlushInterval: o.FlushInterval, OnDone: o.OnDone})
			if err != nil {
				t.Fatal(err)
			}
			return w.Sink(), func(t *testing.T) written { return readWARCDir(t, dir) }
		},
		broken: func(t *testing.T, o sinkOptions) *flow.Sink[record.Output] {
			dir := filepath.Join(t.TempDir(), "warc")
			w, err := NewWARC(WARCConfig{Dir: dir, BatchSize: o.BatchSize, FlushInterval: o.FlushInterval, OnDone: o.OnDone})
			if err != nil {
				t.Fatal(err)
			}
			// The directory becomes a file: no WARC file can be created.
			if err := os.Remove(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dir, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			return w.Sink()
		},
	})
}

// readWARCDir reads back every record of every file in dir with the
// reader replay uses.
func readWARCDir(t *testing.T, dir string) written {
	t.Helper()
	var w written
	for _, path := range warcFiles(t, dir) {
		err := source.ReadWARCFile(context.Background(), path, 0, func(it source.WARCItem) error {
			switch {
			case it.Page != nil:
				w.Pages = append(w.Pages, keyed[record.Page]{Key: it.Page.URL, Value: *it.Page})
			case it.Result != nil:
				w.Results = append(w.Results, keyed[record.Result]{Key: it.Result.URL, Value: *it.Result})
			case it.Dead != nil:
				w.Dead = append(w.Dead, keyed[record.DeadLetter]{Key: string(it.Dead.Key), Value: *it.Dead})
			case it.Bad != nil:
				t.Errorf("%s: %s", path, it.Bad.Error.Message)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func warcFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.warc.gz"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

// writeWARC writes outs through a WARC sink into dir and returns the files.
func writeWARC(t *testing.T, cfg WARCConfig, outs []record.Output) []string {
	t.Helper()
	w, err := NewWARC(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := runSink(context.Background(), w.Sink(), outs); err != nil {
		t.Fatal(err)
	}
	return w.Files()
}

// TestWARCRotation: files are closed past MaxSize, each opens with a
// warcinfo record, and the records of one output stay in one file.
func TestWARCRotation(t *testing.T) {
	dir := t.TempDir()
	files := writeWARC(t, WARCConfig{Dir: dir, MaxSize: 16 << 10, BatchSize: 7}, outputs(400, &ackLog{}))
	if len(files) < 3 {
		t.Fatalf("%d files for 400 outputs at 16 KiB each, want several", len(files))
	}
	if got := warcFiles(t, dir); strings.Join(got, ",") != strings.Join(files, ",") {
		t.Fatalf("files on disk %v, written %v", got, files)
	}
	pages := 0
	for i, path := range files {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if i < len(files)-1 && st.Size() < 16<<10 {
			t.Errorf("%s closed at %d bytes, under the max size", path, st.Size())
		}
		// Every page in a file has its result in the same file.
		var pageURLs, resultURLs []string
		if err := source.ReadWARCFile(context.Background(), path, 0, func(it source.WARCItem) error {
			switch {
			case it.Page != nil:
				pageURLs = append(pageURLs, it.Page.URL)
			case it.Result != nil:
				resultURLs = append(resultURLs, it.Result.URL)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for _, u := range pageURLs {
			if !contains0(resultURLs, u) {
				t.Errorf("%s: page %s without its result", path, u)
			}
		}
		pages += len(pageURLs)
	}
	if pages != 100 {
		t.Fatalf("%d pages in all, want 100", pages)
	}
}

func contains0(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// TestWARCFlow: as a stage in front of a sink, the WARC writer passes an
// output on only once its records are durable, and acknowledges nothing
// itself: the sink after it does.
func TestWARCFlow(t *testing.T) {
	dir := t.TempDir()
	acks := &ackLog{}
	outs := outputs(40, acks)
	var wroteBeforeAck []bool
	jl, err := NewJSONL(JSONLConfig{Path: filepath.Join(dir, "results.jsonl"), BatchSize: 5, OnDone: func(o record.Output) {
		if o.Page != nil {
			w := readWARCDir(t, filepath.Join(dir, "warc"))
			wroteBeforeAck = append(wroteBeforeAck, hasOutput(w, o))
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	var passed int
	w, err := NewWARC(WARCConfig{Dir: filepath.Join(dir, "warc"), BatchSize: 3, OnDone: func(o record.Output) {
		if acks.times(indexOf(outs, o)) != 0 {
			t.Errorf("output acknowledged before the WARC writer passed it on")
		}
		passed++
	}})
	if err != nil {
		t.Fatal(err)
	}
	src := flow.NewSource("feed", func(stop context.Context, emit flow.Emit[record.Output]) error {
		for _, o := range outs {
			if err := emit(o); err != nil {
				return nil
			}
		}
		return nil
	})
	flow.Connect[record.Output](src, w.Flow())
	flow.Connect[record.Output](w.Flow(), jl.Sink())
	if err := flow.Run(context.Background(), context.Background(), src, w.Flow(), jl.Sink()); err != nil {
		t.Fatal(err)
	}
	if distinct, calls := acks.total(); distinct != 40 || calls != 40 || passed != 40 {
		t.Fatalf("%d acknowledged in %d calls, %d passed on; want 40", distinct, calls, passed)
	}
	if len(wroteBeforeAck) != 10 {
		t.Fatalf("%d pages checked at their ack, want 10", len(wroteBeforeAck))
	}
	for i, ok := range wroteBeforeAck {
		if !ok {
			t.Fatalf("page %d acknowledged before its WARC records were readable", i)
		}
	}
}

func indexOf(outs []record.Output, o record.Output) int {
	for i, x := range outs {
		switch {
		case o.Result != nil && x.Result == o.Result, o.Dead != nil && x.Dead == o.Dead:
			return i
		}
	}
	return -1
}

// TestWARCPageRoundTrip: the reader replay uses gives back the page the
// writer was given, field for field.
func TestWARCPageRoundTrip(t *testing.T) {
	at := time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC)
	p := &record.Page{Schema: record.SchemaVersion, URL: "http://shop.test/a?x=1", Key: "sku-1", FinalURL: "http://shop.test/b?x=1",
		Method: "GET", Status: 404, Header: map[string][]string{"Content-Type": {"text/html; charset=utf-8"}, "Set-Cookie": {"a=1", "b=2"}},
		Body: []byte("<h1>gone</h1>\r\n\x00\xff"), Truncated: true, FetchedAt: at, Attempts: 3, Proxy: "p7",
		Timings: record.Timings{DNSMS: 1, ConnectMS: 2, TLSMS: 3, FirstByteMS: 4, TotalMS: 5}, Meta: json.RawMessage(`{"shop": "a",  "n": [1, 2]}`)}
	res := &record.Result{Schema: record.SchemaVersion, URL: p.URL, Key: p.Key, Status: 404, FetchedAt: at, Fields: map[string]any{},
		Links: []string{}, Parser: &record.Parser{Rules: "shop", Version: "v3"}}
	dir := t.TempDir()
	writeWARC(t, WARCConfig{Dir: dir}, []record.Output{{Result: res, Page: p}})
	w := readWARCDir(t, dir)
	if len(w.Pages) != 1 || len(w.Results) != 1 {
		t.Fatalf("read %d pages, %d results", len(w.Pages), len(w.Results))
	}
	got := w.Pages[0].Value
	want := *p
	want.Meta = json.RawMessage(`{"shop":"a","n":[1,2]}`)
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if !bytes.Equal(gj, wj) {
		t.Fatalf("page read back:\n%s\nwant\n%s", gj, wj)
	}
	if r := w.Results[0].Value; r.Parser == nil || *r.Parser != *res.Parser || r.Key != "sku-1" {
		t.Fatalf("result read back: %+v", r)
	}
}

// warcio returns the path of Python's warcio command, or skips.
func warcio(t *testing.T) string {
	t.Helper()
	path := os.Getenv("SLUICE_WARCIO")
	if path == "" {
		var err error
		if path, err = exec.LookPath("warcio"); err != nil {
			t.Skip("warcio is not installed: source .ci/setup-warcio.sh (pip install warcio) to check archives with an independent reader")
		}
	}
	return path
}

// warcioIndex runs `warcio index` with the given fields and returns one
// map per record.
func warcioIndex(t *testing.T, bin, path, fields string) []map[string]string {
	t.Helper()
	out, err := exec.Command(bin, "index", "-f", fields, path).Output()
	if err != nil {
		t.Fatalf("warcio index %s: %v", path, err)
	}
	var recs []map[string]string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := map[string]string{}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("warcio index line %q: %v", sc.Text(), err)
		}
		recs = append(recs, m)
	}
	return recs
}

// TestWARCReadByWarcio: an independent reader, Python's warcio, checks
// every file (digests included) and indexes it: one warcinfo record per
// file, a request and a response per page linked by WARC-Concurrent-To,
// payload digests, and the sluice headers.
func TestWARCReadByWarcio(t *testing.T) {
	bin := warcio(t)
	dir := t.TempDir()
	outs := outputs(60, &ackLog{})
	for _, o := range outs {
		if o.Result != nil {
			o.Result.Parser = &record.Parser{Rules: "default", Version: "1"}
		}
	}
	files := writeWARC(t, WARCConfig{Dir: dir, MaxSize: 8 << 10, BatchSize: 16}, outs)
	if len(files) < 2 {
		t.Fatalf("%d files, want rotation into several", len(files))
	}
	types := map[string]int{}
	for _, f := range files {
		if out, err := exec.Command(bin, "check", "-v", f).CombinedOutput(); err != nil {
			t.Fatalf("warcio check %s: %v\n%s", f, err, out)
		}
		recs := warcioIndex(t, bin, f, "warc-type,warc-record-id,warc-target-uri,warc-concurrent-to,warc-payload-digest,warc-date,warc-sluice-url,warc-sluice-rules,warc-sluice-rules-version,http:status")
		if len(recs) == 0 || recs[0]["warc-type"] != "warcinfo" {
			t.Fatalf("%s does not open with a warcinfo record: %v", f, recs)
		}
		ids := map[string]map[string]string{}
		for _, r := range recs {
			types[r["warc-type"]]++
			ids[r["warc-record-id"]] = r
		}
		for _, r := range recs {
			switch r["warc-type"] {
			case "response":
				req := ids[r["warc-concurrent-to"]]
				if req == nil || req["warc-type"] != "request" || req["warc-concurrent-to"] != r["warc-record-id"] || req["warc-target-uri"] != r["warc-target-uri"] {
					t.Errorf("response %v not linked with its request %v", r, req)
				}
				if !strings.HasPrefix(r["warc-payload-digest"], "sha1:") || r["http:status"] != "200" || r["warc-sluice-url"] != r["warc-target-uri"] ||
					r["warc-sluice-rules"] != "default" || r["warc-sluice-rules-version"] != "1" {
					t.Errorf("response record %v", r)
				}
			case "metadata", "request", "warcinfo":
			default:
				t.Errorf("unexpected record %v", r)
			}
		}
	}
	// 60 outputs: 15 pages, 45 results, 15 dead letters.
	if types["warcinfo"] != len(files) || types["request"] != 15 || types["response"] != 15 || types["metadata"] != 45+15 {
		t.Fatalf("records by type %v over %d files", types, len(files))
	}
}

// BenchmarkWARC writes outputs with an 8 KiB page each through the WARC
// sink (gzip per record, fsync per batch of 256).
func BenchmarkWARC(b *testing.B) {
	body := bytes.Repeat([]byte("<p>lorem ipsum dolor sit amet</p>\n"), 8<<10/34)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	outs := make([]record.Output, b.N)
	for i := range outs {
		u := "http://shop.test/product/" + strconv.Itoa(i)
		outs[i] = record.Output{
			Result: &record.Result{Schema: record.SchemaVersion, URL: u, Status: 200, FetchedAt: at, Fields: map[string]any{}, Links: []string{}},
			Page: &record.Page{Schema: record.SchemaVersion, URL: u, FinalURL: u, Method: "GET", Status: 200,
				Header: map[string][]string{"Content-Type": {"text/html"}}, Body: body, FetchedAt: at},
		}
	}
	w, err := NewWARC(WARCConfig{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	if err := runSink(context.Background(), w.Sink(), outs); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(w.Records())/float64(b.N), "records/op")
}
