package parse

import (
	"encoding/json"
	"math"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/failure"
)

func FuzzParseRules(f *testing.F) {
	seeds := []string{
		defaultRulesYAML,
		"",
		"[]",
		"- domain: \"*.example.com\"\n  fields:\n    a: \"a[href] @href\"\n    b: \"div > p:nth-child(2n+1)\"\n- domain: \"*\"\n",
		"- domain: \"[a-\"\n",
		"- domain: \"*\"\n  fields:\n    price: \"div[\"\n",
		"- domain: &a \"*\"\n  fields: {x: *a}\n",
		"- {domain: '*', fields: {x: 'p:contains(\"a\")', y: 'p:matches(^\\d+$)'}}\n",
		"- domain: \"*\"\n---\n- domain: \"x\"\n",
		"0: [:!00 \xef",
		"- domain: \"*\"\n  fields:\n    \"\": h1\n",
		"\xff\xfe- domain: x",
		// The rich form.
		"- domain: '*'\n  fields:\n    a: [h1, '//h2', 'xpath: count(//p)']\n    b: {css: p, all: true, process: [trim, {join: ', '}]}\n",
		"- domain: '*'\n  structured: false\n  fields:\n    c: {items: '.card', fields: {n: h3, u: {css: 'a @href', process: [abs_url]}, s: './@data-sku'}}\n",
		"- domain: '*'\n  fields:\n    p: {xpath: ['//p/@x', '(//a)[1]'], process: [{regex: '(\\d+)'}, number, price, date, {date: '2006'}, {replace: [a, b]}]}\n",
		"- domain: '*'\n  fields:\n    x: {css: h1, fields: {y: {css: h2, fields: {z: {items: h3, fields: {w: h4}}}}}}\n",
		"- domain: '*'\n  fields:\n    x: {css: h1, bogus: 1}\n",
		"- domain: '*'\n  fields:\n    x: {xpath: '//h1[', process: [shout]}\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r1, err1 := ParseRules("fuzz", data)
		r2, err2 := ParseRules("fuzz", data)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("nondeterministic: %v vs %v", err1, err2)
		}
		if err1 != nil {
			return
		}
		if r1.Version() != r2.Version() || r1.Version() != versionOf(data) || !versionRE.MatchString(r1.Version()) {
			t.Fatalf("versions %q %q", r1.Version(), r2.Version())
		}
		if len(r1.rules) == 0 {
			t.Fatalf("successful parse without rules")
		}
		// A loaded rule set must be usable, and its values encodable.
		e, err := r1.Extract(nil, "", []byte(fuzzRulesPage), Limits{MaxItems: 8})
		if err != nil {
			t.Fatalf("extract with fuzzed rules: %v", err)
		}
		if _, err := json.Marshal(e.Fields); err != nil {
			t.Fatalf("fields do not encode: %v", err)
		}
	})
}

// fuzzRulesPage is what fuzzed rule sets are applied to.
const fuzzRulesPage = `<html><head><script type="application/ld+json">{"@type":"X"}</script></head><body>` +
	`<h1 a="1">x</h1><div class="card" data-sku="S"><h3>n</h3><a href="/p">p</a></div><p x="12">$1,50 2024-01-02</p></body></html>`

// FuzzProcessors runs every processor, alone and chained, on arbitrary
// text (as a field value: cleaned first) and checks what comes out.
func FuzzProcessors(f *testing.F) {
	for _, s := range []string{"$19.99", "1.234,56 EUR", "-3", "1,234,567.89", "£ 5", "CHF1'299.50", "2024-05-06T07:08:09Z",
		"May 6, 2024", "06.05.2024", "../a/b?c#d", "javascript:x", "  a \n b ", "SKU: AB-1", "1e308", "9" + strings.Repeat("9", 400),
		"0000-00-00", "\u2212 7", "99999999999999999999/12/31", ""} {
		f.Add(uint8(0), s)
	}
	chains := []string{"[trim]", "[number]", "[price]", "[abs_url]", "[date]", `[{date: "02.01.2006"}]`,
		`[{regex: '(\d+)'}]`, `[{replace: ['\s+', '-']}]`, `[{join: ","}]`, `[{regex: '(.*)'}, trim, number]`, `[trim, price]`}
	procs := make([][]processor, len(chains))
	for i, c := range chains {
		r, err := ParseRules("fuzz", []byte("- domain: '*'\n  fields:\n    v: {css: p, process: "+c+"}\n"))
		if err != nil {
			f.Fatal(err)
		}
		procs[i] = r.rules[0].fields[0].procs
	}
	base, _ := url.Parse("https://fuzz.example.com/a/b")
	ec := &evalCtx{lim: Limits{}.normalized(), base: &pageBase{u: base}}
	f.Fuzz(func(t *testing.T, which uint8, in string) {
		chain := procs[int(which)%len(procs)]
		for i, v := range []any{clean(in, ec.lim.MaxFieldBytes), []any{clean(in, 64), "x"}} {
			for _, p := range chain {
				v = p.apply(v, ec)
			}
			checkValue(t, v, ec.lim.MaxFieldBytes)
			if i > 0 {
				continue // a list: its elements were checked above
			}
			s, isString := v.(string)
			switch last := chain[len(chain)-1].kind; {
			case last == "date" && isString:
				if _, err := time.Parse(time.RFC3339, s); err != nil {
					t.Fatalf("date %q is not RFC 3339: %v", s, err)
				}
			case last == "abs_url" && isString:
				if u, err := url.Parse(s); err != nil || !isHTTP(u) {
					t.Fatalf("abs_url %q: %v", s, err)
				}
			case last == "number" && v != nil:
				if _, ok := v.(float64); !ok {
					t.Fatalf("number gave %#v", v)
				}
			}
		}
	})
}

