package fetch

import (
	"math"
	"net/http"
	"strconv"
	"strings"
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

// ParseRetryAfter reads a Retry-After header: delay seconds or an HTTP date.
// It returns 0 for an absent, malformed, negative or past value, and caps
// absurd values at 24 hours.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	const maxRetryAfter = 24 * time.Hour
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d <= 0 {
			return 0
		}
		return min(d, maxRetryAfter)
	}
	return 0
}
