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
// the id. Errors never quote the URL: a password with a '/', '?' or '#' in
// it (not percent-encoded) ends the URL's authority early, so any part of
// the text may be a piece of it.
func Parse(id, raw string) (*Proxy, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("proxy %s: malformed proxy URL", id)
	}
	if !schemes[u.Scheme] {
		return nil, fmt.Errorf("proxy %s: scheme is not http, https, socks5 or socks5h", id)
	}
	if u.Opaque != "" || u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("proxy %s: the URL needs a host and a port", id)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#") {
		return nil, fmt.Errorf("proxy %s: the URL must not have a path, query or fragment (percent-encode '/', '?' and '#' in a password)", id)
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

// Acquire leases the next proxy. It does not block except on ctx.
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
	pick := p.proxies[p.next%n]
	found := false
	for i := 0; i < n; i++ {
		c := p.proxies[(p.next+i)%n]
		if !slices.Contains(req.Avoid, c.ID) {
			pick, found = c, true
			p.next = (p.next + i) % n
			break
		}
	}
	if !found && len(req.Avoid) > 0 {
		// Every proxy was tried: take the one tried longest ago, so a
		// retry never goes through the proxy that just failed.
		oldest := len(req.Avoid)
		for _, c := range p.proxies {
			if i := lastIndex(req.Avoid, c.ID); i < oldest {
				pick, oldest = c, i
			}
		}
	}
	p.next = (p.next + 1) % n
	p.uses[pick.ID]++
	return &Lease{Proxy: pick, pool: p}, nil
}

func lastIndex(ids []string, id string) int {
	for i := len(ids) - 1; i >= 0; i-- {
		if ids[i] == id {
			return i
		}
	}
	return -1
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
