// Package crawl follows links: which discovered URLs are in scope
// (Rules), one spelling per URL (Normalizer), a seen-set that survives
// restarts in bounded memory (Seen), the frontier that feeds a file-mode
// crawl back into its own pipeline without ever blocking it (Frontier,
// Crawler), and robots.txt (Robots).
package crawl

import (
	"errors"
	"net/url"
	"path"
	"sort"
	"strings"
)

// DefaultStripParams are the query parameters Normalizer removes when its
// StripParams is nil: tracking parameters that never change a page. A
// trailing * matches any suffix.
var DefaultStripParams = []string{"utm_*", "gclid", "dclid", "gbraid", "wbraid", "fbclid", "msclkid", "yclid", "mc_cid", "mc_eid", "_hsenc", "_hsmi", "igshid", "ref_src"}

// Normalizer gives every URL one spelling, so that the seen-set sees one
// page once: lower-case scheme and host, no fragment, no default port, an
// empty path as "/", dot segments resolved, the query sorted by key (the
// order of repeated keys kept) with the StripParams removed. The zero
// value strips DefaultStripParams; it is immutable and safe for concurrent
// use.
type Normalizer struct {
	// StripParams are the query keys to remove (exact, or a prefix
	// followed by *). nil means DefaultStripParams; empty and non-nil
	// removes none.
	StripParams []string
}

// ErrNotHTTP is returned for a URL that is not an absolute http(s) URL
// with a host.
var ErrNotHTTP = errors.New("not an absolute http(s) URL with a host")

// Normalize returns the normal form of raw and the URL it parses to.
func (n Normalizer) Normalize(raw string) (string, *url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", nil, err
	}
	if err := n.normalizeURL(u); err != nil {
		return "", nil, err
	}
	return u.String(), u, nil
}

func (n Normalizer) normalizeURL(u *url.URL) error {
	u.Scheme = strings.ToLower(u.Scheme)
	if (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.Opaque != "" {
		return ErrNotHTTP
	}
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	host, port := strings.ToLower(strings.TrimSuffix(u.Hostname(), ".")), u.Port()
	if host == "" {
		return ErrNotHTTP
	}
	if (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	u.Host = host
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	if strings.Contains(p, "/.") {
		clean := path.Clean(p)
		if strings.HasSuffix(p, "/") && clean != "/" {
			clean += "/"
		}
		p = clean
	}
	if dec, err := url.PathUnescape(p); err == nil {
		u.Path, u.RawPath = dec, p
		if u.EscapedPath() == p {
			u.RawPath = ""
		}
	}
	u.ForceQuery = false
	if u.RawQuery != "" {
		u.RawQuery = n.query(u.RawQuery)
	}
	return nil
}

// query sorts the query by key, keeping the order of a repeated key's
// values and each pair's spelling, and drops the strip parameters.
func (n Normalizer) query(raw string) string {
	strip := n.StripParams
	if strip == nil {
		strip = DefaultStripParams
	}
	type pair struct{ key, text string }
	var pairs []pair
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		k, _, _ := strings.Cut(part, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			key = k
		}
		if stripped(key, strip) {
			continue
		}
		pairs = append(pairs, pair{key, part})
	}
	sort.SliceStable(pairs, func(i, j int) bool { return pairs[i].key < pairs[j].key })
	parts := make([]string, len(pairs))
	for i, p := range pairs {
		parts[i] = p.text
	}
	return strings.Join(parts, "&")
}

func stripped(key string, strip []string) bool {
	key = strings.ToLower(key)
	for _, s := range strip {
		s = strings.ToLower(s)
		if prefix, ok := strings.CutSuffix(s, "*"); ok {
			if strings.HasPrefix(key, prefix) {
				return true
			}
		} else if key == s {
			return true
		}
	}
	return false
}
