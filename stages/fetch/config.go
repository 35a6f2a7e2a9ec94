// Package fetch is sluice's fetch stage: it takes Tasks, fetches each
// through a proxy from the pool under the governor, retries what may
// succeed on another proxy, and passes on a record.Fetched for every Task
// it took.
//
// The stage owns the workers and the attempt: transports per proxy,
// request shaping, bounds, spooling and traces. When an attempt may start
// is package governor's decision: per domain a queue, a token bucket, a
// token bucket per (proxy, domain) pair, an adaptive controller and a
// concurrency limit, under a global semaphore whose size follows the
// domains' limits, so no worker ever waits for a token (see Config.Governor
// and Stage.Governor). A URL the policy (package guard) refuses ends before
// it reaches the governor. Large bodies spool to disk under the governor's
// memory budget; host names resolve through a TTL cache (DNSCache).
package fetch

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/rs/zerolog"

	"github.com/sluicehq/sluice/dnscache"
	"github.com/sluicehq/sluice/governor"
	"github.com/sluicehq/sluice/guard"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
)

// Config configures the fetch stage. The zero value of every field is a
// documented, usable default.
type Config struct {
	// Concurrency is the global limit on requests in flight. 0 means 32.
	Concurrency int
	// QueueSize is the capacity of the stage's input queue. 0 means
	// 2 × Concurrency.
	QueueSize int
	// DomainRate is the sustained request rate allowed per domain, in
	// requests per second, for domains that no entry of Domains matches.
	// 0 means 10; a negative value means unlimited.
	DomainRate float64
	// DomainBurst is the token bucket size per domain. 0 means 1, so that
	// requests are evenly spaced.
	DomainBurst int
	// Domains configures the governor per site: the first entry whose
	// pattern matches a URL's host applies (see governor.Domain).
	// Unmatched hosts get DomainRate.
	Domains []governor.Domain
	// Adaptive tunes the per-domain adaptive controller; the zero value is
	// the documented behaviour (see governor.Adaptive).
	Adaptive governor.Adaptive
	// Pending bounds the tasks the governor holds, queued per domain or
	// waiting out a retry backoff. While it is full the stage stops reading
	// its input. 0 means max(256, 8 × Concurrency).
	Pending int
	// StaggerMin and StaggerMax space the admission of workers at the start
	// of a job: the global limit starts at one and grows by one after each
	// interval, drawn uniformly from [StaggerMin, StaggerMax], until it
	// reaches Concurrency. 0 means 100 ms and 200 ms; a negative StaggerMax
	// admits every worker at once. The intervals shrink in proportion when
	// they would make the ramp longer than Ramp.
	StaggerMin, StaggerMax time.Duration
	// Ramp bounds the staggered start: every worker is admitted within
	// Ramp of the first, however large Concurrency is. 0 means 1 s.
	// (Domains with a per-IP limit still start gently: their buckets
	// start with one token and their controller at Adaptive.Start.)
	Ramp time.Duration

	// Pool supplies proxies; nil means direct connections.
	Pool *proxy.Pool
	// Resolver resolves proxy host names (once, in New) and, unless
	// Policy.Resolver is set, target host names for the URL policy (direct
	// connections, socks5:// proxies, local proxy DNS). nil means
	// net.DefaultResolver.
	Resolver Resolver
	// ProxyTLS configures TLS with https:// proxies (roots, client
	// certificates); nil means the system roots.
	ProxyTLS *tls.Config
	// TLS configures TLS with targets; nil means the system roots.
	// Certificates are verified unless it says otherwise.
	TLS *tls.Config
	// CaptchaMarkers are byte strings that, found in a 2xx body, make the
	// answer a ban (class blocked, retried through another proxy, counted
	// against the proxy on that domain). nil means DefaultCaptchaMarkers;
	// an empty slice disables the check.
	CaptchaMarkers []string

	// ConnectTimeout bounds the TCP connect (to the proxy or target). 0 means 5 s.
	ConnectTimeout time.Duration
	// TLSTimeout bounds a TLS handshake. 0 means 10 s.
	TLSTimeout time.Duration
	// HeaderTimeout bounds the time to first byte: the wait for response
	// headers once the request is written, and the wait for a proxy's
	// first byte on a new connection (its answer to CONNECT, its SOCKS or
	// TLS handshake), so a proxy that accepts and never answers is caught
	// well before AttemptTimeout. 0 means 15 s.
	HeaderTimeout time.Duration
	// AttemptTimeout bounds one whole attempt, body included. 0 means 60 s.
	AttemptTimeout time.Duration
	// BodyTimeout bounds reading the body once the headers are in, so a
	// body trickled a byte at a time is cut; it ends as a timeout error.
	// 0 means 30 s (and AttemptTimeout still applies).
	BodyTimeout time.Duration

	// Policy is the URL policy (package guard) applied before each
	// attempt, on every redirect and on every address dialled. The zero
	// value refuses loopback, private, link-local (cloud metadata), CGNAT
	// and other non-public destinations; tests and the demo, which run on
	// loopback, set Policy.AllowLoopback. Refusals end as errors of class
	// policy, before any network access.
	Policy guard.Config
	// Allow, when set, is asked about each task after the URL policy and
	// before the governor (robots.txt, say): an error ends the task at
	// once with that error, without a token, a slot or a proxy lease. It
	// is called from the stage's intake, one task at a time, and may block
	// (it is given the stage's context).
	Allow func(ctx context.Context, u *url.URL) error

	// MaxBodyBytes caps a response body, both as received and after
	// Content-Encoding (gzip, deflate, br) is undone. 0 means 10 MiB.
	MaxBodyBytes int64
	// TruncateLarge keeps the first MaxBodyBytes of a larger body and marks
	// the result truncated; false (the default) refuses it with a too_large
	// error.
	TruncateLarge bool
	// MaxHeaderBytes caps the response headers; more is an error of class
	// header_too_large. 0 means 1 MiB.
	MaxHeaderBytes int64
	// MaxRedirects bounds the redirects followed in one attempt; one more,
	// or a redirect back to a URL already visited, is an error of class
	// redirects. 0 means 10; negative means redirects are not followed (the
	// 3xx is the result).
	MaxRedirects int
	// SpoolThreshold is the largest body kept in memory: a larger one is
	// written to a temporary file in SpoolDir and handed on as
	// record.Fetched.Spool. 0 means 1 MiB; a negative value never spools.
	SpoolThreshold int64
	// SpoolDir is where the stage creates its temporary directory for
	// spooled bodies; "" means os.TempDir().
	SpoolDir string
	// BodyBudget bounds the bytes of response bodies held in memory by the
	// stage (being read, or read and not yet passed on). New requests are
	// not started while it is used up, and a body that would overdraw it
	// spools to disk instead. 0 means 256 MiB.
	BodyBudget int64
	// ReadAhead bounds the bytes of bodies that workers have read and not
	// yet passed on (the parse stage is busy): once a response's headers
	// are in, its body is read only when its length (the Content-Length;
	// one 32 KiB read unit when the length is unknown or the body will
	// spool; at most ReadAhead) fits, and until then
	// it stays in the connection. So a slow next stage holds at most
	// ReadAhead bytes of bodies in the fetch stage instead of one body
	// per worker. 0 means 16 MiB; negative means no bound but BodyBudget.
	ReadAhead int64

	// NoHedge turns hedging off. By default an attempt whose proxy lease
	// runs late (see proxy.WithSlowAttempt) on a domain without a rate
	// limit is sent once more through another proxy and the first good
	// answer wins; at most a tenth of Concurrency hedges run at once (see
	// hedge.go).
	NoHedge bool

	// MaxAttempts bounds attempts per input, the first included. 0 means 4.
	MaxAttempts int
	// BackoffBase is the delay before the first retry; each further retry
	// doubles it, up to BackoffMax, with jitter (see Jitter). 0 means 500 ms.
	BackoffBase time.Duration
	// BackoffMax caps the backoff. 0 means 30 s.
	BackoffMax time.Duration
	// Jitter spreads each backoff uniformly by ± this fraction; it must lie
	// in 0.3–0.5. 0 means 0.5.
	Jitter float64
	// MaxRetryAfter caps how long a Retry-After header may make an input
	// wait before its next attempt. 0 means 2 min.
	MaxRetryAfter time.Duration
	// ParkAfter, when positive, parks a task that cannot be attempted
	// within it (its domain paused past it by a Retry-After, a retry
	// delay longer than it, or as long a wait for its domain's token):
	// the stage passes it on with Fetched.Parked set, for the sink to
	// write to the delay topic. 0 means never park (file input).
	ParkAfter time.Duration
	// MaxParks is how many times a task may be parked; one parked that
	// many times already ends as an error result instead, with its last
	// error's class (failure.Parked if it never got an answer). 0 means 5.
	MaxParks int

	// Shaping says what requests look like: User-Agent, headers, cookies,
	// method and body, per site and per URL message, and the cookie jars
	// of sticky sessions. The zero value looks like a desktop Chrome
	// (see shape.go and docs/requests.md).
	Shaping Shaping

	// DNS configures the resolver cache used for direct connections and for
	// dialling proxy endpoints (see package dnscache).
	DNS dnscache.Config

	// Trace, if set, receives one span per attempt, from the fetching
	// goroutine; it must be quick and safe for concurrent use.
	Trace func(record.Span)

	// Logger receives per-attempt debug lines and warnings. The zero value
	// logs nothing.
	Logger zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Governor returns the governor's part of c: the scheduling settings, as
// package governor's Config (Proxies is left for the stage to fill).
func (c *Config) Governor() governor.Config {
	return governor.Config{
		Concurrency: c.Concurrency, DomainRate: c.DomainRate, DomainBurst: c.DomainBurst,
		Domains: c.Domains, Adaptive: c.Adaptive, Pending: c.Pending,
		StaggerMin: c.StaggerMin, StaggerMax: c.StaggerMax, Ramp: c.Ramp, BodyBudget: c.BodyBudget,
		MaxAttempts: c.MaxAttempts, BackoffBase: c.BackoffBase, BackoffMax: c.BackoffMax,
		Jitter: c.Jitter, MaxRetryAfter: c.MaxRetryAfter, ParkAfter: c.ParkAfter, Logger: c.Logger, Now: c.Now,
	}
}

// DefaultCaptchaMarkers appear on anti-bot challenge and block pages and
// not on the pages behind them.
var DefaultCaptchaMarkers = []string{"captcha-delivery.com", "px-captcha", "_cf_chl_opt", "cf-turnstile-wrapper"}

func (c *Config) setDefaults() {
	// The governor's settings take the governor's defaults, defined once
	// in package governor.
	g := c.Governor().WithDefaults()
	c.Concurrency, c.DomainRate, c.DomainBurst, c.Pending = g.Concurrency, g.DomainRate, g.DomainBurst, g.Pending
	c.StaggerMin, c.StaggerMax, c.Ramp, c.BodyBudget = g.StaggerMin, g.StaggerMax, g.Ramp, g.BodyBudget
	c.MaxAttempts, c.BackoffBase, c.BackoffMax = g.MaxAttempts, g.BackoffBase, g.BackoffMax
	c.MaxRetryAfter, c.Jitter, c.Now = g.MaxRetryAfter, g.Jitter, g.Now
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.QueueSize == 0 {
		c.QueueSize = 2 * c.Concurrency
	}
	if c.MaxParks == 0 {
		c.MaxParks = 5
	}
	if c.SpoolThreshold == 0 {
		c.SpoolThreshold = 1 << 20
	}
	if c.ReadAhead == 0 {
		c.ReadAhead = 16 << 20
	}
	def(&c.ConnectTimeout, 5*time.Second)
	def(&c.TLSTimeout, 10*time.Second)
	def(&c.HeaderTimeout, 15*time.Second)
	def(&c.AttemptTimeout, 60*time.Second)
	def(&c.BodyTimeout, 30*time.Second)
	if c.MaxRedirects == 0 {
		c.MaxRedirects = 10
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 10 << 20
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 1 << 20
	}
	c.Shaping.setDefaults()
	if c.CaptchaMarkers == nil {
		c.CaptchaMarkers = DefaultCaptchaMarkers
	}
}

// Validate reports the first invalid setting.
func (c *Config) Validate() error {
	var errs []error
	if c.Concurrency < 1 || c.Concurrency > 100000 {
		errs = append(errs, fmt.Errorf("concurrency %d out of range 1..100000", c.Concurrency))
	}
	if c.QueueSize < 1 {
		errs = append(errs, fmt.Errorf("queue size %d must be at least 1", c.QueueSize))
	}
	if c.ParkAfter < 0 || c.MaxParks < 1 {
		errs = append(errs, fmt.Errorf("park after %v must not be negative, max parks %d must be at least 1", c.ParkAfter, c.MaxParks))
	}
	if c.MaxBodyBytes < 1 {
		errs = append(errs, fmt.Errorf("max body bytes %d must be positive", c.MaxBodyBytes))
	}
	if c.MaxHeaderBytes < 1 {
		errs = append(errs, fmt.Errorf("max header bytes %d must be positive", c.MaxHeaderBytes))
	}
	if c.MaxRedirects > 100 {
		errs = append(errs, fmt.Errorf("max redirects %d out of range ..100", c.MaxRedirects))
	}
	if err := c.Shaping.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Governor().Validate(); err != nil {
		errs = append(errs, err)
	}
	for name, d := range map[string]time.Duration{"connect": c.ConnectTimeout, "tls": c.TLSTimeout, "header": c.HeaderTimeout, "attempt": c.AttemptTimeout, "body": c.BodyTimeout} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s timeout %v is negative", name, d))
		}
	}
	return errors.Join(errs...)
}
