package testbed

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// RelayConfig configures StartRelay.
type RelayConfig struct {
	// Backends are the "host:port" addresses connections are relayed to,
	// each new connection to the next one in turn. At least one.
	Backends []string
	// TLS, if set, makes the relay terminate TLS on accepted connections
	// (a TLS front for a plain proxy: an https:// proxy).
	TLS *tls.Config
	// Addr is the listen address; "" means "127.0.0.1:0".
	Addr string
	// Capture keeps up to this many bytes of what clients send (after TLS
	// termination), for tests that check what reached a proxy. 0 keeps
	// nothing.
	Capture int
}

// Relay is a TCP relay on loopback. In front of several farm proxies it
// is a provider's rotating endpoint: one address, a new exit IP for every
// connection (and the same exit IP for everything sent over one
// connection). With TLS set, in front of one farm proxy, it is an HTTPS
// proxy. Create it with StartRelay and stop it with Close.
type Relay struct {
	ln       net.Listener
	backends []string
	next     atomic.Uint64
	conns    atomic.Int64
	dialer   net.Dialer

	wg        sync.WaitGroup // the accept loop and every connection's goroutines
	mu        sync.Mutex     // guards open, closed, captured
	open      map[net.Conn]struct{}
	closed    bool
	capture   int
	captured  []byte
	closeOnce sync.Once
}

// StartRelay listens and relays in the background until Close.
func StartRelay(cfg RelayConfig) (*Relay, error) {
	if len(cfg.Backends) == 0 {
		return nil, errors.New("testbed: RelayConfig.Backends is empty")
	}
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("testbed: relay listen: %w", err)
	}
	if cfg.TLS != nil {
		ln = tls.NewListener(ln, cfg.TLS)
	}
	r := &Relay{
		ln: ln, backends: append([]string(nil), cfg.Backends...), open: map[net.Conn]struct{}{},
		dialer: net.Dialer{Timeout: 10 * time.Second}, capture: cfg.Capture,
	}
	r.wg.Add(1)
	go r.accept() // owner: r; exits when Close closes the listener
	return r, nil
}

// Addr returns the listen address, "127.0.0.1:PORT".
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// Conns returns how many connections the relay accepted.
func (r *Relay) Conns() int64 { return r.conns.Load() }

// Captured returns a copy of the bytes clients sent, up to
// RelayConfig.Capture, connections one after another.
func (r *Relay) Captured() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.captured...)
}

// captureWriter appends to a relay's capture; it never fails.
type captureWriter struct{ r *Relay }

func (w captureWriter) Write(p []byte) (int, error) {
	r := w.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if room := r.capture - len(r.captured); room > 0 {
		r.captured = append(r.captured, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// Close stops accepting, closes every relayed connection and waits for
// all goroutines. Idempotent.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() {
		_ = r.ln.Close()
		r.mu.Lock()
		r.closed = true
		for c := range r.open {
			_ = c.Close()
		}
		r.mu.Unlock()
	})
	r.wg.Wait()
	return nil
}

func (r *Relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		_ = c.Close()
		return false
	}
	r.open[c] = struct{}{}
	return true
}

func (r *Relay) untrack(c net.Conn) {
	_ = c.Close()
	r.mu.Lock()
	delete(r.open, c)
	r.mu.Unlock()
}

func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return // closed
		}
		r.conns.Add(1)
		if !r.track(c) {
			return
		}
		backend := r.backends[(r.next.Add(1)-1)%uint64(len(r.backends))]
		r.wg.Add(1)
		go r.serve(c, backend) // owner: r; exits when either side closes or Close
	}
}

// serve splices c and a new connection to backend until either closes.
func (r *Relay) serve(c net.Conn, backend string) {
	defer r.wg.Done()
	defer r.untrack(c)
	up, err := r.dialer.Dial("tcp", backend)
	if err != nil {
		return
	}
	if !r.track(up) {
		return
	}
	defer r.untrack(up)
	done := make(chan struct{})
	go func() { // owner: serve, which waits on done
		defer close(done)
		_, _ = io.Copy(up, io.TeeReader(c, captureWriter{r}))
		_ = up.Close()
		_ = c.Close()
	}()
	_, _ = io.Copy(c, up)
	_ = c.Close()
	_ = up.Close()
	<-done
}
