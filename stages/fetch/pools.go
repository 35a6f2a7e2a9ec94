package fetch

import (
	"net"
	"net/http"
)

// instrument resolves the target host names of the direct client through
// the DNS cache (under the connection counting). Proxied clients dial
// their proxy's endpoint, resolved once at start, and must leave target
// names alone: a socks5h:// proxy resolves them itself.
func (s *Stage) instrument(id string, c *http.Client) {
	tr, ok := c.Transport.(*http.Transport)
	if !ok || s.dns == nil || id != directID {
		return
	}
	dial := tr.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: s.cfg.ConnectTimeout}).DialContext
	}
	tr.DialContext = s.dns.Dialer(dial)
}
