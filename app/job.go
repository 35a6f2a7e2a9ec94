package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/sluicehq/sluice/crawl"
	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/governor"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/stages/fetch"
	"github.com/sluicehq/sluice/stages/parse"
	"github.com/sluicehq/sluice/stages/sink"
)

// jobConfig is everything one batch run needs, filled in one place from
// flags (see runFlags) and validated by the stages' own constructors.
type jobConfig struct {
	URLs        string    // input file, "-" for stdin
	URLReader   io.Reader // replaces stdin (tests)
	Out         string    // results file, "-" for stdout
	OutWriter   io.Writer // replaces stdout (tests)
	Pages       string    // optional pages file
	ProxiesFile string    // proxy list file, read into Proxies
	PoolSize    int       // pool size for `plan` when there is no proxy file
	Proxies     []*proxy.Proxy
	RulesFile   string // rules file, read into Rules
	Rules       *parse.Rules
	Fetch       fetch.Config
	Parse       parse.Config
	Sink        sink.JSONLConfig
	WARC        sink.WARCConfig // the web archive; Dir "" means none
	Kafka       KafkaConfig     // Kafka input and output (io.go); zero: none
	Crawl       crawl.Config    // following links (build.go); Follow false: off
	Drain       time.Duration
	Log         zerolog.Logger
	Observe     observeConfig
	// PoolOptions configure the proxy pool (model, strategies, sessions,
	// partitions, health); see proxyFlags.
	PoolOptions []proxy.Option
	ProxyList   proxy.ListOptions // how the proxies file is read (noproxy.go)
	Direct      bool              // --direct: no proxies, on purpose
	// OnOutput, when set, is called with every output once it is written
	// (RunEmbedded).
	OnOutput func(record.Output)
}

// summary is what a finished run reports.
type summary struct {
	Read     uint64           `json:"read"`
	Written  int              `json:"written"`
	OK       int              `json:"ok"`
	Errors   map[string]int   `json:"errors"`
	Parked   int              `json:"parked,omitempty"` // written to the delay topic (docs/kafka.md)
	Dropped  uint64           `json:"dropped"`
	Disowned uint64           `json:"disowned,omitempty"` // revoked in a rebalance, unstarted: read again by the next owner
	Elapsed  time.Duration    `json:"elapsed"`
	PerProxy map[string]int64 `json:"requests_per_proxy"`
	// Unhealthy lists proxies quarantined or on probation at the end.
	Unhealthy []string `json:"unhealthy_proxies"`
	// Refused counts the inputs the URL policy refused, by the flag
	// that would allow them.
	Refused  map[string]int       `json:"refused,omitempty"`
	Stages   []stageSummary       `json:"-"`
	Spans    int64                `json:"spans,omitempty"` // written to the trace
	Governor governor.Stats       `json:"-"`
	Crawl    *crawl.Stats         `json:"crawl,omitempty"`
	Pools    []governor.PoolStats `json:"-"`

	// ProxyNotes says, per proxy that failed, what it cost (noproxy.go).
	ProxyNotes []string `json:"proxy_notes,omitempty"`
}

type stageSummary struct {
	Name      string
	Processed uint64
	Dropped   uint64
}

func (s summary) errorCount() int {
	n := 0
	for _, v := range s.Errors {
		n += v
	}
	return n
}

func (s summary) print(w io.Writer) {
	secs := s.Elapsed.Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(s.Written) / secs
	}
	fmt.Fprintf(w, "pages: %d read, %d written, %d ok, %d errors, %.1f pages/s over %s\n",
		s.Read, s.Written, s.OK, s.errorCount(), rate, s.Elapsed.Round(time.Millisecond))
	if len(s.Errors) > 0 {
		fmt.Fprintf(w, "errors by class:")
		for _, k := range sortedKeys(s.Errors) {
			fmt.Fprintf(w, " %s=%d", k, s.Errors[k])
		}
		fmt.Fprintln(w)
	}
	if s.Parked > 0 {
		fmt.Fprintf(w, "parked on the delay topic: %d\n", s.Parked)
	}
	if n := s.Errors[string(failure.Policy)]; n > 0 {
		fmt.Fprintf(w, "refused by the URL policy: %d of %d inputs; %s\n", n, s.Written, s.refusalHints())
	}
	if s.Dropped > 0 {
		fmt.Fprintf(w, "unfinished at abort (not written, not acknowledged): %d\n", s.Dropped)
	}
	if s.Disowned > 0 {
		fmt.Fprintf(w, "given up in rebalances, unstarted (the partitions' next owners read them): %d\n", s.Disowned)
	}
	for _, d := range s.Governor.Domains {
		fmt.Fprintf(w, "governor: %s at %.0f%% (%s/s, concurrency %d), %d attempts: %d ok, %d × 429, %d × 503, %d failed; %d raises, %d cuts, %d pauses\n",
			d.Domain, d.Level*100, rateString(d.Rate), d.Concurrency, d.Attempts, d.OK, d.Status429, d.Status503, d.Failed, d.Raises, d.Cuts, d.Pauses)
	}
	if len(s.Pools) > 0 {
		var size, maxBusy, dials int64
		var util float64
		for _, p := range s.Pools {
			size += int64(p.Size)
			maxBusy = max(maxBusy, p.MaxBusy)
			dials += p.Dials
			util += p.Utilisation()
		}
		fmt.Fprintf(w, "connection pools: %d (%d connections in all), %d dials; per pool at most %d busy; mean utilisation %.0f%%\n",
			len(s.Pools), size, dials, maxBusy, 100*util/float64(len(s.Pools)))
	}
	if s.Governor.Spooled > 0 {
		fmt.Fprintf(w, "bodies spooled to disk: %d; body budget peak %d of %d bytes\n", s.Governor.Spooled, s.Governor.BodyBytesPeak, s.Governor.BodyBudget)
	}
	if len(s.PerProxy) > 0 {
		fmt.Fprintf(w, "requests per proxy:")
		for _, k := range sortedKeys(s.PerProxy) {
			fmt.Fprintf(w, " %s=%d", k, s.PerProxy[k])
		}
		fmt.Fprintln(w)
	}
	if len(s.Unhealthy) > 0 {
		fmt.Fprintf(w, "proxies not healthy at the end: %s\n", strings.Join(s.Unhealthy, " "))
	}
	if len(s.ProxyNotes) > 0 {
		fmt.Fprintf(w, "failing proxies: %s\n", strings.Join(s.ProxyNotes, "; "))
	}
	if c := s.Crawl; c != nil {
		fmt.Fprintf(w, "crawl: %d URLs taken, %d duplicates, %d out of scope, %d past max_depth, %d past max_pages, %d spilled to disk, %d still queued; seen-set %d bytes\n",
			c.Taken, c.Duplicates, c.OutOfScope, c.TooDeep, c.OverLimit, c.Spilled, c.Queued, c.SeenBytes)
	}
}

