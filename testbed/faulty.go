package testbed

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is what a Faulty front does to the connections it accepts.
type Fault int32

const (
	// FaultNone relays every connection to the backend untouched.
	FaultNone Fault = iota
	// FaultBlackhole accepts connections, reads and discards what the
	// client sends and never answers (a proxy that swallows requests).
	FaultBlackhole
	// FaultRefuse closes the listening socket, so connections are
	// refused, until another fault is set (it listens again on the same
	// address).
	FaultRefuse
	// FaultSlow relays, but holds back the backend's first byte on each
	// connection for FaultyConfig.SlowDelay (5 s by default).
	FaultSlow
	// FaultReset relays the request, then only the first
	// FaultyConfig.ResetAfter bytes of the answer, and resets the
	// connection (TCP RST): an answer cut mid-body.
	FaultReset
	// FaultGarbage answers with bytes that are not HTTP and closes.
	FaultGarbage
)

// String returns the fault's name.
func (f Fault) String() string {
	switch f {
	case FaultNone:
		return "none"
	case FaultBlackhole:
		return "blackhole"
	case FaultRefuse:
		return "refuse"
	case FaultSlow:
		return "slow"
	case FaultReset:
		return "reset"
	case FaultGarbage:
		return "garbage"
	}
	return fmt.Sprintf("Fault(%d)", int32(f))
}

// FaultyConfig configures StartFaulty.
type FaultyConfig struct {
	// Backend is the "host:port" connections are relayed to (a farm
	// proxy, a SOCKS proxy ...). Required.
	Backend string
	// SlowDelay is FaultSlow's delay. 0 means 5 s.
	SlowDelay time.Duration
	// ResetAfter is how many bytes of the answer FaultReset relays. 0
	// means 200, enough for a status line and headers but not a body.
	ResetAfter int
}

// Faulty is a TCP front on loopback that injects one Fault at a time into
// the connections to a working backend, so that one address can be a
// good proxy, a blackhole, a refusing port, a slow, resetting or garbage
// proxy, or flap between up and down, and heal again. Create it with
// StartFaulty and stop it with Close, which closes every connection and
// waits for every goroutine. All methods are safe for concurrent use.
type Faulty struct {
	cfg      FaultyConfig
	addr     string
	mode     atomic.Int32
	accepted atomic.Int64

	mu     sync.Mutex // guards everything below
	ln     net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	flap   chan struct{} // closed to stop the flapping goroutine; nil if none
	quit   chan struct{} // closed by Close
	wg     sync.WaitGroup
}

// StartFaulty listens on a free 127.0.0.1 port with FaultNone.
func StartFaulty(cfg FaultyConfig) (*Faulty, error) {
	if cfg.Backend == "" {
		return nil, errors.New("testbed: FaultyConfig.Backend is required")
	}
	if cfg.SlowDelay == 0 {
		cfg.SlowDelay = 5 * time.Second
	}
	if cfg.ResetAfter == 0 {
		cfg.ResetAfter = 200
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("testbed: faulty listen: %w", err)
	}
	f := &Faulty{cfg: cfg, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}, quit: make(chan struct{})}
	f.serveLocked(ln)
	return f, nil
}

// Addr returns "127.0.0.1:PORT", fixed for the front's lifetime.
func (f *Faulty) Addr() string { return f.addr }

// URL returns "http://127.0.0.1:PORT", for a front of an HTTP proxy.
func (f *Faulty) URL() string { return "http://" + f.addr }

// Accepted counts the connections accepted, whatever the fault.
func (f *Faulty) Accepted() int64 { return f.accepted.Load() }

// Fault returns the fault in force.
func (f *Faulty) Fault() Fault { return Fault(f.mode.Load()) }

// Set changes the fault for new connections; FaultRefuse closes the
// listener at once, any other fault listens again if it was closed. Open
// connections keep the fault they were accepted under, except that
// leaving FaultBlackhole closes the connections it held.
func (f *Faulty) Set(m Fault) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.setLocked(m)
}

