package fetch

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// endless is a reader that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

func TestReadCapped(t *testing.T) {
	const limit = 1 << 20
	for _, n := range []int{0, 1, 4095, limit - 1, limit, limit + 1, 3 * limit} {
		for _, hint := range []int64{0, 512, int64(n) + 1, 100 << 20} {
			data := bytes.Repeat([]byte("y"), n)
			got, over, err := readCapped(bytes.NewReader(data), hint, limit)
			if err != nil {
				t.Fatalf("n=%d hint=%d: %v", n, hint, err)
			}
			if over != (n > limit) || len(got) != min(n, limit) || !bytes.Equal(got, data[:len(got)]) {
				t.Errorf("n=%d hint=%d: over=%v len=%d", n, hint, over, len(got))
			}
		}
	}
	boom := errors.New("boom")
	if _, _, err := readCapped(io.MultiReader(strings.NewReader("abc"), &failing{boom}), 0, limit); !errors.Is(err, boom) {
		t.Errorf("read error lost: %v", err)
	}
}

type failing struct{ err error }

func (f *failing) Read([]byte) (int, error) { return 0, f.err }

// TestReadCappedAllocation checks the memory bound readCapped promises:
// everything it allocates for an endless body stays below 1.5 × the cap.
func TestReadCappedAllocation(t *testing.T) {
	for _, limit := range []int64{1 << 20, 10 << 20, 10<<20 + 12345} {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		got, over, err := readCapped(endless{}, 32<<10, limit)
		runtime.ReadMemStats(&after)
		if err != nil || !over || int64(len(got)) != limit {
			t.Fatalf("limit %d: %v %v %d", limit, err, over, len(got))
		}
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("cap %d: %d bytes allocated (%.2f × cap)", limit, alloc, float64(alloc)/float64(limit))
		if float64(alloc) >= 1.5*float64(limit)+64<<10 { // a little room for the runtime's own allocations
			t.Errorf("cap %d: %d bytes allocated", limit, alloc)
		}
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
