// Package crawl follows links: which discovered URLs are in scope
// (Rules), one spelling per URL (Normalizer), a seen-set that survives
// restarts in bounded memory (Seen), the frontier that feeds a file-mode
// crawl back into its own pipeline without ever blocking it (Frontier,
// Crawler), and robots.txt (Robots).
package crawl

import (
	"errors"
	"net/url"
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
	u, err := url.Parse(raw)
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
	host, port := strings.ToLower(strings.TrimRight(u.Hostname(), ".")), u.Port()
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
	p := removeDots(unescapeUnreserved(u.EscapedPath()))
	if p == "" {
		p = "/"
	}
	if dec, err := url.PathUnescape(p); err == nil {
		u.Path, u.RawPath = dec, p
		if u.EscapedPath() != p {
			u.RawPath = ""
		}
		if u.EscapedPath() != p { // the library spells it its own way; keep that
			p = u.EscapedPath()
		}
	}
	u.ForceQuery = false
	if u.RawQuery != "" {
		u.RawQuery = n.query(u.RawQuery)
	}
	return nil
}

// unescapeUnreserved decodes percent-escapes of unreserved characters
// (letters, digits, - . _ ~) and upper-cases the hex digits of the rest.
func unescapeUnreserved(p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]) {
			c := unhex(p[i+1])<<4 | unhex(p[i+2])
			if c < 0x80 && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
				b.WriteByte(c)
			} else {
				b.WriteString(strings.ToUpper(p[i : i+3]))
			}
			i += 2
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// removeDots resolves "." and ".." segments (RFC 3986, 5.2.4).
func removeDots(p string) string {
	if !strings.Contains(p, ".") {
		return p
	}
	segs := strings.Split(p, "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	r := strings.Join(out, "/")
	if !strings.HasPrefix(r, "/") {
		r = "/" + r
	}
	return r
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
