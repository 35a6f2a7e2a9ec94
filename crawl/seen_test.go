package crawl

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// TestSeenMemory10M states the seen-set's memory for 10 M distinct URLs
// at the default rate: the formula, and the size of a filter built for
// it.
func TestSeenMemory10M(t *testing.T) {
	const n, p = 10_000_000, 0.001
	m, k := FilterBits(n, p)
	formula := -float64(n) * math.Log(p) / (math.Ln2 * math.Ln2)
	if math.Abs(float64(m)-formula) > 64 {
		t.Errorf("m = %d bits, formula %.0f", m, formula)
	}
	s := NewSeen(n, p, 0, time.Unix(0, 0))
	size := s.SizeBytes()
	if size != int64(m/8) {
		t.Errorf("SizeBytes %d, want %d", size, m/8)
	}
	t.Logf("10 M URLs at p=%g: m=%d bits (%.2f bits/URL), k=%d, %.1f MiB (one generation; twice with recrawl_after)", p, m, float64(m)/n, k, float64(size)/(1<<20))
}

// TestSeenFalsePositiveRate: with the filter filled to its expected
// count, the rate of new URLs taken for seen stays near the configured
// rate; a seen URL is always seen.
func TestSeenFalsePositiveRate(t *testing.T) {
	const n, p = 100_000, 0.01
	s := NewSeen(n, p, 0, time.Unix(0, 0))
	now := time.Unix(0, 0)
	for i := range n {
		s.Add(fmt.Sprintf("http://e.example/p/%d", i), now)
	}
	for i := range n {
		if !s.Has(fmt.Sprintf("http://e.example/p/%d", i)) {
			t.Fatalf("URL %d forgotten", i)
		}
	}
	fp := 0
	const probes = 100_000
	for i := range probes {
		if s.Has(fmt.Sprintf("http://other.example/q/%d", i)) {
			fp++
		}
	}
	rate := float64(fp) / probes
	if rate > 2*p {
		t.Errorf("false-positive rate %.4f, configured %.4f", rate, p)
	}
	t.Logf("measured false-positive rate %.4f at %d URLs (configured %.4f)", rate, n, p)
}

// TestSeenSnapshotRoundTrip: what a set wrote, a set of the same sizing
// reads back; one of another sizing refuses it.
func TestSeenSnapshotRoundTrip(t *testing.T) {
	now := time.Unix(1000, 0)
	s := NewSeen(1000, 0.01, time.Hour, now)
	s.Add("a", now)
	s.Add("b", now.Add(time.Hour)) // rotates: a is in prev
	var buf bytes.Buffer
	if err := s.writeTo(&buf); err != nil {
		t.Fatal(err)
	}
	r := NewSeen(1000, 0.01, time.Hour, now)
	if err := r.readFrom(bufio.NewReader(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if !r.Has("a") || !r.Has("b") || r.Has("c") {
		t.Errorf("restored set: a %v b %v c %v", r.Has("a"), r.Has("b"), r.Has("c"))
	}
	other := NewSeen(2000, 0.01, time.Hour, now)
	if err := other.readFrom(bufio.NewReader(bytes.NewReader(buf.Bytes()))); err == nil {
		t.Error("a set sized for other settings was read")
	}
}

// TestSeenRecrawlAfter: with period D, a URL is new again once 2 D have
// passed since it was added, never before D.
func TestSeenRecrawlAfter(t *testing.T) {
	t0 := time.Unix(0, 0)
	const d = time.Hour
	s := NewSeen(1000, 0.001, d, t0)
	if !s.Add("u", t0) {
		t.Fatal("first add not new")
	}
	for _, at := range []time.Duration{time.Minute, d - time.Second, d, d + 30*time.Minute} {
		if s.Add("u", t0.Add(at)) {
			t.Errorf("taken again after %v", at)
		}
	}
	if !s.Add("u", t0.Add(2*d)) {
		t.Error("not taken again after 2 D")
	}
}

func BenchmarkSeenAdd(b *testing.B) {
	s := NewSeen(10_000_000, 0.001, 0, time.Unix(0, 0))
	now := time.Unix(0, 0)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("https://shop.example/products/%d?color=red", i)
	}
	b.ReportAllocs()
	b.ReportMetric(float64(s.SizeBytes())/(1<<20), "MiB")
	for i := 0; b.Loop(); i++ {
		s.Add(keys[i%len(keys)], now)
	}
}

// BenchmarkSeen10M fills a default-sized seen-set with 10 M distinct
// URLs and reports the heap it holds and the false-positive rate measured
// on 1 M new URLs (run with -benchtime=1x: one fill is the measurement).
func BenchmarkSeen10M(b *testing.B) {
	const n, p = 10_000_000, 0.001
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := NewSeen(n, p, 0, time.Unix(0, 0))
		now := time.Unix(0, 0)
		buf := make([]byte, 0, 64)
		for i := range n {
			buf = strconv.AppendInt(append(buf[:0], "https://shop.example/products/"...), int64(i), 10)
			s.Add(string(buf), now)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		fp := 0
		const probes = 1_000_000
		for i := range probes {
			buf = strconv.AppendInt(append(buf[:0], "https://other.example/q/"...), int64(i), 10)
			if s.Has(string(buf)) {
				fp++
			}
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(fp)/probes, "fp-rate")
		runtime.KeepAlive(s)
	}
}
