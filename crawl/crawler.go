package crawl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/record"
)

// StateFile is the name of the crawl state in Config.StateDir.
const StateFile = "crawl.state"

// Options are what a Crawler takes besides its Config.
type Options struct {
	Logger zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// SpillDir is where the frontier spills (empty: StateDir, or the
	// system's temporary directory without one).
	SpillDir string
}

// Crawler is the state of one crawl: the seen-set, the frontier, the
// URLs handed out and not yet done, and the page counts per host. A
// file-mode crawl takes its URLs from Next and gives each output back to
// Done, which queues the page's links; it has finished when the frontier
// is empty and nothing is in flight.
//
// Done never blocks on the frontier (it spills to disk), so the sink that
// calls it never waits for the source: the feedback cycle has no edge
// that can block, and a bounded pipeline cannot deadlock on it.
//
// Safe for concurrent use.
type Crawler struct {
	cfg  Config
	opt  Options
	norm Normalizer
	sc   *scopes

	mu       sync.Mutex // guards everything below
	seen     *Seen
	front    *Frontier
	pending  map[string]record.Message // handed out by Next, not yet Done
	inFlight int                       // pending, and tasks counted with Hold
	pages    map[string]int            // URLs taken per host this run
	wake     chan struct{}             // signalled when Done changes what Next may see
	stats    Stats
}

// Stats are a crawl's counters.
type Stats struct {
	Taken      int // URLs queued (seeds and links)
	Duplicates int // URLs dropped as already seen
	OutOfScope int // links dropped by the rules
	TooDeep    int // links dropped past max_depth
	OverLimit  int // URLs dropped past max_pages for their host
	Spilled    int // URLs written to the spill file
	Queued     int // URLs queued now
	InFlight   int // URLs handed out and not yet done
	SeenBytes  int64
}

// New builds a crawler, loading the state in cfg.StateDir when there is
// one. It starts nothing.
func New(cfg Config, opt Options) (*Crawler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sc, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.SpillDir == "" {
		opt.SpillDir = cfg.StateDir
	}
	strip := cfg.StripParams
	if len(strip) == 1 && strip[0] == "" {
		strip = []string{}
	}
	c := &Crawler{cfg: cfg, opt: opt, norm: Normalizer{StripParams: strip}, sc: sc,
		seen:    NewSeen(cfg.Expected, cfg.FalsePositive, cfg.RecrawlAfter, opt.Now()),
		front:   NewFrontier(cfg.Queue, opt.SpillDir),
		pending: map[string]record.Message{}, pages: map[string]int{}, wake: make(chan struct{}, 1)}
	if cfg.StateDir != "" {
		if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
			return nil, fmt.Errorf("crawl state: %w", err)
		}
		if err := c.load(); err != nil {
			_ = c.front.Close()
			return nil, err
		}
	}
	return c, nil
}

// Normalizer returns the crawl's normaliser.
func (c *Crawler) Normalizer() Normalizer { return c.norm }

// Seed queues a start URL at depth 0 unless it was seen; the rules'
// scope does not apply to it (it defines the scope of its links). It
// returns whether the URL was taken; a URL that does not normalise is an
// error of class bad_input.
func (c *Crawler) Seed(m record.Message) (bool, error) {
	norm, u, err := c.norm.Normalize(m.URL)
	if err != nil {
		return false, failure.Errorf(failure.BadInput, "URL %q: %v", m.URL, err)
	}
	m.URL, m.Depth, m.Parent = norm, 0, ""
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.admitLocked(m, u)
}

