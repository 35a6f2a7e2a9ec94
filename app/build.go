package app

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/sluicehq/sluice/crawl"
	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/kafka"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/stages/fetch"
	"github.com/sluicehq/sluice/stages/parse"
	"github.com/sluicehq/sluice/stages/sink"
	"github.com/sluicehq/sluice/stages/source"
	"github.com/sluicehq/sluice/waterfall"
)

// The one builder: every pipeline of the application is wired here, from
// the same parts. run, demo and bench build source → fetch → parse → sink
// (build); replay builds pages → parse → sink (buildReplay). Both get
// their Kafka client (dialer, transport, readers: TLS and SASL) from the
// one constructor kafka.New through kafkaClient, and their sink from
// buildSink.

// pipeline is a built, not yet started, batch pipeline.
type pipeline struct {
	src   *flow.Source[record.Task]
	fetch *fetch.Stage
	parse *parse.Stage
	io    pipelineIO // the source and sink, file or Kafka (io.go)
	out   *flow.Sink[record.Output]
	pool  *proxy.Pool
	obs   observers
	// crawler is the crawl's state when links are followed (file mode);
	// nil otherwise. Every output goes to its Done.
	crawler *crawl.Crawler
	robots  *crawl.Robots // nil unless crawling with robots.txt obeyed
	links   *linksWriter  // Kafka mode: where followed links go; nil otherwise
	// sitemaps are read and their URLs produced to the links topic at the
	// start of a Kafka-mode crawl; no Roots otherwise.
	sitemaps source.SitemapConfig
	log      zerolog.Logger

	mu  sync.Mutex // guards sum
	sum summary
}

// build assembles source → fetch → parse → sink, and what watches them.
func build(cfg jobConfig) (p *pipeline, err error) {
	p = &pipeline{sum: summary{Errors: map[string]int{}, Refused: map[string]int{}}, log: cfg.Log}
	if cfg.Observe.Trace != "" {
		if p.obs.trace, err = waterfall.Create(cfg.Observe.Trace, cfg.Observe.TraceMax); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				_ = p.obs.trace.Close()
			}
		}()
	}
	onDone := p.done
	if cfg.OnOutput != nil {
		onDone = func(o record.Output) { p.done(o); cfg.OnOutput(o) }
	}
	if cfg.Crawl.Follow {
		if p.crawler, err = crawl.New(cfg.Crawl, crawl.Options{Logger: cfg.Log}); err != nil {
			return nil, usageError{err}
		}
		defer func() {
			if err != nil {
				_ = p.crawler.Close()
			}
		}()
	}
	get := func(ctx context.Context, u *url.URL) (int, []byte, error) { return p.fetch.Get(ctx, u) }
	if p.io, err = buildIOCrawl(cfg, p.crawler, get, onDone, cfg.Log); err != nil {
		return nil, err
	}
	p.src, p.out = p.io.src, p.io.out
	if p.crawler != nil && cfg.Kafka.Topic != "" {
		topic := cfg.Crawl.LinksTopic
		if topic == "" {
			topic = cfg.Kafka.Topic
		}
		p.links = newLinksWriter(p.io.client, topic, p.crawler)
		p.io.close = append([]func() error{p.links.close}, p.io.close...)
		p.sitemaps = source.SitemapConfig{Roots: cfg.Crawl.Sitemaps, Fetch: get,
			MaxFiles: cfg.Crawl.SitemapMaxFiles, MaxURLs: cfg.Crawl.SitemapMaxURLs, Logger: cfg.Log}
	}
	if len(cfg.Proxies) > 0 {
		if p.pool, err = proxy.New(cfg.Proxies, runPoolOptions(cfg)...); err != nil {
			return nil, usageError{err}
		}
	}
	fc := cfg.Fetch
	if parking(cfg.Kafka) {
		fc.ParkAfter, fc.MaxParks = cfg.Kafka.ParkAfter, cfg.Kafka.MaxParks
	}
	fc.Pool = p.pool
	fc.Logger = cfg.Log
	fc.Trace = p.obs.span
	if p.crawler != nil && !cfg.Crawl.IgnoreRobots {
		p.robots = crawl.NewRobots(crawl.RobotsConfig{
			Fetch: get,
			Agent: cfg.Crawl.UserAgent, TTL: cfg.Crawl.RobotsTTL, ErrorTTL: cfg.Crawl.RobotsErrorTTL, MaxHosts: cfg.Crawl.RobotsHosts,
			OnDelay: func(host string, d time.Duration) {
				// Crawl-delay d: at most one request per d for the host.
				p.fetch.CapRate(host, float64(time.Second)/float64(d))
				cfg.Log.Info().Str("host", host).Dur("crawl_delay", d).Msg("robots.txt crawl delay: the host's rate is capped")
			},
		})
		fc.Allow = p.robots.Allow
	}
	if p.fetch, err = fetch.New(fc); err != nil {
		return nil, usageError{err}
	}
	pc := cfg.Parse
	pc.Rules = cfg.Rules
	pc.KeepPages = p.io.keepPage
	if p.parse, err = parse.NewStage(pc); err != nil {
		return nil, usageError{err}
	}
	if err := p.obs.setup(cfg, p); err != nil {
		return nil, err
	}
	return p, nil
}

