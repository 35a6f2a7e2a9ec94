package fetch_test

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andybalholm/brotli"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

// heapPeak samples the heap (live and not yet swept objects) while fn
// runs and returns the highest value above the level before it.
func heapPeak(fn func()) (peak uint64) {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	base := read()
	var max atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // owner: heapPeak, which waits for it
		defer wg.Done()
		t := time.NewTicker(200 * time.Microsecond)
		defer t.Stop()
		for {
			if v := read(); v > max.Load() {
				max.Store(v)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	fn()
	close(stop)
	wg.Wait()
	if v := read(); v > max.Load() {
		max.Store(v)
	}
	if max.Load() < base {
		return 0
	}
	return max.Load() - base
}

// TestGzipBombStoppedAtCap fetches a 1 MB gzip body that expands to 1 GiB.
// It is stopped at the cap (refused, or truncated to exactly the cap) with
// the heap growing by less than twice the cap while it runs.
func TestGzipBombStoppedAtCap(t *testing.T) {
	h := startHostile(t, testbed.HostileConfig{})
	// Build the bomb before measuring: it is the server's memory, not ours.
	raw := &http.Transport{DisableCompression: true}
	defer raw.CloseIdleConnections()
	resp, err := (&http.Client{Transport: raw}).Get(h.URL() + "/bomb/gzip")
	if err != nil {
		t.Fatal(err)
	}
	wire, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if wire < 900_000 || wire > 1_200_000 {
		t.Fatalf("bomb is %d bytes on the wire, want about 1 MB", wire)
	}
	const limit = 10 << 20 // the default cap
	for _, truncate := range []bool{false, true} {
		cfg := fast()
		cfg.TruncateLarge = truncate
		var f record.Fetched
		waitFor(t, "the bomb's earlier answers to end", func() bool { return h.Stats().Active == 0 })
		before := h.Stats().BodyBytes["bomb"]
		peak := heapPeak(func() { f = run(t, cfg, []string{h.URL() + "/bomb/gzip"})[0] })
		sent := h.Stats().BodyBytes["bomb"] - before
		t.Logf("truncate=%v: heap peak +%.1f MiB for a cap of %d MiB (the server wrote %d KiB of its %d KiB into the socket)",
			truncate, float64(peak)/(1<<20), limit>>20, sent>>10, wire>>10)
		if truncate {
			if f.Err != nil || !f.Truncated || len(f.Body) != limit || len(bytes.TrimLeft(f.Body, " ")) != 0 {
				t.Errorf("truncated: err %v, truncated %v, %d bytes", f.Err, f.Truncated, len(f.Body))
			}
		} else if errClass(f) != failure.TooLarge || f.Body != nil || f.Truncated {
			t.Errorf("refused: class %q (%v), %d bytes", errClass(f), f.Err, len(f.Body))
		}
		if peak >= 2*limit {
			t.Errorf("heap grew by %d bytes, want under twice the cap (%d)", peak, 2*limit)
		}
	}
}

// TestCompressionBombs checks the other encodings the stage asks for.
func TestCompressionBombs(t *testing.T) {
	h := startHostile(t, testbed.HostileConfig{})
	cfg := fast()
	cfg.MaxBodyBytes = 1 << 20
	urls := []string{h.URL() + "/bomb/deflate?mib=32", h.URL() + "/bomb/br?mib=32", h.URL() + "/bomb/gzip?mib=32"}
	for i, f := range run(t, cfg, urls) {
		if errClass(f) != failure.TooLarge {
			t.Errorf("%s: %v, want too_large", urls[i], f.Err)
		}
	}
	cfg.TruncateLarge = true
	for i, f := range run(t, cfg, urls) {
		if f.Err != nil || !f.Truncated || len(f.Body) != 1<<20 || len(bytes.TrimLeft(f.Body, " ")) != 0 {
			t.Errorf("%s: err %v truncated %v len %d", urls[i], f.Err, f.Truncated, len(f.Body))
		}
		if f.Header.Get("Content-Encoding") != "" {
			t.Errorf("%s: decoded body still labelled %q", urls[i], f.Header.Get("Content-Encoding"))
		}
	}
}

// TestSlowAndEndlessBodiesEndAtTheirBounds runs, on a single worker, a
// 10 B/s trickle, an endless chunked body and a server that never sends
// headers, each followed by a normal page. Each bad one ends at its bound
// with its class; the page after it is fetched, so the worker was freed;
// and the server sees each bad connection dropped.
func TestSlowAndEndlessBodiesEndAtTheirBounds(t *testing.T) {
	h := startHostile(t, testbed.HostileConfig{}) // trickles 10 B/s
	cfg := fast()
	cfg.Concurrency = 1
	cfg.BodyTimeout = time.Second
	cfg.HeaderTimeout = time.Second
	cfg.MaxBodyBytes = 1 << 20
	u := h.URL()
	urls := []string{u + "/trickle", u + "/ok/1", u + "/endless", u + "/ok/2", u + "/slow-headers", u + "/ok/3"}
	want := []failure.Class{failure.Timeout, "", failure.TooLarge, "", failure.Timeout, ""}
	res := run(t, cfg, urls)
	for i, f := range res {
		if errClass(f) != want[i] {
			t.Errorf("%s: class %q (%v), want %q", urls[i], errClass(f), f.Err, want[i])
		}
	}
	if !strings.Contains(res[0].Err.Error(), "body not read within 1s") {
		t.Errorf("trickle error does not name the bound: %v", res[0].Err)
	}
	// A longer attempt deadline still cuts a trickle, with the other bounds off.
	cfg.BodyTimeout = time.Hour
	cfg.AttemptTimeout = 1500 * time.Millisecond
	cfg.TruncateLarge = true
	res = run(t, cfg, []string{u + "/trickle", u + "/endless", u + "/ok/4"})
	if errClass(res[0]) != failure.Timeout || !strings.Contains(res[0].Err.Error(), "attempt deadline") {
		t.Errorf("trickle under the attempt deadline: %v", res[0].Err)
	}
	if res[1].Err != nil || !res[1].Truncated || len(res[1].Body) != 1<<20 {
		t.Errorf("endless, truncated: %v %v %d", res[1].Err, res[1].Truncated, len(res[1].Body))
	}
	if res[2].Err != nil {
		t.Errorf("page after: %v", res[2].Err)
	}
	// The server's handlers all end: the connections were cut.
	waitFor(t, "hostile handlers to end", func() bool { return h.Stats().Active == 0 })
	st := h.Stats()
	if st.BodyBytes["trickle"] > 200 {
		t.Errorf("trickle sent %d bytes: not cut at its deadline", st.BodyBytes["trickle"])
	}
	t.Logf("trickle: %d bytes sent in 2 cut attempts; endless: %d KiB sent for 2 fetches capped at 1 MiB", st.BodyBytes["trickle"], st.BodyBytes["endless"]>>10)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHeaderAndRedirectBounds(t *testing.T) {
	h := startHostile(t, testbed.HostileConfig{})
	u := h.URL()
	cfg := fast()
	cfg.MaxHeaderBytes = 64 << 10
	cfg.MaxRedirects = 3
	urls := []string{u + "/big-headers?kib=2048", u + "/loop", u + "/chain/5", u + "/chain/3", u + "/big-headers?kib=16"}
	want := []failure.Class{failure.HeaderTooLarge, failure.Redirects, failure.Redirects, "", ""}
	res := run(t, cfg, urls)
	for i, f := range res {
		if errClass(f) != want[i] {
			t.Errorf("%s: class %q (%v), want %q", urls[i], errClass(f), f.Err, want[i])
		}
	}
	if !strings.Contains(res[1].Err.Error(), "loop") {
		t.Errorf("loop not named: %v", res[1].Err)
	}
	if res[3].FinalURL != u+"/chain/0" {
		t.Errorf("chain ended at %q", res[3].FinalURL)
	}
	cfg.MaxRedirects = -1
	if f := run(t, cfg, []string{u + "/chain/2"})[0]; f.Err != nil || f.Status != http.StatusFound {
		t.Errorf("redirects off: %v %d, want the 302 itself", f.Err, f.Status)
	}
}

func TestTLSVerifiedByDefault(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "<h1>secure</h1>")
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	farm := startFarm(t, 1)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	for _, viaProxy := range []bool{false, true} {
		cfg := fast()
		if viaProxy {
			cfg.Pool = pool(t, farm)
		}
		f := run(t, cfg, []string{srv.URL})[0]
		if errClass(f) != failure.TLS || failure.Retryable(f.Err) && !viaProxy {
			t.Errorf("proxy=%v: self-signed server: %v, want a tls error", viaProxy, f.Err)
		}
		cfg.TLS = &tls.Config{RootCAs: roots}
		if f := run(t, cfg, []string{srv.URL})[0]; f.Err != nil || string(f.Body) != "<h1>secure</h1>" {
			t.Errorf("proxy=%v: trusted root: %v", viaProxy, f.Err)
		}
		cfg.TLS = &tls.Config{InsecureSkipVerify: true}
		if f := run(t, cfg, []string{srv.URL})[0]; f.Err != nil {
			t.Errorf("proxy=%v: verification off: %v", viaProxy, f.Err)
		}
	}
}

// TestContentDecoding serves one page in every encoding the stage asks
// for, plus broken and unknown ones.
func TestContentDecoding(t *testing.T) {
	page := []byte("<html><body><h1>Decoded</h1>" + strings.Repeat("<p>filler</p>", 500) + "</body></html>")
	enc := map[string][]byte{}
	var b bytes.Buffer
	gw := gzip.NewWriter(&b)
	_, _ = gw.Write(page)
	_ = gw.Close()
	enc["gzip"] = bytes.Clone(b.Bytes())
	b.Reset()
	zw := zlib.NewWriter(&b)
	_, _ = zw.Write(page)
	_ = zw.Close()
	enc["deflate"] = bytes.Clone(b.Bytes())
	b.Reset()
	fw, _ := flate.NewWriter(&b, flate.DefaultCompression)
	_, _ = fw.Write(page)
	_ = fw.Close()
	enc["raw-deflate"] = bytes.Clone(b.Bytes())
	b.Reset()
	bw := brotli.NewWriter(&b)
	_, _ = bw.Write(page)
	_ = bw.Close()
	enc["br"] = bytes.Clone(b.Bytes())
	b.Reset()
	gw = gzip.NewWriter(&b)
	_, _ = gw.Write(enc["br"])
	_ = gw.Close()
	enc["br, gzip"] = bytes.Clone(b.Bytes())

	var accept atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		accept.Store(r.Header.Get("Accept-Encoding"))
		name := strings.TrimPrefix(r.URL.Path, "/")
		switch name {
		case "broken-gzip":
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write([]byte("this is not gzip at all"))
		case "zstd":
			w.Header().Set("Content-Encoding", "zstd")
			_, _ = w.Write([]byte{0x28, 0xb5, 0x2f, 0xfd})
		case "identity":
			w.Header().Set("Content-Encoding", "identity")
			_, _ = w.Write(page)
		default:
			body, ok := enc[strings.ReplaceAll(name, "_", ", ")]
			if !ok {
				http.NotFound(w, r)
				return
			}
			ce := strings.ReplaceAll(name, "_", ", ")
			if ce == "raw-deflate" {
				ce = "deflate"
			}
			w.Header().Set("Content-Encoding", ce)
			_, _ = w.Write(body)
		}
	}))
	t.Cleanup(srv.Close)
	names := []string{"gzip", "deflate", "raw-deflate", "br", "br_gzip", "identity", "broken-gzip", "zstd"}
	var urls []string
	for _, n := range names {
		urls = append(urls, srv.URL+"/"+n)
	}
	res := run(t, fast(), urls)
	for i, f := range res[:6] {
		if f.Err != nil || !bytes.Equal(f.Body, page) {
			t.Errorf("%s: %v, %d bytes", names[i], f.Err, len(f.Body))
		}
	}
	for i, f := range res[6:] {
		if errClass(f) != failure.Protocol || failure.Retryable(f.Err) {
			t.Errorf("%s: %v, want a permanent protocol error", names[6+i], f.Err)
		}
	}
	if got := accept.Load(); got != "gzip, deflate, br" {
		t.Errorf("Accept-Encoding %q", got)
	}
}
