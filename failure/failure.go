// Package failure classifies what goes wrong with an input, so that every
// failed input ends as a Result (or dead letter) whose error names a stable
// class that operators can count and alert on.
//
// Stages decide what to do from the sentinel errors (ErrRetryable,
// ErrPermanent, ErrRateLimited, ErrProxy) through errors.Is, and report the
// class of an *Error through ClassOf.
package failure

import (
	"context"
	"errors"
	"fmt"
)

// Class is a stable, low-cardinality name for a kind of failure.
type Class string

// The classes. They appear in records and metrics; do not rename them.
const (
	BadInput      Class = "bad_input"      // not a URL message, not an http(s) URL
	Policy        Class = "policy"         // refused by the URL policy
	DNS           Class = "dns"            // name resolution failed
	Connect       Class = "connect"        // connection to the target refused or failed
	Timeout       Class = "timeout"        // a connect, header, body or total deadline passed
	TLS           Class = "tls"            // TLS handshake or verification failed
	ProxyConnect  Class = "proxy_connect"  // the proxy could not be reached
	ProxyAuth     Class = "proxy_auth"     // the proxy refused our credentials (407, or 401 on CONNECT)
	ProxyProtocol Class = "proxy_protocol" // the proxy answered garbage, closed early or failed upstream
	NoProxy       Class = "no_proxy"       // no proxy was usable for the pool's no-proxy timeout
	RateLimited   Class = "rate_limited"   // the target answered 429
	Blocked       Class = "blocked"        // the target answered 403 or a captcha page
	ServerError   Class = "server_error"   // the target answered 5xx
	ClientError   Class = "client_error"   // the target answered another 4xx
	TooLarge      Class = "too_large"      // the body or headers passed their cap
	Redirects     Class = "redirects"      // too many redirects or a redirect loop
	Protocol      Class = "protocol"       // the target broke HTTP (bad response, reset mid-body)
	Parse         Class = "parse"          // the page could not be parsed within its bounds
	Robots        Class = "robots"         // robots.txt disallows the URL, or the host's robots.txt failed (5xx, unreachable)
	Canceled      Class = "canceled"       // the run was stopped before the input finished
	Parked        Class = "parked"         // parked on the delay topic more often than allowed, with no attempt's error to show
	Internal      Class = "internal"       // a bug: a panic or an impossible state
	Unknown       Class = "unknown"
)

// Classes of the bounds on what a response may cost (see stages/fetch).
const (
	HeaderTooLarge Class = "header_too_large" // the response headers passed their cap (too_large is the body)
)

// The protocol between stages: what a caller may do about an error.
var (
	ErrRetryable   = errors.New("retryable")
	ErrPermanent   = errors.New("permanent")
	ErrRateLimited = errors.New("rate limited")
	ErrProxy       = errors.New("proxy failed")
)

// Error is a classified failure of one input. Proxy is a proxy id, never a
// proxy URL. Error values are immutable once built.
type Error struct {
	Class  Class
	URL    string
	Status int
	Proxy  string
	Err    error
	// Kind is one of the sentinels above; errors.Is(e, ErrRetryable) etc.
	// report it.
	Kind error
}

func (e *Error) Error() string {
	msg := string(e.Class)
	if e.Status != 0 {
		msg += fmt.Sprintf(" (status %d)", e.Status)
	}
	if e.Proxy != "" {
		msg += " via " + e.Proxy
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the cause and the kind sentinel.
func (e *Error) Unwrap() []error {
	var out []error
	if e.Err != nil {
		out = append(out, e.Err)
	}
	if e.Kind != nil {
		out = append(out, e.Kind)
	}
	return out
}

// New builds a classified error of the given kind.
func New(class Class, kind error, err error) *Error {
	return &Error{Class: class, Kind: kind, Err: err}
}

// Errorf builds a permanent classified error from a format.
func Errorf(class Class, format string, args ...any) *Error {
	return &Error{Class: class, Kind: ErrPermanent, Err: fmt.Errorf(format, args...)}
}

// ClassOf returns the class of err: the class of the outermost *Error in its
// chain, Canceled for context errors, Unknown otherwise, "" for nil.
func ClassOf(err error) Class {
	if err == nil {
		return ""
	}
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Class
	}
	if errors.Is(err, context.Canceled) {
		return Canceled
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return Timeout
	}
	return Unknown
}

// Retryable reports whether another attempt may succeed.
func Retryable(err error) bool {
	return errors.Is(err, ErrRetryable) || errors.Is(err, ErrRateLimited) || errors.Is(err, ErrProxy)
}
