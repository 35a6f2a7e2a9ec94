package app

import (
	"testing"
	"unicode/utf8"
)

// FuzzDecodePage feeds arbitrary bytes to the pages-topic decoder: it never
// panics, and whatever is not a page becomes a dead letter that keeps (a
// prefix of) the bytes.
func FuzzDecodePage(f *testing.F) {
	f.Add([]byte(`{"schema":1,"url":"http://x/","status":200,"body":"PGgxPng8L2gxPg=="}`))
	f.Add([]byte(`{"schema":2,"url":"http://x/"}`))
	f.Add([]byte("\xff\x00"))
	f.Add([]byte(`{"schema":1,"url":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		it := decodePage(b, "pages", 1, 7)
		switch {
		case it.Page != nil && it.Dead != nil, it.Page == nil && it.Dead == nil:
			t.Fatalf("item %+v", it)
		case it.Page != nil:
			if it.Page.URL == "" || it.Page.Schema != 1 {
				t.Fatalf("accepted page %+v", it.Page)
			}
		default:
			if it.Dead.Offset != 7 || it.Dead.Topic != "pages" || it.Dead.Error.Class != "bad_input" || !utf8.ValidString(it.Dead.Error.Message) && utf8.Valid(b) {
				t.Fatalf("dead letter %+v", it.Dead)
			}
			if n := min(len(b), 64<<10); string(it.Dead.Value) != string(b[:n]) {
				t.Fatal("dead letter lost the bytes")
			}
		}
	})
}
