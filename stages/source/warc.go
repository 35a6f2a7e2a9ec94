package source

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	gowarc "github.com/nlnwa/gowarc/v2"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/warc"
)

// DefaultWARCMaxBody is the largest response body ReadWARC keeps by
// default; a longer one is cut there and marked truncated.
const DefaultWARCMaxBody = 64 << 20

// WARCItem is one record read from a WARC file. Exactly one of its
// pointers is set.
type WARCItem struct {
	// Page is a response record, as the page it archives. Records written
	// by sluice give back the Page exactly; a response record of another
	// tool gives URL = final URL = WARC-Target-URI and the HTTP message.
	Page *record.Page
	// Result is a result sluice archived (a metadata record).
	Result *record.Result
	// Dead is a dead letter sluice archived (a metadata record).
	Dead *record.DeadLetter
	// Bad is a record that could not be read, as a dead letter: Topic is
	// the file name, Offset the record's offset in the file.
	Bad *record.DeadLetter
	// Offset is where the record starts in the file (compressed bytes).
	Offset int64
}

// ReadWARCFile reads the WARC file at path (.warc or .warc.gz) with
// ReadWARC.
func ReadWARCFile(ctx context.Context, path string, maxBody int64, emit func(WARCItem) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("warc: %w", err)
	}
	defer f.Close()
	return ReadWARC(ctx, f, path, maxBody, emit)
}

// ReadWARC reads WARC records from r, which is named name in dead letters,
// and calls emit for every response record (as a Page), every metadata
// record sluice wrote (as a Result or a Dead), and for a record that
// cannot be read (Bad). Request, warcinfo and other records are skipped.
// A record that cannot be parsed ends the file: one Bad item says where.
// Bodies are kept up to maxBody bytes (0: DefaultWARCMaxBody). It returns
// emit's error, or nil at the end of r or when ctx ends.
func ReadWARC(ctx context.Context, r io.Reader, name string, maxBody int64, emit func(WARCItem) error) error {
	if maxBody <= 0 {
		maxBody = DefaultWARCMaxBody
	}
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(5)
	if len(magic) == 0 && errors.Is(err, io.EOF) {
		return nil // an empty file
	}
	if len(magic) < 2 || magic[0] != 0x1f || magic[1] != 0x8b {
		if string(magic) != "WARC/" {
			return emit(WARCItem{Bad: bad(name, 0, magic, errors.New("not a WARC file"))})
		}
	}
	wr, err := warc.NewReader(br)
	if err != nil {
		return emit(WARCItem{Bad: bad(name, 0, nil, err)})
	}
	defer wr.Close()
	for ctx.Err() == nil {
		rec, off, err := next(wr)
		if errors.Is(err, io.EOF) && rec == nil {
			return nil
		}
		if err != nil {
			if rec != nil {
				_ = rec.Close()
			}
			return emit(WARCItem{Bad: bad(name, off, nil, fmt.Errorf("unreadable record, the rest of the file is skipped: %w", err)), Offset: off})
		}
		it := item(rec, name, off, maxBody)
		_ = rec.Close()
		if it == nil {
			continue
		}
		if err := emit(*it); err != nil {
			return err
		}
	}
	return nil
}

// next reads the next record. gowarc v2.2.4 panics on some malformed
// input (an index out of range on a version line without CR, say): that
// becomes an error like any other unreadable record.
func next(wr *gowarc.WarcFileReader) (rec gowarc.WarcRecord, off int64, err error) {
	defer func() {
		if r := recover(); r != nil {
			if rec != nil {
				_ = rec.Close()
			}
			rec, err = nil, fmt.Errorf("malformed record (the WARC parser panicked: %v)", r)
		}
	}()
	rec, off, _, err = wr.Next()
	return rec, off, err
}

// item turns one record into an item; nil for a record replay does not use.
func item(rec gowarc.WarcRecord, name string, off, maxBody int64) *WARCItem {
	h := rec.WarcHeader()
	switch rec.Type() {
	case gowarc.Response:
		p, err := page(rec, maxBody)
		if err != nil {
			return &WARCItem{Bad: bad(name, off, []byte(h.String()), err), Offset: off}
		}
		return &WARCItem{Page: p, Offset: off}
	case gowarc.Metadata:
		kind := h.Get(warc.Record)
		if kind == "" {
			return nil // another tool's metadata
		}
		body, err := blockBytes(rec.Block(), 64<<20)
		if err == nil {
			switch kind {
			case warc.KindResult:
				var res record.Result
				if err = json.Unmarshal(body, &res); err == nil {
					return &WARCItem{Result: &res, Offset: off}
				}
			case warc.KindDeadLetter:
				var d record.DeadLetter
				if err = json.Unmarshal(body, &d); err == nil {
					return &WARCItem{Dead: &d, Offset: off}
				}
			default:
				return nil
			}
		}
		return &WARCItem{Bad: bad(name, off, body, fmt.Errorf("%s record: %w", kind, err)), Offset: off}
	}
	return nil
}

