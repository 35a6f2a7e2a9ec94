package crawl

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/temoto/robotstxt"

	"github.com/sluicehq/sluice/failure"
)

// RobotsFetcher fetches u (a /robots.txt URL) and returns its status and
// body. err is nil with a status for any answer (a 404, a 503); it is set
// when no answer came (the host is unreachable, the attempt timed out).
// The fetch stage's Get is one: it goes through the proxy pool, the
// transports and the bounds of every fetch.
type RobotsFetcher func(ctx context.Context, u *url.URL) (status int, body []byte, err error)

// RobotsConfig configures Robots.
type RobotsConfig struct {
	Fetch RobotsFetcher
	// Agent is the user agent whose group applies. "" means "sluice".
	Agent string
	// TTL is how long a robots.txt is kept. 0 means 24 h.
	TTL time.Duration
	// ErrorTTL is how long a host whose robots.txt answered 5xx (or 429),
	// or could not be fetched, is refused before it is asked again. 0
	// means 10 min.
	ErrorTTL time.Duration
	// MaxHosts bounds the cache; the least recently used host goes first.
	// 0 means 10000.
	MaxHosts int
	// OnDelay, when set, is called with a host's Crawl-delay when its
	// robots.txt names one for the agent.
	OnDelay func(host string, delay time.Duration)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Robots answers whether a URL may be fetched, from the host's robots.txt,
// fetched once per TTL and kept in a bounded cache. The convention: a 2xx
// is obeyed; a 4xx (no robots.txt) allows everything; a 5xx, a 429 or no
// answer refuses the host for ErrorTTL, after which robots.txt is asked
// again. Safe for concurrent use; two callers that miss the cache for one
// host at once may both fetch it.
type Robots struct {
	cfg RobotsConfig

	mu      sync.Mutex // guards cache, lru and fetches
	cache   map[string]*list.Element
	lru     *list.List // of *robotsEntry, most recent first
	fetches int
}

type robotsEntry struct {
	host    string // scheme://host:port
	data    *robotstxt.Group
	refuse  error // set while the host is refused for an error
	expires time.Time
}

// NewRobots returns an empty robots.txt cache.
func NewRobots(cfg RobotsConfig) *Robots {
	if cfg.Agent == "" {
		cfg.Agent = "sluice"
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 24 * time.Hour
	}
	if cfg.ErrorTTL <= 0 {
		cfg.ErrorTTL = 10 * time.Minute
	}
	if cfg.MaxHosts <= 0 {
		cfg.MaxHosts = 10000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Robots{cfg: cfg, cache: map[string]*list.Element{}, lru: list.New()}
}

// Fetches is the number of robots.txt fetches made.
func (r *Robots) Fetches() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fetches
}

// Allow returns nil when u may be fetched, and a *failure.Error of class
// failure.Robots (permanent) when robots.txt disallows it or the host is
// refused for a robots.txt error. It blocks while it fetches robots.txt.
func (r *Robots) Allow(ctx context.Context, u *url.URL) error {
	if u.Path == "/robots.txt" {
		return nil
	}
	key := u.Scheme + "://" + u.Host
	now := r.cfg.Now()
	r.mu.Lock()
	e := r.lookupLocked(key, now)
	r.mu.Unlock()
	if e == nil {
		e = r.fetch(ctx, u, key)
		if e == nil { // ctx ended
			return failure.New(failure.Canceled, failure.ErrPermanent, context.Cause(ctx))
		}
	}
	if e.refuse != nil {
		return &failure.Error{Class: failure.Robots, Kind: failure.ErrPermanent, URL: u.Redacted(), Err: e.refuse}
	}
	path := u.EscapedPath()
	if u.RawQuery != "" {
		path += "?" + u.RawQuery
	}
	if e.data != nil && !e.data.Test(path) {
		return &failure.Error{Class: failure.Robots, Kind: failure.ErrPermanent, URL: u.Redacted(), Err: errors.New("disallowed by robots.txt")}
	}
	return nil
}

func (r *Robots) lookupLocked(key string, now time.Time) *robotsEntry {
	el, ok := r.cache[key]
	if !ok {
		return nil
	}
	e := el.Value.(*robotsEntry)
	if !now.Before(e.expires) {
		r.lru.Remove(el)
		delete(r.cache, key)
		return nil
	}
	r.lru.MoveToFront(el)
	return e
}

// fetch gets key's robots.txt and caches what it says; nil when ctx ended
// first.
func (r *Robots) fetch(ctx context.Context, u *url.URL, key string) *robotsEntry {
	ru := &url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/robots.txt"}
	status, body, err := r.cfg.Fetch(ctx, ru)
	if ctx.Err() != nil {
		return nil
	}
	now := r.cfg.Now()
	e := &robotsEntry{host: key, expires: now.Add(r.cfg.TTL)}
	switch {
	case err != nil && status == 0:
		e.refuse, e.expires = fmt.Errorf("robots.txt could not be fetched: %w", err), now.Add(r.cfg.ErrorTTL)
	case status >= 500 || status == 429:
		e.refuse, e.expires = fmt.Errorf("robots.txt answered %d", status), now.Add(r.cfg.ErrorTTL)
	case status >= 400:
		// No robots.txt: everything is allowed.
	case status >= 200 && status < 300:
		data, perr := robotstxt.FromBytes(body)
		if perr == nil {
			e.data = data.FindGroup(r.cfg.Agent)
			if d := e.data.CrawlDelay; d > 0 && r.cfg.OnDelay != nil {
				r.cfg.OnDelay(u.Hostname(), d)
			}
		}
		// An unparsable robots.txt allows everything, as a missing one.
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fetches++
	if el, ok := r.cache[key]; ok {
		r.lru.Remove(el)
	}
	r.cache[key] = r.lru.PushFront(e)
	for r.lru.Len() > r.cfg.MaxHosts {
		old := r.lru.Back()
		r.lru.Remove(old)
		delete(r.cache, old.Value.(*robotsEntry).host)
	}
	return e
}
