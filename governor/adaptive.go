package governor

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// The adaptive controller's fixed steps.
const (
	raiseFactor   = 1.2  // +20% ...
	raiseAt       = 0.95 // ... while the success rate is at least 95%
	cutFactor     = 0.8  // −20% at once ...
	cutBelow      = 0.90 // ... when the success rate falls below 90%,
	latencyFactor = 2.0  // or the median latency passes twice the baseline
)

// Adaptive tunes the per-domain adaptive controller. The zero value is the
// documented behaviour: a domain with a known per-IP limit starts at 50%
// of its maximum, any other domain at its maximum (the brakes protect
// nothing there); +20% each time the outcomes since the last change have
// a success rate of at least 95% (and latency is normal), judged over a
// full Window of outcomes or, sooner, over at least MinSamples outcomes
// spanning RaiseAfter, so the maximum is reached within seconds; −20% at
// once on a 429 or 503, when the success rate since the last change falls
// below 90%, or when the median latency of the last LatencyWindow
// responses exceeds twice the baseline; never above the maximum, never
// below Min.
type Adaptive struct {
	// Off runs every domain at its maximum from the start, without control.
	Off bool `yaml:"off"`
	// Start is the starting level of a domain with a known per-IP limit,
	// a fraction of the maximum. 0 means 0.5. Other domains start at 1.
	Start float64 `yaml:"start"`
	// Min is the lowest level cuts go down to. 0 means 0.05.
	Min float64 `yaml:"min"`
	// Window is the number of outcomes over which the success rate is
	// judged for a raise. 0 means 50.
	Window int `yaml:"window"`
	// MinSamples is the number of outcomes since the last change needed
	// before a low success rate cuts, or a healthy one raises ahead of a
	// full Window. 0 means 10.
	MinSamples int `yaml:"min_samples"`
	// RaiseAfter is the least time since the last change after which
	// MinSamples healthy outcomes raise the level without waiting for a
	// full Window: four raises take the level from 50% to the maximum in
	// about four RaiseAfter. 0 means 250 ms; a negative value raises only
	// after full windows.
	RaiseAfter time.Duration `yaml:"raise_after"`
	// LatencyWindow is the number of responses whose median latency
	// (time to the first response byte) is compared with the baseline.
	// 0 means 100.
	LatencyWindow int `yaml:"latency_window"`
	// LatencyFloor is the least baseline latency: on a fast network a
	// baseline of a millisecond would read scheduling noise as overload.
	// 0 means 25 ms.
	LatencyFloor time.Duration `yaml:"latency_floor"`
}

func (a *Adaptive) setDefaults() {
	if a.Start == 0 {
		a.Start = 0.5
	}
	if a.Min == 0 {
		a.Min = 0.05
	}
	if a.Window == 0 {
		a.Window = 50
	}
	if a.MinSamples == 0 {
		a.MinSamples = 10
	}
	if a.RaiseAfter == 0 {
		a.RaiseAfter = 250 * time.Millisecond
	}
	if a.LatencyWindow == 0 {
		a.LatencyWindow = 100
	}
	if a.LatencyFloor == 0 {
		a.LatencyFloor = 25 * time.Millisecond
	}
}

func (a *Adaptive) validate() error {
	var errs []error
	if a.Min <= 0 || a.Min > 1 {
		errs = append(errs, fmt.Errorf("adaptive min %v must lie in (0, 1]", a.Min))
	}
	if a.Start < a.Min || a.Start > 1 {
		errs = append(errs, fmt.Errorf("adaptive start %v must lie in [min, 1]", a.Start))
	}
	if a.Window < 1 || a.MinSamples < 1 || a.LatencyWindow < 1 {
		errs = append(errs, errors.New("adaptive windows must be at least 1"))
	}
	if a.LatencyFloor < 0 {
		errs = append(errs, errors.New("adaptive latency floor must not be negative"))
	}
	return errors.Join(errs...)
}

// Signal is one attempt's outcome as the controller sees it.
type Signal struct {
	// Epoch is the controller's Epoch when the attempt was started. An
	// outcome of an earlier epoch was measured at another level and is
	// ignored.
	Epoch uint64
	// OK reports a healthy answer (any response but 429, 5xx and 403).
	OK bool
	// Overload reports a 429 or 503: cut at once.
	Overload bool
	// Latency is the time to the first response byte; it counts only with
	// HasLatency (a response arrived).
	Latency    time.Duration
	HasLatency bool
	// At is when the outcome arrived. The zero time judges raises by
	// full windows only (RaiseAfter needs a clock).
	At time.Time
}

