package crawl

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/bits-and-blooms/bloom/v3"
)

// Seen is the seen-set of a crawl: a Bloom filter sized for Expected URLs
// at a false-positive rate (a new URL taken for seen, and so not crawled,
// with that probability once Expected URLs are in; a seen URL is never
// taken for new). Its memory is fixed at construction:
// m = -n·ln(p)/ln(2)² bits, 1.44·log2(1/p) bits per URL: 10 M URLs at
// p = 0.001 take 143.8 Mbit, 17.1 MiB (SizeBytes).
//
// With a recrawl period D, Seen keeps two generations: a URL is seen when
// either has it, new URLs go into the current one, and when the current
// one is D old it becomes the previous one (the old previous one is
// dropped) and a fresh one starts. So a URL is taken again between D and
// 2·D after it was last taken; memory is twice one filter.
//
// Safe for concurrent use.
type Seen struct {
	n      uint
	p      float64
	period time.Duration // 0: one generation, never rotated

	mu   sync.Mutex // guards the generations
	cur  *bloom.BloomFilter
	prev *bloom.BloomFilter // nil with one generation, or before the first rotation
	born time.Time          // when cur started
}

// NewSeen returns an empty seen-set for expected URLs at false-positive
// rate p, rotated every period (0: never), started at now.
func NewSeen(expected int, p float64, period time.Duration, now time.Time) *Seen {
	return &Seen{n: uint(expected), p: p, period: period, cur: bloom.NewWithEstimates(uint(expected), p), born: now}
}

// SizeBytes is the memory of the filters' bit arrays.
func (s *Seen) SizeBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := int64(s.cur.Cap() / 8)
	if s.prev != nil {
		n += int64(s.prev.Cap() / 8)
	}
	return n
}

// FilterBits returns the bits (m) and hash functions (k) of one filter
// for n URLs at rate p.
func FilterBits(n int, p float64) (m, k uint) { return bloom.EstimateParameters(uint(n), p) }

// Add marks key seen and reports whether it was new (not in any
// generation). now rotates the generations when one is due.
func (s *Seen) Add(key string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rotateLocked(now)
	b := []byte(key)
	if s.prev != nil && s.prev.Test(b) {
		return false
	}
	return !s.cur.TestAndAdd(b)
}

// Has reports whether key is seen.
func (s *Seen) Has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := []byte(key)
	return s.cur.Test(b) || (s.prev != nil && s.prev.Test(b))
}

func (s *Seen) rotateLocked(now time.Time) {
	if s.period <= 0 || now.Sub(s.born) < s.period {
		return
	}
	if now.Sub(s.born) >= 2*s.period {
		s.prev = nil // both generations are past
	} else {
		s.prev = s.cur
	}
	s.cur = bloom.NewWithEstimates(s.n, s.p)
	s.born = now
}

const seenMagic = "sluice-seen/1\n"

// writeTo writes the set: magic, the birth of cur, whether prev follows,
// then the filters.
func (s *Seen) writeTo(w io.Writer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var hdr [9]byte
	binary.BigEndian.PutUint64(hdr[:8], uint64(s.born.UnixNano()))
	if s.prev != nil {
		hdr[8] = 1
	}
	if _, err := io.WriteString(w, seenMagic); err != nil {
		return err
	}
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := s.cur.WriteTo(w); err != nil {
		return err
	}
	if s.prev != nil {
		if _, err := s.prev.WriteTo(w); err != nil {
			return err
		}
	}
	return nil
}

// readFrom replaces the set with one written by writeTo. A set sized
// differently from this one is refused: its rate would not be the one
// configured.
func (s *Seen) readFrom(r *bufio.Reader) error {
	magic := make([]byte, len(seenMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != seenMagic {
		return errors.New("not a seen-set")
	}
	var hdr [9]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	read := func() (*bloom.BloomFilter, error) {
		f := &bloom.BloomFilter{}
		if _, err := f.ReadFrom(r); err != nil {
			return nil, err
		}
		m, k := bloom.EstimateParameters(s.n, s.p)
		if f.Cap() != m || f.K() != k {
			return nil, fmt.Errorf("seen-set was sized for other settings (m=%d k=%d, want m=%d k=%d): change crawl.expected/false_positive back or start a new state dir", f.Cap(), f.K(), m, k)
		}
		return f, nil
	}
	cur, err := read()
	if err != nil {
		return err
	}
	var prev *bloom.BloomFilter
	if hdr[8] == 1 {
		if prev, err = read(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	born := int64(binary.BigEndian.Uint64(hdr[:8]))
	if born < 0 || born == math.MaxInt64 {
		return errors.New("seen-set: bad time")
	}
	s.cur, s.prev, s.born = cur, prev, time.Unix(0, born)
	if s.period <= 0 {
		s.prev = nil
	}
	return nil
}
