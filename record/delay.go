package record

import (
	"encoding/base64"
	"time"
	"unicode/utf8"
)

// Delayed is a record of the delay topic: the URL message of an input
// that could not be attempted soon enough, with when it is due and how
// many times it was parked. Its JSON is the message's own fields plus
// schema, not_before, attempts and error, so the delay topic can be read
// like an input topic by anything that ignores the extra fields.
type Delayed struct {
	Schema int `json:"schema"`
	Message
	// NotBefore is when the input may be tried again.
	NotBefore time.Time `json:"not_before"`
	// Attempts is how many times the input has been parked, this time
	// included (1 on the first).
	Attempts int `json:"attempts"`
	// Error is the last attempt's error, nil when none was made.
	Error *Error `json:"error,omitempty"`
	// RecordKey is the input record's key, the delay record's key; not
	// part of the JSON.
	RecordKey []byte `json:"-"`
}

// Park returns the delay record of t, due at notBefore, with the last
// error err (nil: the one t carried from an earlier park, if any).
func Park(t Task, notBefore time.Time, err *Error) *Delayed {
	if err == nil {
		err = t.ParkErr
	}
	msg := t.Msg
	if msg.URL == "" && t.URL != nil {
		msg.URL = t.URL.String()
	}
	if !utf8.ValidString(msg.Body) {
		// JSON strings are UTF-8: a binary body travels as base64.
		msg.BodyBase64, msg.Body = base64.StdEncoding.EncodeToString([]byte(msg.Body)), ""
	}
	return &Delayed{Schema: SchemaVersion, Message: msg, NotBefore: notBefore.UTC(), Attempts: t.Parks + 1, Error: err,
		RecordKey: t.Origin.RawKey}
}
