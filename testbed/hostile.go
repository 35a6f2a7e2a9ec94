package testbed

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/andybalholm/brotli"
)

// HostileConfig configures StartHostile. The zero value is valid.
type HostileConfig struct {
	// Addr is the listen address; "" means "127.0.0.1:0".
	Addr string
	// TrickleInterval is the pause between the bytes of /trickle; 0 means
	// 100 ms (10 bytes per second).
	TrickleInterval time.Duration
	// ErrorLog receives the HTTP server's internal errors; nil discards them.
	ErrorLog *log.Logger
}

// Hostile is a web server on loopback that misbehaves on purpose, one way
// per route, for tests of a client's bounds:
//
//	/ok/{n}              a small valid page: <h1>ok {n}</h1>; with ?close=1
//	                     the connection is closed after it
//	/bomb/{enc}?mib=N    Content-Encoding enc (gzip, deflate or br): a small
//	                     body that decodes to N MiB of spaces (default 1024
//	                     for gzip: about 1 MB on the wire; 64 for deflate
//	                     and br). Bodies are built once per (enc, N) and kept.
//	/trickle?n=N         declares Content-Length N (default 1 MiB) and sends
//	                     one byte per TrickleInterval
//	/endless             a chunked body of page filler that never ends
//	/slow-headers        sends nothing until the client gives up
//	/big-headers?kib=N   N KiB of response headers (default 2048)
//	/loop                redirects to itself
//	/chain/{n}           n redirects, then a page
//	/redirect?to=URL     redirects to URL
//	/charset/{kind}      text whose bytes do not match its declared charset:
//	                     latin1-as-utf8, latin1-meta, invalid-utf8,
//	                     wrong-label, utf16, unknown-label
//	/deep?n=N            N nested <div> elements (default 100000)
//	/broken              HTML with unclosed, misnested and stray tags
//	/garbage             bytes that are not HTTP, then close
//	/midbody             Content-Length 1000, 100 bytes, then close
//	/status/{code}       an empty answer with that status
//
// Every handler stops as soon as its client goes away. Create it with
// StartHostile, stop it with Close; all methods are safe for concurrent
// use.
type Hostile struct {
	cfg       HostileConfig
	srv       *http.Server
	url       string
	ctx       context.Context // canceled by Close
	cancel    context.CancelFunc
	serveDone chan struct{}
	serveErr  error
	handlers  gate
	srvConns  connTracker

	active    atomic.Int64
	connsNew  atomic.Int64
	connsGone atomic.Int64

	mu       sync.Mutex // guards requests, sent, bombs
	requests map[string]int64
	sent     map[string]int64
	bombs    map[string][]byte

	closeOnce sync.Once
	closeErr  error
}

// HostileStats is a snapshot of a Hostile server's traffic.
type HostileStats struct {
	// Requests counts requests per route (the first path segment, e.g.
	// "trickle").
	Requests map[string]int64
	// BodyBytes counts body bytes written per route (before any
	// Content-Encoding was undone, i.e. as sent).
	BodyBytes map[string]int64
	// Active is the number of handlers running now.
	Active int64
	// Conns is the number of connections accepted; Open of those still
	// open (not closed, not hijacked).
	Conns, Open int64
}

// StartHostile listens on cfg.Addr and serves in the background until Close.
func StartHostile(cfg HostileConfig) (*Hostile, error) {
	if cfg.TrickleInterval < 0 {
		return nil, fmt.Errorf("testbed: HostileConfig.TrickleInterval = %v, want >= 0", cfg.TrickleInterval)
	}
	if cfg.TrickleInterval == 0 {
		cfg.TrickleInterval = 100 * time.Millisecond
	}
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("testbed: hostile listen: %w", err)
	}
	h := &Hostile{
		cfg:       cfg,
		url:       "http://" + dialableAddr(ln.Addr()),
		serveDone: make(chan struct{}),
		requests:  map[string]int64{},
		sent:      map[string]int64{},
		bombs:     map[string][]byte{},
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	errLog := cfg.ErrorLog
	if errLog == nil {
		errLog = log.New(io.Discard, "", 0)
	}
	h.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: headerTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          errLog,
		BaseContext:       func(net.Listener) context.Context { return h.ctx },
		ConnState: func(c net.Conn, st http.ConnState) {
			h.srvConns.hook(c, st)
			switch st {
			case http.StateNew:
				h.connsNew.Add(1)
			case http.StateClosed, http.StateHijacked:
				h.connsGone.Add(1)
			}
		},
	}
	go func() { // owner: h; exits when Close shuts the server down
		defer close(h.serveDone)
		h.serveErr = h.srv.Serve(ln)
	}()
	return h, nil
}

// URL returns the base URL, "http://127.0.0.1:PORT", without a trailing slash.
func (h *Hostile) URL() string { return h.url }

// Stats returns a snapshot of the counters; the maps are the caller's.
func (h *Hostile) Stats() HostileStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := HostileStats{Requests: map[string]int64{}, BodyBytes: map[string]int64{}, Active: h.active.Load()}
	for k, v := range h.requests {
		s.Requests[k] = v
	}
	for k, v := range h.sent {
		s.BodyBytes[k] = v
	}
	s.Conns = h.connsNew.Load()
	s.Open = s.Conns - h.connsGone.Load()
	return s
}