// components lists the stages of the pipeline in order: source, fetch,
// parse, the web archive when there is one, sink.
func (p *pipeline) components() []flow.Component {
	c := []flow.Component{p.src, p.fetch.Flow(), p.parse.Flow()}
	if p.io.warc != nil {
		c = append(c, p.io.warc.Flow())
	}
	return append(c, p.out)
}

// warcBound is the most inputs the web archive holds: its queue, its
// batch and the hand-off after it.
func (p *pipeline) warcBound() int {
	if p.io.warc == nil {
		return 0
	}
	return p.io.warc.Flow().Stats().Capacity + p.io.warc.BatchSize() + 1
}

// kafkaClient builds the Kafka client of a run from the one client config,
// when any topic is set; nil otherwise. Run and replay both come here.
func kafkaClient(kc KafkaConfig) (*kafka.Client, error) {
	if kc.Topic == "" && kc.ResultsTopic == "" && kc.PagesTopic == "" {
		return nil, nil
	}
	c, err := kafka.New(kc.Config)
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

// sinkParts is a built sink.
type sinkParts struct {
	out       *flow.Sink[record.Output]
	keepPage  bool
	batchSize int
	kafka     *sink.Kafka
	jsonl     *sink.JSONL
}

// buildSink builds the sink of run and replay alike: Kafka when a results
// topic is set (over client's transport), else JSONL to out (pages to
// pagesPath).
func buildSink(kc KafkaConfig, client *kafka.Client, sc sink.JSONLConfig, onDone func(record.Output), log zerolog.Logger) (sinkParts, error) {
	if kc.ResultsTopic != "" {
		k, err := sink.NewKafka(sink.KafkaConfig{
			Brokers: client.Brokers, Transport: client.Transport, ResultsTopic: kc.ResultsTopic, PagesTopic: kc.PagesTopic,
			DeadTopic: kc.DeadTopic, DelayTopic: kc.DelayTopic, OnDone: onDone, Logger: log,
		})
		if err != nil {
			return sinkParts{}, usageError{err}
		}
		return sinkParts{out: k.Sink(), keepPage: kc.PagesTopic != "", batchSize: k.BatchSize(), kafka: k}, nil
	}
	sc.OnDone = onDone
	j, err := sink.NewJSONL(sc)
	if err != nil {
		return sinkParts{}, err
	}
	return sinkParts{out: j.Sink(), keepPage: sc.PagesPath != "", batchSize: j.BatchSize(), jsonl: j}, nil
}

// buildIO builds the source (Kafka when an input topic is set, else lines
// of a file or stdin) and the sink (Kafka when a results topic is set,
// else JSONL).
func buildIO(cfg jobConfig, onDone func(record.Output), log zerolog.Logger) (pipelineIO, error) {
	return buildIOCrawl(cfg, nil, nil, onDone, log)
}

// buildIOCrawl is buildIO with a crawl: with a crawler and no input
// topic, the source is the crawl's (seeds from the URLs file, then the
// frontier).
func buildIOCrawl(cfg jobConfig, crawler *crawl.Crawler, get func(context.Context, *url.URL) (int, []byte, error), onDone func(record.Output), log zerolog.Logger) (pipelineIO, error) {
	var pio pipelineIO
	kc := cfg.Kafka
	if kc.PagesTopic != "" && kc.ResultsTopic == "" {
		return pio, usagef("--kafka-pages-topic needs --kafka-results-topic")
	}
	client, err := kafkaClient(kc)
	if err != nil {
		return pio, err
	}
	if client != nil {
		pio.client = client
		pio.close = append(pio.close, client.Close)
	}
	if kc.Topic != "" {
		k, err := source.NewKafka(source.KafkaConfig{
			Brokers: client.Brokers, Topics: []string{kc.Topic}, Group: kc.Group, Dialer: client.Dialer, StartAtEnd: kc.StartAtEnd,
			Window: kc.Window, Prefetch: kc.Prefetch, CommitInterval: kc.CommitInterval, SessionTimeout: kc.SessionTimeout,
			RevokeWait: revokeWait(kc.RevokeWait), Logger: log,
		})
		if err != nil {
			return pio, usageError{err}
		}
		pio.src, pio.srcKafka = k.Source(), k
		pio.close = append([]func() error{k.Close}, pio.close...)
		if parking(kc) {
			if err := buildDelaySource(&pio, kc, client, k, log); err != nil {
				return pio, err
			}
		}
	} else if crawler != nil { // file mode: the crawl's own source
		cc := source.CrawlConfig{Crawler: crawler, Seeds: source.LinesConfig{Path: cfg.URLs, Reader: cfg.URLReader},
			// With sitemaps, start URLs come from a file only, never stdin.
			NoSeeds: len(cfg.Crawl.Sitemaps) > 0 && (cfg.URLs == "" || cfg.URLs == "-") && cfg.URLReader == nil}
		if len(cfg.Crawl.Sitemaps) > 0 {
			cc.More = func(stop context.Context, add func(record.Message) error) error {
				return source.Sitemaps(stop, source.SitemapConfig{Roots: cfg.Crawl.Sitemaps, Fetch: get,
					MaxFiles: cfg.Crawl.SitemapMaxFiles, MaxURLs: cfg.Crawl.SitemapMaxURLs, Logger: log}, add)
			}
		}
		src, err := source.Crawl(cc)
		if err != nil {
			return pio, err
		}
		pio.src = src
	} else {
		src, err := source.Lines(source.LinesConfig{Path: cfg.URLs, Reader: cfg.URLReader})
		if err != nil {
			return pio, err
		}
		pio.src = src
	}
	sc := cfg.Sink
	sc.Path, sc.Writer, sc.PagesPath = cfg.Out, cfg.OutWriter, cfg.Pages
	if !parking(kc) {
		kc.DelayTopic = "" // nothing parks: the sink needs no delay topic
	}
	sp, err := buildSink(kc, client, sc, onDone, log)
	if err != nil {
		return pio, err
	}
	pio.out, pio.keepPage, pio.batchSize, pio.sinkKafka, pio.sinkJSONL = sp.out, sp.keepPage, sp.batchSize, sp.kafka, sp.jsonl
	if cfg.WARC.Dir != "" {
		// The archive sits between parse and sink: it passes an output on
		// once its WARC records are fsync'd, and the sink acknowledges it
		// after its own durable write.
		wc := cfg.WARC
		if pio.warc, err = sink.NewWARC(wc); err != nil {
			return pio, usageError{err}
		}
		pio.keepPage = true
	}
	return pio, nil
}

// replayPipeline is a built replay: pages → parse → sink.
type replayPipeline struct {
	src     *flow.Source[replayItem]
	reparse *flow.Map[replayItem, record.Output]
	out     *flow.Sink[record.Output]
	client  *kafka.Client // nil when reading a file and writing JSONL
	closers []func() error
}

// buildReplay wires a replay with the same Kafka client and sink builder
// as a run (io.go).
func buildReplay(cfg replayConfig, count func(record.Output)) (*replayPipeline, error) {
	rp := &replayPipeline{}
	kc := cfg.Kafka
	client, err := kafkaClient(kc)
	if err != nil {
		return nil, err
	}
	if client != nil {
		rp.client = client
		rp.closers = append(rp.closers, client.Close)
	}
	switch {
	case len(cfg.WARCFiles) > 0:
		rp.src = pagesFromWARC(cfg.WARCFiles)
	case cfg.PagesFile != "":
		rp.src = pagesFromFile(cfg.PagesFile)
	default:
		rp.src = pagesFromTopic(cfg, client)
	}
	st, err := parse.NewStage(parse.Config{Rules: cfg.Rules})
	if err != nil {
		return nil, err
	}
	rp.reparse = flow.NewMap("parse", 2*runtime.GOMAXPROCS(0), runtime.GOMAXPROCS(0), func(it replayItem) record.Output {
		if it.Dead != nil {
			return record.Output{Dead: it.Dead, Ack: it.Ack}
		}
		return record.Output{Result: st.Reparse(it.Page), Ack: it.Ack}
	})
	kc.PagesTopic, kc.DelayTopic = "", "" // replay writes results (and dead letters), not pages; it never parks
	sp, err := buildSink(kc, client, sink.JSONLConfig{Path: cfg.Out, Writer: cfg.OutWriter}, count, cfg.Log)
	if err != nil {
		return nil, err
	}
	rp.out = sp.out
	return rp, nil
}

// Embedded is what a Go program that runs the pipeline itself (package
// sluice) gives besides the config tree: its inputs, proxies, rules and
// outputs as values instead of files.
type Embedded struct {
	URLs     io.Reader    // URL lines: bare URLs or JSON URL messages
	Proxies  []string     // proxy URLs, as lines of a proxy file; empty: direct
	Rules    *parse.Rules // nil: the config tree's rules file, else the default rules
	Out      io.Writer    // results as JSON lines; nil: discarded
	Log      io.Writer    // log lines; nil: discarded
	OnOutput func(record.Output)
}

// Totals are the counts of a finished embedded run.
type Totals struct {
	Read    uint64
	Written int
	OK      int
	Errors  map[string]int // by error class; "dead_letter" for input that was not understood
}

// RunEmbedded runs one batch job, as Run does, with the inputs and outputs
// of e: the same builder, stages and validation. It installs no signal
// handler: when ctx ends, the run stops reading and drains for c's
// drain_timeout, then aborts what is still in flight.
func RunEmbedded(ctx context.Context, c Config, e Embedded) (Totals, error) {
	if err := c.validate(map[string]bool{}); err != nil {
		return Totals{}, usageError{err}
	}
	logw := e.Log
	if logw == nil {
		logw = io.Discard
	}
	out := e.Out
	if out == nil {
		out = io.Discard
	}
	c.URLs, c.Out, c.Proxies = "-", "-", ""
	rulesFile := c.Rules
	if e.Rules != nil {
		c.Rules = ""
	}
	cfg, err := newJob(c, out, logw)
	if err != nil {
		return Totals{}, err
	}
	if e.Rules != nil {
		cfg.Rules, cfg.RulesFile = e.Rules, rulesFile
	}
	cfg.URLReader = e.URLs
	if cfg.URLReader == nil {
		cfg.URLReader = strings.NewReader("")
	}
	cfg.OnOutput = e.OnOutput
	if len(e.Proxies) > 0 {
		if cfg.Proxies, err = cfg.ProxyList.Parse(strings.NewReader(strings.Join(e.Proxies, "\n"))); err != nil {
			return Totals{}, usageError{err}
		}
	}
	if err := checkDirect(cfg); err != nil {
		return Totals{}, err
	}
	ops, err := startOps(&cfg)
	if err != nil {
		return Totals{}, err
	}
	defer ops.close()
	if err := checkFDs(cfg); err != nil {
		return Totals{}, err
	}
	p, err := build(cfg)
	if err != nil {
		return Totals{}, err
	}
	hard, stop := drainContext(ctx, cfg.Drain)
	defer stop()
	sum, err := p.run(hard, ctx)
	t := Totals{Read: sum.Read, Written: sum.Written, OK: sum.OK, Errors: sum.Errors}
	if err != nil {
		return t, fmt.Errorf("pipeline: %w", err)
	}
	return t, nil
}

// drainContext returns the hard context of a run whose soft context is
// soft: it ends drain after soft does. stop releases it.
func drainContext(soft context.Context, drain time.Duration) (hard context.Context, stop func()) {
	hard, cancel := context.WithCancel(context.WithoutCancel(soft))
	release := context.AfterFunc(soft, func() {
		t := time.NewTimer(drain)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-hard.Done():
		}
	})
	return hard, func() { release(); cancel() }
}

