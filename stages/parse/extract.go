package parse

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
	"golang.org/x/net/html/charset"

	"github.com/PuerkitoBio/goquery"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/record"
)

// Defaults applied by Extract for zero (or negative) Limits fields.
const (
	DefaultMaxLinks      = 1000
	DefaultMaxFieldBytes = 64 << 10
	DefaultMaxNodes      = 500000
	DefaultMaxItems      = 1000
	DefaultMaxValues     = 20000
	// DefaultMaxStructuredBytes bounds the JSON-LD decoded per page.
	DefaultMaxStructuredBytes = 1 << 20
)

// ErrTooManyNodes is wrapped (inside a *failure.Error of class
// failure.Parse) when a document exceeds Limits.MaxNodes.
var ErrTooManyNodes = errors.New("too many element nodes")

// parseError classifies an error caused by the document itself (it could
// not be parsed, or it has more element nodes than Limits.MaxNodes):
// class failure.Parse, permanent.
func parseError(err error) error { return failure.New(failure.Parse, failure.ErrPermanent, err) }

// Extraction is the result of applying a rule set to one page.
type Extraction struct {
	// Fields has every field of the matching rule as a key. A value is a
	// string (trimmed, valid UTF-8, at most Limits.MaxFieldBytes long), a
	// number or boolean (from an XPath expression or a processor), a list
	// (all, items: possibly empty, at most Limits.MaxItems long) or an
	// object (nested fields); nil means the field matched nothing (or
	// the first match lacks the requested attribute) and marshals to JSON
	// null.
	Fields map[string]any
	// Structured is the page's JSON-LD, microdata and OpenGraph data; nil
	// when it has none, or the matching rule says structured: false.
	Structured *record.Structured
	// Links are the absolute http(s) URLs of the page's <a href> elements,
	// resolved against the page URL (honouring <base href>), without
	// fragment, de-duplicated in page order, at most Limits.MaxLinks.
	// Never nil.
	Links []string
	// Rule is the domain glob of the rule that matched, "" if none (then
	// Fields is an empty, non-nil map).
	Rule string
}

// Limits bounds the work and output of one Extract call. Zero or negative
// fields mean the Default* value.
type Limits struct {
	MaxLinks      int // 0 = DefaultMaxLinks
	MaxFieldBytes int // 0 = DefaultMaxFieldBytes; longer values are truncated at a UTF-8 boundary
	MaxNodes      int // 0 = DefaultMaxNodes; a document with more element nodes fails with ErrTooManyNodes
	MaxItems      int // 0 = DefaultMaxItems; the longest list one field (all, items) yields
	// MaxStructuredBytes bounds the JSON-LD text decoded per page; 0 =
	// DefaultMaxStructuredBytes. Blocks past it are left out.
	MaxStructuredBytes int
	// MaxValues bounds the values (strings, numbers, objects) all the
	// fields of one page produce together, nested items included; 0 =
	// DefaultMaxValues. Past it, lists end and further fields are null.
	MaxValues int
}

func (l Limits) normalized() Limits {
	if l.MaxLinks <= 0 {
		l.MaxLinks = DefaultMaxLinks
	}
	if l.MaxFieldBytes <= 0 {
		l.MaxFieldBytes = DefaultMaxFieldBytes
	}
	if l.MaxNodes <= 0 {
		l.MaxNodes = DefaultMaxNodes
	}
	if l.MaxItems <= 0 {
		l.MaxItems = DefaultMaxItems
	}
	if l.MaxValues <= 0 {
		l.MaxValues = DefaultMaxValues
	}
	if l.MaxStructuredBytes <= 0 {
		l.MaxStructuredBytes = DefaultMaxStructuredBytes
	}
	return l
}

// Input is one fetched page to extract from.
type Input struct {
	// URL is the page's (final) URL; nil: no rule but "*" matches and only
	// absolute links are kept.
	URL         *url.URL
	Status      int
	Header      http.Header
	ContentType string // "" means Header's Content-Type
	Body        []byte
}

