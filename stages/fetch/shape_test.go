package fetch

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

// seen is one request as the echo server received it.
type seen struct {
	From   string // source IP
	Host   string
	Method string
	Path   string
	Header http.Header
	Body   string
}

// echo is a loopback server that records what it receives. /set?v=X
// answers Set-Cookie: sid=X; /fail answers 503 to every request.
type echo struct {
	mu   sync.Mutex
	got  []seen
	srvs []*httptest.Server
}

func (e *echo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	e.mu.Lock()
	e.got = append(e.got, seen{From: host, Host: r.Host, Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: string(b)})
	e.mu.Unlock()
	switch r.URL.Path {
	case "/set":
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: r.URL.Query().Get("v"), Path: "/"})
	case "/fail":
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	fmt.Fprint(w, "<html><body><h1>ok</h1></body></html>")
}

func (e *echo) requests() []seen {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]seen(nil), e.got...)
}

// startEcho starts an echo server on 127.0.0.1 (and, with alsoOn, the
// same handler on that loopback address too); it returns their base URLs.
func startEcho(t *testing.T, tlsToo bool, alsoOn ...string) (*echo, []string) {
	t.Helper()
	e := &echo{}
	var urls []string
	start := func(addr string) {
		srv := httptest.NewUnstartedServer(e)
		if addr != "" {
			ln, err := net.Listen("tcp", addr+":0")
			if err != nil {
				t.Fatal(err)
			}
			srv.Listener.Close()
			srv.Listener = ln
		}
		if tlsToo {
			srv.StartTLS()
		} else {
			srv.Start()
		}
		t.Cleanup(srv.Close)
		e.srvs = append(e.srvs, srv)
		urls = append(urls, srv.URL)
	}
	start("")
	for _, a := range alsoOn {
		start(a)
	}
	return e, urls
}

func task(t *testing.T, raw string, msg record.Message) record.Task {
	t.Helper()
	tk := newTask(t, raw, msg.Session)
	msg.URL = raw
	tk.Msg = msg
	return tk
}

var testUAs = []string{
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/143.0.0.0 Safari/537.36",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/143.0.0.0 Safari/537.36",
	"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/143.0.0.0 Safari/537.36",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:146.0) Gecko/20100101 Firefox/146.0",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.6 Safari/605.1.15",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/143.0.0.0 Safari/537.36 Edg/143.0.0.0",
}

// TestUserAgentPerProxyAndSession: through the proxy farm, every proxy
// (one exit IP) sends one User-Agent across many requests, the one its
// id hashes to, and several are used across proxies; a sticky session
// keeps its own User-Agent whatever proxy carries it.
func TestUserAgentPerProxyAndSession(t *testing.T) {
	e, urls := startEcho(t, false)
	farm, pool := newFarmPool(t, 6, 200, testbed.FarmConfig{}, proxy.WithStrategy(proxy.RoundRobin))
	cfg := quickConfig(pool, 4)
	cfg.Shaping.UserAgents = testUAs
	var tasks []record.Task
	for i := range 60 {
		tasks = append(tasks, task(t, fmt.Sprintf("%s/p/%d", urls[0], i), record.Message{}))
	}
	for _, sess := range []string{"cart-1", "cart-2", "cart-3", "cart-4"} {
		for i := range 8 {
			tasks = append(tasks, task(t, fmt.Sprintf("%s/s/%s/%d", urls[0], sess, i), record.Message{Session: sess}))
		}
	}
	requireAllOK(t, tasks, fetchAll(t, cfg, tasks))

	idOf := map[string]string{}
	for id, ip := range srcOf(farm) {
		idOf[ip] = id
	}
	byIP, bySession := map[string]map[string]bool{}, map[string]map[string]bool{}
	used := map[string]bool{}
	for _, r := range e.requests() {
		ua := r.Header.Get("User-Agent")
		if sess, ok := strings.CutPrefix(r.Path, "/s/"); ok {
			sess = sess[:strings.IndexByte(sess, '/')]
			if bySession[sess] == nil {
				bySession[sess] = map[string]bool{}
			}
			bySession[sess][ua] = true
			if want := pick(testUAs, sess); ua != want {
				t.Errorf("session %s sent %q, want %q", sess, ua, want)
			}
			continue
		}
		id := idOf[r.From]
		if id == "" {
			t.Fatalf("request from %s, not through a farm proxy", r.From)
		}
		if byIP[r.From] == nil {
			byIP[r.From] = map[string]bool{}
		}
		byIP[r.From][ua] = true
		used[ua] = true
		if want := pick(testUAs, id); ua != want {
			t.Errorf("proxy %s sent %q, want %q", id, ua, want)
		}
	}
	if len(byIP) != farm.Len() {
		t.Errorf("%d proxies carried requests, want all %d", len(byIP), farm.Len())
	}
	for ip, uas := range byIP {
		if len(uas) != 1 {
			t.Errorf("exit IP %s sent %d User-Agents: %v", ip, len(uas), keys(uas))
		}
	}
	for s, uas := range bySession {
		if len(uas) != 1 {
			t.Errorf("session %s sent %d User-Agents", s, len(uas))
		}
	}
	if len(used) < 2 {
		t.Errorf("one User-Agent across %d proxies: no rotation", len(byIP))
	}
}

