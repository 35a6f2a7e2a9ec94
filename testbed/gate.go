package testbed

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// gate counts in-flight handlers so that a Close can wait for all of them.
// Once closed it admits nobody, which makes the WaitGroup safe: no Add can
// race with Wait while the count is zero.
type gate struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// enter registers a handler; it reports false once the gate is closed, in
// which case the caller must not call leave.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

// leave unregisters a handler admitted by enter.
func (g *gate) leave() { g.wg.Done() }

// closeAndWait stops admitting handlers and waits for the admitted ones.
func (g *gate) closeAndWait() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}

// connTracker follows an http.Server's connections through its ConnState
// hook so that Close can wait for net/http's per-connection goroutines, not
// only for handlers. A connection is done once it reaches StateClosed (the
// last thing its goroutine does) or StateHijacked (from then on the handler
// owns it).
type connTracker struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// hook is the http.Server.ConnState function.
func (t *connTracker) hook(c net.Conn, state http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch state {
	case http.StateNew:
		if t.conns == nil {
			t.conns = make(map[net.Conn]struct{})
		}
		if _, ok := t.conns[c]; !ok {
			t.conns[c] = struct{}{}
			t.wg.Add(1)
		}
	case http.StateClosed, http.StateHijacked:
		if _, ok := t.conns[c]; ok {
			delete(t.conns, c)
			t.wg.Done()
		}
	}
}

// wait blocks until every tracked connection is done. Call it only after the
// server's Serve has returned (StateNew is reported by Serve itself, so no
// new connection can appear afterwards) and after the connections have been
// closed.
func (t *connTracker) wait() { t.wg.Wait() }

// sleepCtx waits for d or until ctx is done, whichever comes first. It
// returns ctx.Err() if the wait was cut short.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// abortResponse makes net/http drop the connection without completing the
// response (see http.ErrAbortHandler). Deferred functions, such as
// gate.leave, still run.
func abortResponse() { panic(http.ErrAbortHandler) }

// Server timeouts shared by the site and the proxies. A connection may take
// at most headerTimeout to send its request headers, and an idle keep-alive
// connection is closed after idleTimeout.
const (
	headerTimeout = 10 * time.Second
	idleTimeout   = 60 * time.Second
	shutdownGrace = 5 * time.Second
)
