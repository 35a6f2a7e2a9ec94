package fetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/dnscache"
	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/governor"
	"github.com/sluicehq/sluice/guard"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
)

// directID is the proxy id reported for direct connections.
const directID = "direct"

// Stage is the fetch stage. Build it with New, then place Flow() in a
// pipeline. Its methods are safe for concurrent use.
type Stage struct {
	cfg     Config
	policy  *guard.Policy
	clients map[string]*http.Client // by proxy id; directID when there is no pool
	toProxy map[string]proxyDial    // by proxy id, HTTP(S) proxies only: see proxyRefuses
	dns     *dnscache.Cache         // nil when DNS.Off
	spool   *spooler
	ahead   *readAhead // nil: no bound (Config.ReadAhead < 0)
	shape   *shaper    // request shaping and session cookie jars (shape.go, jar.go)
	gov     *governor.Governor[*item]
	execFn  execFunc // s.exec; tests replace it
	flow    *flow.Stage[record.Task, record.Fetched]

	hedges chan struct{}  // hedged attempts in flight; nil: no hedging
	bg     sync.WaitGroup // attempts a hedge overtook, running on (hedge.go)

	act   activity    // what inputs are doing now (Activity)
	conns connTracker // connections per transport (Conns)
}

// New validates cfg, applies defaults and builds one HTTP client per proxy.
// It starts no goroutines: they run while the pipeline runs.
func New(cfg Config) (*Stage, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("fetch config: %w", err)
	}
	s := &Stage{cfg: cfg, clients: map[string]*http.Client{}}
	var err error
	if s.shape, err = newShaper(cfg.Shaping, cfg.Now); err != nil {
		return nil, fmt.Errorf("fetch config: %w", err)
	}
	if !cfg.DNS.Off {
		s.dns = dnscache.New(cfg.DNS, cfg.Now)
		if s.cfg.Resolver == nil {
			s.cfg.Resolver = s.dns // proxy endpoints and socks5:// targets too
		}
	}
	// The URL policy resolves targets with the stage's resolver (the DNS
	// cache) unless it has its own.
	pc := cfg.Policy
	if pc.Resolver == nil && s.cfg.Resolver != nil {
		pc.Resolver = s.cfg.Resolver
	}
	policy, err := guard.New(pc)
	if err != nil {
		return nil, fmt.Errorf("fetch config: url policy: %w", err)
	}
	s.policy = policy
	var ids []string
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
		cfg.Pool.SetConcurrency(cfg.Concurrency) // the per-proxy in-flight caps
		for _, p := range cfg.Pool.Proxies() {
			c, err := s.newClient(p, share)
			if err != nil {
				s.Close()
				return nil, fmt.Errorf("fetch: %w", err)
			}
			s.clients[p.ID] = c
			ids = append(ids, p.ID)
		}
	}
	gc := s.cfg.Governor()
	gc.Proxies = ids
	if s.gov, err = governor.New[*item](gc); err != nil {
		s.Close()
		return nil, fmt.Errorf("fetch config: %w", err)
	}
	s.spool = &spooler{parent: cfg.SpoolDir, threshold: cfg.SpoolThreshold, budget: s.gov.Budget()}
	s.ahead = newReadAhead(cfg.ReadAhead)
	s.execFn = s.exec
	if cfg.Pool != nil && cfg.Pool.Len() > 1 && !cfg.NoHedge {
		s.hedges = make(chan struct{}, max(1, cfg.Concurrency/10))
	}
	s.flow = flow.NewStage("fetch", cfg.QueueSize, s.run)
	return s, nil
}

// Flow returns the stage to connect into a pipeline.
func (s *Stage) Flow() *flow.Stage[record.Task, record.Fetched] { return s.flow }

// Governor returns a snapshot of the scheduler: the global limit, and per
// domain the adaptive level, limits in force and counters.
func (s *Stage) Governor() governor.Stats {
	st := s.gov.Stats()
	st.Spooled = s.spool.spooled.Load()
	return st
}

// DNSCache returns the stage's DNS cache, nil when DNS.Off.
func (s *Stage) DNSCache() *dnscache.Cache { return s.dns }

