package sink

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	gowarc "github.com/nlnwa/gowarc/v2"

	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/warc"
)

// openFile creates the next file, writes its warcinfo record and makes
// the new directory entry durable.
func (w *WARC) openFile() error {
	var f *os.File
	var err error
	for range 100 {
		w.serial++
		name := fmt.Sprintf("%s-%s-%05d-%d.warc.gz", w.cfg.Prefix, w.cfg.Now().UTC().Format("20060102150405"), w.serial, os.Getpid())
		f, err = os.OpenFile(filepath.Join(w.cfg.Dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if !errors.Is(err, os.ErrExist) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("open warc: %w", err)
	}
	w.file, w.buf, w.size, w.infoID = f, bufio.NewWriterSize(f, 1<<20), 0, ""
	w.files = append(w.files, f.Name())
	if err := syncDir(w.cfg.Dir); err != nil {
		return fmt.Errorf("sync warc directory: %w", err)
	}
	info, err := w.warcinfo(filepath.Base(f.Name()))
	if err != nil {
		return err
	}
	defer info.Close()
	if err := w.writeRecord(info); err != nil {
		return err
	}
	w.infoID = info.WarcHeader().GetId(gowarc.WarcRecordID)
	return nil
}

// closeFile flushes, fsyncs and closes the open file, if any.
func (w *WARC) closeFile() error {
	if w.file == nil {
		return nil
	}
	f, buf := w.file, w.buf
	w.file, w.buf = nil, nil
	if err := errors.Join(buf.Flush(), syncFile(f), f.Close()); err != nil {
		return fmt.Errorf("close warc: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(syncFile(d), d.Close())
}

func (w *WARC) warcinfo(filename string) (gowarc.WarcRecord, error) {
	b := warc.NewRecordBuilder(gowarc.Warcinfo)
	b.AddWarcHeaderTime(gowarc.WarcDate, w.cfg.Now())
	b.AddWarcHeader(gowarc.WarcFilename, filename)
	b.AddWarcHeader(gowarc.ContentType, gowarc.ApplicationWarcFields)
	fmt.Fprintf(b, "software: %s\r\nformat: WARC File Format 1.1\r\nconformsTo: https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/\r\n", w.cfg.Software)
	fmt.Fprintf(b, "description: pages fetched by sluice, with their results (docs/warc.md)\r\n%s: %d\r\n", warc.Schema, record.SchemaVersion)
	return build(b)
}

func build(b gowarc.WarcRecordBuilder) (gowarc.WarcRecord, error) {
	r, _, err := b.Build()
	if err != nil {
		if r != nil {
			_ = r.Close()
		}
		return nil, fmt.Errorf("build warc record: %w", err)
	}
	return r, nil
}

// records builds the WARC records of one output: request and response for
// its page, a metadata record for its result and one for a dead letter.
func (w *WARC) records(o record.Output) (recs []gowarc.WarcRecord, err error) {
	defer func() {
		if err != nil {
			for _, r := range recs {
				_ = r.Close()
			}
			recs = nil
		}
	}()
	var respID string
	if p := o.Page; p != nil {
		req, resp, err := pageRecords(p, o.Result)
		if err != nil {
			return recs, err
		}
		recs = append(recs, req, resp)
		respID = resp.WarcHeader().GetId(gowarc.WarcRecordID)
	}
	if r := o.Result; r != nil {
		m, err := jsonRecord(warc.KindResult, r, r.URL, respID, r.FetchedAt)
		if err != nil {
			return recs, err
		}
		ruleHeaders(m.WarcHeader(), r)
		recs = append(recs, m)
	}
	if d := o.Dead; d != nil {
		m, err := jsonRecord(warc.KindDeadLetter, d, "", "", d.At)
		if err != nil {
			return recs, err
		}
		recs = append(recs, m)
	}
	return recs, nil
}

// pageRecords builds the request and response records of a page. The
// response block is the status line, the header and the body as the fetch
// stage kept them: the body with its Content-Encoding undone, and so the
// header without Content-Encoding (and Content-Length).
func pageRecords(p *record.Page, res *record.Result) (req, resp gowarc.WarcRecord, err error) {
	target := p.FinalURL
	if target == "" {
		target = p.URL
	}
	date := p.FetchedAt
	if date.IsZero() {
		date = time.Now()
	}
	u, perr := url.Parse(target)
	if perr != nil {
		return nil, nil, fmt.Errorf("warc: page URL %q: %w", target, perr)
	}
	method := p.Method
	if method == "" {
		method = http.MethodGet
	}

	rb := warc.NewRecordBuilder(gowarc.Request)
	rb.AddWarcHeader(gowarc.WarcTargetURI, headerValue(target))
	rb.AddWarcHeaderTime(gowarc.WarcDate, date)
	rb.AddWarcHeader(gowarc.ContentType, "application/http;msgtype=request")
	fmt.Fprintf(rb, "%s %s HTTP/1.1\r\nHost: %s\r\n\r\n", method, u.RequestURI(), headerValue(u.Host))
	if req, err = build(rb); err != nil {
		return nil, nil, err
	}

	sb := warc.NewRecordBuilder(gowarc.Response)
	sb.AddWarcHeader(gowarc.WarcTargetURI, headerValue(target))
	sb.AddWarcHeaderTime(gowarc.WarcDate, date)
	sb.AddWarcHeader(gowarc.ContentType, "application/http;msgtype=response")
	sb.AddWarcHeader(gowarc.WarcConcurrentTo, "<"+req.WarcHeader().GetId(gowarc.WarcRecordID)+">")
	sb.AddWarcHeader(warc.Schema, strconv.Itoa(p.Schema))
	sb.AddWarcHeader(warc.URL, headerValue(p.URL))
	if p.Key != "" {
		sb.AddWarcHeader(warc.Key, headerValue(p.Key))
	}
	sb.AddWarcHeader(warc.Attempts, strconv.Itoa(p.Attempts))
	if p.Proxy != "" {
		sb.AddWarcHeader(warc.Proxy, headerValue(p.Proxy))
	}
	tj, _ := json.Marshal(p.Timings)
	sb.AddWarcHeader(warc.Timings, string(tj))
	if p.Truncated {
		sb.AddWarcHeader(warc.Truncated, "true")
		sb.AddWarcHeader(gowarc.WarcTruncated, "length")
	}
	if len(p.Meta) > 0 {
		var c bytes.Buffer
		if json.Compact(&c, p.Meta) == nil {
			sb.AddWarcHeader(warc.Meta, c.String())
		}
	}
	if res != nil && res.Parser != nil {
		sb.AddWarcHeader(warc.Rules, headerValue(res.Parser.Rules))
		sb.AddWarcHeader(warc.RulesVersion, headerValue(res.Parser.Version))
	}
	text := http.StatusText(p.Status)
	fmt.Fprintf(sb, "HTTP/1.1 %03d %s\r\n", p.Status, text)
	keys := make([]string, 0, len(p.Header))
	for k := range p.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !validHeaderName(k) {
			continue
		}
		for _, v := range p.Header[k] {
			fmt.Fprintf(sb, "%s: %s\r\n", k, headerValue(v))
		}
	}
	sb.WriteString("\r\n")
	sb.Write(p.Body)
	if resp, err = build(sb); err != nil {
		_ = req.Close()
		return nil, nil, err
	}
	req.WarcHeader().AddId(gowarc.WarcConcurrentTo, resp.WarcHeader().GetId(gowarc.WarcRecordID))
	return req, resp, nil
}

// jsonRecord builds a metadata record holding v as JSON.
func jsonRecord(kind string, v any, target, refersTo string, date time.Time) (gowarc.WarcRecord, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", kind, err)
	}
	if date.IsZero() {
		date = time.Now()
	}
	b := warc.NewRecordBuilder(gowarc.Metadata)
	if target != "" {
		b.AddWarcHeader(gowarc.WarcTargetURI, headerValue(target))
	}
	b.AddWarcHeaderTime(gowarc.WarcDate, date)
	b.AddWarcHeader(gowarc.ContentType, "application/json")
	if refersTo != "" {
		b.AddWarcHeader(gowarc.WarcRefersTo, "<"+refersTo+">")
	}
	b.AddWarcHeader(warc.Schema, strconv.Itoa(record.SchemaVersion))
	b.AddWarcHeader(warc.Record, kind)
	b.Write(body)
	return build(b)
}

// ruleHeaders adds the result's key and rule set to a metadata record.
func ruleHeaders(h *gowarc.WarcFields, r *record.Result) {
	h.Set(warc.URL, headerValue(r.URL))
	if r.Key != "" {
		h.Set(warc.Key, headerValue(r.Key))
	}
	if r.Parser != nil {
		h.Set(warc.Rules, headerValue(r.Parser.Rules))
		h.Set(warc.RulesVersion, headerValue(r.Parser.Version))
	}
}

// headerValue makes s safe as one header line: no CR, LF or other
// control characters.
func headerValue(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// validHeaderName reports whether k is an HTTP field name (a token).
func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range []byte(k) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}
