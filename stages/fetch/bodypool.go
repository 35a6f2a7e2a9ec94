package fetch

import "sync"

// Body buffers are pooled by size class: one sync.Pool per power of two
// from 4 KiB (class 0) to 1 MiB (the default SpoolThreshold). A body of
// known length takes a buffer of the smallest class that holds it; the
// parse stage hands it back through record.Fetched.Recycle once the page
// is parsed, so that the next body of about that size reuses it instead
// of being a new allocation. Larger bodies, and bodies of unknown length,
// are allocated as before and left to the garbage collector.
const (
	minBodyShift = 12
	maxBodyShift = 20
)

// bodyPool is the pool of body buffers. The zero value is ready; safe
// for concurrent use. A sync.Pool keeps no more than the garbage collector
// lets it keep: at most about the buffers given back between two
// collections.
type bodyPool struct {
	classes [maxBodyShift - minBodyShift + 1]sync.Pool // of *[]byte, len == cap == the class size
}

// bodyClass is the class of a buffer that holds size bytes, or -1.
func bodyClass(size int64) int {
	if size <= 0 || size > 1<<maxBodyShift {
		return -1
	}
	c := 0
	for int64(1)<<(minBodyShift+c) < size {
		c++
	}
	return c
}

// get returns a buffer of at least size bytes (its whole class), or nil
// when size has no class.
func (p *bodyPool) get(size int64) *[]byte {
	c := bodyClass(size)
	if c < 0 {
		return nil
	}
	if v, ok := p.classes[c].Get().(*[]byte); ok {
		return v
	}
	b := make([]byte, 1<<(minBodyShift+c))
	return &b
}

// put gives b back. After put, nothing may read or write *b: the next get
// hands it to another body. put(nil) does nothing.
func (p *bodyPool) put(b *[]byte) {
	if b == nil {
		return
	}
	c := bodyClass(int64(cap(*b)))
	if c < 0 || cap(*b) != 1<<(minBodyShift+c) {
		return
	}
	*b = (*b)[:cap(*b)]
	p.classes[c].Put(b)
}

// recycler returns the hook that gives buf back once, for
// record.Fetched.Recycle; nil when buf is nil.
func (p *bodyPool) recycler(buf *[]byte) func() {
	if buf == nil {
		return nil
	}
	var once sync.Once
	return func() { once.Do(func() { p.put(buf) }) }
}

// sameArray reports whether a and b start at the same element.
func sameArray(a, b []byte) bool {
	return cap(a) > 0 && cap(b) > 0 && &a[:1][0] == &b[:1][0]
}