// TestDefaultHeadersLookLikeChrome: with no shaping configured, a request
// carries a current Chrome's navigation headers; over https also Fetch
// Metadata and client hints that match the User-Agent's version; over
// http not those (Chrome sends them to secure origins only). The encoding
// asked for stays sluice's.
func TestDefaultHeadersLookLikeChrome(t *testing.T) {
	for _, secure := range []bool{false, true} {
		t.Run(fmt.Sprintf("https=%v", secure), func(t *testing.T) {
			e, urls := startEcho(t, secure)
			cfg := quickConfig(nil, 1)
			if secure {
				cfg.TLS = &tls.Config{RootCAs: e.srvs[0].Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
			}
			tasks := []record.Task{task(t, urls[0]+"/", record.Message{})}
			requireAllOK(t, tasks, fetchAll(t, cfg, tasks))
			h := e.requests()[0].Header
			want := map[string]string{
				"User-Agent": DefaultUserAgent, "Accept": acceptChrome, "Accept-Language": "en-US,en;q=0.9",
				"Upgrade-Insecure-Requests": "1", "Accept-Encoding": acceptEncoding,
			}
			hints := map[string]string{
				"Sec-Fetch-Dest": "document", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "none", "Sec-Fetch-User": "?1",
				"Sec-Ch-Ua":        `"Google Chrome";v="143", "Chromium";v="143", "Not A(Brand";v="24"`,
				"Sec-Ch-Ua-Mobile": "?0", "Sec-Ch-Ua-Platform": `"Windows"`,
			}
			for k, v := range hints {
				if secure {
					want[k] = v
				} else if h.Get(k) != "" {
					t.Errorf("%s sent over http", k)
				}
			}
			for k, v := range want {
				if got := h.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
		})
	}
}

// TestHeadersPerDomainAndMessage: a requests: rule's headers, cookies and
// User-Agent reach only the hosts it matches; a message's headers
// override the rule's; an empty value removes a default header; a bot's
// User-Agent gets no browser headers.
func TestHeadersPerDomainAndMessage(t *testing.T) {
	e, urls := startEcho(t, false, "127.0.0.250")
	cfg := quickConfig(nil, 1)
	cfg.Shaping = Shaping{
		Headers: map[string]string{"X-Everywhere": "1"},
		Cookies: map[string]string{"consent": "yes"},
		Rules: []RequestRule{{
			Domain: "127.0.0.250", UserAgent: UserAgents{"mybot/1.0 (+https://example.com/bot)"},
			Headers: map[string]string{"X-Shop": "rule", "Accept-Language": "de-DE", "Upgrade-Insecure-Requests": ""},
			Cookies: map[string]string{"region": "eu"},
		}},
	}
	tasks := []record.Task{
		task(t, urls[0]+"/plain", record.Message{}),
		task(t, urls[1]+"/ruled", record.Message{}),
		task(t, urls[1]+"/message", record.Message{Headers: map[string]string{"x-shop": "message", "X-Extra": "e"}}),
	}
	requireAllOK(t, tasks, fetchAll(t, cfg, tasks))
	byPath := map[string]http.Header{}
	for _, r := range e.requests() {
		byPath[r.Path] = r.Header
	}
	plain, ruled, msg := byPath["/plain"], byPath["/ruled"], byPath["/message"]
	if plain.Get("X-Shop") != "" || plain.Get("Cookie") != "consent=yes" || plain.Get("User-Agent") != DefaultUserAgent || plain.Get("X-Everywhere") != "1" {
		t.Errorf("unmatched host got %v", plain)
	}
	if ruled.Get("X-Shop") != "rule" || ruled.Get("Accept-Language") != "de-DE" || ruled.Get("X-Everywhere") != "1" {
		t.Errorf("matched host got %v", ruled)
	}
	if ck := ruled.Get("Cookie"); !strings.Contains(ck, "consent=yes") || !strings.Contains(ck, "region=eu") {
		t.Errorf("matched host cookies %q", ck)
	}
	if ruled.Get("User-Agent") != "mybot/1.0 (+https://example.com/bot)" || ruled.Get("Upgrade-Insecure-Requests") != "" ||
		ruled.Get("Accept") != acceptGeneric {
		t.Errorf("bot User-Agent headers %v", ruled)
	}
	if msg.Get("X-Shop") != "message" || msg.Get("X-Extra") != "e" || msg.Get("Accept-Language") != "de-DE" {
		t.Errorf("message headers do not override the rule's: %v", msg)
	}
}

// TestSessionCookieJar: a cookie a site sets in one sticky session is
// sent on that session's next requests, not on another session's nor on
// requests without a session; it wins over a static cookie of the same
// name. Jars are bounded in count.
func TestSessionCookieJar(t *testing.T) {
	e, urls := startEcho(t, false)
	cfg := quickConfig(nil, 1)
	cfg.Shaping = Shaping{Cookies: map[string]string{"sid": "static"}, MaxJars: 2}
	tasks := []record.Task{
		task(t, urls[0]+"/set?v=alpha", record.Message{Session: "a"}),
		task(t, urls[0]+"/a/1", record.Message{Session: "a"}),
		task(t, urls[0]+"/b/1", record.Message{Session: "b"}),
		task(t, urls[0]+"/none/1", record.Message{}),
		task(t, urls[0]+"/a/2", record.Message{Session: "a"}),
	}
	got := fetchAll(t, cfg, tasks)
	requireAllOK(t, tasks, got)
	byPath := map[string]string{}
	for _, r := range e.requests() {
		byPath[r.Path] = r.Header.Get("Cookie")
	}
	want := map[string]string{"/set": "sid=static", "/a/1": "sid=alpha", "/a/2": "sid=alpha", "/b/1": "sid=static", "/none/1": "sid=static"}
	for p, w := range want {
		if byPath[p] != w {
			t.Errorf("%s sent Cookie %q, want %q", p, byPath[p], w)
		}
	}
}

// TestJarsBounded: the jar table keeps at most its count, the oldest
// dropped first; a jar expires its TTL after it was made, and then its
// session starts without cookies; a jar keeps at most its bytes.
func TestJarsBounded(t *testing.T) {
	clk := newClock()
	j := newJars(3, 64, time.Minute, clk.Now)
	u := newTask(t, "https://shop.example/", "").URL
	first := j.get("s0")
	first.SetCookies(u, []*http.Cookie{{Name: "a", Value: "1"}})
	for i := range 100 {
		j.get(fmt.Sprintf("s%d", i))
		if n := j.len(); n > 3 {
			t.Fatalf("%d jars held, bound 3", n)
		}
	}
	if got := j.get("s0").Cookies(u); len(got) != 0 {
		t.Errorf("an evicted session kept its cookies: %v", got)
	}
	s := j.get("fresh")
	s.SetCookies(u, []*http.Cookie{{Name: "a", Value: "1"}})
	if len(s.Cookies(u)) != 1 {
		t.Fatal("cookie not kept")
	}
	clk.Advance(time.Minute)
	if got := j.get("fresh").Cookies(u); len(got) != 0 {
		t.Errorf("an expired jar kept its cookies: %v", got)
	}
	// Bytes: a cookie that would pass 64 bytes is not kept; replacing one
	// does not count twice; deleting one gives its bytes back.
	s = j.get("bytes")
	s.SetCookies(u, []*http.Cookie{{Name: "big", Value: strings.Repeat("x", 40)}})
	s.SetCookies(u, []*http.Cookie{{Name: "big", Value: strings.Repeat("y", 40)}})
	s.SetCookies(u, []*http.Cookie{{Name: "more", Value: strings.Repeat("z", 40)}})
	if got := s.Cookies(u); len(got) != 1 || got[0].Value[0] != 'y' {
		t.Fatalf("cookies %v, want only big=y…", got)
	}
	s.SetCookies(u, []*http.Cookie{{Name: "big", MaxAge: -1}})
	s.SetCookies(u, []*http.Cookie{{Name: "more", Value: strings.Repeat("z", 40)}})
	if got := s.Cookies(u); len(got) != 1 || got[0].Name != "more" {
		t.Fatalf("cookies %v, want only more", got)
	}
}

// TestPostBody: a POST with a body (from a message, and from a rule)
// reaches the server intact, directly and through a proxy; an oversized
// body is a bad_input result and sends nothing; a body with GET is
// bad_input.
func TestPostBody(t *testing.T) {
	e, urls := startEcho(t, false, "127.0.0.250")
	_, pool := newFarmPool(t, 1, 220, testbed.FarmConfig{})
	body := "q=caf\u00e9&n=1&bin=\x00\x01\xff"
	rule := RequestRule{Domain: "127.0.0.250", Method: "post", Body: "from=rule"}
	for _, via := range []*proxy.Pool{nil, pool} {
		cfg := quickConfig(via, 1)
		cfg.Shaping = Shaping{MaxBody: 100, Rules: []RequestRule{rule}}
		tasks := []record.Task{
			task(t, urls[0]+"/post", record.Message{Method: "POST", Body: body, Headers: map[string]string{"Content-Type": "text/plain"}}),
			task(t, urls[1]+"/rule", record.Message{}),
			task(t, urls[1]+"/rule-overridden", record.Message{Body: "from=message"}),
		}
		requireAllOK(t, tasks, fetchAll(t, cfg, tasks))
		bad := []record.Task{
			task(t, urls[0]+"/big", record.Message{Method: "PUT", Body: strings.Repeat("b", 101)}),
			task(t, urls[1]+"/get-body", record.Message{Method: "GET", Body: "x"}),
		}
		for _, f := range fetchAll(t, cfg, bad) {
			if failure.ClassOf(f.Err) != failure.BadInput || failure.Retryable(f.Err) {
				t.Errorf("%s: %v, want a permanent bad_input", f.Task.URL.Path, f.Err)
			}
		}
	}
	byPath := map[string][]seen{}
	for _, r := range e.requests() {
		byPath[r.Path] = append(byPath[r.Path], r)
	}
	for _, r := range byPath["/post"] {
		if r.Method != "POST" || r.Body != body || r.Header.Get("Content-Type") != "text/plain" {
			t.Errorf("POST arrived as %s %q %q", r.Method, r.Body, r.Header.Get("Content-Type"))
		}
	}
	for _, r := range byPath["/rule"] {
		if r.Method != "POST" || r.Body != "from=rule" || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			t.Errorf("rule's POST arrived as %s %q %q", r.Method, r.Body, r.Header.Get("Content-Type"))
		}
	}
	for _, r := range byPath["/rule-overridden"] {
		if r.Method != "POST" || r.Body != "from=message" {
			t.Errorf("message body over a rule arrived as %s %q", r.Method, r.Body)
		}
	}
	if len(byPath["/post"]) != 2 || len(byPath["/rule"]) != 2 || len(byPath["/big"]) != 0 || len(byPath["/get-body"]) != 0 {
		t.Errorf("requests per path: post %d, rule %d, big %d, get-body %d", len(byPath["/post"]), len(byPath["/rule"]), len(byPath["/big"]), len(byPath["/get-body"]))
	}
}

// TestPostRetryRule: a POST the server answered (503) is not retried,
// while a GET is and a POST with an Idempotency-Key is; a POST whose
// proxy could not be reached (nothing was sent) is retried through
// another proxy and reaches the server once.
func TestPostRetryRule(t *testing.T) {
	e, urls := startEcho(t, false)
	cfg := quickConfig(nil, 1)
	tasks := []record.Task{
		task(t, urls[0]+"/fail", record.Message{Method: "POST", Body: "a=1"}),
		task(t, urls[0]+"/fail", record.Message{Method: "GET"}),
		task(t, urls[0]+"/fail", record.Message{Method: "PATCH", Body: "a=1", Headers: map[string]string{"Idempotency-Key": "k1"}}),
		task(t, urls[0]+"/fail", record.Message{Method: "PUT", Body: "a=1"}),
	}
	want := map[string]int{"POST": 1, "GET": 4, "PATCH": 4, "PUT": 4}
	for _, f := range fetchAll(t, cfg, tasks) {
		m := f.Task.Msg.Method
		if f.Attempts != want[m] || failure.ClassOf(f.Err) != failure.ServerError || f.Method != m {
			t.Errorf("%s: %d attempts, %v, method %q; want %d attempts, server_error", m, f.Attempts, f.Err, f.Method, want[m])
		}
	}
	counts := map[string]int{}
	for _, r := range e.requests() {
		counts[r.Method]++
	}
	for m, n := range want {
		if counts[m] != n {
			t.Errorf("server saw %d %s requests, want %d", counts[m], m, n)
		}
	}

	// Through the farm: the first proxy is dead, the POST moves on.
	farm, pool := newFarmPool(t, 2, 222, testbed.FarmConfig{}, proxy.WithStrategy(proxy.RoundRobin))
	farm.Proxy(0).Kill()
	cfg = quickConfig(pool, 1)
	var posts []record.Task
	for i := range 4 {
		posts = append(posts, task(t, fmt.Sprintf("%s/ok/%d", urls[0], i), record.Message{Method: "POST", Body: "b=2"}))
	}
	requireAllOK(t, posts, fetchAll(t, cfg, posts))
	seenPath := map[string]int{}
	for _, r := range e.requests() {
		if strings.HasPrefix(r.Path, "/ok/") {
			seenPath[r.Path]++
			if r.From != farm.Proxy(1).SourceIP() || r.Body != "b=2" {
				t.Errorf("%s came from %s with %q", r.Path, r.From, r.Body)
			}
		}
	}
	for _, p := range posts {
		if seenPath[p.URL.Path] != 1 {
			t.Errorf("%s reached the server %d times, want once", p.URL.Path, seenPath[p.URL.Path])
		}
	}
}

func TestNotRetried(t *testing.T) {
	sent := func(method string, wrote bool, h http.Header) *sending {
		s := &sending{method: method, idempotent: record.Idempotent(method, h)}
		s.wrote.Store(wrote)
		return s
	}
	retry := failure.New(failure.Timeout, failure.ErrRetryable, fmt.Errorf("x"))
	for _, tc := range []struct {
		name  string
		err   error
		snd   *sending
		retry bool
	}{
		{"GET written", retry, sent("GET", true, nil), true},
		{"POST unsent", retry, sent("POST", false, nil), true},
		{"POST written", retry, sent("POST", true, nil), false},
		{"PATCH written", retry, sent("PATCH", true, nil), false},
		{"POST written with a key", retry, sent("POST", true, http.Header{"Idempotency-Key": {"k"}}), true},
		{"POST proxy auth", failure.New(failure.ProxyAuth, failure.ErrProxy, fmt.Errorf("407")), sent("POST", true, nil), true},
		{"DELETE written", retry, sent("DELETE", true, nil), true},
		{"no request built", retry, nil, true},
	} {
		got := notRetried(tc.err, tc.snd)
		if failure.Retryable(got) != tc.retry || failure.ClassOf(got) != failure.ClassOf(tc.err) {
			t.Errorf("%s: %v (retryable %v), want retryable %v, class kept", tc.name, got, failure.Retryable(got), tc.retry)
		}
	}
}

func TestChromeBrands(t *testing.T) {
	for _, tc := range []struct {
		major int
		want  string
	}{
		{120, `"Not_A Brand";v="8", "Chromium";v="120", "Google Chrome";v="120"`},
		{122, `"Chromium";v="122", "Not(A:Brand";v="24", "Google Chrome";v="122"`},
		{128, `"Chromium";v="128", "Not;A=Brand";v="24", "Google Chrome";v="128"`},
		{129, `"Google Chrome";v="129", "Not=A?Brand";v="8", "Chromium";v="129"`},
		{131, `"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"`},
		{134, `"Chromium";v="134", "Not:A-Brand";v="24", "Google Chrome";v="134"`},
	} {
		if got := chromeBrands("Google Chrome", tc.major); got != tc.want {
			t.Errorf("Chrome %d: %s, want %s", tc.major, got, tc.want)
		}
	}
	if b, v := chromium(testUAs[5]); b != "Microsoft Edge" || v != 143 {
		t.Errorf("Edge read as %q %d", b, v)
	}
	if b, v := chromium(testUAs[3]); b != "" || v != 0 {
		t.Errorf("Firefox read as %q %d", b, v)
	}
}

func TestShapingValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Shaping
		want string
	}{
		{"reserved header", Shaping{Headers: map[string]string{"Host": "x"}}, "Host"},
		{"proxy header", Shaping{Headers: map[string]string{"Proxy-Authorization": "x"}}, "Proxy-Authorization"},
		{"bad cookie", Shaping{Cookies: map[string]string{"a b": "x"}}, "cookie"},
		{"bad pattern", Shaping{Rules: []RequestRule{{Domain: "http://x"}}}, "requests[0]"},
		{"bad method", Shaping{Rules: []RequestRule{{Domain: "x", Method: "BREW"}}}, "BREW"},
		{"body on GET", Shaping{Rules: []RequestRule{{Domain: "x", Method: "GET", Body: "b"}}}, "takes one"},
		{"body too large", Shaping{MaxBody: 2, Rules: []RequestRule{{Domain: "x", Method: "POST", Body: "bbb"}}}, "exceeds"},
		{"control character", Shaping{UserAgents: []string{"a\r\nX: y"}}, "control"},
	} {
		err := tc.s.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	if err := (Shaping{}).Validate(); err != nil {
		t.Errorf("zero Shaping: %v", err)
	}
}

