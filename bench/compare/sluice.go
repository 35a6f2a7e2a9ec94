package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// sluiceRun describes one `pipeline run` of the harness.
type sluiceRun struct {
	Proxies     string // proxy list file
	Rules       string // rules file
	Concurrency int
	URLs        string // URL file, "-" for stdin; unused with Kafka
	Out         string // results JSONL file; unused with Kafka
	MetricsAddr string // "": no metrics listener
	Pprof       bool   // serve /debug/pprof on MetricsAddr
	Kafka       *sluiceKafka
	Extra       []string // appended as they are (Config.SluiceFlags)
}

// sluiceKafka is the Kafka side of a run: URLs from a topic, results to a
// topic.
type sluiceKafka struct {
	Brokers      []string
	Topic        string
	Group        string
	ResultsTopic string
}

// sluiceArgs is every flag the harness passes to sluice, in one place.
// The CLI is being reworked; when a flag changes, this is the function
// to update.
func sluiceArgs(r sluiceRun) []string {
	args := []string{"run",
		"--proxies", r.Proxies,
		"--rules", r.Rules,
		"--concurrency", strconv.Itoa(r.Concurrency),
		"--rate=-1",        // no per-domain rate limit: the testbed site has none
		"--allow-loopback", // the testbed is on 127.0.0.0/8, which the URL policy refuses by default
		"--log-level", "warn",
		"--progress", "off",
	}
	if k := r.Kafka; k != nil {
		args = append(args,
			"--kafka-brokers", strings.Join(k.Brokers, ","),
			"--kafka-topic", k.Topic,
			"--kafka-group", k.Group,
			"--kafka-results-topic", k.ResultsTopic)
	} else {
		args = append(args, "--urls", r.URLs, "--out", r.Out)
	}
	if r.MetricsAddr != "" {
		args = append(args, "--metrics-addr", r.MetricsAddr)
		if r.Pprof {
			args = append(args, "--pprof")
		}
	}
	return append(args, r.Extra...)
}

// buildPipeline builds cmd/pipeline of the checkout at root into dir and
// returns the binary's path.
func buildPipeline(ctx context.Context, root, dir string) (string, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(abs, "cmd", "pipeline")); err != nil {
		return "", fmt.Errorf("-root %s is not a sluice checkout (no cmd/pipeline): run from bench/compare or pass -root", root)
	}
	bin := filepath.Join(dir, "pipeline")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/pipeline")
	cmd.Dir = abs
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/pipeline in %s: %w\n%s", abs, err, out)
	}
	return bin, nil
}