// done is the sink's callback for every durable output: the summary and
// the observers, then the crawl (the page's links join the frontier; it
// never blocks, see docs/crawl.md).
func (p *pipeline) done(o record.Output) {
	p.count(o)
	var err error
	switch {
	case p.links != nil:
		err = p.links.write(o)
	case p.crawler != nil:
		err = p.crawler.Done(o)
	}
	if err != nil {
		p.log.Error().Err(err).Msg("crawl: links of a page lost")
	}
}

// produceSitemaps starts reading the sitemaps of a Kafka-mode crawl and
// producing their URLs to the links topic, alongside the run; the
// function it returns stops it (if still reading) and waits for it.
// Without sitemaps in Kafka mode both do nothing.
func (p *pipeline) produceSitemaps(soft context.Context) func() {
	if p.links == nil || len(p.sitemaps.Roots) == 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(soft)
	done := make(chan struct{})
	go func() { // owner: the run; ends when the sitemaps are read or the returned function cancels it
		defer close(done)
		p.links.sitemaps(ctx, p.sitemaps)
	}()
	return func() {
		cancel()
		<-done
	}
}

// saveCrawl starts the crawl's periodic snapshots; the function it returns
// stops them and saves the final state. Without a crawl both do nothing.
func (p *pipeline) saveCrawl(hard context.Context) func() error {
	if p.crawler == nil {
		return func() error { return nil }
	}
	ctx, cancel := context.WithCancel(hard)
	done := make(chan struct{})
	go func() { // owner: the run; ends when the returned function cancels it
		defer close(done)
		p.crawler.Run(ctx)
	}()
	return func() error {
		cancel()
		<-done
		return p.crawler.Close()
	}
}

// revokeWait maps kafka.revoke_wait to the source's setting, whose zero
// means its default: 0 in the config tree is no wait.
func revokeWait(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