func (f *Faulty) setLocked(m Fault) error {
	if f.closed {
		return ErrFarmClosed
	}
	old := Fault(f.mode.Swap(int32(m)))
	switch {
	case m == FaultRefuse && f.ln != nil:
		_ = f.ln.Close()
		f.ln = nil
	case m != FaultRefuse && f.ln == nil:
		ln, err := net.Listen("tcp", f.addr)
		if err != nil {
			return fmt.Errorf("testbed: faulty relisten: %w", err)
		}
		f.serveLocked(ln)
	}
	if old == FaultBlackhole && m != FaultBlackhole {
		for c := range f.conns {
			_ = c.Close() // blackholed connections held nothing worth keeping
		}
	}
	return nil
}

// Flap alternates the front between FaultRefuse and FaultNone every
// period, starting down, until the returned stop is called (which waits
// for the flapping to end and leaves the front up) or Close.
func (f *Faulty) Flap(period time.Duration) (stop func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.flap != nil {
		return func() {}
	}
	quit := make(chan struct{})
	done := make(chan struct{})
	f.flap = quit
	_ = f.setLocked(FaultRefuse)
	f.wg.Add(1)
	go func() { // owner: f; exits on stop or Close
		defer f.wg.Done()
		defer close(done)
		t := time.NewTicker(period)
		defer t.Stop()
		for down := true; ; down = !down {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			next := FaultRefuse
			if down {
				next = FaultNone
			}
			_ = f.Set(next)
		}
	}()
	return func() {
		f.mu.Lock()
		if f.flap == quit {
			close(quit)
			f.flap = nil
		}
		f.mu.Unlock()
		<-done
		_ = f.Set(FaultNone)
	}
}

// Close stops the front: the listener, every connection, the flapping.
func (f *Faulty) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	close(f.quit)
	if f.flap != nil {
		close(f.flap)
		f.flap = nil
	}
	if f.ln != nil {
		_ = f.ln.Close()
		f.ln = nil
	}
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	return nil
}

// serveLocked accepts on ln until it is closed.
func (f *Faulty) serveLocked(ln net.Listener) {
	f.ln = ln
	f.wg.Add(1)
	go func() { // owner: f; exits when ln is closed
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.accepted.Add(1)
			if !f.track(c) {
				_ = c.Close()
				return
			}
			f.wg.Add(1)
			go func() { // owner: f; exits when c is done or closed
				defer f.wg.Done()
				defer f.untrack(c)
				f.handle(c, f.Fault())
			}()
		}
	}()
}

func (f *Faulty) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Faulty) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	_ = c.Close()
}

// handle serves one connection under fault m.
func (f *Faulty) handle(c net.Conn, m Fault) {
	switch m {
	case FaultBlackhole:
		_, _ = io.Copy(io.Discard, c) // until the client or Set/Close closes it
		return
	case FaultGarbage:
		// Answer the request, not before it: an answer on an idle
		// connection is not what a garbage proxy looks like.
		buf := make([]byte, 4096)
		if _, err := c.Read(buf); err == nil {
			_, _ = c.Write([]byte(garbage))
		}
		return
	}
	up, err := net.DialTimeout("tcp", f.cfg.Backend, 5*time.Second)
	if err != nil {
		return
	}
	if !f.track(up) {
		_ = up.Close()
		return
	}
	defer f.untrack(up)
	var answer io.Reader = up
	switch m {
	case FaultSlow:
		answer = &delayedReader{r: up, delay: f.cfg.SlowDelay, quit: f.quit}
	case FaultReset:
		answer = io.LimitReader(up, int64(f.cfg.ResetAfter))
	}
	done := make(chan struct{})
	go func() { // owner: handle; exits when c or up is closed
		defer close(done)
		_, _ = io.Copy(up, c)
		_ = up.Close()
	}()
	_, _ = io.Copy(c, answer)
	if m == FaultReset {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // close with RST
		}
	}
	_ = c.Close()
	<-done
}

// delayedReader holds back its first byte for delay, or until quit is
// closed.
type delayedReader struct {
	r     io.Reader
	delay time.Duration
	quit  <-chan struct{}
	once  bool
}

func (d *delayedReader) Read(b []byte) (int, error) {
	if !d.once {
		d.once = true
		t := time.NewTimer(d.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-d.quit:
			return 0, io.EOF
		}
	}
	return d.r.Read(b)
}
