package fetch

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/hostmatch"
	"github.com/sluicehq/sluice/record"
)

// Request shaping: what a request looks like (method, body, headers,
// User-Agent, cookies), from the stage's Shaping, the first of its Rules
// that matches the host, and the URL message, in that order of
// precedence. docs/requests.md is the user's side of this file.

// ChromeMajor is the Chrome release DefaultUserAgent names; bump it (and
// nothing else) to follow Chrome's releases. The client hints a Chrome
// User-Agent goes with are derived from it (chromeBrands).
const ChromeMajor = 143

// DefaultUserAgent is a current desktop Chrome on Windows, in the reduced
// form Chrome itself sends (only the major version is real).
var DefaultUserAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/" +
	strconv.Itoa(ChromeMajor) + ".0.0.0 Safari/537.36"

// Shaping configures how requests look. The zero value sends
// DefaultUserAgent with the headers of a Chrome navigation, GET, no
// cookies, and keeps a cookie jar per sticky session.
type Shaping struct {
	// UserAgents are the User-Agent values requests use: a request of a
	// sticky session uses the one its session key hashes to, any other
	// the one its proxy's id hashes to, so one proxy (one exit IP) or one
	// session keeps one browser. nil means {DefaultUserAgent}; an empty
	// string sends no User-Agent header.
	UserAgents []string
	// Headers are set on every request, over the browser's defaults (see
	// browserHeaders); an empty value removes a default header. Names are
	// checked by record.CheckHeaders.
	Headers map[string]string
	// Cookies (name → value) are sent with every request.
	Cookies map[string]string
	// Rules shape requests per site: the first whose Domain matches a
	// URL's host applies, over the settings above.
	Rules []RequestRule
	// MaxBody caps a request body, from a rule or a URL message; a larger
	// one ends the input as bad_input. 0 means 64 KiB.
	MaxBody int64
	// MaxJars bounds the sticky sessions that have a cookie jar; past it
	// the oldest jar is dropped. 0 means 4096; negative means no jars (no
	// cookie a site sets is ever sent back).
	MaxJars int
	// MaxJarBytes bounds the cookies one jar holds (names, values,
	// domains and paths); a cookie past it is not kept. 0 means 16 KiB.
	MaxJarBytes int64
	// JarTTL is how long a session's jar lives from its first request,
	// like the proxy pool's sticky binding; then the session starts
	// afresh. 0 means 10 min.
	JarTTL time.Duration
}

// RequestRule shapes the requests to the hosts Domain matches (a
// hostmatch pattern). Unset fields leave the Shaping's.
type RequestRule struct {
	Domain string `yaml:"domain"`
	// UserAgent replaces Shaping.UserAgents for these hosts (one, or a
	// list to rotate through).
	UserAgent UserAgents `yaml:"user_agent"`
	// Headers and Cookies are set over the Shaping's.
	Headers map[string]string `yaml:"headers"`
	Cookies map[string]string `yaml:"cookies"`
	// Method and Body are the request's unless the URL message gives its
	// own.
	Method string `yaml:"method"`
	Body   string `yaml:"body"`
}

// UserAgents is one User-Agent or a list of them. In YAML it is a string
// or a list of strings.
type UserAgents []string

// UnmarshalYAML reads a string or a list of strings.
func (u *UserAgents) UnmarshalYAML(unmarshal func(any) error) error {
	var one string
	if err := unmarshal(&one); err == nil {
		*u = UserAgents{one}
		return nil
	}
	var list []string
	if err := unmarshal(&list); err != nil {
		return errors.New("user_agent: want a string or a list of strings")
	}
	*u = list
	return nil
}

func (c *Shaping) setDefaults() {
	if c.UserAgents == nil {
		c.UserAgents = []string{DefaultUserAgent}
	}
	if c.MaxBody == 0 {
		c.MaxBody = 64 << 10
	}
	if c.MaxJars == 0 {
		c.MaxJars = 4096
	}
	if c.MaxJarBytes == 0 {
		c.MaxJarBytes = 16 << 10
	}
	if c.JarTTL == 0 {
		c.JarTTL = 10 * time.Minute
	}
}

