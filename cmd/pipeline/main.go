// Command pipeline runs sluice: `pipeline run` scrapes the URLs of a file or
// stdin through a proxy pool into JSONL; `pipeline demo` does the same
// against a local catalog site and proxy farm, with no setup; `pipeline
// plan` prints the fetch governor's calculation for a config; `pipeline
// bench` measures the governor against a local site with a per-IP limit;
// `pipeline waterfall` draws a request waterfall from a span trace.
package main

import (
	"context"
	"errors"
	"flag"
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

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

const usage = `usage: pipeline <command> [flags]

commands:
  run        scrape URLs from a file, stdin or a Kafka topic into JSONL or Kafka topics
  replay     parse stored pages again (pages topic or file), with no network access to their sites
  demo       scrape a local catalog site through a local proxy farm, and check every record
  plan       print the fetch governor's per-domain limits for a config (--config FILE)
  bench      measure the governor on a local site with a per-IP limit: completion, 429s, rate
  waterfall  draw the request waterfall (HTML) of a span trace written with --trace
  version    print the module version and the revision the binary was built from

Run 'pipeline <command> -h' for the flags of a command.
`

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "run":
		err = cmdRun(rest, stdout, stderr)
	case "demo":
		err = cmdDemo(rest, stdout, stderr)
	case "replay":
		err = cmdReplay(rest, stdout, stderr)
	case "plan":
		err = cmdPlan(rest, stdout, stderr)
	case "bench":
		err = cmdBench(rest, stdout, stderr)
	case "waterfall":
		err = cmdWaterfall(rest, stdout, stderr)
	case "version", "-version", "--version":
		err = cmdVersion(rest, stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "pipeline: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "pipeline %s: %v\n", cmd, err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "pipeline %s: %v\n", cmd, err)
		return exitFailure
	}
}

// usageError marks a problem with the command line or configuration.
type usageError struct{ error }

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
