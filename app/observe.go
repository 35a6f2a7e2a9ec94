package app

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/progress"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/watchdog"
	"github.com/sluicehq/sluice/waterfall"
)

// observeConfig is how a run is watched: metrics, span trace, stall
// watchdog and progress. Filled from flags by runFlags, and by startOps.
type observeConfig struct {
	MetricsAddr string        // serve /metrics etc. here; "" none
	Pprof       bool          // mount pprof on the metrics listener
	Trace       string        // span trace file; "" none
	TraceMax    int64         // spans kept in the trace at most; 0 means waterfall.DefaultMaxSpans
	StallAfter  time.Duration // watchdog threshold; <= 0 disables it
	StatsEvery  time.Duration // stats line interval; 0 means 10 s
	Progress    string        // auto, bar, log or off
	Total       int64         // inputs expected; 0 when unknown
	Term        *logOutput    // the log's writer, shared with a bar; nil: no bar

	Metrics *metrics.Metrics // set by startOps when metrics are served (or by tests)
	Server  *metrics.Server  // set by startOps; readiness checks go here

	// OnStall, if set, also receives the watchdog's diagnoses (tests).
	OnStall func(watchdog.Diagnosis)
}

// ops is the operations listener of a process, alive across its runs.
type ops struct {
	srv    *metrics.Server
	cancel context.CancelFunc
	done   chan error
}

// startOps builds the metrics (if cfg.Observe.Metrics is nil) and starts
// the listener when cfg.Observe.MetricsAddr is set; it fills both into
// cfg. close stops the listener.
func startOps(cfg *jobConfig) (*ops, error) {
	o := &ops{}
	if cfg.Observe.MetricsAddr == "" {
		return o, nil
	}
	if cfg.Observe.Metrics == nil {
		m, err := metrics.New(metrics.Config{})
		if err != nil {
			return nil, err
		}
		cfg.Observe.Metrics = m
	}
	srv, err := metrics.Listen(metrics.ServerConfig{
		Addr: cfg.Observe.MetricsAddr, Gatherer: cfg.Observe.Metrics.Registry(), Pprof: cfg.Observe.Pprof, Logger: cfg.Log,
	})
	if err != nil {
		return nil, usageError{err}
	}
	ctx, cancel := context.WithCancel(context.Background())
	o.srv, o.cancel, o.done = srv, cancel, make(chan error, 1)
	go func() { o.done <- srv.Serve(ctx) }()
	cfg.Observe.Server = srv
	cfg.Log.Info().Str("addr", srv.Addr()).Bool("pprof", cfg.Observe.Pprof).Msg("serving /metrics, /healthz and /readyz")
	return o, nil
}

// addr is where the listener listens, "" without one.
func (o *ops) addr() string {
	if o.srv == nil {
		return ""
	}
	return o.srv.Addr()
}

func (o *ops) close() {
	if o.srv == nil {
		return
	}
	o.cancel()
	<-o.done
}

// observers are what watch one pipeline run; each may be nil.
type observers struct {
	cfg      observeConfig
	metrics  *metrics.Metrics
	watchdog *watchdog.Watchdog
	progress *progress.Reporter
	bar      bool // progress draws a bar on cfg.Term
	trace    *waterfall.Writer
	sources  metrics.Sources
	log      zerolog.Logger
}

// setup builds the watchdog and the progress reporter for p.
func (o *observers) setup(cfg jobConfig, p *pipeline) error {
	o.cfg = cfg.Observe
	o.log = cfg.Log
	o.metrics = cfg.Observe.Metrics
	o.sources = metrics.Sources{
		Stages:    p.stats(),
		Fetch:     p.fetch.Activity,
		Domains:   p.fetch.Domains,
		DomainsOf: p.fetch.DomainsOf,
		Conns:     p.fetch.Pools,
		Proxies:   poolStates(p.pool),
		Pool:      poolStats(p.pool),
		FDsNeeded: p.fetch.FDsNeeded(),
		Kafka:     p.io.kafkaState,
		State:     stateEntries(p),
	}
	if cfg.Observe.StallAfter > 0 {
		var err error
		o.watchdog, err = watchdog.New(watchdog.Config{
			After: cfg.Observe.StallAfter, Sources: o.sources, Logger: cfg.Log,
			OnStall: func(d watchdog.Diagnosis) {
				if o.metrics != nil {
					o.metrics.Stalled(d.Cause)
				}
				if cfg.Observe.OnStall != nil {
					cfg.Observe.OnStall(d)
				}
			},
			OnRecover: func() {
				if o.metrics != nil {
					o.metrics.Recovered()
				}
			},
		})
		if err != nil {
			return usageError{err}
		}
	}
	mode := cfg.Observe.Progress
	term := cfg.Observe.Term
	if mode == "auto" || mode == "" {
		mode = "log"
		if term != nil && term.term {
			mode = "bar"
		}
	}
	if mode == "bar" && term == nil {
		mode = "log"
	}
	if mode != "off" {
		pc := progress.Config{Counts: p.counts, Stages: o.sources.Stages, Logger: cfg.Log, Interval: cfg.Observe.StatsEvery}
		if mode == "bar" {
			pc.Bar, pc.Out, o.bar = true, term.w, true
		}
		var err error
		if o.progress, err = progress.New(pc); err != nil {
			return usageError{err}
		}
	}
	return nil
}

// span is fetch.Config.Trace: every observer sees every attempt.
func (o *observers) span(sp record.Span) {
	if o.metrics != nil {
		o.metrics.ObserveSpan(sp)
	}
	if o.watchdog != nil {
		o.watchdog.ObserveSpan(sp)
	}
	if o.trace != nil {
		o.trace.Write(sp)
	}
}