// Validate reports every invalid setting: header names, cookies, rule
// patterns, methods, bodies over MaxBody (0: its default).
func (c Shaping) Validate() error {
	c.setDefaults()
	var errs []error
	if err := checkUserAgents(c.UserAgents); err != nil {
		errs = append(errs, fmt.Errorf("user_agent: %w", err))
	}
	if err := record.CheckHeaders(c.Headers); err != nil {
		errs = append(errs, fmt.Errorf("headers: %w", err))
	}
	if err := record.CheckCookies(c.Cookies); err != nil {
		errs = append(errs, fmt.Errorf("cookies: %w", err))
	}
	if c.MaxBody < 0 || c.MaxJarBytes < 0 || c.JarTTL < 0 {
		errs = append(errs, fmt.Errorf("max request body %d, max jar bytes %d and jar TTL %v must not be negative", c.MaxBody, c.MaxJarBytes, c.JarTTL))
	}
	for i, r := range c.Rules {
		if err := r.check(c.MaxBody); err != nil {
			errs = append(errs, fmt.Errorf("requests[%d] (%s): %w", i, r.Domain, err))
		}
	}
	return errors.Join(errs...)
}

func (r RequestRule) check(maxBody int64) error {
	var errs []error
	if _, err := hostmatch.Parse(r.Domain); err != nil {
		errs = append(errs, err)
	}
	if r.UserAgent != nil {
		if err := checkUserAgents(r.UserAgent); err != nil {
			errs = append(errs, fmt.Errorf("user_agent: %w", err))
		}
	}
	if err := record.CheckHeaders(r.Headers); err != nil {
		errs = append(errs, fmt.Errorf("headers: %w", err))
	}
	if err := record.CheckCookies(r.Cookies); err != nil {
		errs = append(errs, fmt.Errorf("cookies: %w", err))
	}
	m, err := record.CheckMethod(r.Method)
	if err != nil {
		errs = append(errs, err)
	}
	if r.Body != "" && m != "" && !record.BodyAllowed(m) {
		errs = append(errs, fmt.Errorf("a body needs a method that takes one, not %s", m))
	}
	if int64(len(r.Body)) > maxBody {
		errs = append(errs, fmt.Errorf("body of %d bytes exceeds max_request_body %d", len(r.Body), maxBody))
	}
	return errors.Join(errs...)
}

func checkUserAgents(uas []string) error {
	if len(uas) > 1000 {
		return fmt.Errorf("%d values: at most 1000", len(uas))
	}
	for _, ua := range uas {
		if err := record.CheckHeaders(map[string]string{"User-Agent": ua}); err != nil {
			return err
		}
	}
	return nil
}

// shaper builds requests as a Shaping says. It is safe for concurrent
// use.
type shaper struct {
	cfg   Shaping
	rules []hostmatch.Pattern // of cfg.Rules, in order
	jars  *jars               // nil without jars
}

func newShaper(c Shaping, now func() time.Time) (*shaper, error) {
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	sh := &shaper{cfg: c}
	for _, r := range c.Rules {
		sh.rules = append(sh.rules, hostmatch.MustParse(r.Domain))
	}
	if c.MaxJars > 0 {
		sh.jars = newJars(c.MaxJars, c.MaxJarBytes, c.JarTTL, now)
	}
	return sh, nil
}

// plan is the shape of one input's requests, before a proxy is known.
type plan struct {
	method  string
	body    string
	uas     []string
	headers []rule // config's, then the message's: applied in order
	cookies map[string]string
}

// rule is one header to set ("" value: to remove).
type rule struct{ name, value string }

// plan works out t's request. Errors are of class bad_input: a method
// that takes no body given one, or a body over MaxBody.
func (sh *shaper) plan(t record.Task) (plan, error) {
	p := plan{method: http.MethodGet, uas: sh.cfg.UserAgents}
	addHeaders := func(h map[string]string) {
		for k, v := range h {
			p.headers = append(p.headers, rule{k, v})
		}
	}
	addHeaders(sh.cfg.Headers)
	p.cookies = sh.cfg.Cookies
	if i := hostmatch.First(sh.rules, t.URL.Hostname()); i >= 0 {
		r := sh.cfg.Rules[i]
		if r.UserAgent != nil {
			p.uas = r.UserAgent
		}
		addHeaders(r.Headers)
		if len(r.Cookies) > 0 {
			merged := make(map[string]string, len(p.cookies)+len(r.Cookies))
			for k, v := range p.cookies {
				merged[k] = v
			}
			for k, v := range r.Cookies {
				merged[k] = v
			}
			p.cookies = merged
		}
		if r.Method != "" {
			p.method = strings.ToUpper(r.Method)
		}
		p.body = r.Body
	}
	m := t.Msg
	if m.Method != "" {
		p.method = m.Method
		p.body = "" // the message's request, not half the config's
	}
	if m.Body != "" {
		p.body = m.Body
	}
	addHeaders(m.Headers)
	if p.body != "" && !record.BodyAllowed(p.method) {
		return p, failure.Errorf(failure.BadInput, "a body needs a method that takes one (POST, PUT, PATCH, DELETE), not %s", p.method)
	}
	if int64(len(p.body)) > sh.cfg.MaxBody {
		return p, failure.Errorf(failure.BadInput, "request body of %d bytes exceeds the cap of %d (fetch.max_request_body)", len(p.body), sh.cfg.MaxBody)
	}
	return p, nil
}