// Admit takes a start URL for a crawl whose frontier is a Kafka topic
// (a sitemap's URL, produced to the links topic): like Seed it normalises
// it, sets depth 0 and applies max_pages and the seen-set (marking it
// seen), but queues nothing. It returns the message to produce and
// whether it is new. Safe for concurrent use.
func (c *Crawler) Admit(m record.Message) (record.Message, bool, error) {
	norm, u, err := c.norm.Normalize(m.URL)
	if err != nil {
		return m, false, failure.Errorf(failure.BadInput, "URL %q: %v", m.URL, err)
	}
	m.URL, m.Depth, m.Parent = norm, 0, ""
	c.mu.Lock()
	defer c.mu.Unlock()
	sc := c.sc.forHost(u.Hostname())
	if sc.maxPages > 0 && c.pages[u.Host] >= sc.maxPages {
		c.stats.OverLimit++
		return m, false, nil
	}
	if !c.seen.Add(m.URL, c.opt.Now()) {
		c.stats.Duplicates++
		return m, false, nil
	}
	c.pages[u.Host]++
	c.stats.Taken++
	return m, true, nil
}

// admitLocked queues m unless its host is over max_pages or it was seen.
func (c *Crawler) admitLocked(m record.Message, u *url.URL) (bool, error) {
	sc := c.sc.forHost(u.Hostname())
	if sc.maxPages > 0 && c.pages[u.Host] >= sc.maxPages {
		c.stats.OverLimit++
		return false, nil
	}
	if !c.seen.Add(m.URL, c.opt.Now()) {
		c.stats.Duplicates++
		return false, nil
	}
	c.pages[u.Host]++
	c.stats.Taken++
	if err := c.front.Push(m); err != nil {
		return false, err
	}
	c.signalLocked()
	return true, nil
}

func (c *Crawler) signalLocked() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Hold counts one task in flight that did not come from Next (a start
// line that is not a URL, passed on as an error result); its output's
// Done releases it.
func (c *Crawler) Hold() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inFlight++
}

// Next blocks until a URL is queued, and hands it out (counted in flight
// until its output comes to Done); ok is false once the crawl has
// finished (nothing queued, nothing in flight) or ctx ended.
func (c *Crawler) Next(ctx context.Context) (m record.Message, ok bool, err error) {
	for {
		if ctx.Err() != nil {
			return m, false, nil
		}
		c.mu.Lock()
		m, ok, err = c.front.Pop()
		if err != nil {
			c.mu.Unlock()
			return m, false, err
		}
		if ok {
			c.pending[m.URL] = m
			c.inFlight++
			c.mu.Unlock()
			return m, true, nil
		}
		finished := c.inFlight == 0
		c.mu.Unlock()
		if finished {
			return m, false, nil
		}
		select {
		case <-c.wake:
		case <-ctx.Done():
			return m, false, nil
		}
	}
}

// TryNext hands out the next queued URL, as Next does, without waiting;
// ok is false when nothing is queued.
func (c *Crawler) TryNext() (m record.Message, ok bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok, err = c.front.Pop()
	if ok {
		c.pending[m.URL] = m
		c.inFlight++
	}
	return m, ok, err
}

// Done takes the output of a task handed out by Next (or counted with
// Hold): it queues the links of the page, as the rules allow, and ends
// the task's time in flight. It never blocks on the frontier: past
// cfg.Queue, links spill to disk.
func (c *Crawler) Done(o record.Output) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.signalLocked()
	c.inFlight--
	if o.Result == nil {
		return nil
	}
	m, ok := c.pending[o.Result.URL]
	if !ok {
		return nil
	}
	delete(c.pending, o.Result.URL)
	if !c.cfg.Follow || o.Result.Error != nil || len(o.Result.Links) == 0 {
		return nil
	}
	var errs []error
	for _, l := range c.followLocked(m, o.Result.Links) {
		if err := c.front.Push(l); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Discovered returns the links of a page to follow, as URL messages, for
// a crawl whose frontier is a Kafka topic: the same rules as Done, the
// page's URL and its links marked seen. Nothing is queued and nothing is
// in flight. Safe for concurrent use.
func (c *Crawler) Discovered(o record.Output) []record.Message {
	if o.Result == nil || o.Result.Error != nil || !c.cfg.Follow {
		return nil
	}
	r := o.Result
	norm, _, err := c.norm.Normalize(r.URL)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen.Add(norm, c.opt.Now()) // a start URL from the topic is seen too
	return c.followLocked(record.Message{URL: norm, Depth: r.Depth, Meta: r.Meta}, r.Links)
}

// followLocked returns the links of the page m to follow: normalised, in
// scope, not too deep, under max_pages, new (and now marked seen).
func (c *Crawler) followLocked(m record.Message, links []string) []record.Message {
	parent, err := url.Parse(m.URL)
	if err != nil {
		return nil
	}
	sc := c.sc.forHost(parent.Hostname())
	if m.Depth >= sc.maxDepth {
		c.stats.TooDeep += len(links)
		return nil
	}
	var out []record.Message
	for _, l := range links {
		norm, u, err := c.norm.Normalize(l)
		if err != nil || !sc.follows(parent, u, norm) {
			c.stats.OutOfScope++
			continue
		}
		if sc.maxPages > 0 && c.pages[u.Host] >= sc.maxPages {
			c.stats.OverLimit++
			continue
		}
		if !c.seen.Add(norm, c.opt.Now()) {
			c.stats.Duplicates++
			continue
		}
		c.pages[u.Host]++
		c.stats.Taken++
		out = append(out, record.Message{URL: norm, Depth: m.Depth + 1, Parent: m.URL, Meta: m.Meta})
	}
	return out
}

// Stats returns the crawl's counters.
func (c *Crawler) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Spilled, s.Queued, s.InFlight = c.front.Spilled(), c.front.Len(), c.inFlight
	s.SeenBytes = c.seen.SizeBytes()
	return s
}

