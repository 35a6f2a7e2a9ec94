package record

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// The request a URL message (or a job config's `requests:` entry) may
// shape, and its bounds. One set of rules for both, so that what the
// config accepts a message may say too.

// MaxHeaders bounds the headers one message or one config entry sets.
const MaxHeaders = 64

// MaxHeaderValue bounds one header value, in bytes.
const MaxHeaderValue = 8 << 10

// Methods are the request methods sluice sends. CONNECT and TRACE are
// not among them: one is the proxies' business, the other a debugging
// tool.
var Methods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}

// CheckMethod returns m in upper case if it is one of Methods; "" stays
// "" (the default, GET).
func CheckMethod(m string) (string, error) {
	if m == "" {
		return "", nil
	}
	u := strings.ToUpper(m)
	for _, ok := range Methods {
		if u == ok {
			return u, nil
		}
	}
	return "", fmt.Errorf("method %q: want one of %s", clipText(m), strings.Join(Methods, ", "))
}

// BodyAllowed reports whether a request of method m may carry a body:
// not GET, HEAD or OPTIONS ("" is GET).
func BodyAllowed(m string) bool {
	switch m {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// Idempotent reports whether a request may be sent twice with the effect
// of once (RFC 9110, 9.2.2): every method but POST and PATCH, or one of
// those with an Idempotency-Key header, as net/http has it.
func Idempotent(method string, h http.Header) bool {
	switch method {
	case http.MethodPost, http.MethodPatch:
		return h.Get("Idempotency-Key") != "" || h.Get("X-Idempotency-Key") != ""
	}
	return true
}

// reservedHeaders are the headers a message or config may not set: the
// framing and connection headers net/http writes itself, the proxy's,
// Host (the URL names the host), and Accept-Encoding (sluice asks for the
// encodings it decodes under its cap, and for no other).
var reservedHeaders = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Connection": true, "Keep-Alive": true,
	"Proxy-Authorization": true, "Proxy-Connection": true, "Proxy-Authenticate": true, "Upgrade": true,
	"Te": true, "Trailer": true, "Expect": true, "Accept-Encoding": true,
}

// CheckHeaders checks headers a message or config entry sets: at most
// MaxHeaders, valid names that are not reserved (Host, Content-Length,
// Connection, Proxy-*, Accept-Encoding, …), values without control
// characters and at most MaxHeaderValue bytes. An empty value is allowed:
// it removes a default header. Names are compared without regard to case;
// two spellings of one name are an error.
func CheckHeaders(h map[string]string) error {
	if len(h) > MaxHeaders {
		return fmt.Errorf("%d headers: at most %d", len(h), MaxHeaders)
	}
	seen := make(map[string]bool, len(h))
	var errs []error
	for name, v := range h {
		canon := textproto.CanonicalMIMEHeaderKey(name)
		switch {
		case !httpguts.ValidHeaderFieldName(name):
			errs = append(errs, fmt.Errorf("header name %q is not a valid HTTP token", clipText(name)))
		case reservedHeaders[canon] || strings.HasPrefix(canon, "Proxy-"):
			errs = append(errs, fmt.Errorf("header %s is sluice's own and may not be set", canon))
		case seen[canon]:
			errs = append(errs, fmt.Errorf("header %s is given twice", canon))
		case len(v) > MaxHeaderValue:
			errs = append(errs, fmt.Errorf("header %s: value of %d bytes exceeds %d", canon, len(v), MaxHeaderValue))
		case !httpguts.ValidHeaderFieldValue(v):
			errs = append(errs, fmt.Errorf("header %s: value has control characters", canon))
		}
		seen[canon] = true
	}
	return errors.Join(errs...)
}

// CheckCookies checks static cookies (name → value) as a config entry
// sets them: valid names and values (RFC 6265), at most MaxHeaders.
func CheckCookies(c map[string]string) error {
	if len(c) > MaxHeaders {
		return fmt.Errorf("%d cookies: at most %d", len(c), MaxHeaders)
	}
	var errs []error
	for name, v := range c {
		ck := &http.Cookie{Name: name, Value: v}
		if err := ck.Valid(); err != nil {
			errs = append(errs, fmt.Errorf("cookie %q: %v", clipText(name), err))
		}
	}
	return errors.Join(errs...)
}

// clipText quotes at most 100 bytes of s.
func clipText(s string) string {
	if len(s) > 100 {
		return strings.ToValidUTF8(s[:100], "") + "…"
	}
	return s
}
