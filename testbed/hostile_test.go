package testbed

import (
	"compress/gzip"
	"compress/zlib"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
)

func startHostileT(t *testing.T, cfg HostileConfig) *Hostile {
	t.Helper()
	h, err := StartHostile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

func rawClient(t *testing.T) *http.Client {
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func TestHostileBombsDecodeToTheirSize(t *testing.T) {
	h := startHostileT(t, HostileConfig{})
	c := rawClient(t)
	for _, enc := range []string{"gzip", "deflate", "br"} {
		resp, err := c.Get(h.URL() + "/bomb/" + enc + "?mib=3")
		if err != nil {
			t.Fatal(err)
		}
		wire, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Header.Get("Content-Encoding") != enc {
			t.Fatalf("%s: Content-Encoding %q", enc, resp.Header.Get("Content-Encoding"))
		}
		var r io.Reader
		switch enc {
		case "gzip":
			r, err = gzip.NewReader(strings.NewReader(string(wire)))
		case "deflate":
			r, err = zlib.NewReader(strings.NewReader(string(wire)))
		case "br":
			r = brotli.NewReader(strings.NewReader(string(wire)))
		}
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, r)
		if err != nil || n != 3<<20 {
			t.Errorf("%s: decoded %d bytes (%v) from %d, want 3 MiB", enc, n, err, len(wire))
		}
		if len(wire) > 64<<10 {
			t.Errorf("%s: %d bytes on the wire for 3 MiB", enc, len(wire))
		}
	}
}

func TestHostileRoutes(t *testing.T) {
	h := startHostileT(t, HostileConfig{TrickleInterval: time.Millisecond})
	c := rawClient(t)
	get := func(path string) (*http.Response, string, error) {
		resp, err := c.Get(h.URL() + path)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp, string(b), err
	}
	if resp, body, err := get("/ok/7?close=1"); err != nil || resp.StatusCode != 200 || !strings.Contains(body, "<h1>ok 7</h1>") || !resp.Close {
		t.Errorf("/ok/7: %v %q", err, body)
	}
	if _, body, err := get("/trickle?n=20"); err != nil || len(body) != 20 {
		t.Errorf("/trickle: %q %v", body, err)
	}
	if resp, _, err := get("/loop"); err != nil || resp.StatusCode != 302 || resp.Header.Get("Location") != "/loop" {
		t.Errorf("/loop: %v", err)
	}
	if resp, _, err := get("/chain/2"); err != nil || resp.Header.Get("Location") != "/chain/1" {
		t.Errorf("/chain/2: %v", err)
	}
	if resp, _, err := get("/redirect?to=http://169.254.169.254/"); err != nil || resp.Header.Get("Location") != "http://169.254.169.254/" {
		t.Errorf("/redirect: %v", err)
	}
	if resp, _, err := get("/big-headers?kib=64"); err != nil || len(resp.Header) < 64 {
		t.Errorf("/big-headers: %v", err)
	}
	if resp, body, err := get("/charset/latin1-as-utf8"); err != nil || !strings.Contains(body, "Caf\xe9") || !strings.Contains(resp.Header.Get("Content-Type"), "utf-8") {
		t.Errorf("/charset: %v", err)
	}
	if _, body, err := get("/deep?n=1000"); err != nil || strings.Count(body, "<div>") != 1000 {
		t.Errorf("/deep: %v", err)
	}
	if resp, _, err := get("/status/418"); err != nil || resp.StatusCode != 418 {
		t.Errorf("/status/418: %v", err)
	}
	if _, _, err := get("/garbage"); err == nil {
		t.Error("/garbage parsed as HTTP")
	}
	if _, _, err := get("/midbody"); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("/midbody: %v, want unexpected EOF", err)
	}
	// An endless body ends its handler when the client goes away.
	resp, err := c.Get(h.URL() + "/endless")
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := io.CopyN(io.Discard, resp.Body, 1<<20); n != 1<<20 {
		t.Fatalf("endless gave %d bytes", n)
	}
	resp.Body.Close()
	waitUntil(t, func() bool { return h.Stats().Active == 0 })
	st := h.Stats()
	if st.Requests["endless"] != 1 || st.BodyBytes["endless"] < 1<<20 {
		t.Errorf("stats %+v", st)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHostileCloseCutsSlowAnswers(t *testing.T) {
	h, err := StartHostile(HostileConfig{})
	if err != nil {
		t.Fatal(err)
	}
	c := rawClient(t)
	errs := make(chan error, 2)
	for _, p := range []string{"/slow-headers", "/trickle"} {
		go func() { // owner: this test, which receives its result
			resp, err := c.Get(h.URL() + p)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	waitUntil(t, func() bool { return h.Stats().Active == 2 })
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-errs; err == nil {
			t.Error("a slow answer completed after Close")
		}
	}
	if err := h.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestDNSScript(t *testing.T) {
	d, err := StartDNS(DNSConfig{Answers: map[string][][]netip.Addr{
		"flip.sluice.test": {{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}, {netip.MustParseAddr("127.0.0.1")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r := d.Resolver()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first, err := r.LookupNetIP(ctx, "ip", "flip.sluice.test")
	if err != nil || len(first) != 2 {
		t.Fatalf("first lookup: %v %v", first, err)
	}
	for range 2 {
		next, err := r.LookupNetIP(ctx, "ip4", "flip.sluice.test")
		if err != nil || len(next) != 1 || next[0] != netip.MustParseAddr("127.0.0.1") {
			t.Fatalf("later lookup: %v %v", next, err)
		}
	}
	if n := d.Lookups("flip.sluice.test"); n != 3 {
		t.Errorf("%d lookups counted, want 3", n)
	}
	_, err = r.LookupNetIP(ctx, "ip", "missing.sluice.test")
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("unknown name: %v, want not found", err)
	}
}

func TestCanaryCounts(t *testing.T) {
	c, err := StartCanary("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 3 {
		conn, err := net.Dial("tcp", c.Addr())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Read(make([]byte, 1)) // returns once the canary closes it
		conn.Close()
	}
	if c.Conns() != 3 {
		t.Errorf("%d connections counted", c.Conns())
	}
}