// Limits returns the limits the governor applies to host at full level.
func (s *Stage) Limits(host string) governor.Limits { return s.gov.Limits(host) }

// Close releases idle connections and removes the spool directory with
// any body left in it. Call it after the pipeline has finished.
func (s *Stage) Close() error {
	for _, c := range s.clients {
		c.CloseIdleConnections()
	}
	if s.spool == nil { // New failed half-way
		return nil
	}
	return s.spool.close()
}

// refuse applies the URL policy to a task before it is scheduled, so a
// URL the policy refuses ends at once as an error of class policy (or
// bad_input), without a token, a slot or a proxy lease. It needs no
// network access; the addresses a name resolves to are checked at dial
// time.
func (s *Stage) refuse(t record.Task) error {
	_, err := s.shape.plan(t) // a method without a body, a body over the cap
	if err == nil {
		_, err = s.policy.CheckURL(t.URL)
	}
	if fe := (*failure.Error)(nil); errors.As(err, &fe) {
		return &failure.Error{Class: fe.Class, Kind: fe.Kind, Err: fe.Err, URL: t.URL.Redacted()}
	}
	return err
}

// exec makes one attempt of j for the governor. The attempt's wait began
// when j joined its domain's queue.
func (s *Stage) exec(ctx context.Context, j *job, allow func(string) bool) (attemptResult, error) {
	return s.hedged(ctx, j.Item.f.Task, j.Attempt, j.Item.tried, j.Queued, allow) // see hedge.go
}

// attemptResult is what one attempt learned, successful or not.
type attemptResult struct {
	proxy      string
	status     int
	finalURL   string
	header     http.Header
	body       []byte
	spool      *record.Spool
	held       int64   // body budget held by body
	ahead      int64   // read-ahead reserved for body (readahead.go)
	buf        *[]byte // the pooled buffer body lives in (bodypool.go); nil if none
	truncated  bool
	timings    record.Timings
	retryAfter time.Duration
}

// bytes is the body's length, in memory or spooled.
func (r *attemptResult) bytes() int64 {
	if r.spool != nil {
		return r.spool.Size
	}
	return int64(len(r.body))
}

