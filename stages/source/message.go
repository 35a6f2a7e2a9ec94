// Package source holds sluice's sources: lines from a file or stdin, and (in
// kafka.go) a Kafka consumer group. Each turns raw input into record.Task
// values; input that is not a URL message becomes a Task carrying a
// classified error, never a silence.
package source

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/record"
)

// MaxMessageBytes is the default cap on one URL message.
const MaxMessageBytes = 64 << 10

// Decode parses one URL message: a bare URL, or a JSON object
// {"url": ..., "key": ..., "session": ..., "meta": {...}, "method": ...,
// "body": ... or "body_base64": ..., "headers": {...}}. The URL must be
// an absolute http or https URL with a host; the request fields are
// checked as checkRequest says (the fetch stage applies the body's size
// cap). Errors are of class failure.BadInput. Decode is safe for
// concurrent use.
func Decode(raw []byte, maxBytes int) (record.Message, *url.URL, error) {
	var msg record.Message
	if maxBytes <= 0 {
		maxBytes = MaxMessageBytes
	}
	if len(raw) > maxBytes {
		return msg, nil, failure.Errorf(failure.BadInput, "message of %d bytes exceeds the cap of %d", len(raw), maxBytes)
	}
	if !utf8.Valid(raw) {
		return msg, nil, failure.Errorf(failure.BadInput, "message is not valid UTF-8")
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&msg); err != nil {
			return record.Message{}, nil, failure.Errorf(failure.BadInput, "message is not a URL message: %v", err)
		}
		if dec.More() {
			return record.Message{}, nil, failure.Errorf(failure.BadInput, "message has trailing data after the JSON object")
		}
		if len(msg.Meta) > 0 && msg.Meta[0] != '{' {
			return msg, nil, failure.Errorf(failure.BadInput, "meta must be a JSON object")
		}
		if err := checkRequest(&msg); err != nil {
			return msg, nil, err
		}
	} else {
		msg.URL = string(trimmed)
	}
	u, err := ParseURL(msg.URL)
	if err != nil {
		return msg, nil, err
	}
	return msg, u, nil
}

// ParseURL checks that s is an absolute http(s) URL with a host and returns
// it parsed. Errors are of class failure.BadInput and quote at most 200
// bytes of s.
func ParseURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, failure.Errorf(failure.BadInput, "empty URL")
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return nil, failure.Errorf(failure.BadInput, "URL %q contains white space", clip(s))
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, failure.Errorf(failure.BadInput, "malformed URL %q", clip(s))
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	default:
		return nil, failure.Errorf(failure.BadInput, "URL %q is not http or https", clip(s))
	}
	if u.Hostname() == "" {
		return nil, failure.Errorf(failure.BadInput, "URL %q has no host", clip(s))
	}
	if u.User != nil {
		return nil, failure.Errorf(failure.BadInput, "URL %q carries credentials", clip(u.Redacted()))
	}
	u.Fragment = ""
	u.RawFragment = ""
	return u, nil
}

func clip(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	return fmt.Sprintf("%s…", strings.ToValidUTF8(s[:max], ""))
}

// checkRequest checks and normalises a message's request fields: the
// method is one sluice sends (upper-cased), a body goes with a method
// that takes one (when the message names one) and is given once (body or body_base64, the latter
// decoded into Body), headers pass record.CheckHeaders. The message's own
// size cap bounds them all.
func checkRequest(msg *record.Message) error {
	m, err := record.CheckMethod(msg.Method)
	if err != nil {
		return failure.Errorf(failure.BadInput, "%v", err)
	}
	msg.Method = m
	if msg.BodyBase64 != "" {
		if msg.Body != "" {
			return failure.Errorf(failure.BadInput, "message has both body and body_base64")
		}
		b, err := base64.StdEncoding.DecodeString(msg.BodyBase64)
		if err != nil {
			return failure.Errorf(failure.BadInput, "body_base64 is not standard base64: %v", err)
		}
		msg.Body, msg.BodyBase64 = string(b), ""
	}
	if msg.Body != "" && msg.Method != "" && !record.BodyAllowed(msg.Method) {
		// Without a method, the job config's applies: the fetch stage
		// checks the pair then.
		return failure.Errorf(failure.BadInput, "a body needs a method that takes one (POST, PUT, PATCH, DELETE), not %s", msg.Method)
	}
	if err := record.CheckHeaders(msg.Headers); err != nil {
		return failure.Errorf(failure.BadInput, "headers: %v", err)
	}
	return nil
}
