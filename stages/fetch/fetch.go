package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"sluice/failure"
	"sluice/flow"
	"sluice/proxy"
	"sluice/record"
)

// directID is the proxy id reported for direct connections.
const directID = "direct"

// Stage is the fetch stage. Build it with New, then place Flow() in a
// pipeline. Safe for concurrent use by its own workers only.
type Stage struct {
	cfg     Config
	clients map[string]*http.Client // by proxy id; directID when there is no pool
	toProxy map[string]proxyDial    // by proxy id, HTTP(S) proxies only: see proxyRefuses
	flow    *flow.Stage[record.Task, record.Fetched]

	mu       sync.Mutex // guards limiters
	limiters map[string]*domainLimiter

	act   activity    // what inputs are doing now (Activity)
	conns connTracker // connections per transport (Conns)
}

type domainLimiter struct {
	lim      *rate.Limiter
	lastUsed time.Time
}

// maxIdleLimiters bounds the per-domain limiter map: past it, limiters idle
// for a minute (whose buckets are full again) are dropped.
const maxIdleLimiters = 10000

// New validates cfg, applies defaults and builds one HTTP client per proxy.
// It starts no goroutines: they run while the pipeline runs.
func New(cfg Config) (*Stage, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("fetch config: %w", err)
	}
	s := &Stage{cfg: cfg, clients: map[string]*http.Client{}, limiters: map[string]*domainLimiter{}}
	if cfg.Pool == nil || cfg.Pool.Len() == 0 {
		c, err := s.newClient(nil, cfg.Concurrency)
		if err != nil {
			return nil, err
		}
		s.clients[directID] = c
	} else {
		// A proxy's share of the concurrency; an exclusive lease carries
		// one request at a time.
		share := (cfg.Concurrency + cfg.Pool.Len() - 1) / cfg.Pool.Len()
		if cfg.Pool.Model() == proxy.Exclusive {
			share = 1
		}
		for _, p := range cfg.Pool.Proxies() {
			c, err := s.newClient(p, share)
			if err != nil {
				s.Close()
				return nil, fmt.Errorf("fetch: %w", err)
			}
			s.clients[p.ID] = c
		}
	}
	s.flow = flow.NewStage("fetch", cfg.QueueSize, s.run)
	return s, nil
}

// Flow returns the stage to connect into a pipeline.
func (s *Stage) Flow() *flow.Stage[record.Task, record.Fetched] { return s.flow }

// Close releases idle connections. Call it after the pipeline has finished.
func (s *Stage) Close() {
	for _, c := range s.clients {
		c.CloseIdleConnections()
	}
}

