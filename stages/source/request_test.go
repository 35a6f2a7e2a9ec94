package source

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/failure"
)

// TestDecodeRequestFields: method, body (text or base64) and headers are
// checked and normalised; what is wrong is bad_input.
func TestDecodeRequestFields(t *testing.T) {
	for _, tc := range []struct {
		name, in       string
		method, body   string
		header, hvalue string
		bad            string
	}{
		{name: "post text body", in: `{"url":"https://a.example/s","method":"post","body":"q=1","headers":{"content-type":"application/x-www-form-urlencoded"}}`,
			method: "POST", body: "q=1", header: "content-type", hvalue: "application/x-www-form-urlencoded"},
		{name: "base64 body", in: `{"url":"https://a.example/","method":"PUT","body_base64":"AAH/"}`, method: "PUT", body: "\x00\x01\xff"},
		{name: "body without method", in: `{"url":"https://a.example/","body":"x"}`, body: "x"},
		{name: "head", in: `{"url":"https://a.example/","method":"HEAD"}`, method: "HEAD"},
		{name: "unknown method", in: `{"url":"https://a.example/","method":"BREW"}`, bad: "method"},
		{name: "connect", in: `{"url":"https://a.example/","method":"CONNECT"}`, bad: "method"},
		{name: "body with GET", in: `{"url":"https://a.example/","method":"GET","body":"x"}`, bad: "needs a method"},
		{name: "both bodies", in: `{"url":"https://a.example/","method":"POST","body":"x","body_base64":"eA=="}`, bad: "both"},
		{name: "bad base64", in: `{"url":"https://a.example/","method":"POST","body_base64":"!!"}`, bad: "base64"},
		{name: "host header", in: `{"url":"https://a.example/","headers":{"Host":"b.example"}}`, bad: "Host"},
		{name: "proxy header", in: `{"url":"https://a.example/","headers":{"proxy-authorization":"Basic x"}}`, bad: "Proxy-Authorization"},
		{name: "accept-encoding", in: `{"url":"https://a.example/","headers":{"Accept-Encoding":"zstd"}}`, bad: "Accept-Encoding"},
		{name: "header injection", in: `{"url":"https://a.example/","headers":{"X-A":"1\r\nX-B: 2"}}`, bad: "control"},
		{name: "bad header name", in: `{"url":"https://a.example/","headers":{"X A":"1"}}`, bad: "token"},
		{name: "header twice", in: `{"url":"https://a.example/","headers":{"X-A":"1","x-a":"2"}}`, bad: "twice"},
		{name: "header not a string", in: `{"url":"https://a.example/","headers":{"X-A":1}}`, bad: "not a URL message"},
		{name: "too many headers", in: `{"url":"https://a.example/","headers":{` + manyHeaders(65) + `}}`, bad: "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, _, err := Decode([]byte(tc.in), 0)
			if tc.bad != "" {
				if err == nil || failure.ClassOf(err) != failure.BadInput || !strings.Contains(err.Error(), tc.bad) {
					t.Fatalf("error %v, want bad_input with %q", err, tc.bad)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if msg.Method != tc.method || msg.Body != tc.body || msg.BodyBase64 != "" {
				t.Fatalf("method %q body %q (base64 %q)", msg.Method, msg.Body, msg.BodyBase64)
			}
			if tc.header != "" && msg.Headers[tc.header] != tc.hvalue {
				t.Fatalf("headers %v", msg.Headers)
			}
		})
	}
}

func manyHeaders(n int) string {
	var parts []string
	for i := range n {
		parts = append(parts, `"X-H`+strings.Repeat("a", i)+`":"v"`)
	}
	return strings.Join(parts, ",")
}
