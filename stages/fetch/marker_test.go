package fetch

import (
	"bytes"
	"strings"
	"testing"
)

// TestContainsMarker: containsMarker is bytes.Contains, at every position
// of the marker, near both ends of the body and with near misses.
func TestContainsMarker(t *testing.T) {
	markers := append([]string{"x", "ab", "zzz", "q_q", "aaaa"}, DefaultCaptchaMarkers...)
	for _, m := range markers {
		for _, body := range []string{
			"", m, m[:len(m)-1], m[1:], "a" + m, m + "a", strings.Repeat("c", 100) + m,
			m + strings.Repeat("c", 100), strings.Repeat(m[:len(m)-1]+" ", 50), strings.Repeat("<p>captcha</p>", 20) + m[:len(m)/2],
			strings.Repeat(m[1:], 5) + m + strings.Repeat(m[:len(m)-1], 5),
		} {
			if got, want := containsMarker([]byte(body), m), bytes.Contains([]byte(body), []byte(m)); got != want {
				t.Errorf("containsMarker(%.40q, %q) = %v, want %v", body, m, got, want)
			}
		}
	}
}

// FuzzContainsMarker checks containsMarker against bytes.Contains.
func FuzzContainsMarker(f *testing.F) {
	f.Add("xx px-captcha yy", "px-captcha")
	f.Add("_cf_chl_op_cf_chl_opt", "_cf_chl_opt")
	f.Fuzz(func(t *testing.T, body, m string) {
		if m == "" {
			return
		}
		if got, want := containsMarker([]byte(body), m), strings.Contains(body, m); got != want {
			t.Fatalf("containsMarker(%q, %q) = %v, want %v", body, m, got, want)
		}
	})
}

// BenchmarkCaptchaMarker looks for the default markers in a 60 KB page of
// lorem text (the compare testbed's), where none is found.
func BenchmarkCaptchaMarker(b *testing.B) {
	lorem := "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. "
	body := []byte(strings.Repeat(`<p class="filler">`+lorem+"</p>\n", 61440/(len(lorem)+23)+1)[:61440])
	b.Run("anchored", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if m := captchaMarker(body, DefaultCaptchaMarkers); m != "" {
				b.Fatal(m)
			}
		}
	})
	b.Run("bytes.Contains", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			for _, m := range DefaultCaptchaMarkers {
				if bytes.Contains(body, []byte(m)) {
					b.Fatal(m)
				}
			}
		}
	})
}
