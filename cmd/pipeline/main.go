// Command pipeline runs sluice: `pipeline run` scrapes the URLs of a file,
// stdin or a Kafka topic through a proxy pool; `pipeline replay` parses
// stored pages again; `pipeline demo` scrapes a local catalog site through
// a local proxy farm, with no setup; `pipeline plan` prints the fetch
// governor's calculation for a config; `pipeline bench` measures the
// governor against a local site with a per-IP limit; `pipeline waterfall`
// draws a request waterfall from a span trace; `pipeline soak` churns
// member processes against Kafka and checks that nothing grows.
//
// This package is only the command line: flags bound from the config tree
// of package app, subcommand dispatch and exit codes (docs/cli.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/sluicehq/sluice/app"
)

// Exit codes, the same for every subcommand (docs/cli.md).
const (
	exitOK      = 0 // done
	exitFailure = 1 // the run failed
	exitUsage   = 2 // unknown flag, bad value, missing file, bad config
)

const usage = `usage: pipeline <command> [flags]

commands:
  run        scrape URLs from a file, stdin or a Kafka topic into JSONL or Kafka topics
  replay     parse stored pages again (pages topic, pages file or WARC), with no network access to their sites
  demo       scrape a local catalog site through a local proxy farm, and check every record
  plan       print the fetch governor's per-domain limits for a config (--config FILE)
  bench      measure the governor on a local site with a per-IP limit: completion, 429s, rate
  waterfall  draw the request waterfall (HTML) of a span trace written with --trace
  probe      check a running pipeline's /readyz (the container healthcheck)
  soak       minutes of churn against Kafka and real member processes: exits 1 on a leak or a loss
  version    print the module version and the revision the binary was built from

Run 'pipeline <command> -h' for the flags of a command.
`

// command is one subcommand: what -h says about it, and how it runs once
// its flags are declared into fs and parsed.
type command struct {
	about string
	// setup declares the command's flags and returns what runs it.
	setup func(fs *flag.FlagSet, stdout, stderr io.Writer) func() error
}

var commands = map[string]command{
	"run":       {aboutRun, setupRun},
	"replay":    {aboutReplay, setupReplay},
	"demo":      {aboutDemo, setupDemo},
	"plan":      {aboutPlan, setupPlan},
	"bench":     {aboutBench, setupBench},
	"waterfall": {aboutWaterfall, setupWaterfall},
	"version":   {aboutVersion, setupVersion},
	"probe":     {aboutProbe, setupProbe},
	"soak":      {aboutSoak, setupSoak},
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "-version", "--version":
		name = "version"
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "pipeline: unknown command %q\nrun 'pipeline -h' for help\n", name)
		return exitUsage
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported here, on one line
	fs.Usage = func() {}
	run := cmd.setup(fs, stdout, stderr)
	err := fs.Parse(rest)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printHelp(stdout, name, cmd.about, fs)
		return exitOK
	case err == nil && fs.NArg() > 0:
		err = usageErr{fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	case err != nil:
		err = usageErr{err}
	default:
		err = run()
	}
	return exitCode(name, err, stderr)
}

// exitCode reports err on one line and returns the exit code it means.
func exitCode(name string, err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	var ue usageErr
	if errors.As(err, &ue) || app.IsUsage(err) {
		fmt.Fprintf(stderr, "pipeline %s: %s\nrun 'pipeline %s -h' for help\n", name, msg, name)
		return exitUsage
	}
	fmt.Fprintf(stderr, "pipeline %s: %s\n", name, msg)
	return exitFailure
}

// usageErr marks a command-line problem found here (exit code 2).
type usageErr struct{ error }

// printHelp prints the command's flags, leaving out the deprecated names
// (docs/cli.md lists them).
func printHelp(w io.Writer, name, about string, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: pipeline %s [flags]\n\n%s\n\nflags:\n", name, about)
	fs.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Usage, "deprecated:") {
			return
		}
		arg, usage := flag.UnquoteUsage(f)
		if t, ok := f.Value.(interface{ Type() string }); ok {
			arg = t.Type()
		}
		fmt.Fprintf(w, "  --%s %s\n    \t%s", f.Name, arg, strings.ReplaceAll(usage, "\n", "\n    \t"))
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// load builds the config from the bound flags and prints the warnings
// of deprecated flag names.
func load(f *app.Flags, name string, stderr io.Writer) (app.Config, error) {
	c, err := f.Load()
	for _, w := range f.Warnings() {
		fmt.Fprintf(stderr, "pipeline %s: warning: %s\n", name, w)
	}
	return c, err
}

// not keeps the settings whose YAML key is none of keys and starts with
// none of the prefixes ending in ".".
func not(keys ...string) func(app.Setting) bool {
	return func(s app.Setting) bool {
		for _, k := range keys {
			if s.Key == k || strings.HasSuffix(k, ".") && strings.HasPrefix(s.Key, k) {
				return false
			}
		}
		return true
	}
}

// only keeps the settings whose YAML key is one of keys or starts with
// one of the prefixes ending in ".".
func only(keys ...string) func(app.Setting) bool {
	drop := not(keys...)
	return func(s app.Setting) bool { return !drop(s) }
}

const aboutRun = `Scrapes the URLs of --urls (a file, or - for stdin) or of --kafka-topic
through the proxies of --proxies into --out (JSONL) or --kafka-results-topic.
Every flag is also a key of the --config file (docs/config.md).`

func setupRun(fs *flag.FlagSet, stdout, stderr io.Writer) func() error {
	f := app.Bind(fs, app.Defaults(), not("pool_size"))
	return func() error {
		c, err := load(f, "run", stderr)
		if err != nil {
			return err
		}
		defer setMemoryLimit(c.MemoryLimit, os.Getenv("GOMEMLIMIT"))()
		return app.Run(context.Background(), c, stdout, stderr)
	}
}

const aboutPlan = `Prints the fetch governor's calculation for the domains: section of a
--config file, without fetching anything. The pool is --pool-size proxies,
or else those of --proxies.`

func setupPlan(fs *flag.FlagSet, stdout, stderr io.Writer) func() error {
	f := app.Bind(fs, app.Defaults(), nil)
	return func() error {
		if fs.Lookup("config").Value.String() == "" {
			return usageErr{errors.New("plan needs --config FILE")}
		}
		c, err := load(f, "plan", stderr)
		if err != nil {
			return err
		}
		return app.Plan(c, stdout)
	}
}

// setMemoryLimit sets the Go runtime's soft memory limit to limit bytes
// (memory_limit), unless it is 0 (off) or GOMEMLIMIT is set in the
// environment (env), which the runtime has already applied and which
// overrides the setting. The limit is process-wide, so the command that
// owns the process sets it, not package app; the returned func puts the
// previous limit back (for tests that run commands in one process).
func setMemoryLimit(limit int64, env string) (restore func()) {
	if limit <= 0 || env != "" {
		return func() {}
	}
	was := debug.SetMemoryLimit(limit)
	return func() { debug.SetMemoryLimit(was) }
}