// Extract parses body as HTML (decoding it to UTF-8 according to
// contentType, a BOM or a <meta> charset declaration), applies the first
// rule whose domain glob matches pageURL's hostname and collects the page's
// structured data and links. It is ExtractPage with only a URL, a
// content type and a body.
//
// Extract is safe for concurrent use.
func (r *Rules) Extract(pageURL *url.URL, contentType string, body []byte, lim Limits) (Extraction, error) {
	return r.ExtractPage(Input{URL: pageURL, ContentType: contentType, Body: body}, lim)
}

// ExtractPage parses in.Body once and evaluates everything on that one
// tree: the matching rule's CSS and XPath fields (or the rule set's Go
// function, see FuncRules), the structured data and the links. Errors are
// *failure.Error values of class failure.Parse.
//
// ExtractPage is safe for concurrent use.
func (r *Rules) ExtractPage(in Input, lim Limits) (Extraction, error) {
	lim = lim.normalized()
	pageURL, contentType := in.URL, in.ContentType
	if contentType == "" && in.Header != nil {
		contentType = in.Header.Get("Content-Type")
	}

	text, err := decode(in.Body, contentType)
	if err != nil {
		return Extraction{}, parseError(err)
	}
	if err := precheckNodes(text, lim.MaxNodes); err != nil {
		return Extraction{}, parseError(err)
	}
	if r != nil && r.onParse != nil {
		r.onParse()
	}
	doc, err := html.Parse(bytes.NewReader(text))
	if err != nil {
		return Extraction{}, parseError(err)
	}

	var host string
	if pageURL != nil {
		host = strings.TrimSuffix(strings.ToLower(pageURL.Hostname()), ".")
	}
	ru := r.match(host)
	wantStructured := ru == nil || ru.structured

	// One pass over the tree: count elements, find the first <base href>,
	// collect raw <a href> values in document order and the elements
	// holding structured data.
	var (
		nodes   int
		baseRef string
		hasBase bool
		hrefs   []string
		sn      structuredNodes
	)
	for n := doc; n != nil; n = nextNode(n, doc) {
		if n.Type != html.ElementNode {
			continue
		}
		nodes++
		if nodes > lim.MaxNodes {
			return Extraction{}, parseError(fmt.Errorf("%w: more than %d", ErrTooManyNodes, lim.MaxNodes))
		}
		if n.Namespace != "" {
			continue
		}
		switch n.DataAtom {
		case atom.A:
			if v, ok := htmlAttr(n, "href"); ok {
				hrefs = append(hrefs, v)
			}
		case atom.Base:
			if !hasBase {
				baseRef, hasBase = htmlAttr(n, "href")
			}
		}
		if wantStructured && len(n.Attr) > 0 {
			sn.see(n)
		}
	}

	base := &pageBase{u: pageBaseURL(pageURL, baseRef, hasBase)}
	out := Extraction{Fields: map[string]any{}}
	switch {
	case r != nil && r.fn != nil:
		out.Rule = "*"
		gd := goquery.NewDocumentFromNode(doc)
		gd.Url = pageURL
		fields, err := r.fn(&Page{URL: pageURL, Status: in.Status, Header: in.Header, Doc: gd})
		if err != nil {
			return Extraction{}, parseError(fmt.Errorf("extraction function: %w", err))
		}
		if fields != nil {
			out.Fields = fields
		}
	case ru != nil:
		out.Rule = ru.domain.String()
		out.Fields = evalFields(ru.fields, doc, &evalCtx{lim: lim, base: base, left: lim.MaxValues})
	}
	if wantStructured {
		out.Structured = sn.build(base, lim.MaxStructuredBytes)
	}
	out.Links = resolveLinks(base.u, hrefs, lim.MaxLinks)
	return out, nil
}

// pageBaseURL is what references on the page resolve against: its <base
// href> (itself resolved against the page URL) when usable, else the page
// URL.
func pageBaseURL(pageURL *url.URL, baseRef string, hasBase bool) *url.URL {
	if hasBase {
		// Per HTML, a <base href> is resolved against the document URL; one
		// that is unparsable or not http(s) is ignored.
		if u, err := parseRef(pageURL, baseRef); err == nil && isHTTP(u) {
			return u
		}
	}
	return pageURL
}