// page reads a response record as the Page it archives.
func page(rec gowarc.WarcRecord, maxBody int64) (*record.Page, error) {
	h := rec.WarcHeader()
	block, ok := rec.Block().(gowarc.HttpResponseBlock)
	if !ok {
		return nil, fmt.Errorf("response record without an HTTP response (Content-Type %q)", h.Get(gowarc.ContentType))
	}
	target := h.Get(gowarc.WarcTargetURI)
	if target == "" {
		return nil, errors.New("response record without WARC-Target-URI")
	}
	if block.HttpHeader() == nil {
		return nil, errors.New("unreadable HTTP response header")
	}
	p := &record.Page{
		Schema: record.SchemaVersion, URL: target, FinalURL: target, Method: http.MethodGet,
		Status: block.HttpStatusCode(), Header: block.HttpHeader().Clone(),
		Key: h.Get(warc.Key), Proxy: h.Get(warc.Proxy),
	}
	if p.Header == nil {
		p.Header = http.Header{}
	}
	if s := h.Get(warc.Schema); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n != record.SchemaVersion {
			return nil, fmt.Errorf("%s %q: want %d", warc.Schema, s, record.SchemaVersion)
		}
	}
	if u := h.Get(warc.URL); u != "" {
		p.URL = u
	}
	var err error
	if p.FetchedAt, err = rec.Date(); err != nil {
		return nil, fmt.Errorf("WARC-Date: %w", err)
	}
	if s := h.Get(warc.Attempts); s != "" {
		if p.Attempts, err = strconv.Atoi(s); err != nil {
			return nil, fmt.Errorf("%s: %w", warc.Attempts, err)
		}
	}
	if s := h.Get(warc.Timings); s != "" {
		if err := json.Unmarshal([]byte(s), &p.Timings); err != nil {
			return nil, fmt.Errorf("%s: %w", warc.Timings, err)
		}
	}
	if s := h.Get(warc.Meta); s != "" {
		if !json.Valid([]byte(s)) {
			return nil, fmt.Errorf("%s is not JSON", warc.Meta)
		}
		p.Meta = json.RawMessage(s)
	}
	p.Truncated = h.Get(warc.Truncated) == "true" || h.Has(gowarc.WarcTruncated)
	pr, err := block.PayloadBytes()
	if err != nil {
		return nil, fmt.Errorf("response body: %w", err)
	}
	if !h.Has(warc.Schema) {
		// Another tool's record holds the message as it came over the
		// wire: net/http undoes a chunked framing and honours
		// Content-Length. (sluice's records hold the body as kept.)
		msg := bufio.NewReader(io.MultiReader(bytes.NewReader(block.ProtocolHeaderBytes()), pr))
		resp, err := http.ReadResponse(msg, nil)
		if err != nil {
			return nil, fmt.Errorf("HTTP response: %w", err)
		}
		defer resp.Body.Close()
		pr = resp.Body
	}
	body, err := io.ReadAll(io.LimitReader(pr, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("response body: %w", err)
	}
	if int64(len(body)) > maxBody {
		body, p.Truncated = body[:maxBody], true
	}
	p.Body = body
	return p, nil
}

// blockBytes reads a record's block up to limit bytes.
func blockBytes(b gowarc.Block, limit int64) ([]byte, error) {
	r, err := b.RawBytes()
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err == nil && int64(len(body)) > limit {
		err = fmt.Errorf("block larger than %d bytes", limit)
	}
	return body, err
}

// bad is the dead letter of a record that cannot be read.
func bad(name string, off int64, raw []byte, err error) *record.DeadLetter {
	if len(raw) > 64<<10 {
		raw = raw[:64<<10]
	}
	return &record.DeadLetter{
		Schema: record.SchemaVersion, Value: append([]byte(nil), raw...), Topic: name, Offset: off,
		Error: record.Error{Class: string(failure.BadInput), Message: "warc: " + strings.ToValidUTF8(err.Error(), "?")}, At: time.Now().UTC(),
	}
}
