package parse

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode"

	"github.com/andybalholm/cascadia"
	"github.com/antchfx/htmlquery"
	"github.com/antchfx/xpath"
	"golang.org/x/net/html"
	"gopkg.in/yaml.v3"
)

const (
	// MaxDepth is how deeply items may nest (a rule's fields are depth 0).
	MaxDepth = 4
	// MaxSelectorsPerField is the most fallback selectors one field may list.
	MaxSelectorsPerField = 16
	// MaxProcessorsPerField is the longest process chain of one field.
	MaxProcessorsPerField = 16
)

// field is one compiled field of a rule (or of an item).
type field struct {
	name   string
	sels   []selector // tried in order; the first that yields a value wins
	all    bool       // a list of every match of the winning selector
	fields []field    // non-nil: the value is an object (or a list of them) made of these
	procs  []processor
}

// selector is one compiled CSS or XPath selector.
type selector struct {
	src  string
	css  cascadia.Selector // nil for XPath
	attr string            // CSS only: "" means the element's text
	xp   *sync.Pool        // XPath: *xpath.Expr values (an Expr is not safe for concurrent use)
}

// fieldYAML is the on-disk shape of one field: a selector string, a list
// of selector strings (fallbacks), or the rich form (an object).
type fieldYAML struct {
	sels  []string // short forms
	rich  *richYAML
	line  int
	shape string
}

// richYAML is the rich form of a field.
type richYAML struct {
	CSS     stringList           `yaml:"css"`
	XPath   stringList           `yaml:"xpath"`
	Items   stringList           `yaml:"items"`
	All     bool                 `yaml:"all"`
	Fields  map[string]fieldYAML `yaml:"fields"`
	Process []yaml.Node          `yaml:"process"`
}

var richKeys = map[string]bool{"css": true, "xpath": true, "items": true, "all": true, "fields": true, "process": true}

// stringList is a YAML string or list of strings.
type stringList []string

func (l *stringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		var s string
		if err := n.Decode(&s); err != nil {
			return err
		}
		*l = stringList{s}
		return nil
	case yaml.SequenceNode:
		var ss []string
		if err := n.Decode(&ss); err != nil {
			return err
		}
		*l = ss
		return nil
	}
	return fmt.Errorf("line %d: want a string or a list of strings", n.Line)
}

func (f *fieldYAML) UnmarshalYAML(n *yaml.Node) error {
	f.line = n.Line
	switch n.Kind {
	case yaml.ScalarNode, yaml.SequenceNode:
		var l stringList
		if err := l.UnmarshalYAML(n); err != nil {
			return err
		}
		f.sels = l
		return nil
	case yaml.MappingNode:
		// Node.Decode does not inherit the decoder's KnownFields: check
		// the keys here so that a typo is an error, not a silent no-op.
		for i := 0; i < len(n.Content); i += 2 {
			if k := n.Content[i].Value; !richKeys[k] {
				return fmt.Errorf("line %d: unknown key %q in a field (want css, xpath, items, all, fields, process)", n.Content[i].Line, k)
			}
		}
		var r richYAML
		if err := n.Decode(&r); err != nil {
			return err
		}
		f.rich = &r
		return nil
	}
	return fmt.Errorf("line %d: a field is a selector, a list of selectors or an object", n.Line)
}

// countFields counts the fields of m and of everything nested in it.
func countFields(m map[string]fieldYAML) int {
	n := len(m)
	for _, f := range m {
		if f.rich != nil {
			n += countFields(f.rich.Fields)
		}
	}
	return n
}

