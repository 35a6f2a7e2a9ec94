package fetch

import (
	"net"
	"sync"
	"time"
)

// firstByteConn bounds the wait for the first byte a proxy sends on a new
// connection: the answer to CONNECT, the SOCKS handshake, the TLS
// handshake of an https:// proxy, or the first response forwarded. A
// proxy that accepts connections and never answers (a blackhole) is cut
// after HeaderTimeout rather than the whole attempt's timeout; net/http
// gives a CONNECT a minute of its own otherwise. Once a byte came the
// deadline is lifted: later requests on the connection are bounded by the
// transport's ResponseHeaderTimeout.
type firstByteConn struct {
	net.Conn
	once sync.Once
}

// withFirstByteDeadline wraps c so that its first read must come within d.
// d <= 0 returns c unchanged.
func withFirstByteDeadline(c net.Conn, d time.Duration) net.Conn {
	if d <= 0 {
		return c
	}
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		return c
	}
	return &firstByteConn{Conn: c}
}

func (c *firstByteConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.once.Do(func() { _ = c.Conn.SetReadDeadline(time.Time{}) })
	}
	return n, err
}
