// Package warc is what sluice's WARC writer (stages/sink) and reader
// (stages/source, for replay) share: the WARC header fields sluice adds to
// its records, and safe construction of github.com/nlnwa/gowarc's record
// builders and readers. docs/warc.md describes the archive.
package warc

import (
	"crypto/rand"
	"fmt"
	"io"
	"sync"

	gowarc "github.com/nlnwa/gowarc/v2"
)

// The WARC header fields sluice adds to its records (docs/warc.md).
const (
	Schema       = "WARC-Sluice-Schema"        // record.SchemaVersion
	Record       = "WARC-Sluice-Record"        // on metadata records: result or dead_letter
	URL          = "WARC-Sluice-URL"           // the input URL: the key of the result and page records
	Key          = "WARC-Sluice-Key"           // the URL message's key, when it had one
	Rules        = "WARC-Sluice-Rules"         // the rule set that parsed the page
	RulesVersion = "WARC-Sluice-Rules-Version" // its version
	Attempts     = "WARC-Sluice-Attempts"
	Proxy        = "WARC-Sluice-Proxy" // proxy id, never credentials
	Timings      = "WARC-Sluice-Timings"
	Truncated    = "WARC-Sluice-Truncated"
	Meta         = "WARC-Sluice-Meta" // the URL message's meta, compact JSON
)

// The values of the Record field.
const (
	KindResult     = "result"
	KindDeadLetter = "dead_letter"
)

// gowarc sets a package variable of github.com/google/uuid
// (EnableRandPool) every time it builds its options, that is in every
// NewRecordBuilder and NewUnmarshaler: concurrent calls race. Every
// construction goes through this lock.
var construct sync.Mutex

// NewRecordBuilder is gowarc.NewRecordBuilder, safe for concurrent use.
// Its records get ids from RecordID (gowarc's own generator reads the
// uuid package variable that construction writes).
func NewRecordBuilder(t gowarc.RecordType, opts ...gowarc.WarcRecordOption) gowarc.WarcRecordBuilder {
	construct.Lock()
	defer construct.Unlock()
	return gowarc.NewRecordBuilder(t, append([]gowarc.WarcRecordOption{gowarc.WithRecordIdFunc(RecordID)}, opts...)...)
}

// RecordID returns a new record id: a random (version 4) UUID as a URN.
// Safe for concurrent use.
func RecordID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

// NewReader is gowarc.NewWarcFileReaderFromStream at offset 0, safe for
// concurrent use. The caller closes the reader (and r).
func NewReader(r io.Reader, opts ...gowarc.WarcRecordOption) (*gowarc.WarcFileReader, error) {
	construct.Lock()
	defer construct.Unlock()
	return gowarc.NewWarcFileReaderFromStream(r, 0, opts...)
}
