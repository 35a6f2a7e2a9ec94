// Package proxy is sluice's proxy pool: which proxy serves which request.
// It parses proxy lists, hands out leases under one of several models and
// strategies, learns from every lease's outcome (per proxy and per
// (proxy, domain)), quarantines what fails and keeps a registry of who
// holds what for monitoring. It does no HTTP fetching itself: the fetch
// stage owns one HTTP transport per proxy and asks the pool, for every
// attempt, which one to use.
package proxy

import (
	"fmt"
	"net/url"
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
// of http, https, socks5, socks5h) and gives it the id. Errors never quote
// the URL: a password with a '/', '?' or '#' in it (not percent-encoded)
// ends the URL's authority early, so any part of the text may be a piece
// of it.
func Parse(id, raw string) (*Proxy, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		// url.Parse quotes its input, credentials included: say less.
		return nil, fmt.Errorf("proxy %s: malformed proxy URL", id)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if !schemes[u.Scheme] {
		return nil, fmt.Errorf("proxy %s: scheme is not http, https, socks5 or socks5h", id)
	}
	if u.Opaque != "" || u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("proxy %s: the URL needs a host and a port", id)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#") {
		return nil, fmt.Errorf("proxy %s: the URL must not have a path, query or fragment (percent-encode '/', '?' and '#' in a password)", id)
	}
	if u.User != nil && u.User.Username() == "" {
		return nil, fmt.Errorf("proxy %s: the URL has a password but no user name", id)
	}
	u.Path = ""
	return &Proxy{ID: id, URL: u}, nil
}