// attempt makes one request through one leased proxy. The lease is returned
// with the outcome before attempt returns, whatever happens. waitStart is
// when the attempt began waiting for its domain's token (for the span);
// allow is passed to the pool (proxy.Request.Allow).
func (s *Stage) attempt(ctx context.Context, t record.Task, n int, avoid []string, waitStart time.Time, allow func(string) bool) (res attemptResult, err error) {
	waitEnd := s.cfg.Now()
	client := s.clients[directID]
	res.proxy = directID
	// The URL policy, before any network access (and before a proxy is
	// leased, so that a refusal never counts against one).
	target, err := s.policy.CheckURL(t.URL)
	if err != nil {
		return res, err
	}
	var lease *proxy.Lease
	if s.cfg.Pool != nil && s.cfg.Pool.Len() > 0 {
		leave := s.act.enter(stateLease, "", "")
		lease, err = s.cfg.Pool.Acquire(ctx, proxy.Request{Domain: t.URL.Hostname(), URL: t.URL.Redacted(), Session: t.Msg.Session, Avoid: avoid, Allow: allow})
		leave()
		if err != nil {
			var de *proxy.DomainError
			if errors.As(err, &de) && de.Until.After(waitEnd) {
				// Retry no sooner than the first of the domain's
				// quarantines ends: an earlier try would fail the same
				// way and spend an attempt.
				res.retryAfter = de.Until.Sub(waitEnd)
			}
			return res, leaseError(ctx, err) // see nopool.go
		}
		res.proxy = lease.Proxy.ID
		client = s.clients[lease.Proxy.ID]
		noteLease(ctx, lease)
	}
	defer s.act.enter(stateRequest, t.URL.Hostname(), res.proxy)()
	tm := newTimer(s.cfg.Now)
	var snd *sending // what the request was and whether it was written
	defer func() {
		tm.finish()
		res.timings = tm.timings()
		if lease != nil {
			var up upstreamError
			lease.Release(proxy.Outcome{Class: failure.ClassOf(err), Status: res.status, Latency: tm.end.Sub(tm.start), Upstream: errors.As(err, &up)})
		}
		if s.cfg.Trace != nil {
			sp := record.Span{Schema: record.SchemaVersion, URL: t.URL.Redacted(), Domain: t.URL.Hostname(), Proxy: res.proxy,
				Attempt: n, Enqueued: t.Enqueued, WaitStart: waitStart, WaitEnd: waitEnd, Status: res.status, Bytes: res.bytes(),
				Error: string(failure.ClassOf(err))}
			tm.fill(&sp)
			leaseSpan(ctx, lease, &sp) // see hedge.go
			s.cfg.Trace(sp)
		}
		err = notRetried(err, snd) // the retry rule of POST and PATCH
		if fe := (*failure.Error)(nil); errors.As(err, &fe) {
			err = &failure.Error{Class: fe.Class, Kind: fe.Kind, Err: fe.Err, URL: t.URL.Redacted(), Status: res.status, Proxy: res.proxy}
		}
	}()

	actx, cancel := context.WithTimeout(ctx, s.cfg.AttemptTimeout)
	defer cancel()
	bctx, bcancel := context.WithCancelCause(actx) // ended by BodyTimeout too
	defer bcancel(nil)
	bctx = httptrace.WithClientTrace(bctx, tm.trace())
	req, snd, err := s.shape.request(bctx, t, target, res.proxy) // method, body, headers, cookies: shape.go
	if err != nil {
		return res, err
	}
	if jar := s.shape.jar(t.Msg.Session); jar != nil {
		c := *client // the proxy's transport, with the session's cookies
		c.Jar = jar
		client = &c
	}

	resp, err := client.Do(req)
	if err != nil {
		if fe := (*failure.Error)(nil); errors.As(err, &fe) && fe.Status != 0 {
			res.status = fe.Status // a proxy's answer to CONNECT
		}
		return res, classifyTransport(err, lease != nil, ctx)
	}
	defer resp.Body.Close()
	bodyTimer := time.AfterFunc(s.cfg.BodyTimeout, func() { bcancel(errBodyTimeout) })
	defer bodyTimer.Stop()
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
	r, err := s.bodyReader(resp) // Content-Encoding undone under the cap: see bounds.go
	if err != nil {
		return res, s.bodyError(err, ctx, bctx, lease != nil)
	}
	size := knownSize(resp, r)
	want := size // what the body will hold in memory
	if s.cfg.SpoolThreshold >= 0 && size > s.cfg.SpoolThreshold {
		want = -1 // spooled: one read unit at a time
	}
	ahead, err := s.ahead.reserve(bctx, want) // the answer waits in its connection meanwhile
	if err != nil {
		return res, s.bodyError(err, ctx, bctx, lease != nil)
	}
	kept := false
	defer func() {
		if !kept {
			s.ahead.release(ahead)
		}
	}()
	b, err := s.spool.read(r, s.cfg.MaxBodyBytes, s.cfg.TruncateLarge, size)
	if err != nil {
		return res, s.bodyError(err, ctx, bctx, lease != nil)
	}
	if m := captchaMarker(b.data, s.cfg.CaptchaMarkers); m != "" {
		// A challenge page instead of the page: this proxy is banned
		// here; another may not be.
		s.spool.budget.Give(b.held)
		s.spool.bodies.put(b.buf)
		return res, failure.New(failure.Blocked, failure.ErrRetryable, fmt.Errorf("captcha marker %q in the body", m))
	}
	res.body, res.spool, res.truncated, res.held, res.ahead, res.buf = b.data, b.spool, b.truncated, b.held, ahead, b.buf
	kept = true
	return res, nil
}

