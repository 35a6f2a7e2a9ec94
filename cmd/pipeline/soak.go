package main

import (
	"context"
	"flag"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/soak"
)

const aboutSoak = `Runs minutes of churn against a real Kafka broker (--kafka-brokers or
$SLUICE_KAFKA_BROKERS) with --members real 'pipeline run' processes in one
consumer group: members killed (SIGKILL and SIGTERM) and restarted, a farm
proxy killed and revived, a domain switching between 200, 429 and
timeouts, the sink slowed by a broker produce quota. Samples every
member's RSS, heap, goroutines and open fds and the group's lag, prints
per-series slopes and a reconciliation of every input produced, and exits
1 on a leak, a loss or a crash (docs/soak.md).`

func setupSoak(fs *flag.FlagSet, stdout, stderr io.Writer) func() error {
	var c soak.Config
	brokers := fs.String("kafka-brokers", "", "Kafka bootstrap brokers, comma-separated host:port (default: $SLUICE_KAFKA_BROKERS)")
	fs.StringVar(&c.Binary, "member-bin", "", "the pipeline binary the members run (default: this one)")
	fs.StringVar(&c.LogDir, "member-logs", "", "write each member's log to this directory (it must exist), one file per lifetime")
	fs.DurationVar(&c.Duration, "duration", 10*time.Minute, "produce input and churn for this long")
	fs.DurationVar(&c.Drain, "drain", 3*time.Minute, "then wait this long at most for every input to end")
	fs.IntVar(&c.Members, "members", 3, "member processes in the consumer group (2..5)")
	fs.IntVar(&c.Partitions, "partitions", 6, "partitions of the input topic")
	fs.Float64Var(&c.Rate, "rate", 10, "URL messages produced per second")
	fs.DurationVar(&c.Sample, "sample", 10*time.Second, "sampling interval of /metrics and the lag")
	fs.DurationVar(&c.Churn, "churn", 15*time.Second, "one churn step every this long")
	fs.IntVar(&c.SinkSlowBytes, "sink-slow-bytes", 4096, "the members' produce quota (bytes/s) while the sink is slowed")
	fs.Float64Var(&c.MaxGoroutineSlope, "max-goroutine-slope", 60, "leak: goroutines of the anchor member growing faster (per minute) over the second half")
	fs.Float64Var(&c.MaxGoroutines, "max-goroutines", 2000, "leak: goroutines of the anchor member above this")
	fs.Float64Var(&c.MaxFDSlope, "max-fd-slope", 10, "leak: open fds of the anchor member growing faster (per minute) over the second half")
	fs.Float64Var(&c.MaxFDs, "max-fds", 512, "leak: open fds of the anchor member above this")
	return func() error {
		b := *brokers
		if b == "" {
			b = os.Getenv("SLUICE_KAFKA_BROKERS")
		}
		for _, s := range strings.Split(b, ",") {
			if s = strings.TrimSpace(s); s != "" {
				c.Brokers = append(c.Brokers, s)
			}
		}
		if c.Binary == "" {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			c.Binary = exe
		}
		c.Log = stderr
		if err := c.Validate(); err != nil {
			return usageErr{err}
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		rep, err := soak.Run(ctx, c)
		if rep != nil {
			rep.Print(stdout)
		}
		return err
	}
}