// BenchmarkShapeRequest measures building one shaped request: a rule
// matched, headers merged, a User-Agent picked, static cookies added.
func BenchmarkShapeRequest(b *testing.B) {
	sh, err := newShaper(Shaping{
		UserAgents: testUAs, Headers: map[string]string{"X-A": "1"}, Cookies: map[string]string{"consent": "yes"},
		Rules: []RequestRule{{Domain: "*.other.example"}, {Domain: "*.shop.example", Headers: map[string]string{"X-Shop": "1"}}},
	}, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	u := mustParse(b, "https://www.shop.example/p/42")
	tk := record.Task{Msg: record.Message{URL: u.String(), Headers: map[string]string{"Referer": "https://www.shop.example/"}}, URL: u}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := sh.request(b.Context(), tk, u, "p3"); err != nil {
			b.Fatal(err)
		}
	}
}

func mustParse(b *testing.B, raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		b.Fatal(err)
	}
	return u
}

// TestHedgeOnlyIdempotent: a hedge sends a request twice, so the shaper
// calls a request idempotent (hedgeable) only as record.Idempotent does,
// whether its method comes from the message or from a requests: entry.
func TestHedgeOnlyIdempotent(t *testing.T) {
	sh, err := newShaper(Shaping{Rules: []RequestRule{{Domain: "form.example", Method: "POST", Body: "q=1"}}}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		url  string
		msg  record.Message
		want bool
	}{
		{"GET", "http://shop.example/p/1", record.Message{}, true},
		{"POST from the message", "http://shop.example/p/1", record.Message{Method: "POST", Body: "a=1"}, false},
		{"POST from a requests: entry", "http://form.example/", record.Message{}, false},
		{"PATCH", "http://shop.example/p/1", record.Message{Method: "PATCH", Body: "a=1"}, false},
		{"POST with an idempotency key", "http://shop.example/p/1",
			record.Message{Method: "POST", Body: "a=1", Headers: map[string]string{"Idempotency-Key": "k1"}}, true},
		{"PUT", "http://shop.example/p/1", record.Message{Method: "PUT", Body: "a=1"}, true},
	} {
		if got := sh.idempotent(task(t, tc.url, tc.msg)); got != tc.want {
			t.Errorf("%s: idempotent %v, want %v", tc.name, got, tc.want)
		}
	}
}