// method is the method t's requests use ("GET" when its plan fails).
func (sh *shaper) method(t record.Task) string {
	p, err := sh.plan(t)
	if err != nil {
		return http.MethodGet
	}
	return p.method
}

// idempotent reports whether t's requests may be sent twice with the
// effect of once (record.Idempotent); a hedge sends a second copy, so only
// these are hedged.
func (sh *shaper) idempotent(t record.Task) bool {
	p, err := sh.plan(t)
	if err != nil {
		return false
	}
	h := http.Header{}
	for _, r := range p.headers {
		if r.value != "" {
			h.Set(r.name, r.value)
		}
	}
	return record.Idempotent(p.method, h)
}

// sending follows one request: whether its headers were written, so
// possibly acted on.
type sending struct {
	method     string
	idempotent bool
	wrote      atomic.Bool // set from the transport's goroutine
}

// request builds t's request to target for an attempt through proxy
// (directID without one). The returned sending learns, through ctx's
// trace, whether the request was written.
func (sh *shaper) request(ctx context.Context, t record.Task, target *url.URL, proxyID string) (*http.Request, *sending, error) {
	p, err := sh.plan(t)
	if err != nil {
		return nil, nil, err
	}
	snd := &sending{method: p.method}
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteHeaders: func() { snd.wrote.Store(true) }})
	var req *http.Request
	if p.body != "" {
		req, err = http.NewRequestWithContext(ctx, p.method, target.String(), strings.NewReader(p.body))
	} else {
		req, err = http.NewRequestWithContext(ctx, p.method, target.String(), nil)
	}
	if err != nil {
		return nil, nil, failure.New(failure.BadInput, failure.ErrPermanent, err)
	}
	key := t.Msg.Session
	if key == "" {
		key = proxyID
	}
	ua := pick(p.uas, key)
	h := req.Header
	h.Set("User-Agent", ua) // "" sends none
	for _, kv := range browserHeaders(ua, target.Scheme == "https") {
		h.Set(kv[0], kv[1])
	}
	h.Set("Accept-Encoding", acceptEncoding)
	for _, r := range p.headers {
		if r.value == "" {
			h.Del(r.name)
		} else {
			h.Set(r.name, r.value)
		}
	}
	if p.body != "" && h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/x-www-form-urlencoded") // what a browser's form sends
	}
	if len(p.cookies) > 0 {
		have := map[string]bool{}
		if j := sh.jar(t.Msg.Session); j != nil {
			for _, c := range j.Cookies(target) { // a site's Set-Cookie wins in its session
				have[c.Name] = true
			}
		}
		for name, v := range p.cookies {
			if !have[name] {
				req.AddCookie(&http.Cookie{Name: name, Value: v})
			}
		}
	}
	snd.idempotent = record.Idempotent(p.method, h)
	return req, snd, nil
}

// jar returns the cookie jar of a sticky session; nil without a session
// or without jars.
func (sh *shaper) jar(session string) http.CookieJar {
	if session == "" || sh.jars == nil {
		return nil
	}
	return sh.jars.get(session)
}