// output sees every output made durable.
func (o *observers) output(out record.Output) {
	if o.metrics != nil {
		o.metrics.ObserveOutput(out)
	}
	if o.watchdog != nil {
		o.watchdog.ObserveOutput(out)
	}
}

// start starts the watchdog and progress goroutines, attaches the live
// sources to the metrics and the readiness checks to the server. The
// returned function undoes all of it, closes the trace and returns the
// number of spans written.
func (o *observers) start(p *pipeline) func() (int64, error) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if o.watchdog != nil {
		wg.Go(func() { _ = o.watchdog.Run(ctx) })
	}
	restore := func() {}
	if o.progress != nil {
		if o.bar {
			restore = o.cfg.Term.route(o.progress.Writer)
		}
		wg.Go(func() { _ = o.progress.Run(ctx) })
	}
	if o.metrics != nil {
		o.metrics.Attach(o.sources)
	}
	if srv := o.cfg.Server; srv != nil {
		srv.SetCheck("source", func(context.Context) error { return p.io.sourceReady() })
		srv.SetCheck("sink", func(context.Context) error { return p.io.sinkReady() })
		srv.SetCheck("proxies", proxiesReady(p.pool)) // see noproxy.go
	}
	return func() (int64, error) {
		if srv := o.cfg.Server; srv != nil {
			srv.SetCheck("source", nil)
			srv.SetCheck("sink", nil)
			srv.SetCheck("proxies", nil)
		}
		if o.metrics != nil {
			o.metrics.Detach()
		}
		cancel()
		wg.Wait()
		restore()
		if o.trace == nil {
			return 0, nil
		}
		n := o.trace.Spans()
		if d := o.trace.Dropped(); d > 0 {
			o.log.Warn().Int64("kept", n).Int64("dropped", d).Str("trace", o.cfg.Trace).Msg("the trace reached its limit (--trace-max); later spans were left out")
		}
		return n, o.trace.Close()
	}
}

// poolStates reports the pool's proxies for the metrics and the watchdog:
// a proxy is quarantined while its cool-down runs (on probation it takes
// probes again, so it is not).
func poolStates(pool *proxy.Pool) func() []metrics.ProxyState {
	if pool == nil {
		return nil
	}
	return func() []metrics.ProxyState {
		st := pool.Stats()
		out := make([]metrics.ProxyState, len(st.Proxies))
		for i, p := range st.Proxies {
			// While no proxy is usable (quarantined, or on the domains
			// waiting), the watchdog is to say so.
			out[i] = metrics.ProxyState{ID: p.ID, Quarantined: p.State == proxy.Quarantined || !st.StuckSince.IsZero()}
		}
		return out
	}
}

// poolStats is the pool's snapshot for the metrics, nil without a pool.
func poolStats(pool *proxy.Pool) func() proxy.Stats {
	if pool == nil {
		return nil
	}
	return pool.Stats
}

// stateEntries is metrics.Sources.State: the fetch stage's and the
// pool's per-key tables.
func stateEntries(p *pipeline) func() map[string]int {
	return func() map[string]int {
		out := p.fetch.Entries()
		if p.pool != nil {
			e := p.pool.Entries()
			out["pool_domain_health"], out["pool_sessions"] = e.DomainHealth, e.Sessions
		}
		return out
	}
}

// counts is progress.Config.Counts.
func (p *pipeline) counts() progress.Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return progress.Counts{Done: int64(p.sum.Written), Errors: int64(p.sum.errorCount()), Total: p.obs.cfg.Total}
}

// countLines counts the non-blank lines of a regular file, the inputs a
// batch run expects; 0 if it cannot tell.
func countLines(path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return 0
	}
	br := bufio.NewReaderSize(f, 64<<10)
	var n int64
	blank := true
	for {
		b, err := br.ReadByte()
		if err != nil {
			if !blank {
				n++
			}
			if errors.Is(err, io.EOF) {
				return n
			}
			return 0
		}
		switch b {
		case '\n':
			if !blank {
				n++
			}
			blank = true
		case ' ', '\t', '\r':
		default:
			blank = false
		}
	}
}

// Waterfall is `pipeline waterfall`: it renders the span trace at in as
// an HTML waterfall in out.
func Waterfall(in, out, title string, maxSpans int, stdout, stderr io.Writer) error {
	if _, err := os.Stat(in); err != nil {
		return usagef("in: %v", err)
	}
	n, err := renderWaterfall(in, out, title, maxSpans, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "waterfall: %d attempts drawn in %s\n", n, out)
	return nil
}

// renderWaterfall reads the first maxSpans spans of the trace at in and
// writes the page to out; it warns on stderr about lines it left out.
func renderWaterfall(in, out, title string, maxSpans int, stderr io.Writer) (int, error) {
	spans, st, err := waterfall.ReadFile(in, maxSpans)
	if err != nil {
		return 0, err
	}
	if st.Bad > 0 {
		fmt.Fprintf(stderr, "waterfall: %d lines of %s are not spans and were skipped\n", st.Bad, in)
	}
	if st.Dropped > 0 {
		fmt.Fprintf(stderr, "waterfall: only the first %d of %d spans are drawn (--max-spans)\n", maxSpans, st.Lines-st.Bad)
	}
	f, err := os.Create(out)
	if err != nil {
		return 0, err
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	err = waterfall.Render(bw, spans, waterfall.Options{Title: title, Source: in, MaxSpans: maxSpans})
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", out, err)
	}
	return len(spans), nil
}
