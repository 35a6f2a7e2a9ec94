package governor

import (
	"math"
	"time"
)

// Backoff returns the delay before retry number attempt (1 = after the first
// failure): base doubled per attempt and capped at maxDelay, then spread
// uniformly by ±jitter (a fraction, 0.3–0.5 in sluice's config): with
// jitter 0.5 a 10 s backoff becomes a delay between 5 and 15 s, so retries
// that failed together do not retry together. rnd draws from [0, 1).
func Backoff(base, maxDelay time.Duration, attempt int, jitter float64, rnd func() float64) time.Duration {
	d := float64(base) * math.Pow(2, float64(max(attempt-1, 0)))
	d = min(d, float64(maxDelay))
	return time.Duration(d * (1 + jitter*(2*rnd()-1)))
}
