package fetch

import (
	"context"
	"net"
	"sort"
	"sync"
	"sync/atomic"
)

// ConnStats describes the connection pool of one proxy's transport (or of
// the direct transport).
type ConnStats struct {
	Proxy string
	// Open is the number of connections open now, in use or idle.
	Open int
	// InUse is the number of requests in flight through this transport;
	// over HTTP/1.1 each holds one connection.
	InUse int
	// Idle is Open less InUse (never negative): kept-alive connections
	// waiting for a request.
	Idle int
	// Capacity is the size of the keep-alive pool: the proxy's share of the
	// concurrency plus 20%.
	Capacity int
	// Dials is the number of connections opened so far.
	Dials uint64
}

// Conns returns the connection pools, sorted by proxy id. Safe for
// concurrent use.
func (s *Stage) Conns() []ConnStats {
	act := s.act.snapshot()
	s.conns.mu.Lock()
	out := make([]ConnStats, 0, len(s.conns.pools))
	for id, c := range s.conns.pools {
		open := int(c.open.Load())
		inUse := act.Requests[id]
		out = append(out, ConnStats{Proxy: id, Open: open, InUse: inUse, Idle: max(open-inUse, 0), Capacity: c.capacity, Dials: c.dials.Load()})
	}
	s.conns.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Proxy < out[j].Proxy })
	return out
}

// FDsNeeded estimates the file descriptors the stage may hold at once:
// every keep-alive pool full, plus one connection per worker beyond them.
func (s *Stage) FDsNeeded() int {
	s.conns.mu.Lock()
	defer s.conns.mu.Unlock()
	n := s.cfg.Concurrency
	for _, c := range s.conns.pools {
		n += c.capacity
	}
	return n
}

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// connTracker counts the connections of each transport. The zero value is
// ready to use; safe for concurrent use.
type connTracker struct {
	mu    sync.Mutex
	pools map[string]*connCount // by proxy id
}

type connCount struct {
	capacity int
	open     atomic.Int64
	dials    atomic.Uint64
}

// wrap returns dial counting the connections it opens for proxy id, whose
// keep-alive pool holds capacity connections.
func (t *connTracker) wrap(id string, capacity int, dial dialFunc) dialFunc {
	t.mu.Lock()
	if t.pools == nil {
		t.pools = map[string]*connCount{}
	}
	c := &connCount{capacity: capacity}
	t.pools[id] = c
	t.mu.Unlock()
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c.dials.Add(1)
		c.open.Add(1)
		return &countedConn{Conn: conn, c: c}, nil
	}
}

// countedConn gives its slot back when first closed.
type countedConn struct {
	net.Conn
	c    *connCount
	once sync.Once
}

func (cc *countedConn) Close() error {
	err := cc.Conn.Close()
	cc.once.Do(func() { cc.c.open.Add(-1) })
	return err
}