// decode converts body to UTF-8 (per contentType, a BOM or a <meta>
// declaration, as golang.org/x/net/html/charset determines it) and
// guarantees the result is valid UTF-8. The result may alias body.
func decode(body []byte, contentType string) ([]byte, error) {
	if len(body) == 0 {
		return nil, nil // charset.NewReader fails on empty input
	}
	// Fast path for the common case: the encoding charset.NewReader would
	// pick (it looks at the first 1024 bytes) is UTF-8 and the body is
	// valid UTF-8, so decoding would be the identity; skip the copy.
	if _, name, _ := charset.DetermineEncoding(body[:min(len(body), 1024)], contentType); name == "utf-8" && utf8.Valid(body) {
		return body, nil
	}
	rd, err := charset.NewReader(bytes.NewReader(body), contentType)
	if err != nil {
		return nil, fmt.Errorf("charset: %w", err)
	}
	var buf bytes.Buffer
	buf.Grow(len(body) + len(body)/2 + 16)
	if _, err := buf.ReadFrom(rd); err != nil {
		return nil, fmt.Errorf("charset: %w", err)
	}
	text := buf.Bytes()
	if !utf8.Valid(text) {
		text = bytes.ToValidUTF8(text, []byte("\uFFFD"))
	}
	return text, nil
}

// maxOpenElements is x/net/html's cap on the stack of open elements (it
// fails the parse beyond it), which also caps how many elements one
// reconstruction of active formatting elements can create.
const maxOpenElements = 512

// precheckNodes rejects, before any tree is built, documents that would
// obviously exceed maxNodes: more start tags than maxNodes, or enough
// unclosed formatting elements (<b>, <font>, ...) that the parser's
// "reconstruct the active formatting elements" step could multiply the node
// count (a few KB of such markup can expand to hundreds of thousands of
// nodes). The second test is an estimate, so it only fires at twice the
// limit; the exact count is checked on the parsed tree.
//
// Most pages are far below both thresholds, which a scan of the bytes can
// show without tokenizing (precheckCannotFire); the others are tokenized.
func precheckNodes(text []byte, maxNodes int) error {
	if precheckCannotFire(text, maxNodes) {
		return nil
	}
	return precheckTokens(text, maxNodes)
}

// precheckTokens is precheckNodes' exact test, on the tokens.
func precheckTokens(text []byte, maxNodes int) error {
	z := html.NewTokenizer(bytes.NewReader(text))
	var (
		starts   int
		estimate int
		unclosed int
		open     [len(formattingTags)]int
	)
	for {
		switch z.Next() {
		case html.ErrorToken:
			return nil // io.EOF: the input is in memory, no other error is possible
		case html.TextToken:
			estimate += min(unclosed, maxOpenElements)
		case html.StartTagToken, html.SelfClosingTagToken:
			starts++
			estimate += 1 + min(unclosed, maxOpenElements)
			if i := formattingIndex(z.Raw()); i >= 0 {
				open[i]++
				unclosed++
			}
		case html.EndTagToken:
			if i := formattingIndex(z.Raw()); i >= 0 && open[i] > 0 {
				open[i]--
				unclosed--
			}
		default:
			continue
		}
		if starts > maxNodes || estimate > 2*maxNodes {
			return fmt.Errorf("%w: more than %d", ErrTooManyNodes, maxNodes)
		}
	}
}

// formattingTags are the HTML "formatting elements" that take part in the
// active formatting elements list.
var formattingTags = [...]string{"a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike", "strong", "tt", "u"}

