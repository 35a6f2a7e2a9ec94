package parse

import (
	"bytes"
	"encoding/json"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"github.com/sluicehq/sluice/record"
)

// Bounds of the structured data taken from one page.
const (
	// MaxStructuredItems bounds the JSON-LD blocks, and separately the
	// top-level microdata items, kept per page.
	MaxStructuredItems = 64
	// MaxOpenGraph bounds the OpenGraph properties kept per page.
	MaxOpenGraph = 128
	// maxMicrodataDepth bounds how deeply microdata items nest.
	maxMicrodataDepth = 16
	// maxMicrodataValues bounds the property values of one page's microdata.
	maxMicrodataValues = 4096
)

// structuredNodes are the elements found during the one walk over the tree
// that hold structured data; building the values is only done when some
// were found.
type structuredNodes struct {
	jsonLD []*html.Node // <script type="application/ld+json">
	items  []*html.Node // top-level itemscope elements
	meta   []*html.Node // <meta property="og:...">
}

func (s *structuredNodes) empty() bool {
	return len(s.jsonLD) == 0 && len(s.items) == 0 && len(s.meta) == 0
}

// see records n if it holds structured data.
func (s *structuredNodes) see(n *html.Node) {
	switch n.DataAtom {
	case atom.Script:
		if t, ok := htmlAttr(n, "type"); ok && len(s.jsonLD) < MaxStructuredItems {
			mt, _, _ := strings.Cut(t, ";")
			if strings.EqualFold(strings.TrimSpace(mt), "application/ld+json") {
				s.jsonLD = append(s.jsonLD, n)
			}
		}
		return
	case atom.Meta:
		if p, ok := htmlAttr(n, "property"); ok && isOpenGraph(p) && len(s.meta) < MaxOpenGraph {
			s.meta = append(s.meta, n)
		}
	}
	if _, ok := htmlAttr(n, "itemscope"); ok && len(s.items) < MaxStructuredItems {
		if _, prop := htmlAttr(n, "itemprop"); !prop {
			s.items = append(s.items, n)
		}
	}
}

// openGraphPrefixes are the OpenGraph namespaces kept.
var openGraphPrefixes = []string{"og:", "article:", "product:", "book:", "profile:", "music:", "video:"}

func isOpenGraph(p string) bool {
	p = strings.ToLower(strings.TrimSpace(p))
	for _, pre := range openGraphPrefixes {
		if strings.HasPrefix(p, pre) && len(p) > len(pre) {
			return true
		}
	}
	return false
}

// build decodes what was found; nil when nothing usable was.
func (s *structuredNodes) build(base *pageBase, maxBytes int) *record.Structured {
	if s.empty() {
		return nil
	}
	out := &record.Structured{}
	budget := maxBytes
	for _, n := range s.jsonLD {
		var b bytes.Buffer
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if c.Type == html.TextNode {
				b.WriteString(c.Data)
			}
		}
		if b.Len() > budget {
			continue // too large: left out, as a block that does not decode is
		}
		budget -= b.Len()
		dec := json.NewDecoder(&b)
		dec.UseNumber() // keep numbers exactly as written
		var v any
		if err := dec.Decode(&v); err != nil {
			continue
		}
		if list, ok := v.([]any); ok {
			out.JSONLD = append(out.JSONLD, list...)
		} else {
			out.JSONLD = append(out.JSONLD, v)
		}
	}
	md := microdata{base: base, maxBytes: maxBytes, left: maxMicrodataValues}
	for _, n := range s.items {
		out.Microdata = append(out.Microdata, md.item(n, 0))
	}
	for _, n := range s.meta {
		p, _ := htmlAttr(n, "property")
		p = strings.ToLower(strings.TrimSpace(p))
		c, ok := htmlAttr(n, "content")
		if !ok {
			continue
		}
		if out.OpenGraph == nil {
			out.OpenGraph = map[string]string{}
		}
		if _, dup := out.OpenGraph[p]; !dup { // the first of repeated properties
			out.OpenGraph[p] = clean(c, maxBytes)
		}
	}
	if len(out.JSONLD) == 0 && len(out.Microdata) == 0 && len(out.OpenGraph) == 0 {
		return nil
	}
	return out
}

// microdata builds items in the JSON form of the HTML microdata spec:
// {"type": [...], "id": ..., "properties": {"name": [values]}}.
type microdata struct {
	base     *pageBase
	maxBytes int
	left     int // property values still allowed
}

func (m *microdata) item(n *html.Node, depth int) map[string]any {
	it := map[string]any{}
	if t, ok := htmlAttr(n, "itemtype"); ok && strings.TrimSpace(t) != "" {
		it["type"] = strings.Fields(t)
	}
	if id, ok := htmlAttr(n, "itemid"); ok && strings.TrimSpace(id) != "" {
		it["id"] = strings.TrimSpace(id)
	}
	props := map[string][]any{}
	m.props(n, depth, props)
	it["properties"] = props
	return it
}

// props collects the properties of the item at n from its descendants,
// not looking inside nested items.
func (m *microdata) props(n *html.Node, depth int, props map[string][]any) {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type != html.ElementNode || m.left <= 0 {
			continue
		}
		names, hasProp := htmlAttr(c, "itemprop")
		_, scope := htmlAttr(c, "itemscope")
		if hasProp {
			var v any
			if scope {
				if depth+1 < maxMicrodataDepth {
					v = m.item(c, depth+1)
				}
			} else {
				v = m.value(c)
			}
			if v != nil {
				for _, name := range strings.Fields(names) {
					props[name] = append(props[name], v)
					m.left--
				}
			}
		}
		if !scope {
			m.props(c, depth, props)
		}
	}
}

// value is a property's value as the microdata spec defines it per element.
func (m *microdata) value(n *html.Node) any {
	attr := func(k string) string { v, _ := htmlAttr(n, k); return clean(v, m.maxBytes) }
	url := func(k string) any {
		v, ok := htmlAttr(n, k)
		if !ok {
			return ""
		}
		if u := m.base.resolve(v); u != nil {
			return u
		}
		return clean(v, m.maxBytes)
	}
	if n.Namespace == "" {
		switch n.DataAtom {
		case atom.Meta:
			return attr("content")
		case atom.Audio, atom.Embed, atom.Iframe, atom.Img, atom.Source, atom.Track, atom.Video:
			return url("src")
		case atom.A, atom.Area, atom.Link:
			return url("href")
		case atom.Object:
			return url("data")
		case atom.Data, atom.Meter:
			return attr("value")
		case atom.Time:
			if _, ok := htmlAttr(n, "datetime"); ok {
				return attr("datetime")
			}
		}
	}
	return clean(nodeText(n, m.maxBytes), m.maxBytes)
}
