// Package proxy is sluice's proxy pool: which proxy serves which request.
// It parses proxy lists, hands out leases and learns from their outcomes.
// It does no HTTP fetching itself.
package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Proxy is one proxy endpoint. ID is what logs, records and metrics show;
// URL carries credentials and must only be printed through Redacted.
type Proxy struct {
	ID  string
	URL *url.URL
}

// Redacted returns the proxy URL with any password replaced by "xxxxx".
func (p *Proxy) Redacted() string { return p.URL.Redacted() }

// String returns the ID, so a Proxy printed by accident shows no secret.
func (p *Proxy) String() string { return p.ID }

// Schemes accepted in proxy URLs.
var schemes = map[string]bool{"http": true, "https": true, "socks5": true, "socks5h": true}

// Parse parses one proxy URL (scheme://[user:pass@]host:port) and gives it
// the id. Errors never contain the password.
func Parse(id, raw string) (*Proxy, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("proxy %s: malformed proxy URL", id)
	}
	if !schemes[u.Scheme] {
		return nil, fmt.Errorf("proxy %s: scheme %q is not http, https, socks5 or socks5h", id, u.Scheme)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("proxy %s: %s needs a host and a port", id, u.Redacted())
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return nil, fmt.Errorf("proxy %s: %s must not have a path or query", id, u.Redacted())
	}
	u.Path = ""
	return &Proxy{ID: id, URL: u}, nil
}

// ParseList reads one proxy URL per line; blank lines and lines starting
// with # are skipped. Proxies get the ids p1, p2, … in file order.
func ParseList(r io.Reader) ([]*Proxy, error) {
	var out []*Proxy
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p, err := Parse(fmt.Sprintf("p%d", len(out)+1), line)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read proxy list: %w", err)
	}
	return out, nil
}

// LoadFile reads a proxy list file (see ParseList).
func LoadFile(path string) ([]*Proxy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open proxy list: %w", err)
	}
	defer f.Close()
	return ParseList(f)
}

// Request says what a lease is for.
type Request struct {
	Domain string
	// Avoid lists proxy ids to skip when another proxy is available (the
	// ones a retried request already tried).
	Avoid []string
	// Allow, if set, is asked about a candidate proxy (by id) as the last
	// step before the pool leases it; it reports whether the caller may use
	// that proxy now. A true answer commits: the caller has charged the
	// proxy (the fetch governor takes a token from its per-(proxy, domain)
	// bucket), so the pool must lease that very proxy. A false answer skips
	// it. When every candidate is refused, Acquire returns ErrNoneAllowed at
	// once instead of waiting. Allow must be quick and must not call back
	// into the pool.
	Allow func(id string) bool
}

// Outcome is what a lease holder reports when it returns the lease.
type Outcome struct {
	OK      bool
	Status  int
	Class   string // failure class, "" on success
	Latency time.Duration
}

// Lease is the right to use one proxy for one attempt. Release it exactly
// once (defer it); further calls do nothing.
type Lease struct {
	Proxy *Proxy
	pool  *Pool
	once  sync.Once
}

// Release returns the lease with the attempt's outcome.
func (l *Lease) Release(o Outcome) {
	l.once.Do(func() { l.pool.release(l, o) })
}

// ErrEmpty is returned by Acquire when the pool has no proxies.
var ErrEmpty = errors.New("proxy pool is empty")

// ErrNoneAllowed is returned by Acquire when Request.Allow refused every
// candidate proxy.
var ErrNoneAllowed = errors.New("no proxy allowed for this request now")

// Pool hands out proxies round-robin from a random start, skipping the
// ones a request asks to avoid while others remain. Safe for concurrent use.
type Pool struct {
	mu      sync.Mutex
	proxies []*Proxy
	next    int
	uses    map[string]int64
}

// New returns a pool over proxies. It starts nothing.
func New(proxies []*Proxy) (*Pool, error) {
	seen := map[string]bool{}
	for _, p := range proxies {
		if seen[p.ID] {
			return nil, fmt.Errorf("proxy id %s used twice", p.ID)
		}
		seen[p.ID] = true
	}
	p := &Pool{proxies: proxies, uses: map[string]int64{}}
	if len(proxies) > 0 {
		p.next = rand.IntN(len(proxies))
	}
	return p, nil
}

// Proxies returns the pool's proxies in their original order.
func (p *Pool) Proxies() []*Proxy { return p.proxies }

// Len returns the number of proxies.
func (p *Pool) Len() int { return len(p.proxies) }

// Acquire leases the next proxy: the first in round-robin order that the
// request neither avoids nor is refused by Request.Allow; failing that,
// the avoided one listed first in Request.Avoid (tried longest ago) that
// Allow accepts. It does not block except on ctx.
func (p *Pool) Acquire(ctx context.Context, req Request) (*Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(p.proxies) == 0 {
		return nil, ErrEmpty
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.proxies)
	allowed := func(c *Proxy) bool { return req.Allow == nil || req.Allow(c.ID) }
	pick := -1
	for i := 0; i < n && pick < 0; i++ {
		k := (p.next + i) % n
		if c := p.proxies[k]; !slices.Contains(req.Avoid, c.ID) && allowed(c) {
			pick = k
		}
	}
	for _, id := range req.Avoid {
		if pick >= 0 {
			break
		}
		if k := slices.IndexFunc(p.proxies, func(c *Proxy) bool { return c.ID == id }); k >= 0 && allowed(p.proxies[k]) {
			pick = k
		}
	}
	if pick < 0 {
		return nil, ErrNoneAllowed
	}
	p.next = (pick + 1) % n
	chosen := p.proxies[pick]
	p.uses[chosen.ID]++
	return &Lease{Proxy: chosen, pool: p}, nil
}

func (p *Pool) release(*Lease, Outcome) {}

// Uses returns how many leases each proxy id was given.
func (p *Pool) Uses() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int64, len(p.uses))
	for k, v := range p.uses {
		out[k] = v
	}
	return out
}
