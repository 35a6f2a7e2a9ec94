package governor

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestBackoffBoundsAndSpread(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	base, maxD := 100*time.Millisecond, 10*time.Second
	for attempt := 1; attempt <= 10; attempt++ {
		d := float64(min(base*time.Duration(1<<(attempt-1)), maxD))
		lo, hi := time.Duration(d*0.5), time.Duration(d*1.5)
		var minSeen, maxSeen time.Duration = hi, lo
		for i := 0; i < 2000; i++ {
			got := Backoff(base, maxD, attempt, 0.5, r.Float64)
			if got < lo || got > hi {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, got, lo, hi)
			}
			minSeen, maxSeen = min(minSeen, got), max(maxSeen, got)
		}
		// The spread covers most of ±50%: retries that failed together
		// do not retry together.
		if float64(minSeen) > d*0.55 || float64(maxSeen) < d*1.45 {
			t.Fatalf("attempt %d: spread only [%v, %v]", attempt, minSeen, maxSeen)
		}
	}
}
