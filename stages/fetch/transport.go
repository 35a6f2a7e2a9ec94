package fetch

import (
	"net"
	"net/http"
	"time"

	"sluice/failure"
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
	return &http.Client{
		Transport: tr,
		// Redirects are followed by the client, at most 10, each under the
		// attempt's deadline.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return failure.Errorf(failure.Redirects, "stopped after %d redirects", len(via))
			}
			return nil
		},
	}
}