// Close stops the server: endless and trickling answers are cut, the
// listener and every connection closed, and Close returns once every
// handler has exited. It is idempotent.
func (h *Hostile) Close() error {
	h.closeOnce.Do(func() {
		h.cancel()
		_ = h.srv.Close()
		h.handlers.closeAndWait()
		<-h.serveDone
		h.srvConns.wait()
		if h.serveErr != nil && !errors.Is(h.serveErr, http.ErrServerClosed) {
			h.closeErr = fmt.Errorf("testbed: hostile serve: %w", h.serveErr)
		}
	})
	return h.closeErr
}

func (h *Hostile) count(route string, body int64) {
	h.mu.Lock()
	h.sent[route] += body
	h.mu.Unlock()
}

// ServeHTTP dispatches on the first path segment.
func (h *Hostile) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.handlers.enter() {
		w.Header().Set("Connection", "close")
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	defer h.handlers.leave()
	h.active.Add(1)
	defer h.active.Add(-1)
	route, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	h.mu.Lock()
	h.requests[route]++
	h.mu.Unlock()
	q := r.URL.Query()
	switch route {
	case "ok":
		if q.Get("close") != "" {
			w.Header().Set("Connection", "close")
		}
		h.write(w, route, "text/html; charset=utf-8", fmt.Sprintf("<!DOCTYPE html><html><head><title>ok %s</title></head><body><h1>ok %s</h1><span class=\"price\">$%s</span></body></html>\n", rest, rest, rest))
	case "bomb":
		h.serveBomb(w, r, rest, q.Get("mib"))
	case "trickle":
		h.serveTrickle(w, r, intParam(q.Get("n"), 1<<20))
	case "endless":
		h.serveEndless(w, r)
	case "slow-headers":
		<-r.Context().Done()
		abortResponse()
	case "big-headers":
		fill := strings.Repeat("x", 1000)
		for i := range intParam(q.Get("kib"), 2048) {
			w.Header().Set("X-Filler-"+strconv.Itoa(i), fill)
		}
		h.write(w, route, "text/html", "<h1>big headers</h1>")
	case "loop":
		http.Redirect(w, r, "/loop", http.StatusFound)
	case "chain":
		n := intParam(rest, 0)
		if n <= 0 {
			h.write(w, route, "text/html; charset=utf-8", "<h1>end of chain</h1>")
			return
		}
		http.Redirect(w, r, "/chain/"+strconv.Itoa(n-1), http.StatusFound)
	case "redirect":
		w.Header().Set("Location", q.Get("to"))
		w.WriteHeader(http.StatusFound)
	case "charset":
		ct, body, ok := charsetCase(rest)
		if !ok {
			http.NotFound(w, r)
			return
		}
		h.write(w, route, ct, body)
	case "deep":
		n := intParam(q.Get("n"), 100000)
		h.write(w, route, "text/html; charset=utf-8", "<html><body>"+strings.Repeat("<div>", n)+"<h1>deep</h1>"+strings.Repeat("</div>", n)+"</body></html>")
	case "broken":
		h.write(w, route, "text/html", `<html><head><title>broken</title><body><h1>broken <b><i>page</b></i></h1><table><td>cell<tr><p>para</table></x><span class=price>$1<div id=a id=b><a href=/x<y>link</a><!-- unclosed comment <h1>second</h1>`)
	case "garbage":
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			abortResponse()
		}
		_, _ = io.WriteString(conn, garbage)
		_ = conn.Close()
	case "midbody":
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "<h1>cut</h1>"+strings.Repeat(" ", 88))
		h.count(route, 100)
		rc := http.NewResponseController(w)
		_ = rc.Flush()
		if conn, _, err := rc.Hijack(); err == nil {
			_ = conn.Close()
		}
	case "status":
		code := intParam(rest, 500)
		if code < 200 || code > 599 {
			code = 500
		}
		w.WriteHeader(code)
	default:
		http.NotFound(w, r)
	}
}

func intParam(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return def
	}
	return n
}

func (h *Hostile) write(w http.ResponseWriter, route, contentType, body string) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	n, _ := io.WriteString(w, body)
	h.count(route, int64(n))
}

// charsetCase returns the Content-Type and body of /charset/{kind}.
func charsetCase(kind string) (string, string, bool) {
	switch kind {
	case "latin1-as-utf8": // declared UTF-8, sent as ISO-8859-1
		return "text/html; charset=utf-8", "<html><body><h1>Caf\xe9 cr\xe8me br\xfbl\xe9e</h1><span class=\"price\">\xa312</span></body></html>", true
	case "latin1-meta": // no charset in the header, a <meta> that is right
		return "text/html", "<html><head><meta charset=\"iso-8859-1\"></head><body><h1>Caf\xe9 cr\xe8me</h1><span class=\"price\">\xa312</span></body></html>", true
	case "invalid-utf8":
		return "text/html; charset=utf-8", "<html><body><h1>bad \xff\xfe\xc3\x28 bytes \xed\xa0\x80</h1><span class=\"price\">\xe2\x82</span></body></html>", true
	case "wrong-label": // declared Shift_JIS, sent as UTF-8
		return "text/html; charset=shift_jis", "<html><body><h1>Caf\u00e9 \u65e5\u672c</h1><span class=\"price\">\u00a512</span></body></html>", true
	case "utf16": // UTF-16LE with a BOM, declared nothing
		return "text/html", utf16le("<html><body><h1>wide caf\u00e9</h1><span class=\"price\">$3</span></body></html>"), true
	case "unknown-label":
		return "text/html; charset=x-no-such-charset", "<html><body><h1>unknown \xe9</h1><span class=\"price\">$4</span></body></html>", true
	}
	return "", "", false
}

