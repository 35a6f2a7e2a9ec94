package fetch

import (
	"net"
	"net/http"
	"time"

	"sluice/proxy"
)

// newClient builds the long-lived client for one proxy (nil = direct). Its
// keep-alive pool is sized to the proxy's share of the concurrency plus 20%,
// so rotation is per proxy and idle connections never pin traffic.
func (s *Stage) newClient(p *proxy.Proxy, share int) *http.Client {
	pool := share + (share+4)/5
	dialer := &net.Dialer{Timeout: s.cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	id := directID
	if p != nil {
		id = p.ID
	}
	tr := &http.Transport{
		DialContext:            s.conns.wrap(id, pool, dialer.DialContext),
		TLSHandshakeTimeout:    s.cfg.TLSTimeout,
		ResponseHeaderTimeout:  s.cfg.HeaderTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxIdleConns:           pool,
		MaxIdleConnsPerHost:    pool,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: s.cfg.MaxHeaderBytes,
		ForceAttemptHTTP2:      true,
	}
	if p != nil {
		tr.Proxy = http.ProxyURL(p.URL)
	}
	s.harden(tr, p) // URL policy on every dial, TLS, caps: see bounds.go
	return &http.Client{
		Transport: tr,
		// Redirects are followed by the client under the attempt's
		// deadline, each checked by the URL policy: see bounds.go.
		CheckRedirect: s.checkRedirect,
	}
}