func compileField(name string, spec fieldYAML, depth int) (field, error) {
	f := field{name: name}
	var srcs []string
	var kinds []string // "", "css" or "xpath": how to read srcs[i]
	if spec.rich == nil {
		for _, s := range spec.sels {
			srcs, kinds = append(srcs, s), append(kinds, "")
		}
	} else {
		r := spec.rich
		if len(r.Items) > 0 && (len(r.CSS) > 0 || len(r.XPath) > 0) {
			return f, errors.New("items replaces css and xpath: give one or the other")
		}
		for _, s := range r.CSS {
			srcs, kinds = append(srcs, s), append(kinds, "css")
		}
		for _, s := range r.XPath {
			srcs, kinds = append(srcs, s), append(kinds, "xpath")
		}
		for _, s := range r.Items {
			srcs, kinds = append(srcs, s), append(kinds, "")
		}
		f.all = r.All || len(r.Items) > 0
		if len(r.Items) > 0 && r.Fields == nil {
			return f, errors.New("items needs fields")
		}
		if r.Fields != nil {
			if depth+1 > MaxDepth {
				return f, fmt.Errorf("items nested more than %d deep", MaxDepth)
			}
			sub, err := compileFields(r.Fields, depth+1)
			if err != nil {
				return f, err
			}
			f.fields = sub
		}
		if len(r.Process) > MaxProcessorsPerField {
			return f, fmt.Errorf("%d processors, at most %d", len(r.Process), MaxProcessorsPerField)
		}
		for i := range r.Process {
			p, err := compileProcessor(&r.Process[i])
			if err != nil {
				return f, fmt.Errorf("process %d: %w", i+1, err)
			}
			f.procs = append(f.procs, p)
		}
	}
	if len(srcs) == 0 {
		return f, errors.New("empty selector: no css, xpath or items")
	}
	if len(srcs) > MaxSelectorsPerField {
		return f, fmt.Errorf("%d selectors, at most %d", len(srcs), MaxSelectorsPerField)
	}
	for i, s := range srcs {
		sel, err := compileSelector(s, kinds[i])
		if err != nil {
			return f, err
		}
		if f.fields != nil && sel.attr != "" {
			return f, fmt.Errorf("selector %q: an item selector selects elements, not an attribute", s)
		}
		f.sels = append(f.sels, sel)
	}
	return f, nil
}

// isXPath reports whether a selector written without an explicit kind is
// XPath: it starts with "xpath:", "/", "./" or "(", or is "." or "..".
func isXPath(s string) (expr string, ok bool) {
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, "xpath:"); ok {
		return strings.TrimSpace(rest), true
	}
	if strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "(") || s == "." || s == ".." {
		return s, true
	}
	return s, false
}

// compileSelector compiles one selector; kind is "css", "xpath" or "" (as
// isXPath says).
func compileSelector(spec, kind string) (selector, error) {
	src := strings.TrimSpace(spec)
	if kind == "xpath" || kind == "" {
		expr, ok := isXPath(src)
		if kind == "xpath" || ok {
			return compileXPath(expr)
		}
	}
	return compileCSS(src)
}

func compileXPath(expr string) (sel selector, err error) {
	if expr == "" {
		return selector{}, errors.New("empty XPath selector")
	}
	defer func() {
		// The XPath compiler is not expected to panic, but a rules file
		// is operator input: never let one take the process down.
		if p := recover(); p != nil {
			err = fmt.Errorf("bad XPath %q: %v", expr, p)
		}
	}()
	if _, err := xpath.Compile(expr); err != nil {
		return selector{}, fmt.Errorf("bad XPath %q: %w", expr, err)
	}
	pool := &sync.Pool{New: func() any { return xpath.MustCompile(expr) }}
	return selector{src: expr, xp: pool}, nil
}

// compileCSS splits "selector @attr" and compiles the selector.
func compileCSS(spec string) (selector, error) {
	sel := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(spec), "css:"))
	attr := ""
	last := sel
	if i := strings.LastIndexFunc(sel, unicode.IsSpace); i >= 0 {
		last = sel[i+1:]
	}
	if strings.HasPrefix(last, "@") {
		attr = asciiLower(last[1:])
		sel = strings.TrimSpace(sel[:len(sel)-len(last)])
		if !validAttrName(attr) {
			return selector{}, fmt.Errorf("invalid attribute name %q", last)
		}
	}
	if sel == "" {
		return selector{}, fmt.Errorf("empty selector in %q", spec)
	}
	compiled, err := cascadia.Compile(sel)
	if err != nil {
		return selector{}, fmt.Errorf("bad selector %q: %w", sel, err)
	}
	return selector{src: spec, css: compiled, attr: attr}, nil
}

// match is one thing a selector found: an element (node, then the value
// is its text or attribute), or a value of its own (an XPath attribute,
// text node or string/number/boolean result).
type match struct {
	node  *html.Node
	value any
}

// find returns what the selector finds under ctx, in document order: the
// first match only unless all, at most max.
func (s *selector) find(ctx *html.Node, all bool, max int) []match {
	if s.css != nil {
		return s.findCSS(ctx, all, max)
	}
	return s.findXPath(ctx, all, max)
}