// refusalHints says, per reason, how many inputs were refused and which
// flag would allow them.
func (s summary) refusalHints() string {
	var parts []string
	for _, k := range sortedKeys(s.Refused) {
		parts = append(parts, fmt.Sprintf("%d would need %s", s.Refused[k], k))
	}
	return strings.Join(parts, ", ")
}

// refusalFlag names the flag that would allow what a policy error refused.
func refusalFlag(msg string) string {
	switch {
	case strings.Contains(msg, "loopback"):
		return "--allow-loopback"
	case strings.Contains(msg, "denied net"):
		return "a narrower --deny-nets"
	case strings.Contains(msg, "port"):
		return "--allow-ports (or a narrower --deny-ports)"
	case strings.Contains(msg, "is denied"):
		return "a narrower --deny-hosts"
	case strings.Contains(msg, "not allowed"):
		return "--allow-hosts"
	default:
		return "--allow-nets CIDR"
	}
}

func rateString(r float64) string {
	if math.IsInf(r, 1) {
		return "unlimited"
	}
	return fmt.Sprintf("%.1f", r)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (p *pipeline) count(o record.Output) {
	p.obs.output(o)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sum.Written++
	switch {
	case o.Result != nil && o.Result.Error == nil:
		p.sum.OK++
	case o.Result != nil:
		p.sum.Errors[o.Result.Error.Class]++
		if o.Result.Error.Class == string(failure.Policy) {
			p.sum.Refused[refusalFlag(o.Result.Error.Message)]++
		}
	case o.Dead != nil:
		p.sum.Errors["dead_letter"]++
	case o.Delay != nil:
		p.sum.Parked++
	}
}

func (p *pipeline) stats() []*flow.Stats {
	st := []*flow.Stats{p.src.Stats(), p.fetch.Flow().Stats(), p.parse.Flow().Stats()}
	if p.io.warc != nil {
		st = append(st, p.io.warc.Flow().Stats())
	}
	return append(st, p.out.Stats())
}

// run runs the pipeline until its input ends (or soft ends and it has
// drained, or hard ends) and returns the summary.
func (p *pipeline) run(hard, soft context.Context) (summary, error) {
	start := time.Now()
	stopObs := p.obs.start(p)
	var archive []flow.Processor[record.Output, record.Output]
	if p.io.warc != nil {
		archive = append(archive, p.io.warc.Flow())
	}
	stopSaving := p.saveCrawl(hard)
	stopSitemaps := p.produceSitemaps(soft)
	err := flow.Scrape(hard, soft, p.src, p.fetch.Flow(), p.parse.Flow(), p.out, archive...)
	stopSitemaps()
	cerr := errors.Join(stopSaving(), p.fetch.Close(), closeAll(p.io.close))
	spans, oerr := stopObs()
	err = errors.Join(err, cerr, oerr)
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.sum
	s.Elapsed = time.Since(start)
	s.Read = p.src.Stats().Processed()
	for _, st := range p.stats() {
		s.Dropped += st.Dropped() - st.Disowned()
		s.Disowned += st.Disowned()
		s.Stages = append(s.Stages, stageSummary{Name: st.Name, Processed: st.Processed(), Dropped: st.Dropped()})
	}
	if p.pool != nil {
		s.PerProxy = p.pool.Uses()
		s.ProxyNotes = proxyNotes(p.pool)
		for _, ps := range p.pool.Stats().Proxies {
			if ps.State != proxy.Healthy {
				s.Unhealthy = append(s.Unhealthy, ps.ID+"="+string(ps.State))
			}
		}
	}
	s.Spans = spans
	if p.crawler != nil {
		cs := p.crawler.Stats()
		s.Crawl = &cs
	}
	s.Governor = p.fetch.Governor()
	s.Pools = p.fetch.Pools()
	return s, err
}

// inFlightBound is the most inputs that can have been read and not yet
// written: every queue full, the fetch governor's pending tasks, every
// worker holding one, every hand-off
// between stages holding one (three connections, and the feeder and
// forwarder around go-streams' Map), and a full batch in the sink.
func (p *pipeline) inFlightBound() int {
	const handoffs = 5
	return p.fetch.Flow().Stats().Capacity + p.fetch.Holds() +
		p.parse.Flow().Stats().Capacity + p.parse.Workers() +
		p.out.Stats().Capacity + p.io.batchSize + handoffs + p.warcBound()
}