// checkValue checks a processed value: valid UTF-8, finite numbers, dates
// in RFC 3339, URLs absolute http(s).
func checkValue(t *testing.T, v any, maxBytes int) {
	t.Helper()
	switch x := v.(type) {
	case nil, bool:
	case string:
		if !utf8.ValidString(x) || len(x) > maxBytes+utf8.UTFMax {
			t.Fatalf("string %q", x)
		}
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			t.Fatalf("number %v", x)
		}
	case []any:
		for _, e := range x {
			if e == nil {
				t.Fatal("nil in a processed list")
			}
			checkValue(t, e, maxBytes)
		}
	case map[string]any:
		checkValue(t, x["amount"], maxBytes)
		if c, ok := x["currency"].(string); ok && len(c) != 3 {
			t.Fatalf("currency %q", c)
		}
	default:
		t.Fatalf("value of type %T", v)
	}
	if _, err := json.Marshal(v); err != nil {
		t.Fatalf("value does not encode: %v", err)
	}
}

var fuzzRules = func() *Rules {
	r, err := ParseRules("fuzz", []byte(`
- domain: "*"
  fields:
    name: "h1"
    price: ".price"
    sku: "meta[itemprop=sku] @content"
    title: "title"
    text: "body"
    href: "a @href"
    first_p: "p:first-of-type"
    x_title: "//title"
    x_href: "(//a/@href)[last()]"
    x_text: "xpath: normalize-space(//h1)"
`))
	if err != nil {
		panic(err)
	}
	return r
}()

func FuzzExtract(f *testing.F) {
	seeds := []struct {
		ct   string
		body string
	}{
		// Seeds are kept small: the fuzzer minimizes every new interesting
		// input (for up to a minute each), which takes far longer on large
		// inputs and would starve a short -fuzztime run.
		{"text/html; charset=utf-8", `<html><head><base href="/b/"><meta itemprop="sku" content=" S1 "><title>T</title></head>` +
			`<body><h1> Name <b>x</b></h1><p class="price">$1</p><a href="x#f">x</a><a href="mailto:m">m</a></body></html>`},
		{"", "<h1>Caf\xe9</h1><a href=\"/x\xe9#f\">x</a>"},
		{"text/html; charset=iso-8859-1", "<meta charset=utf-8><h1>\xe9\x80\xff</h1>"},
		{"text/html; charset=utf-16", "\xff\xfe<\x00h\x001\x00>\x00"},
		{"text/html; charset=shift_jis", "<h1>\x82\xa0\x82</h1>"},
		{"", "<base href=\"javascript:x\"><a href=\"//h/\">a</a><a href=\"http://[::1]:80/%zz\">b</a>"},
		{"", "<table><td><b><i><p>x</table></b>&#xD800;\x00<svg><a xlink:href=y>"},
		{"", amplification(4, 6)},
		{"", "<p>" + strings.Repeat("é", 40) + "</p><h1>  \u00a0 </h1>"},
		{"", ""},
		{"text/plain", "\x00\x01\x02"},
	}
	for _, s := range seeds {
		f.Add(s.ct, []byte(s.body))
	}
	page, _ := url.Parse("https://fuzz.example.com/a/b?c=d")
	lim := Limits{MaxLinks: 8, MaxFieldBytes: 17, MaxNodes: 3000}
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		e, err := fuzzRules.Extract(page, contentType, body, lim)
		if err != nil {
			if failure.ClassOf(err) != failure.Parse {
				t.Fatalf("error %v is not of class parse", err)
			}
			return
		}
		if e.Rule != "*" || len(e.Fields) != len(fuzzRules.rules[0].fields) {
			t.Fatalf("rule %q fields %d", e.Rule, len(e.Fields))
		}
		for k, v := range e.Fields {
			if v == nil {
				continue
			}
			sv, ok := v.(string)
			if !ok {
				t.Fatalf("field %s = %#v, want a string", k, v)
			}
			if !utf8.ValidString(sv) {
				t.Fatalf("field %s = %q not valid UTF-8", k, sv)
			}
			if len(sv) > lim.MaxFieldBytes {
				t.Fatalf("field %s is %d bytes", k, len(sv))
			}
			if strings.TrimSpace(sv) != sv {
				t.Fatalf("field %s = %q not trimmed", k, sv)
			}
		}
		if len(e.Links) > lim.MaxLinks {
			t.Fatalf("%d links", len(e.Links))
		}
		seen := map[string]bool{}
		for _, l := range e.Links {
			if !utf8.ValidString(l) {
				t.Fatalf("link %q not valid UTF-8", l)
			}
			if seen[l] {
				t.Fatalf("duplicate link %q", l)
			}
			seen[l] = true
			u, err := url.Parse(l)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" {
				t.Fatalf("bad link %q (%v)", l, err)
			}
		}
	})
}
