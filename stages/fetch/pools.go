package fetch

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// poolMeter measures one HTTP client's connection pool: connections open
// (counted at dial and close) and requests in flight (from RoundTrip until
// the body is closed), against the pool size. Safe for concurrent use.
type poolMeter struct {
	proxy string
	size  int

	open, maxOpen, dials             atomic.Int64
	busy, maxBusy, requests, busySum atomic.Int64
}

func raise(peak *atomic.Int64, v int64) {
	for p := peak.Load(); v > p && !peak.CompareAndSwap(p, v); p = peak.Load() {
	}
}

func (m *poolMeter) stats() PoolStats {
	return PoolStats{Proxy: m.proxy, Size: m.size,
		Open: m.open.Load(), MaxOpen: m.maxOpen.Load(), Dials: m.dials.Load(),
		Busy: m.busy.Load(), MaxBusy: m.maxBusy.Load(), Requests: m.requests.Load(), BusySum: m.busySum.Load()}
}

// dialer wraps dial to count connections.
func (m *poolMeter) dialer(dial dialFunc) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		m.dials.Add(1)
		raise(&m.maxOpen, m.open.Add(1))
		return &meteredConn{Conn: c, m: m}, nil
	}
}

type meteredConn struct {
	net.Conn
	m    *poolMeter
	once sync.Once
}

func (c *meteredConn) Close() error {
	c.once.Do(func() { c.m.open.Add(-1) })
	return c.Conn.Close()
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

// instrument wires the resolver cache and the pool meter into a client
// built by newClient. Clients whose transport is not an *http.Transport
// are left as they are, unmetered.
func (s *Stage) instrument(id string, c *http.Client) *poolMeter {
	tr, ok := c.Transport.(*http.Transport)
	if !ok {
		return nil
	}
	m := &poolMeter{proxy: id, size: tr.MaxIdleConnsPerHost}
	dial := tr.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: s.cfg.ConnectTimeout}).DialContext
	}
	if s.resolver != nil {
		dial = s.resolver.Dialer(dial)
	}
	tr.DialContext = m.dialer(dial)
	c.Transport = &meteredTransport{next: tr, m: m}
	return m
}