// pick chooses one of uas by a stable hash of key: the same key always
// gets the same value.
func pick(uas []string, key string) string {
	if len(uas) == 1 {
		return uas[0]
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	return uas[h.Sum64()%uint64(len(uas))]
}

// notRetried applies the retry rule for requests that are not
// idempotent (POST, PATCH without an Idempotency-Key): such a request is
// retried only when it certainly did not reach the target, that is when
// its headers were never written (a failed DNS lookup, dial, TLS
// handshake, proxy CONNECT or SOCKS handshake, no proxy available) or a
// proxy refused our credentials. Any other retryable error becomes
// permanent, its class kept.
func notRetried(err error, snd *sending) error {
	if err == nil || snd == nil || snd.idempotent || !snd.wrote.Load() || !failure.Retryable(err) ||
		failure.ClassOf(err) == failure.ProxyAuth {
		return err
	}
	cause := err
	if fe := (*failure.Error)(nil); errors.As(err, &fe) {
		cause = fe.Err
	}
	wrapped := fmt.Errorf("%w (not retried: a %s may have reached the server)", cause, snd.method)
	if failure.Retryable(wrapped) { // a classified error inside: keep its text only
		wrapped = fmt.Errorf("%v (not retried: a %s may have reached the server)", cause, snd.method)
	}
	return &failure.Error{Class: failure.ClassOf(err), Kind: failure.ErrPermanent, Err: wrapped}
}

// The headers a browser sends on a navigation (typing a URL, following a
// link from elsewhere), for the User-Agent in effect:
//
//   - a browser's User-Agent (Mozilla/5.0 …): its Accept, Accept-Language
//     and Upgrade-Insecure-Requests; to https:// URLs also the Fetch
//     Metadata headers (Sec-Fetch-*), and for Chrome and Edge the client
//     hints (Sec-CH-UA*) of the major version the User-Agent names,
//     which browsers send only over https;
//   - any other User-Agent (a bot's): Accept only.
//
// Accept-Encoding is always sluice's own (what it decodes under its
// cap). Configured and message headers are applied over these.
const (
	acceptChrome  = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
	acceptGeneric = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
)

func browserHeaders(ua string, secure bool) [][2]string {
	if !strings.HasPrefix(ua, "Mozilla/5.0") {
		return [][2]string{{"Accept", acceptGeneric}}
	}
	brand, major := chromium(ua)
	accept := acceptGeneric
	if major > 0 {
		accept = acceptChrome
	}
	out := [][2]string{{"Accept", accept}, {"Accept-Language", "en-US,en;q=0.9"}, {"Upgrade-Insecure-Requests", "1"}}
	if !secure {
		return out
	}
	if major > 0 && brand != "" {
		mobile := "?0"
		if strings.Contains(ua, "Mobile") {
			mobile = "?1"
		}
		out = append(out, [2]string{"Sec-Ch-Ua", chromeBrands(brand, major)}, [2]string{"Sec-Ch-Ua-Mobile", mobile},
			[2]string{"Sec-Ch-Ua-Platform", `"` + platform(ua) + `"`})
	}
	return append(out, [2]string{"Sec-Fetch-Dest", "document"}, [2]string{"Sec-Fetch-Mode", "navigate"},
		[2]string{"Sec-Fetch-Site", "none"}, [2]string{"Sec-Fetch-User", "?1"})
}

// chromium finds a Chromium browser in ua: the brand its client hints
// name ("Google Chrome", "Microsoft Edge"; "" for other Chromium
// browsers, whose hints we do not know) and its major version (0: not
// Chromium).
func chromium(ua string) (brand string, major int) {
	major = version(ua, "Chrome/")
	if major == 0 {
		return "", 0
	}
	switch {
	case strings.Contains(ua, "Edg/"):
		return "Microsoft Edge", version(ua, "Edg/")
	case strings.Contains(ua, "OPR/"), strings.Contains(ua, "YaBrowser/"), strings.Contains(ua, "SamsungBrowser/"):
		return "", major
	}
	return "Google Chrome", major
}

// version reads the major version after token in ua; 0 if none.
func version(ua, token string) int {
	i := strings.Index(ua, token)
	if i < 0 {
		return 0
	}
	s := ua[i+len(token):]
	end := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(s)
	}
	n, err := strconv.Atoi(s[:end])
	if err != nil || n > 10000 {
		return 0
	}
	return n
}

// chromeBrands is the Sec-CH-UA value Chromium sends for brand at a
// major version: the brand, "Chromium" and a GREASE brand, in an order
// and with a GREASE spelling that follow from the major version as
// Chromium computes them (components/embedder_support/user_agent_utils.cc).
func chromeBrands(brand string, major int) string {
	chars := []string{" ", "(", ":", "-", ".", "/", ")", ";", "=", "?", "_"}
	versions := []string{"8", "99", "24"}
	orders := [6][3]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	v := strconv.Itoa(major)
	o := orders[major%6]
	var out [3]string
	out[o[0]] = `"Not` + chars[major%11] + `A` + chars[(major+1)%11] + `Brand";v="` + versions[major%3] + `"`
	out[o[1]] = `"Chromium";v="` + v + `"`
	out[o[2]] = `"` + brand + `";v="` + v + `"`
	return strings.Join(out[:], ", ")
}

// platform is the Sec-CH-UA-Platform a User-Agent implies.
func platform(ua string) string {
	switch {
	case strings.Contains(ua, "Windows"):
		return "Windows"
	case strings.Contains(ua, "Android"):
		return "Android"
	case strings.Contains(ua, "CrOS"):
		return "Chrome OS"
	case strings.Contains(ua, "Macintosh"):
		return "macOS"
	case strings.Contains(ua, "Linux"):
		return "Linux"
	}
	return "Unknown"
}
