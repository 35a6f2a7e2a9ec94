package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// RateWindow is the default length of the sliding window used by
// SiteConfig.PerIPPerMinute and reported by Stats.MaxPerIPPerMinute (see
// SiteConfig.Window).
const RateWindow = 60 * time.Second

// DefaultProducts is the catalog size used when SiteConfig.Products is 0.
const DefaultProducts = 10000

// StatusClientClosed is recorded in Stats.ByStatus for a product request
// whose client went away while the site was still waiting out
// SiteConfig.Latency (the nginx convention). Nothing is sent for it.
const StatusClientClosed = 499

// SiteConfig configures StartSite. The zero value is a valid configuration.
type SiteConfig struct {
	// Addr is the listen address; "" means "127.0.0.1:0".
	Addr string
	// Products is the number of product ids served, 1..Products;
	// 0 means DefaultProducts.
	Products int
	// PageBytes pads each product page with a <p class="filler"> of lorem
	// text so that the page is PageBytes long. Pages that are already longer
	// are not padded. 0 means no padding.
	PageBytes int
	// Latency is waited out (in real time) before answering each product
	// request that passed the rate limiter. The wait ends early if the
	// client goes away or the site is closed.
	Latency time.Duration
	// PerIPPerMinute, if positive, admits at most this many product requests
	// per client source IP in any sliding Window (a minute by default). Requests past the limit
	// are answered 429 with a Retry-After header holding the whole seconds
	// (at least 1) until the oldest admitted request leaves the window.
	// Rejected requests do not use up the window. 0 means unlimited.
	PerIPPerMinute int
	// FailEvery, if positive, answers every FailEvery-th request for an
	// existing product with 503 (an injected 5xx). The counter is global,
	// counts only requests that passed the rate limiter, and is not reset by
	// ResetStats. 0 means never.
	FailEvery int
	// Now is the clock of the rate-limit window; nil means time.Now. It must
	// be safe for concurrent use. Latency always uses real time.
	Now func() time.Time
	// ErrorLog receives the HTTP server's internal errors; nil discards them.
	ErrorLog *log.Logger
	// Window is the length of the sliding window of PerIPPerMinute and
	// Stats.MaxPerIPPerMinute; 0 means RateWindow (a minute). A shorter
	// window with a proportionally smaller limit lets a test see the same
	// per-IP rate in a few seconds (3 s and 9 requests is 180 a minute).
	Window time.Duration
}

// Stats is a snapshot of the site's product-page traffic. Only requests
// under /product/ count; /stats and / do not.
type Stats struct {
	// Requests is the number of product-page requests received, whatever
	// their outcome.
	Requests int64 `json:"requests"`
	// ByIP counts product-page requests per client source IP (the host part
	// of the connection's remote address).
	ByIP map[string]int64 `json:"by_ip"`
	// ByStatus counts answers per HTTP status. A status is recorded just
	// before the answer is sent, so while requests are in flight the sum may
	// be lower than Requests. See also StatusClientClosed.
	ByStatus map[int]int64 `json:"by_status"`
	// Limited is the number of 429 answers sent.
	Limited int64 `json:"limited"`
	// MaxPerIPPerMinute is, per client IP, the highest number of admitted
	// (not rate-limited) requests seen in any sliding Window (a minute by
	// default; see SiteConfig.Window). With
	// PerIPPerMinute > 0 it never exceeds that limit. It is tracked even when
	// the site is unlimited.
	MaxPerIPPerMinute map[string]int64 `json:"max_per_ip_per_minute"`
}

// Product is the data shown on a product page.
type Product struct {
	ID    int
	Name  string
	Price string
	SKU   string
}

var productNouns = [...]string{
	"Widget", "Gadget", "Gizmo", "Sprocket",
	"Doohickey", "Whatsit", "Contraption", "Thingamajig",
}

// ExpectedProduct returns the product the site shows for id. It is a pure
// function of id, e.g. for 42: Name "Product 42 Gizmo", Price "$330.11",
// SKU "SKU-000042". The site serves ids 1..Products.
func ExpectedProduct(id int) Product {
	noun := productNouns[((id%len(productNouns))+len(productNouns))%len(productNouns)]
	cents := 100 + ((id*7919+13)%99900+99900)%99900
	return Product{
		ID:    id,
		Name:  fmt.Sprintf("Product %d %s", id, noun),
		Price: fmt.Sprintf("$%d.%02d", cents/100, cents%100),
		SKU:   fmt.Sprintf("SKU-%06d", id),
	}
}

