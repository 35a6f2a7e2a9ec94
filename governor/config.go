package governor

import (
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
)

// Config configures a Governor. The zero value of every field is a
// documented, usable default.
type Config struct {
	// Concurrency is the number of workers, the global limit on attempts
	// in flight. 0 means 32.
	Concurrency int
	// DomainRate is the sustained request rate allowed per domain, in
	// requests per second, for domains that no entry of Domains matches.
	// 0 means 10; a negative value means unlimited.
	DomainRate float64
	// DomainBurst is the token bucket size per domain. 0 means 1, so that
	// requests are evenly spaced.
	DomainBurst int
	// Domains configures the governor per site: the first entry whose
	// pattern matches a host applies (see Domain). Unmatched hosts get
	// DomainRate.
	Domains []Domain
	// Adaptive tunes the per-domain adaptive controller; the zero value is
	// the documented behaviour (see Adaptive).
	Adaptive Adaptive
	// Pending bounds the jobs the governor holds, queued per domain,
	// waiting out a retry backoff or in flight. While it is full Run
	// stops reading its intake. 0 means max(256, 8 × Concurrency).
	Pending int
	// StaggerMin and StaggerMax space the admission of workers at the start
	// of a job: the global limit starts at one and grows by one after each
	// interval, drawn uniformly from [StaggerMin, StaggerMax], until it
	// reaches Concurrency. 0 means 100 ms and 200 ms; a negative StaggerMax
	// admits every worker at once. The intervals shrink in proportion when
	// they would make the ramp longer than Ramp.
	StaggerMin, StaggerMax time.Duration
	// Ramp bounds the staggered start: every worker is admitted within
	// Ramp of the first, however large Concurrency is. 0 means 1 s.
	// (Domains with a per-IP limit still start gently: their buckets
	// start with one token and their controller at Adaptive.Start.)
	Ramp time.Duration
	// Proxies are the ids of the pool's proxies, fixed at start; empty
	// means direct connections (one IP).
	Proxies []string
	// BodyBudget bounds the bytes of response bodies held in memory (see
	// Budget): no attempt is started while it is used up. 0 means 256 MiB.
	BodyBudget int64

	// MaxAttempts bounds attempts per job, the first included. 0 means 4.
	MaxAttempts int
	// BackoffBase is the delay before the first retry; each further retry
	// doubles it, up to BackoffMax, with jitter (see Jitter). 0 means 500 ms.
	BackoffBase time.Duration
	// BackoffMax caps the backoff. 0 means 30 s.
	BackoffMax time.Duration
	// Jitter spreads each backoff uniformly by ± this fraction; it must lie
	// in 0.3–0.5. 0 means 0.5.
	Jitter float64
	// MaxRetryAfter caps how long a Retry-After may pause a domain or a
	// (proxy, domain) pair, and delay a job's next attempt. 0 means 2 min.
	MaxRetryAfter time.Duration
	// ParkAfter, when positive, is how soon a job must be able to start
	// an attempt: one that cannot (its domain paused past it, a retry
	// delay longer than it, or a wait in its domain's queue that has
	// lasted it) is handed to a worker as parked (Job.Park) instead of
	// being held. 0 means never park.
	ParkAfter time.Duration

	// Logger receives warnings. The zero value logs nothing.
	Logger zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand draws from [0, 1) for jitter and the stagger; it must be safe
	// for concurrent use. nil means math/rand/v2's Float64.
	Rand func() float64
}

func (c *Config) setDefaults() {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Concurrency == 0 {
		c.Concurrency = 32
	}
	if c.DomainRate == 0 {
		c.DomainRate = 10
	}
	if c.DomainBurst == 0 {
		c.DomainBurst = 1
	}
	if c.Pending == 0 {
		c.Pending = max(256, 8*c.Concurrency)
	}
	def(&c.StaggerMin, 100*time.Millisecond)
	def(&c.StaggerMax, 200*time.Millisecond)
	def(&c.Ramp, time.Second)
	if c.BodyBudget == 0 {
		c.BodyBudget = 256 << 20
	}
	c.Adaptive.setDefaults()
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 4
	}
	def(&c.BackoffBase, 500*time.Millisecond)
	def(&c.BackoffMax, 30*time.Second)
	def(&c.MaxRetryAfter, 2*time.Minute)
	if c.Jitter == 0 {
		c.Jitter = 0.5
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// WithDefaults returns c with every zero setting replaced by its
// documented default, as New applies them.
func (c Config) WithDefaults() Config {
	c.setDefaults()
	return c
}

// Validate reports every invalid setting of c, with defaults applied to a
// copy.
func (c Config) Validate() error {
	c.setDefaults()
	return c.validate()
}

func (c *Config) validate() error {
	var errs []error
	if c.Concurrency < 1 || c.Concurrency > 100000 {
		errs = append(errs, fmt.Errorf("concurrency %d out of range 1..100000", c.Concurrency))
	}
	if c.DomainBurst < 1 {
		errs = append(errs, fmt.Errorf("domain burst %d must be at least 1", c.DomainBurst))
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 100 {
		errs = append(errs, fmt.Errorf("max attempts %d out of range 1..100", c.MaxAttempts))
	}
	if c.Jitter < 0.3 || c.Jitter > 0.5 {
		errs = append(errs, fmt.Errorf("jitter %v out of range 0.3..0.5", c.Jitter))
	}
	if c.Pending < 1 {
		errs = append(errs, fmt.Errorf("pending %d must be at least 1", c.Pending))
	}
	if c.StaggerMin < 0 || c.StaggerMax >= 0 && c.StaggerMax < c.StaggerMin {
		errs = append(errs, fmt.Errorf("stagger %v..%v: want 0 <= min <= max", c.StaggerMin, c.StaggerMax))
	}
	if c.Ramp < 0 {
		errs = append(errs, fmt.Errorf("ramp %v must not be negative", c.Ramp))
	}
	if c.BodyBudget < 1 {
		errs = append(errs, fmt.Errorf("body budget %d must be positive", c.BodyBudget))
	}
	for i, d := range c.Domains {
		if err := d.validate(); err != nil {
			errs = append(errs, fmt.Errorf("domains[%d]: %w", i, err))
		}
	}
	if err := c.Adaptive.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.ParkAfter < 0 {
		errs = append(errs, fmt.Errorf("park after %v must not be negative", c.ParkAfter))
	}
	if c.BackoffBase < 0 || c.BackoffMax < 0 {
		errs = append(errs, errors.New("backoff must not be negative"))
	}
	return errors.Join(errs...)
}
