package dnscache

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dnsServer is a real DNS server on loopback (UDP) that answers A queries
// for the names it knows, with a TTL, and counts the queries it gets.
type dnsServer struct {
	addr    string
	queries atomic.Int64
	delay   time.Duration
	srv     *dns.Server
}

func startDNS(t *testing.T, ttl uint32, delay time.Duration, names map[string]string) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dnsServer{addr: pc.LocalAddr().String(), delay: delay}
	started := make(chan struct{})
	d.srv = &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
			d.queries.Add(1)
			time.Sleep(d.delay)
			m := new(dns.Msg)
			m.SetReply(q)
			ip, ok := names[q.Question[0].Name]
			switch {
			case !ok:
				m.Rcode = dns.RcodeNameError
			case q.Question[0].Qtype == dns.TypeA:
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl},
					A:   net.ParseIP(ip)})
			}
			_ = w.WriteMsg(m)
		})}
	done := make(chan struct{})
	go func() { // owner: the test; exits at Shutdown
		defer close(done)
		_ = d.srv.ActivateAndServe()
	}()
	<-started
	t.Cleanup(func() {
		_ = d.srv.Shutdown()
		<-done
	})
	return d
}

// clock is a settable clock for the cache.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestResolverCachesForTheTTLAndSharesLookups(t *testing.T) {
	srv := startDNS(t, 30, 50*time.Millisecond, map[string]string{"shop.test.": "127.0.0.1"})
	clk := &clock{now: time.Unix(1_000_000, 0)}
	r := New(Config{Servers: []string{srv.addr}}, clk.Now)

	// 50 concurrent lookups of one name: one query per record type.
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addrs, err := r.LookupHost(t.Context(), "shop.test")
			if err == nil && (len(addrs) != 1 || addrs[0] != netip.MustParseAddr("127.0.0.1")) {
				err = errors.New("wrong answer")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.queries.Load(); n != 2 {
		t.Fatalf("50 concurrent lookups sent %d queries, want 2 (A and AAAA once)", n)
	}
	clk.Add(29 * time.Second)
	if _, err := r.LookupHost(t.Context(), "shop.test"); err != nil {
		t.Fatal(err)
	}
	if n := srv.queries.Load(); n != 2 {
		t.Errorf("a lookup within the 30s TTL sent a query (%d in all)", n)
	}
	clk.Add(2 * time.Second)
	if _, err := r.LookupHost(t.Context(), "shop.test"); err != nil {
		t.Fatal(err)
	}
	if n := srv.queries.Load(); n != 4 {
		t.Errorf("after the TTL the lookup sent %d queries in all, want 4", n)
	}
	if st := r.Stats(); st.Queries != 2 || st.Hits < 1 {
		t.Errorf("stats %+v, want 2 lookups and the cache hits", st)
	}
	// IP literals are never looked up.
	if a, err := r.LookupHost(t.Context(), "127.0.0.9"); err != nil || a[0] != netip.MustParseAddr("127.0.0.9") {
		t.Errorf("literal: %v %v", a, err)
	}
}

func TestResolverFailureIsCachedBriefly(t *testing.T) {
	srv := startDNS(t, 30, 0, map[string]string{})
	clk := &clock{now: time.Unix(1_000_000, 0)}
	r := New(Config{Servers: []string{srv.addr}, NegativeTTL: 5 * time.Second}, clk.Now)
	_, err := r.LookupHost(t.Context(), "nowhere.invalid")
	var de *net.DNSError
	if !errors.As(err, &de) {
		t.Fatalf("error %v, want a *net.DNSError", err)
	}
	q := srv.queries.Load()
	if _, err := r.LookupHost(t.Context(), "nowhere.invalid"); err == nil {
		t.Fatal("second lookup succeeded")
	}
	if srv.queries.Load() != q {
		t.Error("a failed lookup was repeated within the negative TTL")
	}
	clk.Add(6 * time.Second)
	_, _ = r.LookupHost(t.Context(), "nowhere.invalid")
	if srv.queries.Load() == q {
		t.Error("the failure was remembered past the negative TTL")
	}
}
