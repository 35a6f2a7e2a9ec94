// Command pipeline runs sluice: `pipeline run` scrapes the URLs of a file or
// stdin through a proxy pool into JSONL; `pipeline demo` does the same
// against a local catalog site and proxy farm, with no setup.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
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
  run     scrape URLs from a file, stdin or a Kafka topic into JSONL or Kafka topics
  replay  parse stored pages again (pages topic or file), with no network access to their sites
  demo    scrape a local catalog site through a local proxy farm, and check every record

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
func newLogger(w io.Writer, level string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		return zerolog.Nop(), usagef("log level %q: %v", level, err)
	}
	if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
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