// captchaMarker returns the first marker found in body, "" if none.
func captchaMarker(body []byte, markers []string) string {
	for _, m := range markers {
		if m != "" && containsMarker(body, m) {
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
		return endedEarly(parent) // see hedge.go
	}
	var fe *failure.Error
	if errors.As(err, &fe) {
		return fe
	}
	class, kind := transportClass(err, viaProxy)
	return failure.New(class, kind, err)
}

// transportClass finds the class of a transport error by its type (and
// the net.OpError's Op) wherever the standard library gives one; by its
// text only where it gives none (see the is… helpers).
func transportClass(err error, viaProxy bool) (failure.Class, error) {
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case isHeaderTooLarge(err):
		return failure.HeaderTooLarge, failure.ErrPermanent
	case isCertificateError(err):
		return failure.TLS, failure.ErrPermanent
	case viaProxy && isProxyAuth(err):
		return failure.ProxyAuth, failure.ErrProxy
	case viaProxy && (opIs(err, "proxyconnect") || opIs(err, "socks connect")):
		return failure.ProxyConnect, failure.ErrProxy
	case errors.As(err, &dnsErr):
		return failure.DNS, failure.ErrRetryable
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return failure.Timeout, failure.ErrRetryable
	case isTLSError(err):
		return failure.TLS, failure.ErrPermanent
	case viaProxy && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isMalformedResponse(err)):
		return failure.ProxyProtocol, failure.ErrProxy
	case errors.Is(err, syscall.ECONNREFUSED), opIs(err, "dial"):
		return failure.Connect, failure.ErrRetryable
	case viaProxy:
		return failure.ProxyProtocol, failure.ErrProxy
	default: // reset (syscall.ECONNRESET), EOF, a broken response
		return failure.Protocol, failure.ErrRetryable
	}
}

// opIs reports whether err holds a *net.OpError of operation op ("dial",
// "proxyconnect" from net/http, "socks connect" from x/net's SOCKS5
// dialer).
func opIs(err error, op string) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == op
}

// isCertificateError reports a certificate the client refused.
func isCertificateError(err error) bool {
	var certErr *tls.CertificateVerificationError
	var authErr x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidErr x509.CertificateInvalidError
	return errors.As(err, &certErr) || errors.As(err, &authErr) || errors.As(err, &hostErr) || errors.As(err, &invalidErr)
}

// isTLSError reports a failed TLS handshake: a non-TLS answer, an alert
// from the peer, or (crypto/tls has no exported type for its own alerts)
// an error whose text crypto/tls prefixes with "tls: ".
func isTLSError(err error) bool {
	var recErr tls.RecordHeaderError
	var alertErr tls.AlertError
	var echErr *tls.ECHRejectionError
	return errors.As(err, &recErr) || errors.As(err, &alertErr) || errors.As(err, &echErr) ||
		strings.Contains(err.Error(), "tls: ")
}

// isHeaderTooLarge reports net/http's refusal of response headers over
// Transport.MaxResponseHeaderBytes; net/http gives it no type.
func isHeaderTooLarge(err error) bool {
	return strings.Contains(err.Error(), "server response headers exceeded")
}

// isProxyAuth reports a proxy refusing our credentials where the error
// has no type: net/http returns a CONNECT answer's status text ("Proxy
// Authentication Required"), x/net's SOCKS5 dialer a plain error.
func isProxyAuth(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "Proxy Authentication Required") || strings.Contains(msg, "proxy authentication") ||
		strings.Contains(msg, "username/password authentication failed")
}

// isMalformedResponse reports net/http's error for a response it cannot
// read as HTTP (an unexported type).
func isMalformedResponse(err error) bool { return strings.Contains(err.Error(), "malformed HTTP") }

// classifyBody classifies an error while reading a body. Through a proxy,
// a body cut short counts against the proxy.
func classifyBody(err error, parent context.Context, viaProxy bool) error {
	if parent.Err() != nil {
		return endedEarly(parent) // see hedge.go
	}
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout() {
		return failure.New(failure.Timeout, failure.ErrRetryable, fmt.Errorf("reading body: %w", err))
	}
	if viaProxy {
		return failure.New(failure.ProxyProtocol, failure.ErrProxy, fmt.Errorf("reading body through proxy: %w", err))
	}
	return failure.New(failure.Protocol, failure.ErrRetryable, fmt.Errorf("reading body: %w", err))
}

// Concurrency returns the number of workers (the global limit).
func (s *Stage) Concurrency() int { return s.cfg.Concurrency }

// Holds returns the most inputs the stage holds outside its input queue:
// the governor's pending tasks (queued per domain, backing off or in
// flight), finished ones waiting to be passed on (one per worker), and the
// one being handed from the queue to the governor.
func (s *Stage) Holds() int { return s.gov.Pending() + s.cfg.Concurrency + 1 }
