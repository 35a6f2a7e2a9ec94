package source

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/record"
)

// warcRecord is one uncompressed WARC record with the given header lines
// and block, its Content-Length computed.
func warcRecord(headers, block string) string {
	return fmt.Sprintf("WARC/1.1\r\n%sContent-Length: %d\r\n\r\n%s\r\n\r\n", headers, len(block), block)
}

func gzipped(s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	zw.Close()
	return b.Bytes()
}

const seedResponse = "WARC-Type: response\r\nWARC-Record-ID: <urn:uuid:3c1fa6a4-2b8e-4d1c-9a7f-0d6b1e2f3a4b>\r\n" +
	"WARC-Date: 2026-01-02T03:04:05.5Z\r\nWARC-Target-URI: http://shop.test/b\r\nContent-Type: application/http;msgtype=response\r\n" +
	"WARC-Sluice-Schema: 1\r\nWARC-Sluice-URL: http://shop.test/a\r\nWARC-Sluice-Key: k1\r\n" +
	"WARC-Sluice-Attempts: 2\r\nWARC-Sluice-Proxy: p1\r\nWARC-Sluice-Timings: {\"total_ms\":7}\r\nWARC-Sluice-Meta: {\"a\":1}\r\n"

const seedHTTP = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<h1>Product 1</h1>"

// seedChunked is a response as another tool archives it: chunked, as it
// came over the wire.
const seedChunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/html\r\n\r\n5\r\n<h1>a\r\n6\r\nb</h1>\r\n0\r\n\r\n"

