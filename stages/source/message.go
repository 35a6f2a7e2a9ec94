// Package source holds sluice's sources: lines from a file or stdin, and (in
// kafka.go) a Kafka consumer group. Each turns raw input into record.Task
// values; input that is not a URL message becomes a Task carrying a
// classified error, never a silence.
package source

import (
	"bytes"
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
// {"url": ..., "key": ..., "session": ..., "meta": {...}}. The URL must be
// an absolute http or https URL with a host. Errors are of class
// failure.BadInput. Decode is safe for concurrent use.
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