// RelatedIDs returns the ids a product page links to, in page order, for a
// catalog of the given size: id+1, id+2 and id*7 mod products + 1, each
// wrapped into 1..products, without duplicates and without id itself.
// The page's hrefs are relative: "/product/N".
func RelatedIDs(id, products int) []int {
	if products <= 0 || id < 1 || id > products {
		return nil
	}
	wrap := func(x int) int { return (x-1)%products + 1 }
	out := make([]int, 0, 3)
	for _, r := range []int{wrap(id + 1), wrap(id + 2), (id*7)%products + 1} {
		if r == id || containsInt(out, r) {
			continue
		}
		out = append(out, r)
	}
	return out
}

func containsInt(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// Site is a catalog web site served on loopback. Create it with StartSite
// and stop it with Close. All methods are safe for concurrent use.
type Site struct {
	cfg      SiteConfig
	window   time.Duration
	products int
	now      func() time.Time
	filler   string // PageBytes of lorem text, sliced per page

	srv       *http.Server
	url       string
	ctx       context.Context // canceled by Close; base of every request
	cancel    context.CancelFunc
	serveDone chan struct{}
	serveErr  error // written before serveDone is closed
	handlers  gate
	conns     connTracker

	failSeq atomic.Int64
	mode    atomic.Int32 // a SiteMode, set by SetMode

	mu        sync.Mutex // guards everything below
	requests  int64
	byIP      map[string]int64
	byStatus  map[int]int64
	limited   int64
	maxPerIP  map[string]int64
	windows   map[string]*ipWindow // admitted timestamps per IP, pruned to RateWindow
	lastSweep time.Time

	closeOnce sync.Once
	closeErr  error
}

// StartSite listens on cfg.Addr and serves the catalog in a background
// goroutine until Close is called. Routes:
//
//	GET /product/{id}  product page (text/html; charset=utf-8), 404 for
//	                   unknown ids; subject to rate limit, latency, failures
//	GET /stats         Stats as JSON
//	GET /              small index page
func StartSite(cfg SiteConfig) (*Site, error) {
	switch {
	case cfg.Products < 0:
		return nil, fmt.Errorf("testbed: SiteConfig.Products = %d, want >= 0", cfg.Products)
	case cfg.PageBytes < 0:
		return nil, fmt.Errorf("testbed: SiteConfig.PageBytes = %d, want >= 0", cfg.PageBytes)
	case cfg.Latency < 0:
		return nil, fmt.Errorf("testbed: SiteConfig.Latency = %v, want >= 0", cfg.Latency)
	case cfg.PerIPPerMinute < 0:
		return nil, fmt.Errorf("testbed: SiteConfig.PerIPPerMinute = %d, want >= 0", cfg.PerIPPerMinute)
	case cfg.FailEvery < 0:
		return nil, fmt.Errorf("testbed: SiteConfig.FailEvery = %d, want >= 0", cfg.FailEvery)
	case cfg.Window < 0:
		return nil, fmt.Errorf("testbed: SiteConfig.Window = %v, want >= 0", cfg.Window)
	}
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	s := &Site{
		cfg:       cfg,
		window:    cfg.Window,
		products:  cfg.Products,
		now:       cfg.Now,
		filler:    makeFiller(cfg.PageBytes),
		serveDone: make(chan struct{}),
		byIP:      make(map[string]int64),
		byStatus:  make(map[int]int64),
		maxPerIP:  make(map[string]int64),
		windows:   make(map[string]*ipWindow),
	}
	if s.products == 0 {
		s.products = DefaultProducts
	}
	if s.window == 0 {
		s.window = RateWindow
	}
	if s.now == nil {
		s.now = time.Now
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("testbed: site listen: %w", err)
	}
	s.url = "http://" + dialableAddr(ln.Addr())
	s.ctx, s.cancel = context.WithCancel(context.Background())

	mux := http.NewServeMux()
	mux.HandleFunc("GET /product/", s.serveProduct)
	mux.HandleFunc("GET /stats", s.serveStats)
	mux.HandleFunc("GET /{$}", s.serveIndex)
	errLog := cfg.ErrorLog
	if errLog == nil {
		errLog = log.New(io.Discard, "", 0)
	}
	s.srv = &http.Server{
		Handler:           s.track(mux),
		ReadHeaderTimeout: headerTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          errLog,
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
		ConnState:         s.conns.hook,
	}
	go func() { // owner: s; exits when Close shuts the server down
		defer close(s.serveDone)
		s.serveErr = s.srv.Serve(ln)
	}()
	return s, nil
}

// dialableAddr renders a listener address for use in a URL, replacing an
// unspecified IP (from a ":0" style listen address) with 127.0.0.1.
func dialableAddr(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(ta.Port))
	}
	return a.String()
}

// URL returns the site's base URL, "http://127.0.0.1:PORT", without a
// trailing slash.
func (s *Site) URL() string { return s.url }

// ProductURL returns the absolute URL of product id's page.
func (s *Site) ProductURL(id int) string { return s.url + "/product/" + strconv.Itoa(id) }

