// Package dnscache is sluice's resolver cache: answers are kept for their
// TTL (clamped), one lookup per name at a time however many callers want
// it, failures remembered briefly, and names the servers do not answer
// fall back to the system resolver.
package dnscache

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// Config configures a Cache (in sluice: the fetch stage's resolver cache,
// used to dial targets directly and to dial proxy endpoints). Answers are cached for their TTL, one
// lookup per name at a time however many requests want it (the others wait
// for that lookup). The zero value queries the servers in
// /etc/resolv.conf and falls back to the system resolver (which also reads
// /etc/hosts) for names they do not answer.
type Config struct {
	// Off dials with the system resolver on every new connection, without
	// a cache.
	Off bool `yaml:"off"`
	// Servers are the DNS servers to ask, "host:port"; empty means those of
	// ResolvConf.
	Servers []string `yaml:"servers"`
	// ResolvConf is read for servers when Servers is empty; "" means
	// /etc/resolv.conf. A missing file means no servers: every lookup goes
	// to the system resolver.
	ResolvConf string `yaml:"resolv_conf"`
	// Timeout bounds one query to one server. 0 means 2 s.
	Timeout time.Duration `yaml:"timeout"`
	// MinTTL and MaxTTL clamp the TTL answers are cached for. 0 means 1 s
	// and 1 h.
	MinTTL time.Duration `yaml:"min_ttl"`
	MaxTTL time.Duration `yaml:"max_ttl"`
	// FallbackTTL is how long an answer of the system resolver, which
	// gives no TTL, is cached. 0 means 30 s.
	FallbackTTL time.Duration `yaml:"fallback_ttl"`
	// NegativeTTL is how long a failed lookup is remembered. 0 means 5 s.
	NegativeTTL time.Duration `yaml:"negative_ttl"`
	// MaxEntries bounds the cache. 0 means 10000. Expired entries are
	// dropped at least once a minute; a full cache drops arbitrary live
	// ones down to three quarters of this.
	MaxEntries int `yaml:"max_entries"`
}

func (c *Config) setDefaults() {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.ResolvConf == "" {
		c.ResolvConf = "/etc/resolv.conf"
	}
	def(&c.Timeout, 2*time.Second)
	def(&c.MinTTL, time.Second)
	def(&c.MaxTTL, time.Hour)
	def(&c.FallbackTTL, 30*time.Second)
	def(&c.NegativeTTL, 5*time.Second)
	if c.MaxEntries == 0 {
		c.MaxEntries = 10000
	}
}

// Cache is a caching, concurrent DNS resolver. Build it with New. Safe
// for concurrent use.
type Cache struct {
	cfg     Config
	now     func() time.Time
	servers []string
	client  *dns.Client
	system  *net.Resolver
	hosts   *net.Resolver // the hosts file only
	group   singleflight.Group

	mu    sync.Mutex // guards cache and swept
	cache map[string]dnsEntry
	swept time.Time // last sweep of expired entries

	queries, hits atomic.Int64
}

type dnsEntry struct {
	addrs   []netip.Addr
	err     error
	expires time.Time
}

// New builds a cache from cfg (defaults applied here); now is the clock
// of the cache (nil: time.Now). It starts nothing.
func New(cfg Config, now func() time.Time) *Cache {
	cfg.setDefaults()
	if now == nil {
		now = time.Now
	}
	r := &Cache{cfg: cfg, now: now, servers: cfg.Servers, cache: map[string]dnsEntry{},
		client: &dns.Client{Net: "udp", Timeout: cfg.Timeout}, system: &net.Resolver{},
		hosts: &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errNoNetwork
		}}}
	if len(r.servers) == 0 {
		if cc, err := dns.ClientConfigFromFile(cfg.ResolvConf); err == nil {
			for _, s := range cc.Servers {
				r.servers = append(r.servers, net.JoinHostPort(s, cc.Port))
			}
		}
	}
	return r
}

// Stats count lookups: Queries went to a server or the system resolver,
// Hits were answered from the cache.
type Stats struct{ Queries, Hits int64 }

