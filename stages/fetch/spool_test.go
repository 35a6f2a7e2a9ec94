package fetch

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/sluicehq/sluice/governor"
)

// TestSpoolRead reads bodies of known and unknown length, whole and in
// small pieces, in memory and spooled, and checks the bytes, the budget
// held and the truncation.
func TestSpoolRead(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 6000) // 96,000 bytes: three chunks
	n := int64(len(body))
	tests := []struct {
		name      string
		threshold int64
		limit     int64
		truncate  bool
		size      int64 // the hint given to read
		oneByte   bool
		want      int64 // bytes read; -1: too large
		spooled   bool
	}{
		{name: "known size", threshold: -1, limit: 1 << 20, size: n, want: n},
		{name: "known size, byte by byte", threshold: -1, limit: 1 << 20, size: n, oneByte: true, want: n},
		{name: "unknown size", threshold: -1, limit: 1 << 20, size: -1, want: n},
		{name: "unknown size, byte by byte", threshold: -1, limit: 1 << 20, size: -1, oneByte: true, want: n},
		{name: "size hint too small", threshold: -1, limit: 1 << 20, size: 100, want: n},
		{name: "size hint too large", threshold: -1, limit: 1 << 20, size: 2 * n, want: n},
		{name: "over the limit", threshold: -1, limit: n - 1, size: n, want: -1},
		{name: "truncated", threshold: -1, limit: 50000, truncate: true, size: n, want: 50000},
		{name: "spooled, known size", threshold: 40000, limit: 1 << 20, size: n, want: n, spooled: true},
		{name: "spooled, unknown size", threshold: 40000, limit: 1 << 20, size: -1, want: n, spooled: true},
		{name: "spooled and truncated", threshold: 40000, limit: 50000, truncate: true, size: n, want: 50000, spooled: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			budget := governor.NewBudget(1 << 30)
			sp := &spooler{parent: t.TempDir(), threshold: tc.threshold, budget: budget}
			defer sp.close()
			var r io.Reader = bytes.NewReader(body)
			if tc.oneByte {
				r = iotest.OneByteReader(r)
			}
			b, err := sp.read(r, tc.limit, tc.truncate, tc.size)
			if tc.want < 0 {
				if err == nil || !strings.Contains(err.Error(), "exceeds") {
					t.Fatalf("err = %v, want too large", err)
				}
				if budget.Used() != 0 {
					t.Errorf("budget holds %d bytes after a failed read", budget.Used())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := b.data
			if tc.spooled {
				if b.spool == nil || b.data != nil || b.held != 0 {
					t.Fatalf("spool %+v, %d bytes in memory, %d held; want spooled", b.spool, len(b.data), b.held)
				}
				if got, err = os.ReadFile(b.spool.Path); err != nil {
					t.Fatal(err)
				}
			} else if b.spool != nil || b.held < int64(len(b.data)) || budget.Used() != b.held {
				t.Fatalf("spool %+v, %d bytes, %d held, budget %d; want all in memory and held", b.spool, len(b.data), b.held, budget.Used())
			}
			if !bytes.Equal(got, body[:tc.want]) {
				t.Errorf("read %d bytes, want the first %d of the body", len(got), tc.want)
			}
			if b.truncated != (tc.want < n) {
				t.Errorf("truncated = %v", b.truncated)
			}
		})
	}
}

// TestSpoolReadEmpty: an empty body is nil, as before.
func TestSpoolReadEmpty(t *testing.T) {
	sp := &spooler{threshold: -1, budget: governor.NewBudget(1 << 20)}
	for _, size := range []int64{-1, 0} {
		b, err := sp.read(bytes.NewReader(nil), 1<<20, false, size)
		if err != nil || b.data != nil || b.spool != nil {
			t.Errorf("size %d: %+v, %v", size, b, err)
		}
	}
}

// TestKnownSize: the Content-Length counts only for a body read as it came.
func TestKnownSize(t *testing.T) {
	resp := &http.Response{Body: io.NopCloser(strings.NewReader("abc")), ContentLength: 3}
	if got := knownSize(resp, resp.Body); got != 3 {
		t.Errorf("undecoded body: %d, want 3", got)
	}
	if got := knownSize(resp, strings.NewReader("abcdef")); got != -1 {
		t.Errorf("decoded body: %d, want -1", got)
	}
}

// BenchmarkSpoolRead reads a 60 KB body (the compare testbed's page) the
// way an attempt does, with its length known (Content-Length) and not
// (chunked or decoded).
func BenchmarkSpoolRead(b *testing.B) {
	body := bytes.Repeat([]byte("<p>lorem ipsum</p>\n"), 61440/19+1)[:61440]
	for _, bc := range []struct {
		name    string
		size    int64
		recycle bool // give the buffer back, as the parse stage does
	}{{"content-length", int64(len(body)), false}, {"content-length-recycled", int64(len(body)), true}, {"unknown", -1, false}} {
		b.Run(bc.name, func(b *testing.B) {
			sp := &spooler{threshold: 1 << 20, budget: governor.NewBudget(1 << 30)}
			r := bytes.NewReader(body)
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				r.Reset(body)
				got, err := sp.read(r, 8<<20, false, bc.size)
				if err != nil || len(got.data) != len(body) {
					b.Fatalf("read %d bytes: %v", len(got.data), err)
				}
				sp.budget.Give(got.held)
				if bc.recycle {
					sp.bodies.put(got.buf)
				}
			}
		})
	}
}
