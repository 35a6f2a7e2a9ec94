package fetch

import (
	"context"
	"net"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/sluicehq/sluice/governor"
)

// Pools returns the connection pools, one per HTTP client (per proxy, or
// "direct"), sorted by proxy id: connections open, idle and dialled,
// requests in flight now and at most, and the utilisation seen by the
// requests. Safe for concurrent use.
func (s *Stage) Pools() []governor.PoolStats {
	act := s.act.snapshot()
	s.conns.mu.Lock()
	out := make([]governor.PoolStats, 0, len(s.conns.pools))
	for id, c := range s.conns.pools {
		open := c.open.Load()
		inUse := int64(act.Requests[id])
		b := s.act.busy(id)
		out = append(out, governor.PoolStats{Proxy: id, Size: c.capacity, Open: open, Idle: max(open-inUse, 0),
			Dials: int64(c.dials.Load()), Busy: inUse, MaxBusy: b.peak, Requests: b.requests, BusySum: b.sum})
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