// Stats returns the counters.
func (r *Cache) Stats() Stats {
	return Stats{Queries: r.queries.Load(), Hits: r.hits.Load()}
}

// LookupHost returns the addresses of host: an IP literal as it is, else
// from the cache or one shared lookup. Errors are *net.DNSError.
func (r *Cache) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	key := dns.CanonicalName(host)
	now := r.now()
	r.mu.Lock()
	e, ok := r.cache[key]
	r.mu.Unlock()
	if ok && now.Before(e.expires) {
		r.hits.Add(1)
		return e.addrs, e.err
	}
	ch := r.group.DoChan(key, func() (any, error) {
		// The lookup serves every caller waiting for it, so it runs on
		// its own deadline, not on the first caller's context.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*r.cfg.Timeout+time.Second)
		defer cancel()
		e := r.lookup(lctx, host, key)
		r.store(key, e)
		return e, nil
	})
	select {
	case res := <-ch:
		e := res.Val.(dnsEntry)
		return e.addrs, e.err
	case <-ctx.Done():
		return nil, &net.DNSError{Err: ctx.Err().Error(), Name: host, IsTimeout: errors.Is(ctx.Err(), context.DeadlineExceeded)}
	}
}

// errNoNetwork keeps the hosts-file resolver off the network.
var errNoNetwork = errors.New("hosts file only")

// lookup reads the hosts file, then asks the servers for A and AAAA
// records; when no server can be reached (or none is configured) it asks
// the system resolver. An answer from a server, "no such name" included,
// is final.
func (r *Cache) lookup(ctx context.Context, host, fqdn string) dnsEntry {
	r.queries.Add(1)
	now := r.now()
	if ips, err := r.hosts.LookupNetIP(ctx, "ip", host); err == nil && len(ips) > 0 {
		for i, a := range ips {
			ips[i] = a.Unmap()
		}
		return dnsEntry{addrs: ips, expires: now.Add(r.cfg.FallbackTTL)}
	}
	if len(r.servers) > 0 {
		var (
			wg   sync.WaitGroup
			res  [2][]netip.Addr
			ttls [2]uint32
			errs [2]error
		)
		for i, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
			wg.Add(1)
			go func() { // owner: lookup, which waits
				defer wg.Done()
				res[i], ttls[i], errs[i] = r.query(ctx, fqdn, qt)
			}()
		}
		wg.Wait()
		addrs := append(res[0], res[1]...)
		if len(addrs) > 0 {
			ttl := ttls[0]
			if len(res[0]) == 0 || len(res[1]) > 0 && ttls[1] < ttl {
				ttl = ttls[1]
			}
			d := min(max(time.Duration(ttl)*time.Second, r.cfg.MinTTL), r.cfg.MaxTTL)
			return dnsEntry{addrs: addrs, expires: now.Add(d)}
		}
		var ae *answerError
		if errors.As(errs[0], &ae) || errors.As(errs[1], &ae) || errs[0] == nil && errs[1] == nil {
			msg := "no such host"
			if ae != nil && ae.rcode != dns.RcodeNameError {
				msg = dns.RcodeToString[ae.rcode]
			}
			return dnsEntry{err: &net.DNSError{Err: msg, Name: host, IsNotFound: ae == nil || ae.rcode == dns.RcodeNameError},
				expires: now.Add(r.cfg.NegativeTTL)}
		}
	}
	ips, err := r.system.LookupNetIP(ctx, "ip", host)
	if err != nil {
		var de *net.DNSError
		if !errors.As(err, &de) {
			de = &net.DNSError{Err: err.Error(), Name: host}
		}
		return dnsEntry{err: de, expires: now.Add(r.cfg.NegativeTTL)}
	}
	for i, a := range ips {
		ips[i] = a.Unmap()
	}
	return dnsEntry{addrs: ips, expires: now.Add(r.cfg.FallbackTTL)}
}