// run is the stage body: Concurrency workers, each fetching one Task at a
// time until the input closes.
func (s *Stage) run(ctx context.Context, in flow.Inbox[record.Task], out flow.Outbox[record.Fetched]) error {
	var wg sync.WaitGroup
	for range s.cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				t, ok := in.Recv(ctx)
				if !ok {
					return
				}
				f := s.fetch(ctx, t)
				if f.Err != nil {
					s.flow.Stats().AddError()
				}
				if err := out.Send(ctx, f); err != nil {
					continue // hard stop: the input stays unacknowledged
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

// fetch runs the attempts for one Task and always returns a Fetched.
func (s *Stage) fetch(ctx context.Context, t record.Task) (f record.Fetched) {
	f = record.Fetched{Task: t, Started: s.cfg.Now()}
	defer func() {
		if r := recover(); r != nil {
			f.Err = failure.Errorf(failure.Internal, "fetch panicked: %v", r)
		}
		f.Elapsed = s.cfg.Now().Sub(f.Started)
	}()
	if t.Err != nil {
		f.Err = t.Err
		return f
	}
	var tried []string
	var lastErr error
	for attempt := 1; attempt <= s.cfg.MaxAttempts; attempt++ {
		f.Attempts = attempt
		waitStart := s.cfg.Now()
		leave := s.act.enter(stateToken, t.URL.Hostname(), "")
		err := s.waitDomain(ctx, t.URL.Hostname())
		leave()
		if err != nil {
			f.Err = failure.New(failure.Canceled, failure.ErrPermanent, err)
			return f
		}
		res, err := s.attempt(ctx, t, attempt, tried, waitStart)
		f.Proxy = res.proxy
		if res.proxy != "" && res.proxy != directID {
			tried = append(tried, res.proxy)
		}
		if err == nil {
			f.FinalURL, f.Status, f.Header, f.Body, f.Truncated, f.Timings = res.finalURL, res.status, res.header, res.body, res.truncated, res.timings
			f.Err = nil
			return f
		}
		lastErr = err
		f.Status = res.status
		if !failure.Retryable(err) || attempt == s.cfg.MaxAttempts || ctx.Err() != nil {
			break
		}
		delay := Backoff(s.cfg.BackoffBase, s.cfg.BackoffMax, attempt, s.cfg.Jitter, rand.Float64)
		if res.retryAfter > 0 {
			delay = max(delay, min(res.retryAfter, s.cfg.MaxRetryAfter))
		}
		s.cfg.Logger.Debug().Str("url", t.URL.String()).Str("proxy", res.proxy).Int("attempt", attempt).
			Str("class", string(failure.ClassOf(err))).Dur("backoff", delay).Msg("retrying")
		leave = s.act.enter(stateBackoff, "", "")
		err = sleep(ctx, delay)
		leave()
		if err != nil {
			break
		}
	}
	f.Err = lastErr
	return f
}

// attemptResult is what one attempt learned, successful or not.
type attemptResult struct {
	proxy      string
	status     int
	finalURL   string
	header     http.Header
	body       []byte
	truncated  bool
	timings    record.Timings
	retryAfter time.Duration
}

// attempt makes one request through one leased proxy. The lease is returned
// with the outcome before attempt returns, whatever happens. waitStart is
// when the attempt began waiting for its domain's token (for the span).
func (s *Stage) attempt(ctx context.Context, t record.Task, n int, avoid []string, waitStart time.Time) (res attemptResult, err error) {
	waitEnd := s.cfg.Now()
	client := s.clients[directID]
	res.proxy = directID
	var lease *proxy.Lease
	if s.cfg.Pool != nil && s.cfg.Pool.Len() > 0 {
		leave := s.act.enter(stateLease, "", "")
		lease, err = s.cfg.Pool.Acquire(ctx, proxy.Request{Domain: t.URL.Hostname(), URL: t.URL.Redacted(), Session: t.Msg.Session, Avoid: avoid})
		leave()
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return res, failure.New(failure.Canceled, failure.ErrPermanent, err)
		default: // no proxy usable within the pool's max wait
			return res, failure.New(failure.ProxyConnect, failure.ErrProxy, err)
		}
		res.proxy = lease.Proxy.ID
		client = s.clients[lease.Proxy.ID]
	}
	defer s.act.enter(stateRequest, t.URL.Hostname(), res.proxy)()
	tm := newTimer(s.cfg.Now)
	defer func() {
		tm.finish()
		res.timings = tm.timings()
		if lease != nil {
			var up upstreamError
			lease.Release(proxy.Outcome{Class: failure.ClassOf(err), Status: res.status, Latency: tm.end.Sub(tm.start), Upstream: errors.As(err, &up)})
		}
		if s.cfg.Trace != nil {
			sp := record.Span{Schema: record.SchemaVersion, URL: t.URL.Redacted(), Domain: t.URL.Hostname(), Proxy: res.proxy,
				Attempt: n, Enqueued: t.Enqueued, WaitStart: waitStart, WaitEnd: waitEnd, Status: res.status, Bytes: int64(len(res.body)),
				Error: string(failure.ClassOf(err))}
			tm.fill(&sp)
			s.cfg.Trace(sp)
		}
		if fe := (*failure.Error)(nil); errors.As(err, &fe) {
			err = &failure.Error{Class: fe.Class, Kind: fe.Kind, Err: fe.Err, URL: t.URL.Redacted(), Status: res.status, Proxy: res.proxy}
		}
	}()

	actx, cancel := context.WithTimeout(ctx, s.cfg.AttemptTimeout)
	defer cancel()
	actx = httptrace.WithClientTrace(actx, tm.trace())
	req, err := http.NewRequestWithContext(actx, http.MethodGet, t.URL.String(), nil)
	if err != nil {
		return res, failure.New(failure.BadInput, failure.ErrPermanent, err)
	}
	req.Header.Set("User-Agent", s.cfg.UserAgent)
	req.Header.Set("Accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8")

	resp, err := client.Do(req)
	if err != nil {
		return res, classifyTransport(err, lease != nil, ctx)
	}
	defer resp.Body.Close()
	res.status = resp.StatusCode
	res.finalURL = resp.Request.URL.String()
	res.header = resp.Header
	if err := statusError(resp.StatusCode, lease != nil); err != nil {
		if resp.StatusCode == http.StatusUnauthorized && lease != nil && s.proxyRefuses(ctx, lease.Proxy, resp) {
			err = failure.New(failure.ProxyAuth, failure.ErrProxy, fmt.Errorf("proxy answered 401"))
		}
		res.retryAfter = ParseRetryAfter(resp.Header.Get("Retry-After"), s.cfg.Now())
		// Drain a little so the connection can be reused, never much.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return res, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.cfg.MaxBodyBytes+1))
	if err != nil {
		return res, classifyBody(err, ctx)
	}
	if int64(len(body)) > s.cfg.MaxBodyBytes {
		if !s.cfg.TruncateLarge {
			return res, failure.Errorf(failure.TooLarge, "body exceeds %d bytes", s.cfg.MaxBodyBytes)
		}
		body, res.truncated = body[:s.cfg.MaxBodyBytes], true
	}
	if m := captchaMarker(body, s.cfg.CaptchaMarkers); m != "" {
		// A challenge page instead of the page: this proxy is banned
		// here; another may not be.
		return res, failure.New(failure.Blocked, failure.ErrRetryable, fmt.Errorf("captcha marker %q in the body", m))
	}
	res.body = body
	return res, nil
}

// captchaMarker returns the first marker found in body, "" if none.
func captchaMarker(body []byte, markers []string) string {
	for _, m := range markers {
		if m != "" && bytes.Contains(body, []byte(m)) {
			return m
		}
	}
	return ""
}

// statusError classifies a non-2xx status; nil for 2xx and 3xx (the client
// follows redirects, so a 3xx here has no Location and is kept as is).
func statusError(status int, viaProxy bool) error {
	switch {
	case status < 400:
		return nil
	case status == http.StatusProxyAuthRequired:
		return failure.New(failure.ProxyAuth, failure.ErrProxy, fmt.Errorf("proxy answered %d", status))
	case status == http.StatusTooManyRequests:
		return failure.New(failure.RateLimited, failure.ErrRateLimited, fmt.Errorf("target answered %d", status))
	case viaProxy && (status == http.StatusBadGateway || status == http.StatusGatewayTimeout):
		return failure.New(failure.ProxyProtocol, failure.ErrProxy, upstreamError{fmt.Errorf("proxy answered %d", status)})
	case status >= 500:
		return failure.New(failure.ServerError, failure.ErrRetryable, fmt.Errorf("target answered %d", status))
	case status == http.StatusForbidden:
		return failure.New(failure.Blocked, failure.ErrPermanent, fmt.Errorf("target answered %d", status))
	default:
		return failure.New(failure.ClientError, failure.ErrPermanent, fmt.Errorf("target answered %d", status))
	}
}

// classifyTransport classifies an error from http.Client.Do.
func classifyTransport(err error, viaProxy bool, parent context.Context) error {
	if parent.Err() != nil {
		return failure.New(failure.Canceled, failure.ErrPermanent, parent.Err())
	}
	var fe *failure.Error
	if errors.As(err, &fe) {
		return fe
	}
	msg := err.Error()
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var netErr net.Error
	switch {
	case viaProxy && (strings.Contains(msg, "Proxy Authentication Required") || strings.Contains(msg, "proxy authentication") || strings.Contains(msg, "username/password authentication failed")):
		return failure.New(failure.ProxyAuth, failure.ErrProxy, err)
	case viaProxy && errors.As(err, &opErr) && opErr.Op == "proxyconnect":
		return failure.New(failure.ProxyConnect, failure.ErrProxy, err)
	case viaProxy && strings.Contains(msg, "socks connect"):
		return failure.New(failure.ProxyConnect, failure.ErrProxy, err)
	case errors.As(err, &dnsErr):
		return failure.New(failure.DNS, failure.ErrRetryable, err)
	case errors.As(err, &netErr) && netErr.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return failure.New(failure.Timeout, failure.ErrRetryable, err)
	case strings.Contains(msg, "tls:") || strings.Contains(msg, "x509:"):
		return failure.New(failure.TLS, failure.ErrPermanent, err)
	case viaProxy && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(msg, "malformed HTTP")):
		return failure.New(failure.ProxyProtocol, failure.ErrProxy, err)
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return failure.New(failure.Connect, failure.ErrRetryable, err)
	case viaProxy:
		return failure.New(failure.ProxyProtocol, failure.ErrProxy, err)
	default:
		return failure.New(failure.Protocol, failure.ErrRetryable, err)
	}
}

// classifyBody classifies an error while reading a body.
func classifyBody(err error, parent context.Context) error {
	if parent.Err() != nil {
		return failure.New(failure.Canceled, failure.ErrPermanent, parent.Err())
	}
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout() {
		return failure.New(failure.Timeout, failure.ErrRetryable, fmt.Errorf("reading body: %w", err))
	}
	return failure.New(failure.Protocol, failure.ErrRetryable, fmt.Errorf("reading body: %w", err))
}

// waitDomain takes one token from the domain's bucket, blocking until it is
// available or ctx ends.
func (s *Stage) waitDomain(ctx context.Context, domain string) error {
	if s.cfg.DomainRate < 0 {
		return ctx.Err()
	}
	now := s.cfg.Now()
	s.mu.Lock()
	d, ok := s.limiters[domain]
	if !ok {
		if len(s.limiters) >= maxIdleLimiters {
			s.evictIdleLocked(now)
		}
		d = &domainLimiter{lim: rate.NewLimiter(rate.Limit(s.cfg.DomainRate), s.cfg.DomainBurst)}
		s.limiters[domain] = d
	}
	d.lastUsed = now
	s.mu.Unlock()
	return d.lim.Wait(ctx)
}

func (s *Stage) evictIdleLocked(now time.Time) {
	for k, d := range s.limiters {
		if now.Sub(d.lastUsed) > time.Minute {
			delete(s.limiters, k)
		}
	}
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Concurrency returns the number of workers: the most inputs the stage
// holds outside its queue.
func (s *Stage) Concurrency() int { return s.cfg.Concurrency }
