package parse

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/araddon/dateparse"
	"golang.org/x/text/currency"
	"gopkg.in/yaml.v3"
)

// MaxRegexBytes bounds the source of a regex or replace pattern.
const MaxRegexBytes = 1024

// processor is one compiled step of a field's process chain.
type processor struct {
	kind   string // trim, regex, replace, join, number, price, abs_url, date
	re     *regexp.Regexp
	arg    string // replace: the replacement; join: the separator; date: the layout ("" = detect)
	source string // as written, for errors and tests
}

// compileProcessor reads one entry of a process list: a name (trim,
// number, price, abs_url, date) or a one-key map (regex: PATTERN,
// replace: [PATTERN, REPLACEMENT], join: SEPARATOR, date: LAYOUT).
func compileProcessor(n *yaml.Node) (processor, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.Value {
		case "trim", "number", "price", "abs_url", "date":
			return processor{kind: n.Value, source: n.Value}, nil
		case "join":
			return processor{kind: "join", arg: " ", source: n.Value}, nil
		case "regex", "replace":
			return processor{}, fmt.Errorf("%s needs an argument (%s: ...)", n.Value, n.Value)
		}
		return processor{}, fmt.Errorf("unknown processor %q (want trim, regex, replace, join, number, price, abs_url or date)", n.Value)
	case yaml.MappingNode:
		if len(n.Content) != 2 {
			return processor{}, errors.New("a processor with an argument is a map with one key")
		}
		k, v := n.Content[0].Value, n.Content[1]
		p := processor{kind: k, source: k}
		switch k {
		case "regex":
			var pat string
			if err := v.Decode(&pat); err != nil {
				return p, fmt.Errorf("regex: %w", err)
			}
			re, err := compileRegex(pat)
			if err != nil {
				return p, fmt.Errorf("regex: %w", err)
			}
			p.re = re
			return p, nil
		case "replace":
			var args []string
			if err := v.Decode(&args); err != nil || len(args) != 2 {
				return p, errors.New("replace: want [PATTERN, REPLACEMENT]")
			}
			re, err := compileRegex(args[0])
			if err != nil {
				return p, fmt.Errorf("replace: %w", err)
			}
			p.re, p.arg = re, args[1]
			return p, nil
		case "join", "date":
			if err := v.Decode(&p.arg); err != nil {
				return p, fmt.Errorf("%s: want a string: %w", k, err)
			}
			return p, nil
		}
		return p, fmt.Errorf("unknown processor %q (want regex, replace, join or date with an argument)", k)
	}
	return processor{}, errors.New("a processor is a name or a map with one key")
}

func compileRegex(pat string) (*regexp.Regexp, error) {
	if len(pat) > MaxRegexBytes {
		return nil, fmt.Errorf("pattern longer than %d bytes", MaxRegexBytes)
	}
	if pat == "" {
		return nil, errors.New("empty pattern")
	}
	return regexp.Compile(pat) // RE2: linear time, whatever the input
}

// apply runs the processor on v. nil stays nil; a list is processed
// element by element (except by join, which takes the whole list), and
// elements that become nil are dropped; objects pass through unchanged.
func (p *processor) apply(v any, ec *evalCtx) any {
	switch x := v.(type) {
	case nil:
		return nil
	case []any:
		if p.kind == "join" {
			parts := make([]string, 0, len(x))
			for _, e := range x {
				if s, ok := scalarString(e); ok {
					parts = append(parts, s)
				}
			}
			return clean(strings.Join(parts, p.arg), ec.lim.MaxFieldBytes)
		}
		out := make([]any, 0, len(x))
		for _, e := range x {
			if r := p.apply(e, ec); r != nil {
				out = append(out, r)
			}
		}
		return out
	case map[string]any:
		return v
	}
	s, ok := scalarString(v)
	if !ok {
		return v
	}
	switch p.kind {
	case "trim":
		return strings.Join(strings.Fields(s), " ")
	case "regex":
		m := p.re.FindStringSubmatch(s)
		switch {
		case m == nil:
			return nil
		case len(m) > 1:
			return m[1]
		}
		return m[0]
	case "replace":
		return clean(p.re.ReplaceAllString(s, p.arg), ec.lim.MaxFieldBytes)
	case "join":
		return s
	case "number":
		if f, ok := v.(float64); ok {
			return f
		}
		if f, ok := parseNumber(s); ok {
			return f
		}
		return nil
	case "price":
		return parsePrice(s)
	case "abs_url":
		return ec.base.resolve(s)
	case "date":
		return parseDate(s, p.arg)
	}
	return v
}

// scalarString renders a string, number or boolean value as text.
func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

// numberRE finds the first number in a text: digits with optional
// grouping (',', '.', ' ', '\”, no-break spaces) and a sign.
var numberRE = regexp.MustCompile(`[-+−]?\d(?:[\d.,'\x{00a0}\x{202f} ]*\d)?`)