// Controller is one domain's adaptive level: a fraction of the domain's
// maximum rate and concurrency. The zero value is not usable; build it
// with NewController. Not safe for concurrent use.
type Controller struct {
	cfg   Adaptive
	level float64
	epoch uint64

	outcomes []bool // the last Window outcomes of this epoch, a ring
	next     int
	n, fails int

	lat      []time.Duration // the last LatencyWindow latencies, a ring grown as they come (most domains see few)
	latNext  int
	latN     int
	fresh    int // latencies of this epoch
	baseline time.Duration

	since time.Time // when this epoch saw its first outcome

	raises, cuts int
	reason       string
}

// NewController returns a controller at cfg.Start (defaults applied), or
// fixed at 1 when cfg.Off. Use NewControllerAt for a domain without a
// known per-IP limit.
func NewController(cfg Adaptive) *Controller {
	cfg.setDefaults()
	c := &Controller{cfg: cfg, level: cfg.Start,
		outcomes: make([]bool, cfg.Window)}
	if cfg.Off {
		c.level = 1
	}
	return c
}

// NewControllerAt returns a controller like NewController that starts at
// level start instead of cfg.Start (clamped to [cfg.Min, 1]).
func NewControllerAt(cfg Adaptive, start float64) *Controller {
	c := NewController(cfg)
	if !c.cfg.Off {
		c.level = min(1, max(start, c.cfg.Min))
	}
	return c
}

// Level is the current fraction of the maximum, in [Min, 1].
func (c *Controller) Level() float64 { return c.level }

// Epoch counts the level's changes; pass it back in Signal.Epoch.
func (c *Controller) Epoch() uint64 { return c.epoch }

// Baseline is the lowest median latency seen over a full latency window
// (0 until the first is full).
func (c *Controller) Baseline() time.Duration { return c.baseline }

// Observe feeds one outcome and reports whether the level changed.
func (c *Controller) Observe(s Signal) bool {
	if c.cfg.Off || s.Epoch != c.epoch {
		return false
	}
	if s.HasLatency {
		if len(c.lat) < c.cfg.LatencyWindow {
			c.lat = append(c.lat, s.Latency)
		} else {
			c.lat[c.latNext] = s.Latency
		}
		c.latNext = (c.latNext + 1) % c.cfg.LatencyWindow
		c.latN = len(c.lat)
		c.fresh++
	}
	if c.n == len(c.outcomes) && !c.outcomes[c.next] {
		c.fails--
	}
	if c.since.IsZero() {
		c.since = s.At
	}
	c.outcomes[c.next] = s.OK
	c.next = (c.next + 1) % len(c.outcomes)
	c.n = min(c.n+1, len(c.outcomes))
	if !s.OK {
		c.fails++
	}
	success := 1 - float64(c.fails)/float64(c.n)

	if s.Overload {
		return c.cut("429/503")
	}
	if c.n >= c.cfg.MinSamples && success < cutBelow {
		return c.cut(fmt.Sprintf("success rate %.0f%%", success*100))
	}
	latencyOK := true
	if c.latN == c.cfg.LatencyWindow {
		med := c.median()
		if c.baseline == 0 || med < c.baseline {
			c.baseline = med
		}
		threshold := time.Duration(latencyFactor * float64(max(c.baseline, c.cfg.LatencyFloor)))
		latencyOK = med <= threshold
		if !latencyOK && c.fresh >= c.cfg.LatencyWindow {
			return c.cut(fmt.Sprintf("median latency %v > %v", med, threshold))
		}
	}
	if c.judged(s.At) && success >= raiseAt && latencyOK && c.level < 1 {
		c.level = min(1, c.level*raiseFactor)
		c.raises++
		c.reason = fmt.Sprintf("success rate %.0f%%", success*100)
		c.reset()
		return true
	}
	return false
}

// judged reports whether enough outcomes of this epoch arrived to raise:
// a full window, or MinSamples spanning RaiseAfter.
func (c *Controller) judged(now time.Time) bool {
	if c.n >= len(c.outcomes) {
		return true
	}
	return c.cfg.RaiseAfter > 0 && c.n >= c.cfg.MinSamples && !now.IsZero() && !c.since.IsZero() &&
		now.Sub(c.since) >= c.cfg.RaiseAfter
}

func (c *Controller) cut(reason string) bool {
	c.cuts++
	c.reason = reason
	c.level = max(c.cfg.Min, c.level*cutFactor)
	c.reset()
	return true
}

// reset starts a new epoch: the success window starts over and the latency
// ring must see fresh responses before it can cut again.
func (c *Controller) reset() {
	c.epoch++
	c.next, c.n, c.fails, c.fresh = 0, 0, 0, 0
	c.since = time.Time{}
}

func (c *Controller) median() time.Duration {
	s := slices.Clone(c.lat[:c.latN])
	slices.Sort(s)
	return s[len(s)/2]
}