// Run saves the state every cfg.SnapshotInterval until ctx ends. It
// blocks; without a state dir or an interval it returns at once.
func (c *Crawler) Run(ctx context.Context) {
	if c.cfg.StateDir == "" || c.cfg.SnapshotInterval <= 0 {
		return
	}
	t := time.NewTicker(c.cfg.SnapshotInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := c.Save(); err != nil {
				c.opt.Logger.Warn().Err(err).Msg("crawl state not saved")
			}
		}
	}
}

// Close saves the state (when there is a state dir) and removes the
// spill file. Call it once the pipeline has finished.
func (c *Crawler) Close() error {
	var err error
	if c.cfg.StateDir != "" {
		err = c.Save()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return errors.Join(err, c.front.Close())
}

// Save writes the state atomically (a temporary file, fsync, rename,
// fsync of the directory): the seen-set, then every URL not yet done,
// those in flight first, then the frontier's. A crawl restarted from it
// fetches what was in flight again (at least once) and nothing that was
// done. The crawler is locked while it writes.
func (c *Crawler) Save() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	dir := c.cfg.StateDir
	tmp, err := os.CreateTemp(dir, StateFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("crawl state: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing to remove
	w := bufio.NewWriterSize(tmp, 1<<20)
	err = c.seen.writeTo(w)
	enc := json.NewEncoder(w)
	for _, m := range c.pending {
		if err == nil {
			err = enc.Encode(m)
		}
	}
	if err == nil {
		err = c.front.Each(func(m record.Message) error { return enc.Encode(m) })
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	err = errors.Join(err, tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, StateFile))
	}
	if err == nil {
		if d, derr := os.Open(dir); derr == nil {
			err = d.Sync()
			_ = d.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("crawl state: %w", err)
	}
	return nil
}

// load reads the state file, if any: the seen-set, and the URLs not yet
// done back into the frontier.
func (c *Crawler) load() error {
	f, err := os.Open(filepath.Join(c.cfg.StateDir, StateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("crawl state: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	if err := c.seen.readFrom(r); err != nil {
		return fmt.Errorf("crawl state %s: %w", f.Name(), err)
	}
	dec := json.NewDecoder(r)
	n := 0
	for dec.More() {
		var m record.Message
		if err := dec.Decode(&m); err != nil {
			return fmt.Errorf("crawl state %s: %w", f.Name(), err)
		}
		if u, err := url.Parse(m.URL); err == nil {
			c.pages[u.Host]++
		}
		if err := c.front.Push(m); err != nil {
			return err
		}
		n++
	}
	c.opt.Logger.Info().Str("state", f.Name()).Int("queued", n).Int64("seen_bytes", c.seen.SizeBytes()).Msg("crawl state loaded")
	return nil
}
