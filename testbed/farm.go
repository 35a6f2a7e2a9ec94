package testbed

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FailureMode selects a fault a FarmProxy injects; see FarmProxy.SetFailure.
type FailureMode int32

const (
	// FailNone proxies normally.
	FailNone FailureMode = iota
	// Fail502 answers every request, CONNECT included, with 502 Bad Gateway
	// without contacting the target.
	Fail502
	// FailGarbage writes bytes that are not HTTP to the client and closes the
	// connection, without contacting the target.
	FailGarbage
	// FailCloseMidResponse forwards the request, sends the response status,
	// headers (Content-Length included) and part of the body, then closes the
	// connection. "Part" is half the body if its length is known, otherwise
	// up to MidResponseBytes bytes; an empty body is sent whole. For CONNECT
	// the tunnel is set up and closed after MidResponseBytes bytes have been
	// relayed from the target.
	FailCloseMidResponse
)

// MidResponseBytes bounds what FailCloseMidResponse relays of a body of
// unknown length, or of a CONNECT tunnel's target-to-client stream.
const MidResponseBytes = 64

// garbage is what FailGarbage writes; it cannot be parsed as a status line.
const garbage = "\x00\x16\x03\xffTESTBED-GARBAGE this is not HTTP\r\n\x7f\x00"

// String returns the mode's name.
func (m FailureMode) String() string {
	switch m {
	case FailNone:
		return "none"
	case Fail502:
		return "502"
	case FailGarbage:
		return "garbage"
	case FailCloseMidResponse:
		return "close-mid-response"
	}
	return "FailureMode(" + strconv.Itoa(int(m)) + ")"
}

// ErrFarmClosed is returned by FarmProxy.Revive after Farm.Close.
var ErrFarmClosed = errors.New("testbed: farm closed")

// FarmConfig configures StartFarm.
type FarmConfig struct {
	// N is the number of proxies, at least 1.
	N int
	// User and Pass, if User != "", make every proxy require
	// "Proxy-Authorization: Basic base64(User:Pass)" and answer 407 with
	// Proxy-Authenticate: Basic realm="testbed" otherwise.
	User, Pass string
	// FirstSourceIP sets the source addresses: proxy i dials from
	// 127.0.0.(FirstSourceIP+i). 0 means 2. The addresses used must lie in
	// 127.0.0.1..127.0.0.254.
	FirstSourceIP int
	// ErrorLog receives the proxies' HTTP server errors; nil discards them.
	ErrorLog *log.Logger
}

// Farm is a set of HTTP forward proxies on loopback, each making its
// outgoing connections from its own source IP. Create it with StartFarm and
// stop it with Close. All methods are safe for concurrent use.
type Farm struct {
	proxies   []*FarmProxy
	closeOnce sync.Once
	closeErr  error
}

// StartFarm starts cfg.N proxies, each listening on its own 127.0.0.1 port
// and serving in the background until Farm.Close.
func StartFarm(cfg FarmConfig) (*Farm, error) {
	if cfg.N < 1 {
		return nil, fmt.Errorf("testbed: FarmConfig.N = %d, want >= 1", cfg.N)
	}
	first := cfg.FirstSourceIP
	if first == 0 {
		first = 2
	}
	if first < 1 || first+cfg.N-1 > 254 {
		return nil, fmt.Errorf("testbed: source IPs 127.0.0.%d..127.0.0.%d out of range 127.0.0.1..127.0.0.254", first, first+cfg.N-1)
	}
	errLog := cfg.ErrorLog
	if errLog == nil {
		errLog = log.New(io.Discard, "", 0)
	}
	f := &Farm{}
	for i := range cfg.N {
		p, err := startFarmProxy(i, net.IPv4(127, 0, 0, byte(first+i)), cfg.User, cfg.Pass, errLog)
		if err != nil {
			_ = f.Close()
			return nil, err
		}
		f.proxies = append(f.proxies, p)
	}
	return f, nil
}

// URLs returns every proxy's URL, "http://[user:pass@]127.0.0.1:PORT", in
// proxy order. The slice is the caller's.
func (f *Farm) URLs() []string {
	out := make([]string, len(f.proxies))
	for i, p := range f.proxies {
		out[i] = p.URL()
	}
	return out
}

// Proxy returns proxy i, 0 <= i < Len(). It panics if i is out of range.
func (f *Farm) Proxy(i int) *FarmProxy { return f.proxies[i] }

// Len returns the number of proxies.
func (f *Farm) Len() int { return len(f.proxies) }

