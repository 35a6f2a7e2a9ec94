// Package progress shows how far a sluice run has come: a progress bar
// (done/total, rate, errors, ETA) redrawn in place on a terminal, or, for
// streaming runs and output that is not a terminal, a one-line stats
// summary logged at an interval.
package progress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/sluicehq/sluice/flow"
)

// Counts is how far a run has come.
type Counts struct {
	Done   int64 // inputs finished: their outputs are durable
	Errors int64 // finished inputs that failed
	Total  int64 // inputs expected; 0 when unknown (a stream, stdin)
}

// Config configures New.
type Config struct {
	// Counts reads the run's counts. Required; must be safe to call from
	// another goroutine.
	Counts func() Counts
	// Stages, if set, add their queue depths to the stats line.
	Stages []*flow.Stats
	// Bar draws a bar on Out, redrawn in place, instead of logging lines.
	// Use it only when Out is a terminal.
	Bar bool
	// Out receives the bar. Required when Bar is set.
	Out io.Writer
	// Logger receives the stats lines (at info level) when Bar is false.
	Logger zerolog.Logger
	// Interval is the time between stats lines. 0 means 10 s. The bar is
	// redrawn every 200 ms.
	Interval time.Duration
	// Width is the bar's width in characters. 0 means 30.
	Width int
}

// Reporter draws the bar or logs the stats lines while Run runs. Writer
// wraps other output to the same terminal so that it does not garble the
// bar.
type Reporter struct {
	cfg Config

	mu      sync.Mutex // guards drawn, samples and writes to cfg.Out
	drawn   string     // the bar line on screen now, "" if none
	samples []sample   // recent (time, done) pairs, oldest first
}

type sample struct {
	at   time.Time
	done int64
}

// rateWindow is how far back the rate looks.
const rateWindow = 10 * time.Second

// New validates cfg and applies defaults. It starts nothing.
func New(cfg Config) (*Reporter, error) {
	if cfg.Counts == nil {
		return nil, errors.New("progress config: Counts is required")
	}
	if cfg.Bar && cfg.Out == nil {
		return nil, errors.New("progress config: Out is required for a bar")
	}
	if cfg.Interval == 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.Width == 0 {
		cfg.Width = 30
	}
	if cfg.Interval < 0 || cfg.Width < 1 {
		return nil, errors.New("progress config: Interval and Width must be positive")
	}
	return &Reporter{cfg: cfg}, nil
}

// Run reports until ctx ends: it redraws the bar or logs a line at each
// tick. When ctx ends it draws the bar a last time, ends its line, and
// returns nil.
func (r *Reporter) Run(ctx context.Context) error {
	tick := r.cfg.Interval
	if r.cfg.Bar {
		tick = 200 * time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	r.observe(time.Now())
	for {
		select {
		case <-ctx.Done():
			if r.cfg.Bar {
				r.draw(time.Now(), true)
			}
			return nil
		case now := <-t.C:
			if r.cfg.Bar {
				r.draw(now, false)
			} else {
				r.logLine(now)
			}
		}
	}
}

// observe records a sample and returns the counts and the recent rate.
func (r *Reporter) observe(now time.Time) (Counts, float64) {
	c := r.cfg.Counts()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples = append(r.samples, sample{now, c.Done})
	cut := 0
	for cut < len(r.samples)-2 && now.Sub(r.samples[cut+1].at) >= rateWindow {
		cut++
	}
	r.samples = r.samples[cut:]
	first := r.samples[0]
	rate := 0.0
	if dt := now.Sub(first.at).Seconds(); dt > 0 {
		rate = float64(c.Done-first.done) / dt
	}
	return c, rate
}

func (r *Reporter) draw(now time.Time, final bool) {
	c, rate := r.observe(now)
	line := Line(c, rate, r.cfg.Width)
	r.mu.Lock()
	defer r.mu.Unlock()
	_, _ = io.WriteString(r.cfg.Out, "\r\x1b[K"+line)
	r.drawn = line
	if final {
		_, _ = io.WriteString(r.cfg.Out, "\n")
		r.drawn = ""
	}
}

func (r *Reporter) logLine(now time.Time) {
	c, rate := r.observe(now)
	ev := r.cfg.Logger.Info().Int64("done", c.Done).Int64("errors", c.Errors).Str("rate", fmt.Sprintf("%.1f/s", rate))
	if c.Total > 0 {
		ev = ev.Int64("total", c.Total)
		if eta, ok := ETA(c, rate); ok {
			ev = ev.Str("eta", eta.String())
		}
	}
	if len(r.cfg.Stages) > 0 {
		var q []string
		for _, st := range r.cfg.Stages {
			if st.Capacity > 0 {
				q = append(q, fmt.Sprintf("%s %d/%d", st.Name, st.Queue(), st.Capacity))
			}
		}
		ev = ev.Str("queues", strings.Join(q, " "))
	}
	ev.Msg("progress")
}

// Writer returns w wrapped so that each write first clears the bar's line
// and then redraws the bar below what was written. Use it for the logger
// that shares the terminal. Without a bar it returns w.
func (r *Reporter) Writer(w io.Writer) io.Writer {
	if !r.cfg.Bar {
		return w
	}
	return writerFunc(func(p []byte) (int, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.drawn != "" {
			_, _ = io.WriteString(r.cfg.Out, "\r\x1b[K")
		}
		n, err := w.Write(p)
		if r.drawn != "" {
			_, _ = io.WriteString(r.cfg.Out, r.drawn)
		}
		return n, err
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// ETA estimates the time left at the given rate; false when the total is
// unknown or nothing is moving.
func ETA(c Counts, rate float64) (time.Duration, bool) {
	if c.Total <= 0 || rate <= 0 {
		return 0, false
	}
	left := max(c.Total-c.Done, 0)
	return time.Duration(float64(left) / rate * float64(time.Second)).Round(time.Second), true
}

// Line renders the bar: with a known total
//
//	[###########>                  ]  1234/3000  41%  512.3/s  3 errors  ETA 3s
//
// and without one "1234 done  512.3/s  3 errors".
func Line(c Counts, rate float64, width int) string {
	var b strings.Builder
	if c.Total > 0 {
		frac := min(float64(c.Done)/float64(c.Total), 1)
		fill := int(frac * float64(width))
		b.WriteByte('[')
		b.WriteString(strings.Repeat("#", fill))
		if fill < width {
			b.WriteByte('>')
			b.WriteString(strings.Repeat(" ", width-fill-1))
		}
		fmt.Fprintf(&b, "]  %d/%d  %3.0f%%", c.Done, c.Total, frac*100)
	} else {
		fmt.Fprintf(&b, "%d done", c.Done)
	}
	fmt.Fprintf(&b, "  %.1f/s  %d errors", rate, c.Errors)
	if eta, ok := ETA(c, rate); ok {
		fmt.Fprintf(&b, "  ETA %s", eta)
	}
	return b.String()
}
