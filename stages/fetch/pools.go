package fetch

import (
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// poolMeter measures how busy one HTTP client's connection pool is:
// requests in flight (from RoundTrip until the body is closed) against
// the pool size. The connections themselves are counted by connTracker.
// Safe for concurrent use.
type poolMeter struct {
	proxy string
	size  int

	busy, maxBusy, requests, busySum atomic.Int64
}

func raise(peak *atomic.Int64, v int64) {
	for p := peak.Load(); v > p && !peak.CompareAndSwap(p, v); p = peak.Load() {
	}
}

// meteredTransport counts requests in flight on a client.
type meteredTransport struct {
	next http.RoundTripper
	m    *poolMeter
}

func (t *meteredTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	m := t.m
	b := m.busy.Add(1)
	raise(&m.maxBusy, b)
	m.requests.Add(1)
	m.busySum.Add(b)
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		m.busy.Add(-1)
		return nil, err
	}
	resp.Body = &meteredBody{ReadCloser: resp.Body, m: m}
	return resp, nil
}

// CloseIdleConnections passes on to the wrapped transport.
func (t *meteredTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

type meteredBody struct {
	io.ReadCloser
	m    *poolMeter
	once sync.Once
}

func (b *meteredBody) Close() error {
	b.once.Do(func() { b.m.busy.Add(-1) })
	return b.ReadCloser.Close()
}

// instrument wires the resolver cache into the dialling of a client built
// by newClient (under the connection counting) and meters its requests.
// Clients whose transport is not an *http.Transport are left as they are.
func (s *Stage) instrument(id string, c *http.Client) *poolMeter {
	tr, ok := c.Transport.(*http.Transport)
	if !ok {
		return nil
	}
	if s.resolver != nil {
		dial := tr.DialContext
		if dial == nil {
			dial = (&net.Dialer{Timeout: s.cfg.ConnectTimeout}).DialContext
		}
		tr.DialContext = s.resolver.Dialer(dial)
	}
	m := &poolMeter{proxy: id, size: tr.MaxIdleConnsPerHost}
	c.Transport = &meteredTransport{next: tr, m: m}
	return m
}
