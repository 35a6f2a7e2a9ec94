// Command compare measures sluice side by side with a bare net/http client
// (the floor) and Colly v2 on sluice's local testbed: a catalog site on
// loopback serving ~60 KB pages after 200 ms, reached through a farm of
// local forward proxies that each dial out from their own 127.0.0.x.
//
// Run it from this directory:
//
//	go run . [-n 5000] [-c 50,200,1000]
//
// Each peer runs as a child process, so that its CPU time and peak RSS are
// its own: the floor and Colly are this binary run again with -child, and
// sluice is `pipeline run`, built from this checkout. The site and the
// proxies run in this (the parent) process. The result is a Markdown table
// on stdout; see docs/performance.md.
//
// It lives in a module of its own so that Colly never enters sluice's
// module.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if code, ok := subcommand(os.Args[1:]); ok {
		os.Exit(code)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := mainErr(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

// subcommand runs this binary as a child peer (childFlag) or as the
// launcher (spawnFlag) when args ask for it, and returns the exit code
// and true; for anything else it returns false.
func subcommand(args []string) (int, bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch args[0] {
	case childFlag:
		return childMain(args[1:], os.Stderr), true
	case spawnFlag:
		return spawnMain(args[1:], os.Stderr), true
	}
	return 0, false
}

// mainErr parses the parent's flags and runs the comparison.
func mainErr(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(newFlagSet(stderr), args, os.Getenv)
	if err != nil {
		return err
	}
	rep, err := Run(ctx, cfg, stdout)
	if err != nil {
		return err
	}
	return rep.Err()
}

func newFlagSet(stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags declares the harness's flags into fs, parses args and
// returns the Config; getenv reads SLUICE_KAFKA_BROKERS.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) (Config, error) {
	var cfg Config
	fs.IntVar(&cfg.N, "n", 5000, "URLs (product pages) per run")
	cs := fs.String("c", "50,200,1000", "concurrencies to run, comma-separated")
	fs.IntVar(&cfg.Proxies, "proxies", 20, "local forward proxies in the farm")
	fs.DurationVar(&cfg.Latency, "latency", 200*time.Millisecond, "the site's answer latency")
	fs.IntVar(&cfg.PageBytes, "page-bytes", 60<<10, "size of each product page")
	peers := fs.String("peers", "floor,colly,sluice", "peers to run, comma-separated: floor, colly, sluice")
	fs.StringVar(&cfg.Root, "root", "../..", "the sluice checkout to build `pipeline` from")
	fs.StringVar(&cfg.Pipeline, "pipeline", "", "use this pipeline binary instead of building one")
	sluiceFlags := fs.String("sluice-flags", "", "more flags for every `pipeline run`, space-separated (e.g. \"--config job.yaml\"), after the harness's own")
	fs.BoolVar(&cfg.CollyKeepAlive, "colly-keepalive", false, "turn keep-alives back on in Colly's transport (its proxy switcher turns them off)")
	fs.DurationVar(&cfg.PeerTimeout, "peer-timeout", 10*time.Minute, "kill a peer that runs longer than this")
	kafka := fs.String("kafka", "auto", "Kafka end-to-end mode: auto (when SLUICE_KAFKA_BROKERS is set), on or off")
	fs.IntVar(&cfg.KafkaC, "kafka-c", 200, "concurrency of the Kafka end-to-end run")
	fs.IntVar(&cfg.KafkaPartitions, "kafka-partitions", 4, "partitions of the Kafka input topic")
	profiles := fs.String("profiles", "200,1000", "concurrencies at which to profile sluice (CPU and allocations); empty: none")
	fs.StringVar(&cfg.ProfileDir, "profile-dir", "", "where to keep the profiles; default: a new directory under the system temp dir")
	fs.IntVar(&cfg.Repeat, "repeat", 1, "runs of every peer at each concurrency; the table shows the median by pages/s")
	fs.BoolVar(&cfg.Verbose, "v", false, "print each peer's output (its last 8 KB) after its run")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	cfg.SluiceFlags = strings.Fields(*sluiceFlags)
	var err error
	if cfg.Concurrency, err = intList(*cs); err != nil || len(cfg.Concurrency) == 0 {
		return cfg, fmt.Errorf("-c %q: want positive integers, comma-separated", *cs)
	}
	if cfg.Profile, err = intList(*profiles); err != nil {
		return cfg, fmt.Errorf("-profiles %q: want positive integers, comma-separated", *profiles)
	}
	for _, p := range strings.Split(*peers, ",") {
		p = strings.TrimSpace(p)
		switch p {
		case peerFloor, peerColly, peerSluice:
			cfg.Peers = append(cfg.Peers, p)
		case "":
		default:
			return cfg, fmt.Errorf("-peers: unknown peer %q", p)
		}
	}
	switch *kafka {
	case "auto":
		cfg.KafkaBrokers = splitList(getenv(envKafkaBrokers))
	case "on":
		if cfg.KafkaBrokers = splitList(getenv(envKafkaBrokers)); len(cfg.KafkaBrokers) == 0 {
			return cfg, fmt.Errorf("-kafka on needs %s (source /work/kafka.env or .ci/setup-kafka.sh)", envKafkaBrokers)
		}
	case "off":
	default:
		return cfg, fmt.Errorf("-kafka %q: want auto, on or off", *kafka)
	}
	return cfg, nil
}

// intList parses "50,200,1000"; "" is an empty list.
func intList(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
