package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"

	"golang.org/x/net/dns/dnsmessage"
)

// DNSConfig configures StartDNS.
type DNSConfig struct {
	// Answers maps a name (lower case, no trailing dot) to the answers of
	// its successive lookups: the i-th A query for the name is answered
	// with the IPv4 addresses of Answers[name][min(i, len-1)], the i-th
	// AAAA query with its IPv6 addresses. A name that is not in the map is
	// answered NXDOMAIN. This is how a test scripts DNS rebinding: a first
	// answer that passes a check, a second that points inside.
	Answers map[string][][]netip.Addr
	// TTL is the time to live of every record, in seconds; 0 (the
	// default) asks resolvers not to cache.
	TTL uint32
}

// DNS is an authoritative DNS server on a loopback UDP port that answers
// A and AAAA queries from a script (see DNSConfig). Create it with
// StartDNS, use it through Resolver, stop it with Close. All methods are
// safe for concurrent use.
type DNS struct {
	cfg  DNSConfig
	conn net.PacketConn
	done chan struct{}

	mu      sync.Mutex // guards queries
	queries map[dnsKey]int

	closeOnce sync.Once
}

type dnsKey struct {
	name  string
	qtype dnsmessage.Type
}

// StartDNS listens on 127.0.0.1 (a random UDP port) and answers in the
// background until Close.
func StartDNS(cfg DNSConfig) (*DNS, error) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("testbed: dns listen: %w", err)
	}
	d := &DNS{cfg: cfg, conn: conn, done: make(chan struct{}), queries: map[dnsKey]int{}}
	go d.serve() // owner: d; exits when Close closes conn
	return d, nil
}

// Addr returns the server's address, "127.0.0.1:PORT".
func (d *DNS) Addr() string { return d.conn.LocalAddr().String() }

// Resolver returns a resolver (Go's own DNS client) that sends every
// query to this server, whatever /etc/resolv.conf says. /etc/hosts is
// still consulted first, as usual.
func (d *DNS) Resolver() *net.Resolver {
	addr := d.Addr()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, network, addr)
		},
	}
}

// Lookups returns how many A queries for name have been answered.
func (d *DNS) Lookups(name string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries[dnsKey{strings.ToLower(name), dnsmessage.TypeA}]
}

// Close stops the server and waits for its goroutine. It is idempotent.
func (d *DNS) Close() error {
	var err error
	d.closeOnce.Do(func() {
		err = d.conn.Close()
		<-d.done
	})
	return err
}

func (d *DNS) serve() {
	defer close(d.done)
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		resp, ok := d.answer(buf[:n])
		if ok {
			_, _ = d.conn.WriteTo(resp, from)
		}
	}
}

// answer builds the response to one query packet.
func (d *DNS) answer(pkt []byte) ([]byte, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(pkt)
	if err != nil {
		return nil, false
	}
	q, err := p.Question()
	if err != nil {
		return nil, false
	}
	name := strings.ToLower(strings.TrimSuffix(q.Name.String(), "."))
	script, known := d.cfg.Answers[name]
	var addrs []netip.Addr
	if known && len(script) > 0 && (q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeAAAA) {
		d.mu.Lock()
		k := dnsKey{name, q.Type}
		i := d.queries[k]
		d.queries[k]++
		d.mu.Unlock()
		addrs = script[min(i, len(script)-1)]
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if b.StartQuestions() != nil || b.Question(q) != nil || b.StartAnswers() != nil {
		return nil, false
	}
	rrh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: d.cfg.TTL}
	for _, a := range addrs {
		switch {
		case q.Type == dnsmessage.TypeA && a.Is4():
			if b.AResource(rrh, dnsmessage.AResource{A: a.As4()}) != nil {
				return nil, false
			}
		case q.Type == dnsmessage.TypeAAAA && a.Is6():
			if b.AAAAResource(rrh, dnsmessage.AAAAResource{AAAA: a.As16()}) != nil {
				return nil, false
			}
		}
	}
	out, err := b.Finish()
	return out, err == nil
}
