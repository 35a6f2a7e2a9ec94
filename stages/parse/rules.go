// Package parse is the extraction library of sluice's parse stage: it loads
// per-domain extraction rules from YAML (CSS and XPath selectors with
// fallbacks, lists, nested items and processors; see docs/extraction.md)
// and applies them to fetched HTML pages, producing field values, the
// page's structured data (JSON-LD, microdata, OpenGraph) and its outgoing
// links, from one parse of each page.
//
// A *Rules value is immutable once loaded and safe for concurrent use by any
// number of goroutines.
package parse

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode"

	"github.com/sluicehq/sluice/hostmatch"
	"gopkg.in/yaml.v3"
)

const (
	// MaxRulesFileBytes is the largest rules file LoadRules and ParseRules accept.
	MaxRulesFileBytes = 1 << 20
	// MaxFieldsPerRule is the largest number of fields a single rule may declare.
	MaxFieldsPerRule = 256
)

// defaultRulesYAML is the built-in rule set returned by DefaultRules.
const defaultRulesYAML = `- domain: "*"
  fields:
    name: "h1"
    price: ".price"
    sku: "meta[itemprop=sku] @content"
`

// Rules is a loaded, compiled rule set. It is immutable after loading and
// safe for concurrent use.
type Rules struct {
	name    string
	version string
	rules   []rule
	fn      Func   // FuncRules: fields come from Go code, not rules
	onParse func() // tests: called once per HTML parse
}

type rule struct {
	domain     hostmatch.Pattern
	fields     []field // sorted by name
	structured bool    // collect JSON-LD, microdata and OpenGraph
}

// ruleYAML is the on-disk shape of one rule.
type ruleYAML struct {
	Domain     string               `yaml:"domain"`
	Fields     map[string]fieldYAML `yaml:"fields"`
	Structured *bool                `yaml:"structured"` // nil: true
}

// LoadRules reads and compiles the rules file at path. Files larger than
// MaxRulesFileBytes are rejected. The rule set's Name is the file's base name.
func LoadRules(p string) (*Rules, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("parse rules: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxRulesFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("parse rules %s: %w", p, err)
	}
	if len(data) > MaxRulesFileBytes {
		return nil, fmt.Errorf("parse rules %s: file larger than %d bytes", p, MaxRulesFileBytes)
	}
	return ParseRules(filepath.Base(p), data)
}

// ParseRules compiles the YAML rules in data. name is what Name reports
// (and appears in error messages).
func ParseRules(name string, data []byte) (*Rules, error) {
	if len(data) > MaxRulesFileBytes {
		return nil, fmt.Errorf("parse rules %s: larger than %d bytes", name, MaxRulesFileBytes)
	}
	raw, err := decodeYAML(data)
	if err != nil {
		return nil, fmt.Errorf("parse rules %s: %w", name, err)
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("parse rules %s: no rules", name)
	}
	rs := &Rules{name: name, version: versionOf(data), rules: make([]rule, 0, len(raw))}
	for i, ry := range raw {
		r, err := compileRule(ry)
		if err != nil {
			return nil, fmt.Errorf("parse rules %s: rule %d: %w", name, i, err)
		}
		rs.rules = append(rs.rules, r)
	}
	return rs, nil
}

// decodeYAML decodes exactly one YAML document holding a list of rules.
// Unknown keys are errors so that typos do not silently disable a rule.
func decodeYAML(data []byte) (out []ruleYAML, err error) {
	defer func() {
		// yaml.v3 is not supposed to panic, but rules files are operator
		// input; never let a malformed one take the process down.
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("invalid YAML: %v", p)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&out); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // empty document: reported as "no rules"
		}
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("invalid YAML: more than one document")
	}
	return out, nil
}

func compileRule(ry ruleYAML) (rule, error) {
	dom := strings.ToLower(strings.TrimSpace(ry.Domain))
	if dom == "" {
		return rule{}, errors.New("empty domain")
	}
	if strings.ContainsRune(dom, '/') {
		// Host names have no '/', so such a rule could never match:
		// almost certainly a URL pasted by mistake.
		return rule{}, fmt.Errorf("domain %q: must be a hostname glob, not a URL or path", ry.Domain)
	}
	pat, err := hostmatch.Parse(dom)
	if err != nil {
		return rule{}, fmt.Errorf("domain %q: invalid glob: %w", ry.Domain, err)
	}
	if n := countFields(ry.Fields); n > MaxFieldsPerRule {
		return rule{}, fmt.Errorf("domain %q: %d fields, at most %d allowed", ry.Domain, n, MaxFieldsPerRule)
	}
	fields, err := compileFields(ry.Fields, 0)
	if err != nil {
		return rule{}, fmt.Errorf("domain %q: %w", ry.Domain, err)
	}
	return rule{domain: pat, fields: fields, structured: ry.Structured == nil || *ry.Structured}, nil
}

// compileFields compiles a fields map (of a rule, or of nested items at
// the given depth), sorted by name.
func compileFields(m map[string]fieldYAML, depth int) ([]field, error) {
	out := make([]field, 0, len(m))
	for fname, spec := range m {
		if strings.TrimSpace(fname) == "" {
			return nil, errors.New("empty field name")
		}
		f, err := compileField(fname, spec, depth)
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", fname, err)
		}
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// validAttrName accepts what the HTML tokenizer can produce as an attribute
// name (so Vue's @click or Angular's [prop] are fine).
func validAttrName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case c <= ' ', c == 0x7f, c == '"', c == '\'', c == '<', c == '>', c == '/', c == '=',
			c == unicode.ReplacementChar:
			return false
		}
	}
	return true
}

// asciiLower lower-cases ASCII letters only, as the HTML tokenizer does for
// attribute names.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func versionOf(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])[:12]
}

var defaultRules = func() *Rules {
	r, err := ParseRules("default", []byte(defaultRulesYAML))
	if err != nil {
		panic("parse: built-in rules do not compile: " + err.Error())
	}
	return r
}()

// DefaultRules returns the built-in rule set: one rule for every domain
// extracting name (h1), price (.price) and sku (meta[itemprop=sku] @content).
func DefaultRules() *Rules { return defaultRules }

// Name identifies the rule set: the file's base name for LoadRules, the
// given name for ParseRules, "default" for DefaultRules.
func (r *Rules) Name() string {
	if r == nil {
		return ""
	}
	return r.name
}

// Version is "sha256:" followed by the first 12 hex digits of the SHA-256 of
// the rules file's bytes; identical bytes always give the same version.
func (r *Rules) Version() string {
	if r == nil {
		return ""
	}
	return r.version
}

// match returns the first rule whose domain pattern matches host (package
// hostmatch), or nil.
func (r *Rules) match(host string) *rule {
	if r == nil {
		return nil
	}
	for i := range r.rules {
		if r.rules[i].domain.Match(host) {
			return &r.rules[i]
		}
	}
	return nil
}