// query asks the servers in turn for one record type and returns the
// addresses with the least TTL among them.
func (r *Cache) query(ctx context.Context, fqdn string, qt uint16) ([]netip.Addr, uint32, error) {
	m := new(dns.Msg)
	m.SetQuestion(fqdn, qt)
	m.RecursionDesired = true
	var lastErr error
	for _, srv := range r.servers {
		in, _, err := r.client.ExchangeContext(ctx, m, srv)
		if err == nil && in.Truncated {
			tcp := &dns.Client{Net: "tcp", Timeout: r.cfg.Timeout}
			in, _, err = tcp.ExchangeContext(ctx, m, srv)
		}
		if err != nil {
			lastErr = err
			continue
		}
		if in.Rcode != dns.RcodeSuccess {
			return nil, 0, &answerError{rcode: in.Rcode}
		}
		var out []netip.Addr
		var ttl uint32
		for _, rr := range in.Answer {
			var ip net.IP
			switch v := rr.(type) {
			case *dns.A:
				ip = v.A
			case *dns.AAAA:
				ip = v.AAAA
			default:
				continue
			}
			a, ok := netip.AddrFromSlice(ip)
			if !ok {
				continue
			}
			if len(out) == 0 || rr.Header().Ttl < ttl {
				ttl = rr.Header().Ttl
			}
			out = append(out, a.Unmap())
		}
		return out, ttl, nil
	}
	return nil, 0, lastErr
}

// answerError is a server's answer with an error code (such as
// NXDOMAIN): final, unlike a server that could not be reached.
type answerError struct{ rcode int }

func (e *answerError) Error() string { return dns.RcodeToString[e.rcode] }

func (r *Cache) store(key string, e dnsEntry) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cache) >= r.cfg.MaxEntries || now.Sub(r.swept) >= sweepEvery {
		r.sweepLocked(now)
	}
	r.cache[key] = e
}

// sweepEvery is how often the cache drops its expired entries at most,
// besides whenever it is full.
const sweepEvery = time.Minute

// sweepLocked drops the expired entries; if the cache is still over three
// quarters full, it drops arbitrary entries down to that (a lookup of
// one of them asks again), so a cache full of live answers is scanned
// once per MaxEntries/4 new names, not on every one.
func (r *Cache) sweepLocked(now time.Time) {
	r.swept = now
	for k, v := range r.cache {
		if !now.Before(v.expires) {
			delete(r.cache, k)
		}
	}
	for k := range r.cache {
		if len(r.cache) <= r.cfg.MaxEntries*3/4 {
			break
		}
		delete(r.cache, k)
	}
}

// Len returns the number of names cached (answers and failures, expired
// ones not yet swept included): at most Config.MaxEntries.
func (r *Cache) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.cache)
}

// LookupNetIP is net.Resolver's method of that name (the fetch stage's
// Resolver interface): the cached addresses of host of the
// network's family ("ip", "ip4" or "ip6").
func (r *Cache) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	addrs, err := r.LookupHost(ctx, host)
	if err != nil || network == "ip" {
		return addrs, err
	}
	var out []netip.Addr
	for _, a := range addrs {
		if network == "ip4" && a.Is4() || network == "ip6" && a.Is6() {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no " + network + " address", Name: host, IsNotFound: true}
	}
	return out, nil
}

// DialFunc dials a network address, as net.Dialer.DialContext.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Dialer wraps dial so that host names are resolved through the cache and
// the connection goes to one of the addresses found, tried in order.
func (r *Cache) Dialer(dial DialFunc) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		addrs, err := r.LookupHost(ctx, host)
		if err != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Err: err}
		}
		if len(addrs) == 0 {
			return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}}
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("bad port %q", port)}
		}
		var lastErr error
		for _, a := range addrs {
			c, err := dial(ctx, network, netip.AddrPortFrom(a, uint16(p)).String())
			if err == nil {
				return c, nil
			}
			lastErr = err
			if ctx.Err() != nil {
				break
			}
		}
		return nil, lastErr
	}
}