// formattingIndex returns the index in formattingTags of the tag whose raw
// text ("<B id=1>", "</b >") is raw, or -1. It reads the raw bytes rather
// than calling Tokenizer.TagName, which allocates.
func formattingIndex(raw []byte) int {
	raw = bytes.TrimPrefix(bytes.TrimPrefix(raw, []byte("<")), []byte("/"))
	n := 0
	for n < len(raw) && n <= 6 {
		c := raw[n]
		if c == '>' || c == '/' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' {
			break
		}
		n++
	}
	if n == 0 || n > 6 {
		return -1
	}
	for i, t := range formattingTags {
		if len(t) == n && equalASCIIFold(raw[:n], t) {
			return i
		}
	}
	return -1
}

// equalASCIIFold reports whether b equals the lower-case ASCII string s,
// ignoring ASCII case only (as the HTML tokenizer does).
func equalASCIIFold(b []byte, s string) bool {
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// nextNode returns the node after n in a pre-order walk of root's subtree,
// or nil. It needs no stack, so it allocates nothing.
func nextNode(n, root *html.Node) *html.Node {
	if n.FirstChild != nil {
		return n.FirstChild
	}
	for n != root {
		if n.NextSibling != nil {
			return n.NextSibling
		}
		n = n.Parent
	}
	return nil
}

// htmlAttr returns the value of n's non-namespaced attribute key.
func htmlAttr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

// nodeText concatenates the text under n, dropping leading white space and
// stopping once it has clearly more than maxBytes (the rest would be
// truncated anyway).
func nodeText(n *html.Node, maxBytes int) string {
	var b strings.Builder
	for c := n; c != nil; c = nextNode(c, n) {
		if c.Type != html.TextNode {
			continue
		}
		s := c.Data
		if b.Len() == 0 {
			s = strings.TrimLeftFunc(s, unicode.IsSpace)
		}
		if room := maxBytes + utf8.UTFMax - b.Len(); len(s) > room {
			b.WriteString(s[:room])
			break
		}
		b.WriteString(s)
	}
	return b.String()
}

// clean makes s valid UTF-8, trims white space and truncates it to at most
// maxBytes without splitting a UTF-8 sequence.
func clean(s string, maxBytes int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	s = strings.TrimSpace(s)
	if len(s) > maxBytes {
		cut := maxBytes
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = strings.TrimRightFunc(s[:cut], unicode.IsSpace)
	}
	return s
}

// resolveLinks turns raw href values into absolute, fragment-less,
// de-duplicated http(s) URLs.
func resolveLinks(base *url.URL, hrefs []string, maxLinks int) []string {
	links := make([]string, 0, min(len(hrefs), maxLinks))
	seen := make(map[string]struct{}, min(len(hrefs), maxLinks))
	for _, h := range hrefs {
		u, err := parseRef(base, h)
		if err != nil || !isHTTP(u) {
			continue
		}
		u.Fragment, u.RawFragment = "", ""
		u.Host = strings.ToLower(u.Host)
		s := u.String()
		if !utf8.ValidString(s) {
			s = strings.ToValidUTF8(s, "\uFFFD")
		}
		// Some references resolve to URLs whose string form does not parse
		// back (e.g. "//::0" gives host "::0"); downstream stages could not
		// fetch them, so drop them.
		if v, err := url.Parse(s); err != nil || v.Host == "" {
			continue
		}
		if _, dup := seen[s]; dup {
			continue
		}
		seen[s] = struct{}{}
		links = append(links, s)
		if len(links) >= maxLinks {
			break
		}
	}
	return links
}

// parseRef parses an href the way browsers clean it (surrounding white space
// trimmed, tabs and newlines removed) and resolves it against base (which
// may be nil: then only absolute references survive).
func parseRef(base *url.URL, ref string) (*url.URL, error) {
	ref = strings.TrimFunc(ref, func(r rune) bool { return r <= ' ' })
	if strings.ContainsAny(ref, "\t\n\r") {
		ref = strings.NewReplacer("\t", "", "\n", "", "\r", "").Replace(ref)
	}
	u, err := url.Parse(ref)
	if err != nil {
		return nil, err
	}
	if base != nil {
		u = base.ResolveReference(u)
	}
	return u, nil
}

func isHTTP(u *url.URL) bool {
	return (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Opaque == ""
}
