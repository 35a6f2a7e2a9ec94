// Package app is sluice's application: the one config tree (Config, whose
// YAML keys are the flags' names, bound to a flag set by Bind and filled by
// Flags.Load), and the one builder that wires source → fetch → parse →
// sink for `run`, `demo` and `bench`, and pages → parse → sink for
// `replay`, with their Kafka clients from package kafka. cmd/pipeline is
// only the command line around it.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// usageError marks a problem with the command line or configuration.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// IsUsage reports whether err is a usage error: a bad flag, value, file or
// config (exit code 2).
func IsUsage(err error) bool {
	var ue usageError
	return errors.As(err, &ue)
}

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// newLogger logs JSON to w, or readable console lines when w is a terminal.
// The returned logOutput is what the logger writes through, so that a
// progress bar can share the terminal.
func newLogger(w io.Writer, level string) (zerolog.Logger, *logOutput, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		return zerolog.Nop(), nil, usagef("log level %q: %v", level, err)
	}
	out := &logOutput{w: w, term: isTerminal(w)}
	var lw io.Writer = out
	if out.term {
		lw = zerolog.ConsoleWriter{Out: out, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(lw).Level(lvl).With().Timestamp().Logger(), out, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// logOutput is the writer under the logger. While a progress bar is drawn
// on the same terminal, writes go through the bar (see progress.Writer) so
// that log lines do not garble it. Safe for concurrent use.
type logOutput struct {
	term bool      // w is a terminal
	w    io.Writer // the real writer, set once

	mu  sync.Mutex // guards via
	via io.Writer  // the bar's wrapper of w, if set
}

func (o *logOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	w := o.w
	if o.via != nil {
		w = o.via
	}
	o.mu.Unlock()
	return w.Write(p)
}

// route sends writes through wrap(w) until the returned function is called.
func (o *logOutput) route(wrap func(io.Writer) io.Writer) (restore func()) {
	o.mu.Lock()
	o.via = wrap(o.w)
	o.mu.Unlock()
	return func() {
		o.mu.Lock()
		o.via = nil
		o.mu.Unlock()
	}
}

// signalContexts returns the two contexts of a run: soft ends at the first
// SIGINT or SIGTERM (stop reading, drain); hard ends drainTimeout later, or
// at a second signal (abort what is in flight). stop releases both.
func signalContexts(parent context.Context, drainTimeout time.Duration, log zerolog.Logger) (hard, soft context.Context, stop func()) {
	hard, cancelHard := context.WithCancel(parent)
	soft, cancelSoft := context.WithCancel(hard)
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		defer signal.Stop(sig)
		select {
		case s := <-sig:
			log.Warn().Str("signal", s.String()).Dur("deadline", drainTimeout).Msg("stopping: draining what was read")
			cancelSoft()
		case <-done:
			return
		}
		t := time.NewTimer(drainTimeout)
		defer t.Stop()
		select {
		case s := <-sig:
			log.Warn().Str("signal", s.String()).Msg("second signal: aborting requests in flight")
		case <-t.C:
			log.Warn().Msg("drain deadline passed: aborting requests in flight")
		case <-done:
			return
		}
		cancelHard()
	}()
	var once bool
	return hard, soft, func() {
		if !once {
			once = true
			close(done)
			cancelSoft()
			cancelHard()
		}
	}
}
