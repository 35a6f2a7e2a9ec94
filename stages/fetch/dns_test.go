package fetch

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/sluicehq/sluice/dnscache"
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

func TestStageDialsThroughTheResolverCache(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("<h1>ok</h1>"))
	}))
	defer web.Close()
	srv := startDNS(t, 300, 0, map[string]string{"shop.test.": "127.0.0.1"})
	s, err := New(Config{Policy: testPolicy, Concurrency: 4, DomainRate: -1, DNS: dnscache.Config{Servers: []string{srv.addr}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	port := web.URL[strings.LastIndexByte(web.URL, ':')+1:]
	var urls []string
	for i := range 20 {
		urls = append(urls, "http://shop.test:"+port+"/p/"+string(rune('a'+i)))
	}
	c := &collector{}
	if err := runStage(t.Context(), s, tasks(t, urls...), c); err != nil {
		t.Fatal(err)
	}
	for _, f := range c.snapshot() {
		if f.Err != nil || f.Status != 200 {
			t.Fatalf("%s: %d %v", f.Task.URL, f.Status, f.Err)
		}
	}
	if n := srv.queries.Load(); n != 2 {
		t.Errorf("20 requests to one name sent %d DNS queries, want 2", n)
	}
	if p := s.Pools(); len(p) != 1 || p[0].Requests != 20 || p[0].Dials < 1 || p[0].Dials > 4 {
		t.Errorf("pool %+v: want 20 requests over at most 4 connections", p)
	}
}

func TestStageReportsUnknownNamesAsDNSErrors(t *testing.T) {
	srv := startDNS(t, 300, 0, map[string]string{})
	s, err := New(Config{Policy: testPolicy, Concurrency: 1, DomainRate: -1, MaxAttempts: 1,
		DNS: dnscache.Config{Servers: []string{srv.addr}, ResolvConf: "/nonexistent"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := &collector{}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := runStage(ctx, s, tasks(t, "http://nowhere.invalid/x"), c); err != nil {
		t.Fatal(err)
	}
	got := c.snapshot()
	if len(got) != 1 || got[0].Err == nil || !strings.Contains(got[0].Err.Error(), "dns") {
		t.Fatalf("results %+v, want one dns error", got)
	}
}