// Close kills every proxy (see FarmProxy.Kill), closes their idle upstream
// connections and waits for all their goroutines. Afterwards Revive fails
// with ErrFarmClosed. Close is idempotent.
func (f *Farm) Close() error {
	f.closeOnce.Do(func() {
		var errs []error
		for _, p := range f.proxies {
			errs = append(errs, p.close())
		}
		f.closeErr = errors.Join(errs...)
	})
	return f.closeErr
}

// FarmProxy is one proxy of a Farm. Its fault controls may be changed at any
// time from any goroutine; a change applies to requests that arrive after it.
//
// The proxy's HTTP server closes connections that take more than 10 s to
// send request headers or sit idle for 60 s. A CONNECT tunnel, once set up,
// is no longer HTTP and lives until either side closes it or the proxy is
// killed.
type FarmProxy struct {
	index    int
	addr     string // "127.0.0.1:PORT", fixed for the proxy's lifetime
	url      string
	sourceIP net.IP
	user     string
	pass     string
	errLog   *log.Logger

	dialer    *net.Dialer
	transport *http.Transport

	requests atomic.Int64
	latency  atomic.Int64 // time.Duration
	failure  atomic.Int32 // FailureMode

	lifeMu sync.Mutex // serializes Kill, Revive and close; guards life, closed
	life   *proxyLife // nil while killed
	closed bool
}

func startFarmProxy(index int, src net.IP, user, pass string, errLog *log.Logger) (*FarmProxy, error) {
	// Check the source address is bindable now rather than on every dial.
	probe, err := net.Listen("tcp", net.JoinHostPort(src.String(), "0"))
	if err != nil {
		return nil, fmt.Errorf("testbed: proxy %d: source address %s unusable: %w", index, src, err)
	}
	_ = probe.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("testbed: proxy %d listen: %w", index, err)
	}
	p := &FarmProxy{
		index:    index,
		addr:     ln.Addr().String(),
		sourceIP: src,
		user:     user,
		pass:     pass,
		errLog:   errLog,
		dialer: &net.Dialer{
			LocalAddr: &net.TCPAddr{IP: src},
			Timeout:   10 * time.Second,
		},
	}
	u := url.URL{Scheme: "http", Host: p.addr}
	if user != "" {
		u.User = url.UserPassword(user, pass)
	}
	p.url = u.String()
	p.transport = &http.Transport{
		Proxy:                 nil, // never chain to an environment proxy
		DialContext:           p.dialer.DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       30 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // forward bodies and Accept-Encoding untouched
	}
	p.life = p.startLife(ln)
	return p, nil
}

// URL returns "http://[user:pass@]127.0.0.1:PORT", suitable for
// http.ProxyURL. It stays the same across Kill and Revive.
func (p *FarmProxy) URL() string { return p.url }

// Addr returns the proxy's listen address, "127.0.0.1:PORT".
func (p *FarmProxy) Addr() string { return p.addr }

// SourceIP returns the address the proxy dials from, e.g. "127.0.0.2".
func (p *FarmProxy) SourceIP() string { return p.sourceIP.String() }

// Requests returns how many requests (CONNECTs included) the proxy has
// received, whatever their outcome (407, injected failures and upstream
// errors count too). It is not reset by Kill or Revive.
func (p *FarmProxy) Requests() int64 { return p.requests.Load() }

// SetLatency makes the proxy wait d before acting on each request (before
// forwarding, dialing a CONNECT target or injecting a failure). The wait
// ends early if the client goes away or the proxy is killed. d <= 0 means
// no delay.
func (p *FarmProxy) SetLatency(d time.Duration) { p.latency.Store(int64(max(d, 0))) }

// SetFailure selects the fault injected into requests; FailNone restores
// normal proxying. Values other than the FailureMode constants behave like
// FailNone.
func (p *FarmProxy) SetFailure(m FailureMode) { p.failure.Store(int32(m)) }

// Alive reports whether the proxy is listening (not killed).
func (p *FarmProxy) Alive() bool {
	p.lifeMu.Lock()
	defer p.lifeMu.Unlock()
	return p.life != nil
}

// Kill closes the proxy's listener, so new connections are refused, and
// every open connection: client connections, CONNECT tunnels (both sides)
// and upstream connections. In-flight requests are aborted. Kill returns
// once all of the proxy's goroutines have exited. Killing a killed proxy
// does nothing.
func (p *FarmProxy) Kill() {
	p.lifeMu.Lock()
	defer p.lifeMu.Unlock()
	_ = p.killLocked()
}