// Window returns the length of the site's rate-limit window.
func (s *Site) Window() time.Duration { return s.window }

// Products returns the catalog size: the site serves ids 1..Products().
func (s *Site) Products() int { return s.products }

// Stats returns a snapshot of the traffic counters. The maps are copies the
// caller may keep and modify.
func (s *Site) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Requests:          s.requests,
		ByIP:              maps.Clone(s.byIP),
		ByStatus:          maps.Clone(s.byStatus),
		Limited:           s.limited,
		MaxPerIPPerMinute: maps.Clone(s.maxPerIP),
	}
}

// ResetStats zeroes every counter in Stats. It does not reset the rate
// limiter's windows (the limit keeps being enforced across a reset) nor the
// FailEvery counter.
func (s *Site) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = 0
	s.limited = 0
	clear(s.byIP)
	clear(s.byStatus)
	clear(s.maxPerIP)
}

// Close stops the site: it stops accepting connections, cuts short any
// Latency waits (those requests are answered 503), lets in-flight answers
// finish for up to a few seconds before closing their connections, and
// returns once the serving goroutine, all handlers and all per-connection
// goroutines have exited. Close is idempotent; later calls return the first
// call's result.
func (s *Site) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			_ = s.srv.Close() // grace period over: close active connections too
		}
		s.handlers.closeAndWait()
		<-s.serveDone
		s.conns.wait()
		if s.serveErr != nil && !errors.Is(s.serveErr, http.ErrServerClosed) {
			s.closeErr = fmt.Errorf("testbed: site serve: %w", s.serveErr)
		}
	})
	return s.closeErr
}

// track wraps h so that Close can wait for every running handler.
func (s *Site) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.handlers.enter() {
			w.Header().Set("Connection", "close")
			http.Error(w, "site shutting down", http.StatusServiceUnavailable)
			return
		}
		defer s.handlers.leave()
		h.ServeHTTP(w, r)
	})
}

// clientIP returns the host part of a RemoteAddr.
func clientIP(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	return host
}

// SiteMode is how a Site answers product requests; see Site.SetMode.
type SiteMode int32

const (
	// SiteNormal serves the catalog as configured.
	SiteNormal SiteMode = iota
	// SiteLimited answers every product request 429 with "Retry-After: 1".
	SiteLimited
	// SiteHang answers no product request: it waits until the client goes
	// away (a client timeout) or the site closes, and records
	// StatusClientClosed.
	SiteHang
)

// SetMode switches how product requests that arrive from now on are
// answered, so that a soak can move one domain between 200s, 429s and
// timeouts. Safe for concurrent use; the zero mode is SiteNormal.
func (s *Site) SetMode(m SiteMode) { s.mode.Store(int32(m)) }

func (s *Site) serveProduct(w http.ResponseWriter, r *http.Request) {
	if m := SiteMode(s.mode.Load()); m != SiteNormal {
		s.mu.Lock()
		s.requests++
		s.mu.Unlock()
		if m == SiteLimited {
			s.mu.Lock()
			s.limited++
			s.mu.Unlock()
			w.Header().Set("Retry-After", "1")
			s.answerError(w, http.StatusTooManyRequests, "rate limit exceeded (site mode)")
			return
		}
		<-r.Context().Done() // SiteHang: the client gives up, or Close (the base context)
		s.recordStatus(StatusClientClosed)
		abortResponse()
	}
	ip := clientIP(r.RemoteAddr)
	if ok, retryAfter := s.admit(ip); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		s.answerError(w, http.StatusTooManyRequests, "rate limit exceeded")
		return
	}
	if err := sleepCtx(r.Context(), s.cfg.Latency); err != nil {
		if s.ctx.Err() != nil { // the site is closing, not the client
			w.Header().Set("Connection", "close")
			s.answerError(w, http.StatusServiceUnavailable, "site shutting down")
			return
		}
		s.recordStatus(StatusClientClosed)
		abortResponse()
	}
	id, ok := s.parseID(strings.TrimPrefix(r.URL.Path, "/product/"))
	if !ok {
		s.answerError(w, http.StatusNotFound, "no such product")
		return
	}
	if fe := int64(s.cfg.FailEvery); fe > 0 && s.failSeq.Add(1)%fe == 0 {
		s.answerError(w, http.StatusServiceUnavailable, "injected failure")
		return
	}
	page := s.renderProduct(id)
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(page)))
	s.recordStatus(http.StatusOK)
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, page) // a failed write means the client is gone
}

// answerError records status and sends a short plain-text error.
func (s *Site) answerError(w http.ResponseWriter, status int, msg string) {
	s.recordStatus(status)
	http.Error(w, msg, status)
}

