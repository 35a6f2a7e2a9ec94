package governor

import (
	"sync"
	"sync/atomic"
)

// Semaphore is a counting semaphore whose size can move while permits are
// held: shrinking it below the permits held lets no new permit out until
// enough are released. It never blocks; the governor's dispatcher tries it
// and waits for a release event instead. Safe for concurrent use.
type Semaphore struct {
	mu   sync.Mutex
	size int
	held int
}

// NewSemaphore returns a semaphore of the given size.
func NewSemaphore(size int) *Semaphore { return &Semaphore{size: max(size, 0)} }

// TryAcquire takes a permit if one is free and reports whether it did.
func (s *Semaphore) TryAcquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held >= s.size {
		return false
	}
	s.held++
	return true
}

// Release returns a permit. It panics on a release without an acquire.
func (s *Semaphore) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held == 0 {
		panic("governor: semaphore released more than acquired")
	}
	s.held--
}

// Resize sets the number of permits.
func (s *Semaphore) Resize(size int) {
	s.mu.Lock()
	s.size = max(size, 0)
	s.mu.Unlock()
}

// Size and Held report the number of permits and how many are out.
func (s *Semaphore) Size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// Held reports how many permits are out.
func (s *Semaphore) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// Budget bounds the bytes of bodies held in memory. Take never blocks: a
// reader that cannot take spools to disk instead; while it is used up the
// governor starts no attempt. Safe for concurrent use.
type Budget struct {
	max  int64
	used atomic.Int64
	peak atomic.Int64
}

// NewBudget returns a budget of max bytes, none taken. The governor makes
// its own (Governor.Budget); this is for readers used without one.
func NewBudget(max int64) *Budget { return &Budget{max: max} }

// Take reserves n bytes if they fit and reports whether they did.
func (b *Budget) Take(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			for p := b.peak.Load(); u+n > p && !b.peak.CompareAndSwap(p, u+n); p = b.peak.Load() {
			}
			return true
		}
	}
}

// Give returns n bytes taken before.
func (b *Budget) Give(n int64) {
	if n != 0 {
		b.used.Add(-n)
	}
}

// Exhausted reports whether no byte is left: no new attempt is admitted.
func (b *Budget) Exhausted() bool { return b.used.Load() >= b.max }

// Used, Peak and Max report the bytes taken now, the most taken at once
// and the budget's size.
func (b *Budget) Used() int64 { return b.used.Load() }

// Peak is the most bytes taken at once.
func (b *Budget) Peak() int64 { return b.peak.Load() }

// Max is the budget's size.
func (b *Budget) Max() int64 { return b.max }
