package record

import (
	"net/http"
	"strings"
	"testing"
)

func TestCheckMethod(t *testing.T) {
	for in, want := range map[string]string{"": "", "get": "GET", "Post": "POST", "DELETE": "DELETE", "options": "OPTIONS"} {
		if got, err := CheckMethod(in); err != nil || got != want {
			t.Errorf("CheckMethod(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"CONNECT", "TRACE", "BREW", "GET ", "G\x00T"} {
		if _, err := CheckMethod(in); err == nil {
			t.Errorf("CheckMethod(%q) accepted", in)
		}
	}
}

func TestIdempotent(t *testing.T) {
	key := http.Header{"Idempotency-Key": {"k"}}
	for _, tc := range []struct {
		method string
		h      http.Header
		want   bool
	}{
		{"GET", nil, true}, {"", nil, true}, {"HEAD", nil, true}, {"PUT", nil, true}, {"DELETE", nil, true},
		{"POST", nil, false}, {"PATCH", nil, false}, {"POST", key, true}, {"PATCH", http.Header{"X-Idempotency-Key": {"k"}}, true},
	} {
		if got := Idempotent(tc.method, tc.h); got != tc.want {
			t.Errorf("Idempotent(%s, %v) = %v", tc.method, tc.h, got)
		}
	}
}

func TestCheckHeaders(t *testing.T) {
	if err := CheckHeaders(map[string]string{"Referer": "https://a.example/", "Sec-Fetch-User": "", "Cookie": "a=b"}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []map[string]string{
		{"host": "x"}, {"Content-Length": "1"}, {"Proxy-Foo": "x"}, {"Accept-Encoding": "zstd"},
		{"X-A": "a\nb"}, {"X A": "1"}, {"X-A": "1", "x-a": "2"}, {"X-A": strings.Repeat("v", MaxHeaderValue+1)},
	} {
		if err := CheckHeaders(h); err == nil {
			t.Errorf("CheckHeaders(%v) accepted", h)
		}
	}
	if err := CheckCookies(map[string]string{"ok": "v", "bad name": "v"}); err == nil || !strings.Contains(err.Error(), "bad name") {
		t.Errorf("CheckCookies: %v", err)
	}
	if err := CheckCookies(map[string]string{"ok": "v;x"}); err == nil {
		t.Error("CheckCookies accepted a value with ;")
	}
}
