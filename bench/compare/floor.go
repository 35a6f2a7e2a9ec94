package main

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// floorMaxBody caps what the floor reads of a body (sluice's default
// --max-body).
const floorMaxBody = 10 << 20

// runFloor is the floor: the least work that does the job. C workers take
// URLs in order; each request goes through the next proxy round-robin, on
// that proxy's long-lived keep-alive transport; the fields are cut out of
// the body with substring searches. No retries, no parsing.
func runFloor(ctx context.Context, o childOpts) error {
	share := (o.C + len(o.Proxies) - 1) / len(o.Proxies)
	clients := make([]*http.Client, len(o.Proxies))
	for i, p := range o.Proxies {
		pu, err := url.Parse(p)
		if err != nil {
			return fmt.Errorf("proxy %d: %w", i, err)
		}
		tr := &http.Transport{
			Proxy:               http.ProxyURL(pu),
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			MaxIdleConns:        share + share/5 + 1,
			MaxIdleConnsPerHost: share + share/5 + 1,
			IdleConnTimeout:     90 * time.Second,
		}
		defer tr.CloseIdleConnections()
		clients[i] = &http.Client{Transport: tr, Timeout: 60 * time.Second}
	}
	w, err := newRecordWriter(o.Out)
	if err != nil {
		return err
	}
	jobs := make(chan string)
	var next atomic.Uint64
	var wg sync.WaitGroup
	for range o.C {
		wg.Add(1)
		go func() { // owner: runFloor, which waits; exits when jobs is closed
			defer wg.Done()
			var buf bytes.Buffer
			for u := range jobs {
				client := clients[(next.Add(1)-1)%uint64(len(clients))]
				w.write(floorFetch(ctx, client, u, &buf))
			}
		}()
	}
	for _, u := range o.URLs {
		jobs <- u
	}
	close(jobs)
	wg.Wait()
	return w.close()
}

// floorFetch fetches u and extracts the fields, reusing buf for the body.
func floorFetch(ctx context.Context, client *http.Client, u string, buf *bytes.Buffer) outRecord {
	rec := outRecord{URL: u}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		rec.Error = &outError{Class: "request", Message: err.Error()}
		return rec
	}
	resp, err := client.Do(req)
	if err != nil {
		rec.Error = &outError{Class: "fetch", Message: err.Error()}
		return rec
	}
	buf.Reset()
	_, err = buf.ReadFrom(io.LimitReader(resp.Body, floorMaxBody))
	resp.Body.Close()
	rec.Status = resp.StatusCode
	if err != nil {
		rec.Error = &outError{Class: "body", Message: err.Error()}
		return rec
	}
	if resp.StatusCode != http.StatusOK {
		rec.Error = &outError{Class: "status", Message: resp.Status}
		return rec
	}
	body := buf.Bytes()
	rec.Fields = map[string]*string{
		"name":  between(body, "<h1>", "</h1>"),
		"price": between(body, `<span class="price">`, "</span>"),
		"sku":   between(body, `itemprop="sku" content="`, `"`),
	}
	return rec
}

// between returns the text after the first open and before the next
// close, HTML-unescaped, or nil when either is missing.
func between(b []byte, open, close string) *string {
	i := bytes.Index(b, []byte(open))
	if i < 0 {
		return nil
	}
	b = b[i+len(open):]
	j := bytes.Index(b, []byte(close))
	if j < 0 {
		return nil
	}
	s := html.UnescapeString(string(b[:j]))
	return &s
}
