package source

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sluicehq/sluice/failure"
)

// FuzzDecode feeds URL messages (bare URLs and JSON objects) to Decode:
// it never panics, fails only with class bad_input, and what it accepts is
// an absolute http(s) URL with a host, no credentials and no fragment,
// which decodes again to the same URL.
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