// findCSS matches descendants of ctx (not ctx itself, as goquery's Find).
func (s *selector) findCSS(ctx *html.Node, all bool, max int) []match {
	var out []match
	for c := ctx.FirstChild; c != nil; c = c.NextSibling {
		if !all {
			if n := s.css.MatchFirst(c); n != nil {
				return []match{{node: n}}
			}
			continue
		}
		for _, n := range s.css.MatchAll(c) {
			out = append(out, match{node: n})
			if len(out) >= max {
				return out
			}
		}
	}
	return out
}

// findXPath evaluates the expression with ctx as the root of the tree it
// sees.
func (s *selector) findXPath(ctx *html.Node, all bool, max int) []match {
	expr := s.xp.Get().(*xpath.Expr)
	defer s.xp.Put(expr)
	switch v := expr.Evaluate(htmlquery.CreateXPathNavigator(ctx)).(type) {
	case *xpath.NodeIterator:
		var out []match
		for v.MoveNext() {
			nav, ok := v.Current().(*htmlquery.NodeNavigator)
			if !ok {
				continue
			}
			switch nav.NodeType() {
			case xpath.AttributeNode, xpath.TextNode, xpath.CommentNode:
				out = append(out, match{node: nav.Current(), value: nav.Value()})
			default:
				out = append(out, match{node: nav.Current()})
			}
			if !all || len(out) >= max {
				break
			}
		}
		return out
	case string:
		if strings.TrimSpace(v) == "" {
			return nil
		}
		return []match{{value: v}}
	case float64:
		return []match{{value: v}}
	case bool:
		return []match{{value: v}}
	}
	return nil
}

// valueOf turns a match into a field value: nil when the element lacks the
// attribute the selector asks for.
func (s *selector) valueOf(m match, maxBytes int) any {
	if m.value != nil {
		if str, ok := m.value.(string); ok {
			return clean(str, maxBytes)
		}
		return m.value
	}
	if s.attr == "" {
		return clean(nodeText(m.node, maxBytes), maxBytes)
	}
	for _, a := range m.node.Attr {
		// Foreign (SVG/MathML) attributes such as xlink:href are split by
		// the parser; match them by their qualified name.
		if a.Namespace == "" && a.Key == s.attr ||
			a.Namespace != "" && a.Namespace+":"+a.Key == s.attr {
			return clean(a.Val, maxBytes)
		}
	}
	return nil
}

// evalCtx is what evaluating fields on one page needs.
type evalCtx struct {
	lim  Limits
	base *pageBase
	left int // values still allowed on this page (Limits.MaxValues)
}

// evalFields evaluates fields under node into a map with one key per field.
func evalFields(fields []field, node *html.Node, ec *evalCtx) map[string]any {
	out := make(map[string]any, len(fields))
	for i := range fields {
		out[fields[i].name] = fields[i].eval(node, ec)
	}
	return out
}

// eval evaluates the field under node: null when nothing matched, a list
// (possibly empty) when all is set.
func (f *field) eval(node *html.Node, ec *evalCtx) any {
	var v any
	if f.all {
		list := []any{}
		for i := range f.sels {
			if ec.left <= 0 {
				break
			}
			ms := f.sels[i].find(node, true, ec.lim.MaxItems)
			for _, m := range ms {
				if x := f.item(&f.sels[i], m, ec); x != nil {
					list = append(list, x)
				}
			}
			if len(list) > 0 {
				break
			}
		}
		v = list
	} else {
		for i := range f.sels {
			if ec.left <= 0 {
				break
			}
			ms := f.sels[i].find(node, false, 1)
			if len(ms) == 0 {
				continue
			}
			if v = f.item(&f.sels[i], ms[0], ec); v != nil {
				break
			}
		}
	}
	for _, p := range f.procs {
		v = p.apply(v, ec)
	}
	return v
}

// item is the value of one match: an object for a field with nested
// fields, else the match's value.
func (f *field) item(s *selector, m match, ec *evalCtx) any {
	if ec.left <= 0 {
		return nil // the page's budget is spent: nested items cannot multiply without bound
	}
	ec.left--
	if f.fields == nil {
		return s.valueOf(m, ec.lim.MaxFieldBytes)
	}
	if m.node == nil {
		return nil // an XPath scalar has no element to look inside
	}
	return evalFields(f.fields, m.node, ec)
}