// Revive makes a killed proxy listen again on the same address. Reviving a
// live proxy does nothing. It fails with ErrFarmClosed after Farm.Close, or
// if the port has been taken by someone else meanwhile.
func (p *FarmProxy) Revive() error {
	p.lifeMu.Lock()
	defer p.lifeMu.Unlock()
	if p.closed {
		return ErrFarmClosed
	}
	if p.life != nil {
		return nil
	}
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return fmt.Errorf("testbed: proxy %d revive: %w", p.index, err)
	}
	p.life = p.startLife(ln)
	return nil
}

func (p *FarmProxy) close() error {
	p.lifeMu.Lock()
	defer p.lifeMu.Unlock()
	p.closed = true
	err := p.killLocked()
	p.transport.CloseIdleConnections()
	return err
}

func (p *FarmProxy) killLocked() error {
	if p.life == nil {
		return nil
	}
	err := p.life.stop()
	p.life = nil
	p.transport.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("testbed: proxy %d: %w", p.index, err)
	}
	return nil
}

// proxyLife is one listening period of a FarmProxy, from start (or Revive)
// to Kill. It owns the http.Server, its serving goroutine, every handler
// (tracked by handlers) and every hijacked connection (tracked in conns).
type proxyLife struct {
	p         *FarmProxy
	srv       *http.Server
	ctx       context.Context // canceled by stop; base of every request
	cancel    context.CancelFunc
	serveDone chan struct{}
	serveErr  error // written before serveDone is closed
	handlers  gate
	srvConns  connTracker

	mu        sync.Mutex
	conns     map[net.Conn]struct{} // hijacked client conns and tunnel upstreams
	connsShut bool
}

func (p *FarmProxy) startLife(ln net.Listener) *proxyLife {
	l := &proxyLife{
		p:         p,
		serveDone: make(chan struct{}),
		conns:     make(map[net.Conn]struct{}),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.srv = &http.Server{
		Handler:           l,
		ReadHeaderTimeout: headerTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          p.errLog,
		BaseContext:       func(net.Listener) context.Context { return l.ctx },
		ConnState:         l.srvConns.hook,
	}
	go func() { // owner: l; exits when stop closes the server
		defer close(l.serveDone)
		l.serveErr = l.srv.Serve(ln)
	}()
	return l
}

// stop ends the life and waits for its goroutines; see FarmProxy.Kill.
func (l *proxyLife) stop() error {
	l.cancel()        // aborts latency waits, dials and upstream round trips
	_ = l.srv.Close() // closes the listener and non-hijacked connections
	l.mu.Lock()
	l.connsShut = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	for c := range conns {
		_ = c.Close()
	}
	l.handlers.closeAndWait()
	<-l.serveDone
	l.srvConns.wait()
	if l.serveErr != nil && !errors.Is(l.serveErr, http.ErrServerClosed) {
		return l.serveErr
	}
	return nil
}

// trackConn registers a connection for stop to close. If the life is
// already stopping it closes c and reports false.
func (l *proxyLife) trackConn(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.connsShut {
		_ = c.Close()
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

// releaseConn closes c and forgets it.
func (l *proxyLife) releaseConn(c net.Conn) {
	_ = c.Close()
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// ServeHTTP handles one proxy request: auth, latency, fault injection, then
// CONNECT tunnelling or absolute-form forwarding.
func (l *proxyLife) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !l.handlers.enter() {
		w.Header().Set("Connection", "close")
		http.Error(w, "proxy shutting down", http.StatusServiceUnavailable)
		return
	}
	defer l.handlers.leave()
	p := l.p
	p.requests.Add(1)

	if !p.authorized(r) {
		w.Header().Set("Proxy-Authenticate", `Basic realm="testbed"`)
		http.Error(w, "proxy authentication required", http.StatusProxyAuthRequired)
		return
	}
	if err := sleepCtx(r.Context(), time.Duration(p.latency.Load())); err != nil {
		abortResponse() // client gone or proxy killed
	}
	mode := FailureMode(p.failure.Load())
	switch mode {
	case Fail502:
		http.Error(w, "testbed: injected proxy failure", http.StatusBadGateway)
		return
	case FailGarbage:
		l.writeGarbage(w)
		return
	}
	if r.Method == http.MethodConnect {
		l.serveConnect(w, r, mode)
		return
	}
	l.serveForward(w, r, mode)
}

// authorized checks Proxy-Authorization when the farm has credentials.
func (p *FarmProxy) authorized(r *http.Request) bool {
	if p.user == "" {
		return true
	}
	scheme, cred, ok := strings.Cut(r.Header.Get("Proxy-Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return false
	}
	dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return false
	}
	user, pass, ok := strings.Cut(string(dec), ":")
	if !ok {
		return false
	}
	userOK := subtle.ConstantTimeCompare([]byte(user), []byte(p.user))
	passOK := subtle.ConstantTimeCompare([]byte(pass), []byte(p.pass))
	return userOK&passOK == 1
}

// writeGarbage hijacks the client connection, writes non-HTTP bytes and
// closes it.
func (l *proxyLife) writeGarbage(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		abortResponse()
	}
	if !l.trackConn(conn) {
		return
	}
	defer l.releaseConn(conn)
	_ = conn.SetDeadline(time.Now().Add(headerTimeout))
	_, _ = io.WriteString(conn, garbage)
}

// serveConnect dials the target from the proxy's source IP, answers 200 and
// splices bytes both ways until either side closes or the proxy is killed.
func (l *proxyLife) serveConnect(w http.ResponseWriter, r *http.Request, mode FailureMode) {
	target := r.Host
	if target == "" {
		http.Error(w, "CONNECT needs host:port", http.StatusBadRequest)
		return
	}
	up, err := l.p.dialer.DialContext(r.Context(), "tcp", target)
	if err != nil {
		if r.Context().Err() != nil {
			abortResponse()
		}
		http.Error(w, "testbed proxy: dial "+target+": "+err.Error(), http.StatusBadGateway)
		return
	}
	if !l.trackConn(up) {
		abortResponse()
	}
	defer l.releaseConn(up)

	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "testbed proxy: cannot hijack: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if !l.trackConn(client) {
		return
	}
	defer l.releaseConn(client)
	_ = client.SetDeadline(time.Time{}) // drop the server's header deadline
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}

	// The client may have pipelined bytes after the CONNECT request; they
	// are buffered in brw.Reader, so read the client side through it.
	done := make(chan struct{})
	go func() { // owner: this handler, which waits on done; exits when either side closes
		defer close(done)
		_, _ = io.Copy(up, brw.Reader)
		_ = client.Close()
		_ = up.Close()
	}()
	if mode == FailCloseMidResponse {
		_, _ = io.CopyN(client, up, MidResponseBytes)
	} else {
		_, _ = io.Copy(client, up)
	}
	_ = client.Close()
	_ = up.Close()
	<-done
}

