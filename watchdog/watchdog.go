// Package watchdog notices when a sluice pipeline stops making progress and
// says why: the sink is blocked, every proxy is quarantined or failing,
// every input waits for one domain's rate-limit tokens, requests hang, or
// the source simply has nothing to read.
//
// Progress is a successful output made durable. When none has been made
// for Config.After, the watchdog reads the pipeline's live state (the same
// metrics.Sources the metrics read) and the attempts seen since the last
// success, names the most likely cause, and logs what each stage is
// waiting on. It repeats the report every After while the stall lasts and
// says when progress resumes.
package watchdog

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/record"
)

// Config configures New.
type Config struct {
	// After is how long without a successful output counts as a stall.
	// 0 means 30 s.
	After time.Duration
	// Interval is how often the watchdog looks. 0 means After/10, at
	// least 100 ms and at most 5 s.
	Interval time.Duration
	// Sources are the pipeline's live readings.
	Sources metrics.Sources
	// Logger receives the reports: warnings for stalls, an info line when
	// the pipeline is merely idle. The zero value logs nothing.
	Logger zerolog.Logger
	// OnStall, if set, is called once when a stall (not mere idleness)
	// is found, from the watchdog's goroutine.
	OnStall func(Diagnosis)
	// OnRecover, if set, is called when progress resumes after OnStall.
	OnRecover func()
}

// Watchdog watches one pipeline run. Build it with New, feed it with
// ObserveSpan and ObserveOutput, and run it with Run. The Observe methods
// are safe for concurrent use.
type Watchdog struct {
	cfg Config

	mu        sync.Mutex // guards successes and win
	successes uint64
	win       window

	// Used by the Run goroutine only.
	stages       map[string]*stageClock
	seen         uint64    // successes at the last check
	lastProgress time.Time // when successes last moved
	reported     time.Time // when the current stall was last reported; zero if none
	stalled      bool      // OnStall was called for the current stall
}

// New validates cfg and applies defaults. It starts nothing.
func New(cfg Config) (*Watchdog, error) {
	if cfg.After == 0 {
		cfg.After = 30 * time.Second
	}
	if cfg.After < 0 || cfg.Interval < 0 {
		return nil, errors.New("watchdog config: After and Interval must not be negative")
	}
	if cfg.Interval == 0 {
		cfg.Interval = min(max(cfg.After/10, 100*time.Millisecond), 5*time.Second)
	}
	return &Watchdog{cfg: cfg, win: newWindow(), stages: map[string]*stageClock{}}, nil
}

// ObserveSpan notes one fetch attempt. Its signature fits
// fetch.Config.Trace.
func (w *Watchdog) ObserveSpan(sp record.Span) {
	w.mu.Lock()
	w.win.add(sp)
	w.mu.Unlock()
}

// ObserveOutput notes one output made durable; a successful result is
// progress.
func (w *Watchdog) ObserveOutput(o record.Output) {
	w.mu.Lock()
	defer w.mu.Unlock()
	outcome := metrics.OutputOutcome(o)
	if outcome == "ok" {
		w.successes++
		return
	}
	w.win.outputs[outcome]++
}

// Run checks every Interval until ctx ends, and returns nil then.
func (w *Watchdog) Run(ctx context.Context) error {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	w.lastProgress = time.Now()
	w.stageStates(w.lastProgress) // the stages' clocks start now too
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			w.check(now)
		}
	}
}

// check looks once: it updates the progress clocks and reports a stall
// when one is due.
func (w *Watchdog) check(now time.Time) {
	w.mu.Lock()
	succ := w.successes
	if succ != w.seen {
		w.win = newWindow()
	}
	win := w.win.clone()
	w.mu.Unlock()
	stages := w.stageStates(now)

	if succ != w.seen {
		w.seen = succ
		w.lastProgress = now
		if w.stalled {
			w.cfg.Logger.Info().Msg("progress resumed")
			if w.cfg.OnRecover != nil {
				w.cfg.OnRecover()
			}
		}
		w.stalled, w.reported = false, time.Time{}
		return
	}
	since := now.Sub(w.lastProgress)
	if since < w.cfg.After || (!w.reported.IsZero() && now.Sub(w.reported) < w.cfg.After) {
		return
	}
	w.reported = now
	d := Diagnose(Snapshot{Since: since, After: w.cfg.After, Stages: stages, Sources: w.cfg.Sources, Window: win})
	w.log(d)
	if !d.Idle && !w.stalled {
		w.stalled = true
		if w.cfg.OnStall != nil {
			w.cfg.OnStall(d)
		}
	}
}

