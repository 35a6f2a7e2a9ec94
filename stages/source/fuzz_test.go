package source

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/record"
)

// FuzzDecode feeds URL messages (bare URLs and JSON objects) to Decode:
// it never panics, fails only with class bad_input, and what it accepts is
// an absolute http(s) URL with a host, no credentials and no fragment,
// which decodes again to the same URL, with a method sluice sends, a body
// only where a method takes one (base64 decoded), and headers that pass
// record.CheckHeaders.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"https://shop.example/p/42",
		"  http://example.com/a?b=c#frag  ",
		`{"url": "https://shop.example/p/42", "key": "sku-42", "session": "cart-7", "meta": {"campaign": "spring"}}`,
		`{"url": "http://x/", "meta": [1,2]}`,
		`{"url": "http://x/", "extra": 1}`,
		`{"url": "http://x/"} {"url": "http://y/"}`,
		`{"url": 42}`,
		`{"url": "http://x/", "meta": null}`,
		`{"url": "http://user:pw@x/"}`,
		"http://user:pw@example.com/",
		"ftp://example.com/",
		"javascript:alert(1)",
		"http:///nohost",
		"http://[::1]:80/",
		"http://0x7f.1/",
		"http://exa mple.com/",
		"\xff\xfehttp://x/",
		"",
		"{",
		strings.Repeat("a", 70000),
		"http://example.com/" + strings.Repeat("%41", 100),
		`{"url": "https://shop.example/search", "method": "post", "body": "q=shoes&page=2", "headers": {"Content-Type": "application/x-www-form-urlencoded", "X-Requested-With": "XMLHttpRequest"}}`,
		`{"url": "https://api.example/v1", "method": "PUT", "body_base64": "AAH/eyJhIjoxfQ=="}`,
		`{"url": "https://x/", "method": "GET", "body": "x"}`,
		`{"url": "https://x/", "method": "BREW"}`,
		`{"url": "https://x/", "method": "POST", "body": "a", "body_base64": "YQ=="}`,
		`{"url": "https://x/", "body_base64": "%%%"}`,
		`{"url": "https://x/", "headers": {"Host": "y"}}`,
		`{"url": "https://x/", "headers": {"X-A": "1\r\nX-B: 2"}}`,
		`{"url": "https://x/", "headers": {"X A": "1", "x-a": ""}}`,
		`{"url": "https://x/", "headers": {"Cookie": "a=b", "cookie": "c=d"}}`,
		`{"url": "https://x/", "headers": [1]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		msg, u, err := Decode(raw, 0)
		if err != nil {
			if failure.ClassOf(err) != failure.BadInput || failure.Retryable(err) {
				t.Fatalf("error %v is not a permanent bad_input", err)
			}
			if u != nil {
				t.Fatalf("URL returned with an error")
			}
			if len(err.Error()) > 1500 || !utf8.ValidString(err.Error()) { // 200 quoted bytes, up to 6 characters each when escaped
				t.Fatalf("error message is %d bytes or not UTF-8", len(err.Error()))
			}
			return
		}
		if u == nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil || u.Fragment != "" {
			t.Fatalf("accepted %q as %v", raw, u)
		}
		if len(msg.Meta) > 0 && !json.Valid(msg.Meta) {
			t.Fatalf("meta %q is not JSON", msg.Meta)
		}
		// The request fields are what the fetch stage can send as they are.
		if m, err := record.CheckMethod(msg.Method); err != nil || m != msg.Method {
			t.Fatalf("accepted method %q (%v)", msg.Method, err)
		}
		if msg.BodyBase64 != "" || msg.Body != "" && msg.Method != "" && !record.BodyAllowed(msg.Method) {
			t.Fatalf("accepted body %q (base64 %q) with method %q", msg.Body, msg.BodyBase64, msg.Method)
		}
		if err := record.CheckHeaders(msg.Headers); err != nil || len(msg.Headers) > record.MaxHeaders {
			t.Fatalf("accepted headers %v: %v", msg.Headers, err)
		}
		if len(msg.Body) > len(raw) {
			t.Fatalf("body of %d bytes from a message of %d", len(msg.Body), len(raw))
		}
		// The URL as the pipeline passes it on decodes to itself.
		_, u2, err := Decode([]byte(u.String()), 0)
		if err != nil || u2.String() != u.String() {
			t.Fatalf("%q -> %q -> %v, %v", raw, u, u2, err)
		}
		if !bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) && msg.URL != string(bytes.TrimSpace(raw)) {
			t.Fatalf("bare URL message kept %q, want %q", msg.URL, bytes.TrimSpace(raw))
		}
	})
}