// FuzzReadWARC feeds arbitrary bytes to the WARC reader replay uses: it
// never panics and never fails, every item it gives is one thing (a page
// with a URL and a body within the cap, an archived result or dead letter,
// or a record it could not read as a bad_input dead letter naming the
// file), and a valid record is read as the page it holds.
func FuzzReadWARC(f *testing.F) {
	valid := warcRecord(seedResponse, seedHTTP)
	request := warcRecord("WARC-Type: request\r\nWARC-Record-ID: <urn:uuid:00000000-0000-4000-8000-000000000001>\r\nWARC-Date: 2026-01-02T03:04:05Z\r\n"+
		"WARC-Target-URI: http://shop.test/b\r\nContent-Type: application/http;msgtype=request\r\n", "GET /b HTTP/1.1\r\nHost: shop.test\r\n\r\n")
	result := warcRecord("WARC-Type: metadata\r\nWARC-Record-ID: <urn:uuid:00000000-0000-4000-8000-000000000002>\r\nWARC-Date: 2026-01-02T03:04:05Z\r\n"+
		"Content-Type: application/json\r\nWARC-Sluice-Record: result\r\n", `{"schema":1,"url":"http://shop.test/a","status":200}`)
	foreign := warcRecord("WARC-Type: response\r\nWARC-Record-ID: <urn:uuid:00000000-0000-4000-8000-000000000003>\r\nWARC-Date: 2026-01-02T03:04:05Z\r\n"+
		"WARC-Target-URI: http://other.test/\r\nContent-Type: application/http; msgtype=response\r\n", "HTTP/1.0 404 Not Found\r\n\r\ngone")
	chunked := warcRecord("WARC-Type: response\r\nWARC-Record-ID: <urn:uuid:00000000-0000-4000-8000-000000000004>\r\nWARC-Date: 2026-01-02T03:04:05Z\r\n"+
		"WARC-Target-URI: http://other.test/c\r\nContent-Type: application/http;msgtype=response\r\n", seedChunked)
	for _, seed := range [][]byte{
		[]byte(chunked),
		[]byte(valid),
		gzipped(valid),
		append(gzipped(request), gzipped(valid)...),
		[]byte(request + valid + result + foreign),
		[]byte(valid[:len(valid)/2]),
		gzipped(valid)[:40],
		[]byte(strings.Replace(valid, "WARC-Sluice-Schema: 1", "WARC-Sluice-Schema: 9", 1)),
		[]byte(strings.Replace(valid, "HTTP/1.1 200 OK", "HTTX", 1)),
		[]byte(strings.Replace(valid, "Content-Length: ", "Content-Length: 9", 1)),
		[]byte("WARC/1.1\r\n\r\n"),
		[]byte("\x1f\x8b\x08\x00garbage"),
		[]byte("not a warc"),
		nil,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		const maxBody = 1 << 10
		n := 0
		err := ReadWARC(context.Background(), bytes.NewReader(b), "in.warc", maxBody, func(it WARCItem) error {
			n++
			set := 0
			for _, p := range []bool{it.Page != nil, it.Result != nil, it.Dead != nil, it.Bad != nil} {
				if p {
					set++
				}
			}
			if set != 1 {
				t.Fatalf("item with %d parts: %+v", set, it)
			}
			switch {
			case it.Page != nil:
				p := it.Page
				if p.URL == "" || p.FinalURL == "" || p.Schema != record.SchemaVersion || len(p.Body) > maxBody || p.Header == nil {
					t.Fatalf("page %+v", p)
				}
			case it.Bad != nil:
				d := it.Bad
				if d.Topic != "in.warc" || d.Error.Class != string(failure.BadInput) || !utf8.ValidString(d.Error.Message) || len(d.Value) > 64<<10 {
					t.Fatalf("dead letter %+v", d)
				}
			}
			if it.Offset < 0 || it.Offset > int64(len(b)) {
				t.Fatalf("offset %d in %d bytes", it.Offset, len(b))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("ReadWARC: %v", err)
		}
		if bytes.Equal(b, []byte(valid)) || bytes.Equal(b, gzipped(valid)) {
			if n != 1 {
				t.Fatalf("%d items from one valid record", n)
			}
		}
	})
}

// TestReadWARCSeed: the seed record reads back as the page it holds.
func TestReadWARCSeed(t *testing.T) {
	var items []WARCItem
	in := append(gzipped(warcRecord(seedResponse, seedHTTP)), []byte("trailing garbage")...)
	if err := ReadWARC(context.Background(), bytes.NewReader(in), "seed.warc.gz", 0, func(it WARCItem) error {
		items = append(items, it)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(items) < 1 || items[0].Page == nil {
		t.Fatalf("items %+v", items)
	}
	p := items[0].Page
	if p.URL != "http://shop.test/a" || p.FinalURL != "http://shop.test/b" || p.Key != "k1" || p.Status != 200 || p.Attempts != 2 ||
		p.Proxy != "p1" || p.Timings.TotalMS != 7 || string(p.Meta) != `{"a":1}` || string(p.Body) != "<h1>Product 1</h1>" ||
		http.Header(p.Header).Get("Content-Type") != "text/html" || p.FetchedAt.Nanosecond() != 5e8 {
		t.Fatalf("page %+v", p)
	}
	for _, it := range items[1:] {
		if it.Bad == nil {
			t.Fatalf("trailing garbage read as %+v", it)
		}
	}
}

// TestReadWARCForeign: a response record of another tool gives its target
// URI as the page's URL and its body without the chunked framing.
func TestReadWARCForeign(t *testing.T) {
	in := warcRecord("WARC-Type: response\r\nWARC-Record-ID: <urn:uuid:00000000-0000-4000-8000-000000000004>\r\nWARC-Date: 2026-01-02T03:04:05Z\r\n"+
		"WARC-Target-URI: http://other.test/c\r\nContent-Type: application/http;msgtype=response\r\n", seedChunked)
	var pages []*record.Page
	if err := ReadWARC(context.Background(), strings.NewReader(in), "foreign.warc", 0, func(it WARCItem) error {
		if it.Page == nil {
			t.Fatalf("item %+v", it)
		}
		pages = append(pages, it.Page)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(pages) != 1 {
		t.Fatalf("%d pages", len(pages))
	}
	p := pages[0]
	if p.URL != "http://other.test/c" || p.FinalURL != p.URL || p.Status != 200 || string(p.Body) != "<h1>ab</h1>" || p.Schema != record.SchemaVersion {
		t.Fatalf("page %+v body %q", p, p.Body)
	}
}
