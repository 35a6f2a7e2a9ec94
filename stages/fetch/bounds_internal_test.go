package fetch

import (
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/failure"
)

// TestWireCap: a deflate stream of empty blocks decodes to nothing however
// long it is; the cap on encoded bytes ends it.
func TestWireCap(t *testing.T) {
	var wire bytes.Buffer
	zw, _ := flate.NewWriter(&wire, flate.BestSpeed)
	for wire.Len() < 3<<20 {
		_ = zw.Flush() // an empty stored block: 5 bytes, no output
	}
	s := &Stage{cfg: Config{MaxBodyBytes: 1 << 20}}
	resp := &http.Response{Header: http.Header{"Content-Encoding": {"deflate"}}, Body: io.NopCloser(&wire), ContentLength: -1}
	r, err := s.bodyReader(resp)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, r)
	if !errors.Is(err, errWireTooLarge) || n != 0 {
		t.Fatalf("read %d bytes, %v; want errWireTooLarge", n, err)
	}
	if got := s.bodyError(err, context.Background(), context.Background(), false); failure.ClassOf(got) != failure.TooLarge {
		t.Errorf("classified as %v", got)
	}
	if resp.Header.Get("Content-Encoding") != "" {
		t.Error("decoded body still labelled deflate")
	}
	// Unencoded, the Content-Length alone refuses an oversized body.
	resp = &http.Response{Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), ContentLength: 2 << 20}
	if _, err := s.bodyReader(resp); failure.ClassOf(err) != failure.TooLarge {
		t.Errorf("Content-Length over the cap: %v", err)
	}
}

func TestDecoderRejectsStacks(t *testing.T) {
	if _, _, err := decoder("gzip, gzip, gzip", strings.NewReader("")); err == nil {
		t.Error("three stacked encodings accepted")
	}
	if r, enc, err := decoder(" Identity ,", strings.NewReader("abc")); err != nil || enc {
		t.Errorf("identity: %v %v %v", r, enc, err)
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, s := range []string{
		"", "0", "1", "120", "-5", "86400", "86401", "99999999999999999999", "1.5", " 30 ", "+30", "0x10",
		now.Add(time.Hour).Format(http.TimeFormat), now.Add(-time.Hour).Format(http.TimeFormat),
		now.Add(48 * time.Hour).Format(http.TimeFormat), "Sunday, 06-Nov-94 08:49:37 GMT",
		"Sun Nov  6 08:49:37 1994", "Wed, 31 Dec 9999 23:59:59 GMT", "garbage", "\x00\xff",
	} {
		f.Add(s, now.Unix())
	}
	f.Fuzz(func(t *testing.T, v string, nowUnix int64) {
		now := time.Unix(nowUnix, 0)
		d := ParseRetryAfter(v, now)
		if d < 0 || d > 24*time.Hour {
			t.Fatalf("ParseRetryAfter(%q) = %v, outside 0..24h", v, d)
		}
		if d != ParseRetryAfter(v, now) {
			t.Fatalf("nondeterministic on %q", v)
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			want := time.Duration(0)
			switch {
			case n > 86400:
				want = 24 * time.Hour
			case n > 0:
				want = time.Duration(n) * time.Second
			}
			if d != want {
				t.Fatalf("ParseRetryAfter(%q) = %v, want %v", v, d, want)
			}
		}
	})
}