// hopHeaders are stripped in both directions, along with any header named
// in Connection. Proxy-Authorization is meant for this proxy only.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

func removeHopHeaders(h http.Header) {
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

// serveForward forwards an absolute-form request through the proxy's own
// transport and streams the response back.
func (l *proxyLife) serveForward(w http.ResponseWriter, r *http.Request, mode FailureMode) {
	if !r.URL.IsAbs() || r.URL.Host == "" || (r.URL.Scheme != "http" && r.URL.Scheme != "https") {
		http.Error(w, "testbed proxy: request target must be an absolute http(s) URL", http.StatusBadRequest)
		return
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Close = false
	if r.ContentLength == 0 {
		out.Body = nil
	}
	removeHopHeaders(out.Header)

	resp, err := l.p.transport.RoundTrip(out)
	if err != nil {
		if r.Context().Err() != nil {
			abortResponse()
		}
		http.Error(w, "testbed proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()

	removeHopHeaders(resp.Header)
	h := w.Header()
	for k, vs := range resp.Header {
		h[k] = append([]string(nil), vs...)
	}
	if _, ok := resp.Header["Content-Type"]; !ok {
		h["Content-Type"] = nil // keep net/http from sniffing one
	}
	w.WriteHeader(resp.StatusCode)

	if mode == FailCloseMidResponse {
		n := int64(MidResponseBytes)
		if resp.ContentLength >= 0 {
			n = resp.ContentLength / 2
		}
		_, _ = io.CopyN(w, resp.Body, n)
		rc := http.NewResponseController(w)
		if rc.Flush() != nil {
			abortResponse()
		}
		conn, _, err := rc.Hijack()
		if err != nil {
			abortResponse()
		}
		_ = conn.Close()
		return
	}
	copyFlushing(w, resp.Body)
}

// copyFlushing streams src to w, flushing after every chunk so slow or
// incremental bodies reach the client as they arrive.
func copyFlushing(w http.ResponseWriter, src io.Reader) {
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return // client gone
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				abortResponse() // upstream broke: don't let the client see a clean end
			}
			return
		}
	}
}
