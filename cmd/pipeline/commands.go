package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"strings"
	"time"

	"github.com/sluicehq/sluice/app"
)

const aboutReplay = `Parses stored pages again, with no network access to the pages' sites:
from the pages topic (--kafka-brokers, --kafka-pages-topic, and the same
TLS and SASL settings as run) from an offset or a time up to its end when
the replay starts, from a pages JSONL file (--pages-file), or from WARC
files (--warc), into a results JSONL file (--out) or topic
(--kafka-results-topic).`

func setupReplay(fs *flag.FlagSet, stdout, stderr io.Writer) func() error {
	f := app.Bind(fs, app.Defaults(), only("rules", "out", "log_level", "drain_timeout", "kafka."))
	var o app.ReplayOptions
	fs.StringVar(&o.PagesFile, "pages-file", "", "replay the pages of this JSONL file (written by run --pages) instead of a topic")
	fs.Func("warc", "replay the pages of these WARC files or directories (written by run --warc; comma-separated or repeated) instead of a topic", func(s string) error {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				o.WARC = append(o.WARC, p)
			}
		}
		return nil
	})
	fs.Int64Var(&o.FromOffset, "from-offset", -1, "start at this offset in every partition of the pages topic (-1: the beginning)")
	fs.StringVar(&o.FromTime, "from-time", "", "start at the first page stored at or after this time (RFC 3339)")
	fs.StringVar(&o.Diff, "diff", "", "compare the re-parsed fields with this old results JSONL file: per field, how many records changed, with examples (on stderr)")
	return func() error {
		c, err := load(f, "replay", stderr)
		if err != nil {
			return err
		}
		return app.Replay(context.Background(), c, o, stdout, stderr)
	}
}

// local are the settings demo and bench do not take: they make their own
// inputs and proxies, and write no Kafka topic.
var local = not("urls", "proxies", "pool_size", "kafka.")

const aboutDemo = `Scrapes a local catalog site through a local proxy farm (--farm-proxies)
into --out, draws the request waterfall and checks every record. Exits 1
when a record is missing or wrong.`

func setupDemo(fs *flag.FlagSet, stdout, stderr io.Writer) func() error {
	f := app.Bind(fs, app.DemoDefaults(), local)
	var o app.DemoOptions
	fs.IntVar(&o.Pages, "n", 3000, "product pages to scrape")
	fs.IntVar(&o.FarmProxies, "farm-proxies", 10, "proxies in the local farm (0..250)")
	fs.IntVar(&o.PageBytes, "page-bytes", 8<<10, "size of each product page")
	fs.StringVar(&o.Waterfall, "waterfall", "waterfall.html", "request waterfall (HTML) drawn from the trace; \"\" for none")
	fs.IntVar(&o.SlowProxies, "slow-proxies", 0, "make this many farm proxies slow (see -slow-latency), to see them stand out")
	fs.DurationVar(&o.SlowLatency, "slow-latency", 200*time.Millisecond, "latency added by each slow proxy")
	return func() error {
		c, err := load(f, "demo", stderr)
		if err != nil {
			return err
		}
		return app.Demo(context.Background(), c, o, stdout, stderr)
	}
}

const aboutBench = `Measures the governor on a local catalog site that allows --per-ip
requests per client IP per --window, through a local farm of --farm-proxies
proxies. Exits 1 when pages are missing, 429s pass --max-429 or the rate
stays under --min-share of what the site allows.`

func setupBench(fs *flag.FlagSet, stdout, stderr io.Writer) func() error {
	defaults := app.Defaults()
	defaults.LogLevel, defaults.Out = "warn", ""
	f := app.Bind(fs, defaults, local)
	var o app.BenchOptions
	fs.IntVar(&o.Pages, "n", 5000, "product pages to scrape")
	fs.IntVar(&o.FarmProxies, "farm-proxies", 20, "proxies in the local farm (1..250)")
	fs.IntVar(&o.PerIP, "per-ip", 180, "requests the site allows per client IP per window")
	fs.DurationVar(&o.Window, "window", time.Minute, "the site's sliding rate-limit window")
	fs.Float64Var(&o.Safety, "safety", 0.95, "safety factor of the bench's domain entry (ignored when the config has domains:)")
	fs.DurationVar(&o.Latency, "latency", 0, "the site's answer latency")
	fs.IntVar(&o.PageBytes, "page-bytes", 8<<10, "size of each product page")
	fs.Float64Var(&o.MinShare, "min-share", 0.85, "fail below this share of the allowed rate (0: report only)")
	fs.Float64Var(&o.Max429, "max-429", 0.01, "fail when more than this share of requests is answered 429")
	members := fs.String("members", "", "scaling bench: comma-separated member counts (1,2,3): that many processes running pipeline run in one Kafka group on -brokers (docs/scaling.md)")
	brokers := fs.String("brokers", "", "Kafka brokers of the scaling bench (-members), host:port,...")
	return func() error {
		if err := o.ParseMembers(*members, *brokers); err != nil {
			return usageErr{err}
		}
		c, err := load(f, "bench", stderr)
		if err != nil {
			return err
		}
		o.Out = c.Out
		return app.Bench(context.Background(), c, o, stdout, stderr)
	}
}

const aboutWaterfall = `Draws the request waterfall (a self-contained HTML page) of a span trace
written by run --trace.`

func setupWaterfall(fs *flag.FlagSet, stdout, stderr io.Writer) func() error {
	in := fs.String("in", "", "span trace (JSON lines) written with --trace (required)")
	out := fs.String("out", "waterfall.html", "HTML file to write")
	maxSpans := fs.Int("max-spans", 20000, "draw at most this many attempts (the earliest)")
	title := fs.String("title", "", "page title")
	return func() error {
		if *in == "" {
			return usageErr{errors.New("waterfall needs --in TRACE.jsonl")}
		}
		if *maxSpans < 1 {
			return usageErr{errors.New("--max-spans must be positive")}
		}
		return app.Waterfall(*in, *out, *title, *maxSpans, stdout, stderr)
	}
}

const aboutVersion = `Prints the module version and the VCS revision the binary was built from.`

func setupVersion(fs *flag.FlagSet, stdout, _ io.Writer) func() error {
	return func() error { return cmdVersion(fs.Args(), stdout) }
}

const aboutProbe = `GETs --url (the /readyz or /healthz of a running pipeline) and exits 0
on 200, 1 otherwise: the container healthcheck of the image, which has no
shell or curl.`

func setupProbe(fs *flag.FlagSet, stdout, _ io.Writer) func() error {
	url := fs.String("url", "http://127.0.0.1:9090/readyz", "URL to GET")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	return func() error { return app.Probe(context.Background(), *url, *timeout, stdout) }
}
