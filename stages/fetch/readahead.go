package fetch

import (
	"context"

	"golang.org/x/sync/semaphore"
)

// readAhead bounds the bytes of bodies read and not yet passed on
// (Config.ReadAhead). A worker reserves its body's length before reading
// it and gives the reservation back once the body is passed on or
// dropped; while the bound is reached, answers wait in their connections,
// in order of arrival (semaphore.Weighted is FIFO). A nil *readAhead
// bounds nothing. Safe for concurrent use.
type readAhead struct {
	sem *semaphore.Weighted
	max int64
}

func newReadAhead(max int64) *readAhead {
	if max <= 0 {
		return nil
	}
	return &readAhead{sem: semaphore.NewWeighted(max), max: max}
}

// reserve blocks until a body of size bytes (-1: unknown, reserved as one
// read unit; never more than the whole bound) fits, or ctx ends. It
// returns the bytes reserved, for release.
func (ra *readAhead) reserve(ctx context.Context, size int64) (int64, error) {
	if ra == nil {
		return 0, nil
	}
	n := int64(readChunk)
	if size >= 0 {
		n = size
	}
	n = min(n, ra.max)
	if err := ra.sem.Acquire(ctx, n); err != nil {
		return 0, err
	}
	return n, nil
}

// release gives back n bytes reserved by reserve.
func (ra *readAhead) release(n int64) {
	if ra != nil && n > 0 {
		ra.sem.Release(n)
	}
}