// parseNumber reads the first number in s. Separators: when both '.' and
// ',' occur, the last one is the decimal point; a lone ',' followed by
// exactly three digits groups thousands, other lone ',' is a decimal
// comma; one '.' is a decimal point, several group thousands. Spaces,
// no-break spaces and apostrophes group thousands.
func parseNumber(s string) (float64, bool) {
	m := numberRE.FindString(s)
	if m == "" {
		return 0, false
	}
	neg := strings.HasPrefix(m, "-") || strings.HasPrefix(m, "−")
	m = strings.TrimLeft(m, "+-−")
	m = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\'' || r == '\u00a0' || r == '\u202f' {
			return -1
		}
		return r
	}, m)
	dots, commas := strings.Count(m, "."), strings.Count(m, ",")
	lastDot, lastComma := strings.LastIndexByte(m, '.'), strings.LastIndexByte(m, ',')
	var dec byte // the decimal separator, 0 if none
	switch {
	case dots > 0 && commas > 0:
		dec = '.'
		if lastComma > lastDot {
			dec = ','
		}
	case commas == 1 && len(m)-lastComma-1 != 3:
		dec = ','
	case dots == 1:
		dec = '.'
	}
	var b strings.Builder
	for i := 0; i < len(m); i++ {
		switch c := m[i]; {
		case c >= '0' && c <= '9':
			b.WriteByte(c)
		case c == dec && i == strings.LastIndexByte(m, dec):
			b.WriteByte('.')
		}
	}
	f, err := strconv.ParseFloat(b.String(), 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, false
	}
	if neg {
		f = -f
	}
	return f, true
}

// currencySymbols maps the common currency signs to ISO 4217 codes. Longer
// signs come first so that "US$" wins over "$".
var currencySymbols = []struct{ sign, code string }{
	{"US$", "USD"}, {"CA$", "CAD"}, {"C$", "CAD"}, {"A$", "AUD"}, {"AU$", "AUD"}, {"NZ$", "NZD"}, {"HK$", "HKD"},
	{"R$", "BRL"}, {"S$", "SGD"}, {"MX$", "MXN"}, {"zł", "PLN"}, {"Kč", "CZK"}, {"kr", "SEK"},
	{"$", "USD"}, {"€", "EUR"}, {"£", "GBP"}, {"¥", "JPY"}, {"₹", "INR"}, {"₽", "RUB"}, {"₩", "KRW"},
	{"₺", "TRY"}, {"₪", "ILS"}, {"₫", "VND"}, {"₴", "UAH"}, {"฿", "THB"}, {"₱", "PHP"},
}

// isoCodeRE finds three capital letters standing alone (an ISO 4217 code).
var isoCodeRE = regexp.MustCompile(`(?:^|[^A-Za-z])([A-Z]{3})(?:$|[^A-Za-z])`)

// parsePrice reads an amount and its currency from a price text:
// {"amount": 19.99, "currency": "USD"}. The currency is an ISO 4217 code
// found as such (checked by golang.org/x/text/currency) or a common sign
// ($ counts as USD); null when there is none. No amount: nil.
func parsePrice(s string) any {
	amount, ok := parseNumber(s)
	if !ok {
		return nil
	}
	var cur any
	for _, m := range isoCodeRE.FindAllStringSubmatch(s, 4) {
		if u, err := currency.ParseISO(m[1]); err == nil {
			cur = u.String()
			break
		}
	}
	if cur == nil {
		for _, c := range currencySymbols {
			if strings.Contains(s, c.sign) {
				cur = c.code
				break
			}
		}
	}
	return map[string]any{"amount": amount, "currency": cur}
}

// parseDate reads a date in s (with layout, a Go time layout; without,
// any common format, as github.com/araddon/dateparse detects it) and
// writes it in RFC 3339. A date without a zone is taken as UTC. nil when
// s is not a date.
func parseDate(s, layout string) (out any) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 128 {
		return nil
	}
	defer func() {
		// dateparse is a state machine over outside text; a panic in it
		// must not take the stage down: the value is just not a date.
		if recover() != nil {
			out = nil
		}
	}()
	var (
		t   time.Time
		err error
	)
	if layout != "" {
		t, err = time.Parse(layout, s)
	} else {
		t, err = dateparse.ParseIn(s, time.UTC)
	}
	if err != nil || t.Year() < 1 || t.Year() > 9999 {
		return nil
	}
	return t.Format(time.RFC3339)
}

// pageBase resolves references against a page: its URL or, when the page
// has a usable <base href>, that.
type pageBase struct {
	u *url.URL
}

// resolve returns ref as an absolute http(s) URL, or nil.
func (b *pageBase) resolve(ref string) any {
	var base *url.URL
	if b != nil {
		base = b.u
	}
	u, err := parseRef(base, ref)
	if err != nil || !isHTTP(u) {
		return nil
	}
	s := u.String()
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return s
}
