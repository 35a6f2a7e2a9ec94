// Package proxy is sluice's proxy pool: which proxy serves which request.
// It parses proxy lists, hands out leases under one of several models and
// strategies, learns from every lease's outcome (per proxy and per
// (proxy, domain)), quarantines what fails and keeps a registry of who
// holds what for monitoring. It does no HTTP fetching itself: the fetch
// stage owns one HTTP transport per proxy and asks the pool, for every
// attempt, which one to use.
package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
)

// Proxy is one proxy endpoint. ID is what logs, records and metrics show;
// URL carries credentials and must only be printed through Redacted.
// A Proxy is immutable once parsed.
type Proxy struct {
	ID  string
	URL *url.URL
	// Rotating marks a provider's rotating endpoint: one address that hands
	// out a new exit IP for every connection. Such a proxy is never leased
	// exclusively nor bound to a sticky session (its exit IP is not its
	// own), and the fetch stage opens a new connection for every request
	// through it so that each request gets a fresh exit IP.
	Rotating bool
}

// Redacted returns the proxy URL with any password replaced by "xxxxx".
func (p *Proxy) Redacted() string { return p.URL.Redacted() }

// Endpoint returns "scheme://host:port", without credentials.
func (p *Proxy) Endpoint() string { return p.URL.Scheme + "://" + p.URL.Host }

// String returns the ID, so a Proxy printed by accident shows no secret.
func (p *Proxy) String() string { return p.ID }

// Schemes accepted in proxy URLs.
var schemes = map[string]bool{"http": true, "https": true, "socks5": true, "socks5h": true}

// Parse parses one proxy URL (scheme://[user:pass@]host:port, scheme one
// of http, https, socks5, socks5h) and gives it the id. Errors never
// contain the password.
func Parse(id, raw string) (*Proxy, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		// url.Parse quotes its input, credentials included: say less.
		return nil, fmt.Errorf("proxy %s: malformed proxy URL", id)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if !schemes[u.Scheme] {
		return nil, fmt.Errorf("proxy %s: scheme %q is not http, https, socks5 or socks5h", id, u.Scheme)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("proxy %s: %s needs a host and a port", id, u.Redacted())
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("proxy %s: %s must not have a path, query or fragment", id, u.Redacted())
	}
	if u.User != nil && u.User.Username() == "" {
		return nil, fmt.Errorf("proxy %s: %s has a password but no user name", id, u.Redacted())
	}
	u.Path = ""
	return &Proxy{ID: id, URL: u}, nil
}

// ParseList reads one proxy per line: a proxy URL, optionally followed by
// the word "rotating" to declare a provider's rotating endpoint:
//
//	http://user:pass@10.0.0.1:3128
//	socks5h://10.0.0.2:1080
//	http://user:pass@gw.provider.example:7000 rotating
//
// Blank lines and lines starting with # are skipped. Proxies get the ids
// p1, p2, … in file order.
func ParseList(r io.Reader) ([]*Proxy, error) {
	var out []*Proxy
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		id := fmt.Sprintf("p%d", len(out)+1)
		words := strings.Fields(text)
		p, err := Parse(id, words[0])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		for _, w := range words[1:] {
			switch strings.ToLower(w) {
			case "rotating":
				p.Rotating = true
			default:
				// Not quoted: a stray word could be a pasted secret.
				return nil, fmt.Errorf("line %d: proxy %s: unknown option after the URL (want \"rotating\")", line, id)
			}
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