func (w *Watchdog) log(d Diagnosis) {
	ev := w.cfg.Logger.Warn()
	msg := "stalled: " + d.Summary
	if d.Idle {
		ev = w.cfg.Logger.Info()
		msg = "idle: " + d.Summary
	}
	ev = ev.Str("cause", d.Cause).Str("no_progress_for", d.Since.Round(time.Millisecond).String())
	for _, st := range d.Stages {
		ev = ev.Str(st.Name, st.Waiting)
	}
	ev.Msg(msg)
}

// stageClock remembers when a stage last passed something on.
type stageClock struct {
	processed uint64
	changed   time.Time
}

// stageStates reads the stages and how long each has been still.
func (w *Watchdog) stageStates(now time.Time) []StageState {
	out := make([]StageState, 0, len(w.cfg.Sources.Stages))
	for _, st := range w.cfg.Sources.Stages {
		p := st.Processed()
		c, ok := w.stages[st.Name]
		if !ok {
			c = &stageClock{processed: p, changed: now}
			w.stages[st.Name] = c
		}
		if p != c.processed {
			c.processed, c.changed = p, now
		}
		out = append(out, StageState{
			Name: st.Name, Queue: st.Queue(), Capacity: st.Capacity, InFlight: int(st.InFlight()),
			Processed: p, StillFor: now.Sub(c.changed),
		})
	}
	return out
}

// window holds what happened since the last success. Its maps are bounded
// by capping the keys they admit.
type window struct {
	attempts int
	failed   int
	byClass  map[string]int
	byProxy  map[string]*proxyWindow
	byDomain map[string]map[string]int // domain → class → failures
	outputs  map[string]int            // failed outputs by outcome
}

type proxyWindow struct {
	attempts int
	byClass  map[string]int
}

const maxWindowKeys = 200

func newWindow() window {
	return window{byClass: map[string]int{}, byProxy: map[string]*proxyWindow{}, byDomain: map[string]map[string]int{}, outputs: map[string]int{}}
}

func capKey[V any](m map[string]V, k string) string {
	if _, ok := m[k]; ok || len(m) < maxWindowKeys {
		return k
	}
	return metrics.Other
}

func (w *window) add(sp record.Span) {
	w.attempts++
	pk := capKey(w.byProxy, sp.Proxy)
	pw := w.byProxy[pk]
	if pw == nil {
		pw = &proxyWindow{byClass: map[string]int{}}
		w.byProxy[pk] = pw
	}
	pw.attempts++
	if sp.Error == "" {
		return
	}
	w.failed++
	w.byClass[capKey(w.byClass, sp.Error)]++
	pw.byClass[capKey(pw.byClass, sp.Error)]++
	dk := capKey(w.byDomain, sp.Domain)
	if w.byDomain[dk] == nil {
		w.byDomain[dk] = map[string]int{}
	}
	w.byDomain[dk][capKey(w.byDomain[dk], sp.Error)]++
}

func (w window) clone() window {
	c := newWindow()
	c.attempts, c.failed = w.attempts, w.failed
	for k, v := range w.byClass {
		c.byClass[k] = v
	}
	for k, v := range w.byProxy {
		pw := &proxyWindow{attempts: v.attempts, byClass: map[string]int{}}
		for cl, n := range v.byClass {
			pw.byClass[cl] = n
		}
		c.byProxy[k] = pw
	}
	for k, v := range w.byDomain {
		m := map[string]int{}
		for cl, n := range v {
			m[cl] = n
		}
		c.byDomain[k] = m
	}
	for k, v := range w.outputs {
		c.outputs[k] = v
	}
	return c
}