func utf16le(s string) string {
	b := []byte{0xff, 0xfe}
	for _, r := range s {
		b = append(b, byte(r), byte(r>>8)) // the test text is in the BMP
	}
	return string(b)
}

// serveBomb sends a small body that decodes to mib MiB of spaces.
func (h *Hostile) serveBomb(w http.ResponseWriter, r *http.Request, enc, mibParam string) {
	def := 64
	if enc == "gzip" {
		def = 1024
	}
	mib := intParam(mibParam, def)
	body, err := h.bomb(enc, mib)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/html")
	w.Header().Set("Content-Encoding", enc)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	n, _ := w.Write(body)
	h.count("bomb", int64(n))
}

// bomb builds (once) the encoded body for enc and mib.
func (h *Hostile) bomb(enc string, mib int) ([]byte, error) {
	key := enc + "/" + strconv.Itoa(mib)
	h.mu.Lock()
	defer h.mu.Unlock() // building under the lock makes concurrent requests wait for one build
	if b, ok := h.bombs[key]; ok {
		return b, nil
	}
	chunk := bytes.Repeat([]byte(" "), 1<<20)
	var buf bytes.Buffer
	switch enc {
	case "gzip":
		// A gzip file may hold several members, decoded one after the
		// other: one member of 1 MiB, repeated.
		var m bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&m, gzip.BestCompression)
		_, _ = zw.Write(chunk)
		_ = zw.Close()
		for range mib {
			buf.Write(m.Bytes())
		}
	case "deflate":
		zw, _ := zlib.NewWriterLevel(&buf, flate.BestSpeed)
		for range mib {
			_, _ = zw.Write(chunk)
		}
		_ = zw.Close()
	case "br":
		bw := brotli.NewWriterLevel(&buf, 1)
		for range mib {
			_, _ = bw.Write(chunk)
		}
		_ = bw.Close()
	default:
		return nil, fmt.Errorf("unknown encoding %q", enc)
	}
	h.bombs[key] = buf.Bytes()
	return buf.Bytes(), nil
}

// serveTrickle declares n bytes and sends one per TrickleInterval until
// the client goes away.
func (h *Hostile) serveTrickle(w http.ResponseWriter, r *http.Request, n int) {
	w.Header().Set("Content-Type", "text/html")
	w.Header().Set("Content-Length", strconv.Itoa(n))
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	t := time.NewTicker(h.cfg.TrickleInterval)
	defer t.Stop()
	for i := range n {
		if _, err := w.Write([]byte{"<p>trickle</p>"[i%14]}); err != nil {
			return
		}
		h.count("trickle", 1)
		if rc.Flush() != nil {
			return
		}
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
	}
}

// serveEndless sends chunks of filler until the client goes away.
func (h *Hostile) serveEndless(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(http.StatusOK)
	chunk := []byte("<p>" + makeFiller(32<<10-8) + "</p>\n")
	rc := http.NewResponseController(w)
	for r.Context().Err() == nil {
		n, err := w.Write(chunk)
		h.count("endless", int64(n))
		if err != nil || rc.Flush() != nil {
			return
		}
	}
}

// Canary is a TCP listener that counts the connections that reach it and
// closes each at once. A test points refused URLs at it and checks that
// Conns stays 0.
type Canary struct {
	ln    net.Listener
	conns atomic.Int64
	done  chan struct{}
	once  sync.Once
}

// StartCanary listens on addr ("127.0.0.1:0", "[::1]:0", …) until Close.
func StartCanary(addr string) (*Canary, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("testbed: canary listen: %w", err)
	}
	c := &Canary{ln: ln, done: make(chan struct{})}
	go func() { // owner: c; exits when Close closes the listener
		defer close(c.done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			c.conns.Add(1)
			_ = conn.Close()
		}
	}()
	return c, nil
}

// Addr returns the listen address, e.g. "127.0.0.1:PORT".
func (c *Canary) Addr() string { return c.ln.Addr().String() }

// Port returns the listen port.
func (c *Canary) Port() int { return c.ln.Addr().(*net.TCPAddr).Port }

// Conns returns how many connections have been accepted.
func (c *Canary) Conns() int64 { return c.conns.Load() }

// Close stops listening and waits for the accept loop. It is idempotent.
func (c *Canary) Close() error {
	var err error
	c.once.Do(func() {
		err = c.ln.Close()
		<-c.done
	})
	return err
}
