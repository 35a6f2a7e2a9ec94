package fetch

import (
	"container/list"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/publicsuffix"
)

// jars holds a cookie jar per sticky session, so a site's Set-Cookie is
// sent back on the next requests of the same session and of no other.
// Jars are bounded in number (the oldest goes first) and in life (a jar
// lives ttl from its session's first request, as the pool's sticky
// binding does); each jar is bounded in bytes (sessionJar). Safe for
// concurrent use.
type jars struct {
	max      int
	maxBytes int64
	ttl      time.Duration
	now      func() time.Time

	mu    sync.Mutex               // guards byKey and order
	byKey map[string]*list.Element // of *sessionJar
	order *list.List               // oldest (first to expire) first
}

func newJars(max int, maxBytes int64, ttl time.Duration, now func() time.Time) *jars {
	return &jars{max: max, maxBytes: maxBytes, ttl: ttl, now: now, byKey: map[string]*list.Element{}, order: list.New()}
}

// get returns session's jar, making it if it has none or it expired.
func (j *jars) get(session string) *sessionJar {
	now := j.now()
	j.mu.Lock()
	defer j.mu.Unlock()
	// Jars expire in the order they were made: drop the expired ones.
	for e := j.order.Front(); e != nil && !now.Before(e.Value.(*sessionJar).expires); e = j.order.Front() {
		j.removeLocked(e)
	}
	if e, ok := j.byKey[session]; ok {
		return e.Value.(*sessionJar)
	}
	for j.order.Len() >= j.max {
		j.removeLocked(j.order.Front())
	}
	// cookiejar.New fails only on a bad option; with the public suffix
	// list it has none.
	cj, _ := cookiejar.New(&cookiejar.Options{PublicSuffixList: publicsuffix.List})
	sj := &sessionJar{key: session, expires: now.Add(j.ttl), jar: cj, maxBytes: j.maxBytes, sizes: map[string]int64{}, now: j.now}
	j.byKey[session] = j.order.PushBack(sj)
	return sj
}

func (j *jars) removeLocked(e *list.Element) {
	delete(j.byKey, e.Value.(*sessionJar).key)
	j.order.Remove(e)
}

// len returns the number of jars held.
func (j *jars) len() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.order.Len()
}

// sessionJar is one session's cookie jar: net/http/cookiejar (public
// suffixes refused as cookie domains), with the bytes of the cookies it
// keeps bounded. It implements http.CookieJar and is safe for concurrent
// use.
type sessionJar struct {
	key     string
	expires time.Time
	jar     *cookiejar.Jar

	mu       sync.Mutex       // guards sizes and bytes
	sizes    map[string]int64 // cookie identity → bytes counted
	bytes    int64
	maxBytes int64
	now      func() time.Time
}

// SetCookies keeps the cookies of a response, except those that would
// take the jar past its byte bound. A cookie's identity is its domain
// (or the request's host), path and name; a cookie deleted by the site
// gives its bytes back. (Cookies that merely expire keep counting: the
// bound errs on the small side.)
func (s *sessionJar) SetCookies(u *url.URL, cookies []*http.Cookie) {
	keep := make([]*http.Cookie, 0, len(cookies))
	s.mu.Lock()
	for _, c := range cookies {
		dom := strings.ToLower(strings.TrimPrefix(c.Domain, "."))
		if dom == "" {
			dom = strings.ToLower(u.Hostname())
		}
		id := dom + ";" + c.Path + ";" + c.Name
		old := s.sizes[id]
		if c.MaxAge < 0 || !c.Expires.IsZero() && c.Expires.Before(s.now()) {
			s.bytes -= old
			delete(s.sizes, id)
			keep = append(keep, c)
			continue
		}
		size := int64(len(id) + len(c.Value))
		if s.bytes-old+size > s.maxBytes {
			continue
		}
		s.bytes += size - old
		s.sizes[id] = size
		keep = append(keep, c)
	}
	s.mu.Unlock()
	s.jar.SetCookies(u, keep)
}

// Cookies returns the cookies to send to u.
func (s *sessionJar) Cookies(u *url.URL) []*http.Cookie { return s.jar.Cookies(u) }
