package waterfall

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/record"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)

func at(ms float64) time.Time    { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
func ptr(t time.Time) *time.Time { return &t }

// mkSpan builds a span starting at startMS taking durMS, with a full set
// of phases unless it failed.
func mkSpan(proxy string, attempt int, startMS, durMS float64, class string) record.Span {
	sp := record.Span{
		Schema: 1, URL: "http://shop.example/p/1", Domain: "shop.example", Proxy: proxy, Attempt: attempt,
		Enqueued: at(startMS - 5), WaitStart: at(startMS - 3), WaitEnd: at(startMS - 1), Start: at(startMS),
		End: at(startMS + durMS), Error: class,
	}
	if class == "" {
		sp.Status, sp.Bytes = 200, 1000
		sp.ConnectStart, sp.ConnectDone = ptr(at(startMS+0.1)), ptr(at(startMS+0.3))
		sp.FirstByte = ptr(at(startMS + durMS/2))
	}
	return sp
}

func TestTraceRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace.jsonl")
	w, err := Create(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				w.Write(mkSpan("p"+string(rune('1'+g)), 1, float64(i), 2, ""))
			}
		})
	}
	wg.Wait()
	if w.Spans() != 400 {
		t.Errorf("Spans() = %d", w.Spans())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.Write(mkSpan("p1", 1, 0, 1, "")) // after Close: dropped, no panic
	spans, st, err := ReadFile(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(spans) != 400 || st.Lines != 400 || st.Bad != 0 {
		t.Fatalf("read %d spans, %+v", len(spans), st)
	}
	want := mkSpan("p1", 1, 0, 2, "")
	var got record.Span
	for _, sp := range spans {
		if sp.Proxy == "p1" && sp.Start.Equal(want.Start) {
			got = sp
		}
	}
	if !got.FirstByte.Equal(*want.FirstByte) || !got.WaitStart.Equal(want.WaitStart) || got.Status != 200 {
		t.Errorf("span did not round-trip: %+v", got)
	}
}

func TestWriterLimit(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b, 3)
	for i := range 10 {
		w.Write(mkSpan("p1", 1, float64(i), 1, ""))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Spans() != 3 || w.Dropped() != 7 || strings.Count(b.String(), "\n") != 3 {
		t.Errorf("kept %d, dropped %d, %d lines", w.Spans(), w.Dropped(), strings.Count(b.String(), "\n"))
	}
}

func TestRead(t *testing.T) {
	good, _ := json.Marshal(mkSpan("p1", 1, 0, 1, ""))
	in := string(good) + "\n\n  \nnot json\n{\"url\":\"x\"}\n" + string(good) + "\n" + string(good)
	spans, st, err := Read(strings.NewReader(in), 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(spans) != 2 || st.Lines != 5 || st.Bad != 2 || st.Dropped != 1 {
		t.Errorf("got %d spans, %+v", len(spans), st)
	}
	long := strings.Repeat("x", maxLineBytes+10)
	if _, _, err := Read(strings.NewReader(long), 0); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("a line past the cap: %v", err)
	}
}

func TestSummary(t *testing.T) {
	var spans []record.Span
	// p1: 20 attempts of 1..20 ms, 2 of them failed; p10: 1 attempt; p2: 1.
	for i := 1; i <= 20; i++ {
		class := ""
		if i%10 == 0 {
			class = "timeout"
		}
		spans = append(spans, mkSpan("p1", 1, float64(i*30), float64(i), class))
	}
	spans = append(spans, mkSpan("p10", 2, 0, 100, "proxy_connect"), mkSpan("p2", 1, 0, 4, ""))
	sum := ByProxy(spans)
	if keys := []string{sum[0].Key, sum[1].Key, sum[2].Key, sum[3].Key}; strings.Join(keys, ",") != "p1,p2,p10,all" {
		t.Fatalf("order %v", keys)
	}
	p1 := sum[0]
	if p1.Attempts != 20 || p1.OK != 18 || p1.SuccessRate() != 0.9 || p1.Errors["timeout"] != 2 || p1.Bytes != 18000 {
		t.Errorf("p1 = %+v", p1)
	}
	if p1.Median != 10*time.Millisecond || p1.P95 != 19*time.Millisecond {
		t.Errorf("p1 median %v p95 %v, want 10ms 19ms", p1.Median, p1.P95)
	}
	if all := sum[3]; all.Attempts != 22 || all.OK != 19 || all.ErrorList() != "timeout ×2, proxy_connect ×1" {
		t.Errorf("all = %+v (%s)", all, all.ErrorList())
	}
	if (Summary{}).SuccessRate() != 0 {
		t.Error("empty success rate")
	}
}

// TestWaterfallFailingProxy: a proxy that failed 4 times in a row (then was
// caught), one late lease hedged elsewhere, and probation probes after.
func TestWaterfallFailingProxy(t *testing.T) {
	var spans []record.Span
	for i, class := range []string{"", "proxy_connect", "proxy_connect", "proxy_connect", "proxy_connect", "", "timeout"} {
		sp := mkSpan("p1", 1, float64(i*10), 5, class)
		sp.Probation = i >= 5
		spans = append(spans, sp)
	}
	late := mkSpan("p2", 1, 0, 200, "")
	late.Late = true
	hedge := mkSpan("p3", 1, 100, 5, "")
	hedge.Hedge, hedge.Probation, hedge.Cap = true, true, 2
	// Written out of start order, as a trace is (by end).
	spans = append(append([]record.Span{spans[6]}, spans[:6]...), late, hedge)
	sum := ByProxy(spans)
	p1, p2, p3, all := sum[0], sum[1], sum[2], sum[3]
	if p1.Streak != 4 || p1.Probation != 2 || p1.Late != 0 || p1.Attempts != 7 {
		t.Errorf("p1 = %+v, want streak 4, 2 probation attempts", p1)
	}
	if p2.Late != 1 || p2.Streak != 0 || p3.Hedges != 1 || p3.Probation != 1 {
		t.Errorf("p2 = %+v, p3 = %+v", p2, p3)
	}
	if all.Late != 1 || all.Hedges != 1 || all.Probation != 3 || all.Streak != 0 {
		t.Errorf("all = %+v", all)
	}
	var b bytes.Buffer
	if err := Render(&b, spans, Options{Title: "failing"}); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{
		`<th title="the longest run of failed attempts in a row: what the proxy cost before it was caught">fail streak</th>`,
		`<td>0</td><td>0</td><td>2</td>
        <td class="bad">4</td>`,
		`"l":true`, `"h":true`, `"q":true`, `"c":2`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestRender(t *testing.T) {
	spans := []record.Span{
		mkSpan("p2", 1, 10, 5, ""),
		mkSpan("p1", 1, 0, 300, ""),
		mkSpan("p1", 2, 400, 50, "timeout"),
		mkSpan("p3", 1, 5, 6, ""),
	}
	spans[0].URL = "http://shop.example/</script><script>alert(1)</script>"
	var b bytes.Buffer
	if err := Render(&b, spans, Options{Title: "t <x>", Source: "trace.jsonl"}); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{
		"<title>t &lt;x&gt;</title>",
		`<tr class="proxy-row" data-proxy="p1">`, `<tr class="proxy-row" data-proxy="p3">`,
		"timeout ×1",
		`"proxies":["p1","p2","p3"]`,
		"4 attempts over 455ms",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Count(page, "</script>") != 2 {
		t.Errorf("the URL broke out of the data script: %d </script> tags", strings.Count(page, "</script>"))
	}
	if strings.Contains(page, "http://") && strings.Contains(page, "src=\"http") {
		t.Error("the page loads something from the network")
	}
	// p1 is slow (median 50 ms, nearest rank, against 6 ms overall) and
	// failing (50%).
	if !strings.Contains(page, `class="bad">50.0 ms`) || !strings.Contains(page, `class="bad">50.0%`) {
		t.Error("slow, failing p1 not marked")
	}
	// The data holds every span, in order of their bars' start, with
	// phase times relative to the first time of the trace.
	start := strings.Index(page, `<script id="data" type="application/json">`) + len(`<script id="data" type="application/json">`)
	end := strings.Index(page[start:], "</script>")
	var d jsData
	if err := json.Unmarshal([]byte(page[start:start+end]), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Spans) != 4 || d.Spans[0].P != 0 || d.Spans[0].A != 1 || *d.Spans[0].T[0] != 0 || *d.Spans[0].T[3] != 5 {
		t.Errorf("first span %+v", d.Spans[0])
	}
	if d.Spans[3].E != "timeout" || d.Spans[3].T[10] != nil || *d.Spans[3].T[11] != 455 {
		t.Errorf("failed span %+v", d.Spans[3])
	}
}

func TestRenderCapAndEmpty(t *testing.T) {
	var spans []record.Span
	for i := range 30 {
		spans = append(spans, mkSpan("p1", 1, float64(i), 1, ""))
	}
	var b bytes.Buffer
	if err := Render(&b, spans, Options{MaxSpans: 10}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "20 later attempts left out") || !strings.Contains(b.String(), "10 attempts") {
		t.Error("cap not reported")
	}
	b.Reset()
	if err := Render(&b, nil, Options{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"spans":[]`) {
		t.Error("empty trace not rendered as an empty list")
	}
}

func TestNaturalLess(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{{"p2", "p10", true}, {"p10", "p2", false}, {"direct", "p1", true}, {"a", "a1", true}, {"p01", "p1", false}} {
		if got := naturalLess(c.a, c.b); got != c.want {
			t.Errorf("naturalLess(%q, %q) = %v", c.a, c.b, got)
		}
	}
}

func FuzzRead(f *testing.F) {
	good, _ := json.Marshal(mkSpan("p1", 1, 0, 1, ""))
	f.Add(string(good))
	f.Add("{}\n" + string(good) + "\nnot json")
	f.Add(`{"end":"2030-01-01T00:00:00Z","first_byte":null}`)
	f.Fuzz(func(t *testing.T, in string) {
		spans, st, err := Read(strings.NewReader(in), 5)
		if err != nil {
			return
		}
		if len(spans) > 5 || st.Bad+len(spans)+st.Dropped != st.Lines {
			t.Fatalf("%d spans, %+v", len(spans), st)
		}
		var b bytes.Buffer
		if err := Render(&b, spans, Options{}); err != nil {
			t.Fatal(err)
		}
		if strings.Count(b.String(), "</script>") != 2 {
			t.Fatal("data broke out of its script")
		}
	})
}

func TestCreateError(t *testing.T) {
	if _, err := Create(filepath.Join(t.TempDir(), "missing", "trace.jsonl"), 0); err == nil {
		t.Error("Create in a missing directory succeeded")
	}
	if _, _, err := ReadFile(filepath.Join(t.TempDir(), "none"), 0); !os.IsNotExist(errorsUnwrap(err)) {
		t.Errorf("ReadFile of a missing file: %v", err)
	}
}

func errorsUnwrap(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}
