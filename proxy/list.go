package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
)

// ErrNoProxies is returned by ParseList and LoadFile for a list with no
// proxy in it. Running without proxies would expose the operator's own
// address, so it must be asked for explicitly instead (--direct).
var ErrNoProxies = errors.New("the proxy list has no proxies (to fetch without proxies, ask for direct connections explicitly)")

// ListOptions tune ParseList. The zero value is the documented default.
type ListOptions struct {
	// Scheme is given to lines that name none (host:port,
	// user:pass@host:port, host:port:user:pass). "" means http. A
	// "# default-scheme: SCHEME" line in the list overrides it for the
	// lines after it.
	Scheme string
}

// schemeDirective starts the comment line that sets the default scheme.
const schemeDirective = "default-scheme:"

// ParseList reads a proxy list, one proxy per line, in any of the forms
// providers hand out, optionally followed by the word "rotating" to
// declare a provider's rotating endpoint:
//
//	# a whole-line comment; blank lines are skipped
//	http://user:pass@10.0.0.1:3128      # a trailing comment
//	socks5h://10.0.0.2:1080
//	10.0.0.3:3128                       # host:port, default scheme
//	user:pass@10.0.0.4:3128             # user:pass@host:port
//	10.0.0.5:3128:user:pass             # host:port:user:pass
//	http://user:pass@gw.provider.example:7000 rotating
//
// Lines without a scheme get opts.Scheme (http by default), or the one
// set by the last "# default-scheme: SCHEME" line above them. In the
// forms without a scheme the user and password are taken as written (no
// percent-encoding needed); in URLs, '/', '?' and '#' in a password must
// be percent-encoded. A trailing comment starts with whitespace then '#'.
// Proxies get the ids p1, p2, … in list order. An error names the line
// and never quotes it (it may hold a password). A list with no proxy is
// an error (ErrNoProxies).
func ParseList(r io.Reader) ([]*Proxy, error) { return ListOptions{}.Parse(r) }

// LoadFile reads a proxy list file (see ParseList).
func LoadFile(path string) ([]*Proxy, error) { return ListOptions{}.Load(path) }

// Parse is ParseList under these options.
func (o ListOptions) Parse(r io.Reader) ([]*Proxy, error) {
	scheme, err := checkScheme(o.Scheme)
	if err != nil {
		return nil, err
	}
	var out []*Proxy
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if s, ok := directive(text); ok {
			if scheme, err = checkScheme(s); err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			continue
		}
		text = stripComment(text)
		if text == "" {
			continue
		}
		p, err := parseLine(fmt.Sprintf("p%d", len(out)+1), text, scheme)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read proxy list: %w", err)
	}
	if len(out) == 0 {
		return nil, ErrNoProxies
	}
	return out, nil
}

// Load is LoadFile under these options.
func (o ListOptions) Load(path string) ([]*Proxy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open proxy list: %w", err)
	}
	defer f.Close()
	ps, err := o.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("proxy list %s: %w", path, err)
	}
	return ps, nil
}

func checkScheme(s string) (string, error) {
	if s == "" {
		return "http", nil
	}
	s = strings.ToLower(strings.TrimSpace(s))
	if !schemes[s] {
		return "", fmt.Errorf("default proxy scheme %q is not http, https, socks5 or socks5h", s)
	}
	return s, nil
}

// directive reports whether text is a "# default-scheme: SCHEME" line,
// and its scheme.
func directive(text string) (string, bool) {
	rest, ok := strings.CutPrefix(text, "#")
	if !ok {
		return "", false
	}
	rest = strings.TrimSpace(rest)
	if len(rest) < len(schemeDirective) || !strings.EqualFold(rest[:len(schemeDirective)], schemeDirective) {
		return "", false
	}
	return strings.TrimSpace(rest[len(schemeDirective):]), true
}

// stripComment drops a whole-line comment, or a trailing one (whitespace
// then '#'), and the spaces around what is left.
func stripComment(text string) string {
	if strings.HasPrefix(text, "#") {
		return ""
	}
	for i := 1; i < len(text); i++ {
		if text[i] == '#' && (text[i-1] == ' ' || text[i-1] == '\t') {
			return strings.TrimSpace(text[:i])
		}
	}
	return text
}

// parseLine parses one proxy line (no comment) under the default scheme.
func parseLine(id, text, scheme string) (*Proxy, error) {
	words := strings.Fields(text)
	raw, err := toURL(id, words[0], scheme)
	if err != nil {
		return nil, err
	}
	p, err := Parse(id, raw)
	if err != nil {
		return nil, err
	}
	for _, w := range words[1:] {
		if !strings.EqualFold(w, "rotating") {
			// Not quoted: a stray word could be a pasted secret.
			return nil, fmt.Errorf("proxy %s: unknown option after the proxy (want \"rotating\")", id)
		}
		p.Rotating = true
	}
	return p, nil
}

// toURL turns any accepted form into a proxy URL.
func toURL(id, s, scheme string) (string, error) {
	if strings.Contains(s, "://") {
		return s, nil
	}
	var user, pass, hostport string
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		var ok bool
		user, pass, ok = strings.Cut(s[:at], ":")
		if !ok {
			return "", fmt.Errorf("proxy %s: user:pass@host:port needs a password after the user", id)
		}
		hostport = s[at+1:]
	} else {
		var err error
		if hostport, user, pass, err = splitColons(id, s); err != nil {
			return "", err
		}
	}
	if _, _, err := net.SplitHostPort(hostport); err != nil {
		return "", fmt.Errorf("proxy %s: want host:port", id)
	}
	if user == "" && pass != "" {
		return "", fmt.Errorf("proxy %s: a password but no user name", id)
	}
	u := &url.URL{Scheme: scheme, Host: hostport}
	if user != "" {
		u.User = url.UserPassword(user, pass)
	}
	return u.String(), nil
}

// splitColons splits host:port or host:port:user:pass ([v6]:port too).
func splitColons(id, s string) (hostport, user, pass string, err error) {
	head, tail := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", "", fmt.Errorf("proxy %s: unclosed '[' in the address", id)
		}
		head, tail = s[:end+1], s[end+1:]
		tail = strings.TrimPrefix(tail, ":")
		port, rest, _ := strings.Cut(tail, ":")
		head += ":" + port
		tail = rest
	} else {
		parts := strings.SplitN(s, ":", 3)
		switch len(parts) {
		case 2:
			return s, "", "", nil
		case 3:
			head, tail = parts[0]+":"+parts[1], parts[2]
		default:
			return "", "", "", fmt.Errorf("proxy %s: want host:port, host:port:user:pass, user:pass@host:port or a URL", id)
		}
	}
	if tail == "" {
		return head, "", "", nil
	}
	user, pass, ok := strings.Cut(tail, ":")
	if !ok {
		return "", "", "", fmt.Errorf("proxy %s: host:port:user:pass needs a password after the user", id)
	}
	return head, user, pass, nil
}