// parseID accepts only canonical decimal ids in 1..products, so that every
// product has exactly one URL.
func (s *Site) parseID(p string) (int, bool) {
	id, err := strconv.Atoi(p)
	if err != nil || id < 1 || id > s.products || strconv.Itoa(id) != p {
		return 0, false
	}
	return id, true
}

func (s *Site) recordStatus(status int) {
	s.mu.Lock()
	s.byStatus[status]++
	s.mu.Unlock()
}

// ipWindow holds the admitted request times of one IP; ts[head:] are live
// and ascending (they are taken under Site.mu).
type ipWindow struct {
	ts   []time.Time
	head int
}

// prune drops timestamps that are window or more older than now and
// reports how many remain.
func (w *ipWindow) prune(now time.Time, window time.Duration) int {
	for w.head < len(w.ts) && now.Sub(w.ts[w.head]) >= window {
		w.ts[w.head] = time.Time{}
		w.head++
	}
	if w.head > 0 && w.head >= len(w.ts)/2 { // compact: amortized O(1)
		n := copy(w.ts, w.ts[w.head:])
		clear(w.ts[n:])
		w.ts, w.head = w.ts[:n], 0
	}
	return len(w.ts) - w.head
}

// admit counts a product request from ip and applies the rate limit. If the
// request is rejected it returns false and the Retry-After seconds.
func (s *Site) admit(ip string) (bool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	s.byIP[ip]++
	now := s.now()
	if now.Sub(s.lastSweep) >= s.window || now.Before(s.lastSweep) {
		// Forget idle IPs so limiter state stays bounded by recent traffic.
		for k, w := range s.windows {
			if w.prune(now, s.window) == 0 {
				delete(s.windows, k)
			}
		}
		s.lastSweep = now
	}
	w := s.windows[ip]
	if w == nil {
		w = &ipWindow{}
		s.windows[ip] = w
	}
	live := w.prune(now, s.window)
	if limit := s.cfg.PerIPPerMinute; limit > 0 && live >= limit {
		s.limited++
		wait := w.ts[w.head].Add(s.window).Sub(now)
		secs := int((wait + time.Second - 1) / time.Second)
		return false, max(secs, 1)
	}
	w.ts = append(w.ts, now)
	if n := int64(live + 1); n > s.maxPerIP[ip] {
		s.maxPerIP[ip] = n
	}
	return true, 0
}

func (s *Site) serveStats(w http.ResponseWriter, r *http.Request) {
	body, err := json.Marshal(s.Stats())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(body, '\n'))
}

func (s *Site) serveIndex(w http.ResponseWriter, r *http.Request) {
	var b strings.Builder
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>sluice testbed catalog</title></head>\n<body>\n")
	fmt.Fprintf(&b, "<h1>sluice testbed catalog</h1>\n<p>%d products. <a href=\"/stats\">stats</a></p>\n<ul class=\"products\">\n", s.products)
	for id := 1; id <= min(s.products, 20); id++ {
		fmt.Fprintf(&b, "<li><a href=\"/product/%d\">%s</a></li>\n", id, html.EscapeString(ExpectedProduct(id).Name))
	}
	b.WriteString("</ul>\n</body>\n</html>\n")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = io.WriteString(w, b.String())
}

// renderProduct builds the page for a valid id, padded to PageBytes.
func (s *Site) renderProduct(id int) string {
	p := ExpectedProduct(id)
	name := html.EscapeString(p.Name)
	var b strings.Builder
	fmt.Fprintf(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>%s</title>\n</head>\n<body>\n", name)
	fmt.Fprintf(&b, "<div class=\"product\" itemscope itemtype=\"https://schema.org/Product\" data-id=\"%d\">\n", id)
	fmt.Fprintf(&b, "<h1>%s</h1>\n<span class=\"price\">%s</span>\n<meta itemprop=\"sku\" content=\"%s\">\n</div>\n",
		name, html.EscapeString(p.Price), html.EscapeString(p.SKU))
	b.WriteString("<ul class=\"related\">\n")
	for _, r := range RelatedIDs(id, s.products) {
		fmt.Fprintf(&b, "<li><a href=\"/product/%d\">%s</a></li>\n", r, html.EscapeString(ExpectedProduct(r).Name))
	}
	b.WriteString("</ul>\n")
	const fillerOpen, fillerClose, tail = "<p class=\"filler\">", "</p>\n", "</body>\n</html>\n"
	if pad := s.cfg.PageBytes - b.Len() - len(fillerOpen) - len(fillerClose) - len(tail); pad > 0 {
		b.WriteString(fillerOpen)
		b.WriteString(s.filler[:pad])
		b.WriteString(fillerClose)
	}
	b.WriteString(tail)
	return b.String()
}

const lorem = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. " +
	"Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. "

// makeFiller returns n bytes of lorem text (ASCII, no markup).
func makeFiller(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat(lorem, n/len(lorem)+1)[:n]
}
