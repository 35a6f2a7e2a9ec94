package parse

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
)

// extractJSON applies the rule fields (YAML, indented under "fields:") to
// page and returns the fields as canonical JSON.
func extractJSON(t *testing.T, fields, page string) string {
	t.Helper()
	r := mustParse(t, "- domain: '*'\n  fields:\n"+indent(fields, "    "))
	e, err := r.Extract(mustURL(t, "https://shop.example.com/list/p?q=1"), "text/html", []byte(page), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return canon(t, e.Fields)
}

func indent(s, pre string) string {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pre + l
	}
	return strings.Join(lines, "\n") + "\n"
}

// canon marshals v (or re-marshals JSON text) with sorted keys.
func canon(t *testing.T, v any) string {
	t.Helper()
	if s, ok := v.(string); ok {
		var x any
		if err := json.Unmarshal([]byte(s), &x); err != nil {
			t.Fatalf("bad JSON %q: %v", s, err)
		}
		v = x
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const kindsPage = `<html><head><title>T</title><meta property="og:title" content="OG"></head><body>
<h1 class="name" data-id="42">  Blue <b>Widget</b> </h1>
<p class="price">$19.99</p><p class="price">$5.00</p>
<img class="main" src="/img/a.png"><a id="next" href="?page=2">next</a>
<ul><li>one</li><li>two</li><li> three </li></ul>
</body></html>`

func TestSelectorKinds(t *testing.T) {
	tests := []struct {
		name, field, want string
	}{
		{"css text", `v: "h1.name"`, `"Blue Widget"`},
		{"css attribute", `v: "h1 @data-id"`, `"42"`},
		{"css: prefix", `v: "css: h1 @data-id"`, `"42"`},
		{"css key", `v: {css: "img.main @src"}`, `"/img/a.png"`},
		{"xpath element text", `v: "//h1"`, `"Blue Widget"`},
		{"xpath attribute", `v: "//img/@src"`, `"/img/a.png"`},
		{"xpath text node", `v: "//li[2]/text()"`, `"two"`},
		{"xpath relative", `v: "./html/body/p[2]"`, `"$5.00"`},
		{"xpath parenthesised", `v: "(//p)[last()]"`, `"$5.00"`},
		{"xpath: prefix string()", `v: "xpath: string(//title)"`, `"T"`},
		{"xpath: prefix count()", `v: "xpath: count(//li)"`, `3`},
		{"xpath: prefix boolean", `v: "xpath: boolean(//img)"`, `true`},
		{"xpath key", `v: {xpath: "//meta[@property='og:title']/@content"}`, `"OG"`},
		{"xpath empty string is null", `v: "xpath: string(//h6)"`, `null`},
		{"no match", `v: "h6"`, `null`},
		{"xpath no match", `v: "//h6"`, `null`},
		{"missing attribute", `v: "h1 @nope"`, `null`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := extractJSON(t, tc.field, kindsPage)
			if want := `{"v":` + tc.want + `}`; got != want {
				t.Errorf("got %s, want %s", got, want)
			}
		})
	}
}

func TestFallbackSelectors(t *testing.T) {
	tests := []struct {
		name, field, want string
	}{
		{"list short form, first misses", `v: [".sale-price", ".price"]`, `"$19.99"`},
		{"list short form, first wins", `v: [".price", "h1"]`, `"$19.99"`},
		{"css list then xpath", `v: {css: [".sale", "#none"], xpath: "//h1/@data-id"}`, `"42"`},
		{"mixed kinds in one list", `v: ["//h6", "h1 @data-id", ".price"]`, `"42"`},
		{"attribute missing falls through", `v: ["h1 @content", "h1 @data-id"]`, `"42"`},
		{"none match", `v: [".a", ".b", "//c"]`, `null`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := extractJSON(t, tc.field, kindsPage)
			if want := `{"v":` + tc.want + `}`; got != want {
				t.Errorf("got %s, want %s", got, want)
			}
		})
	}
}

func TestAll(t *testing.T) {
	tests := []struct {
		name, field, want string
	}{
		{"css", `v: {css: li, all: true}`, `["one","two","three"]`},
		{"xpath", `v: {xpath: "//li/text()", all: true}`, `["one","two","three"]`},
		{"xpath attributes", `v: {xpath: "//@class", all: true}`, `["name","price","price","main"]`},
		{"no match is an empty list", `v: {css: dd, all: true}`, `[]`},
		{"first selector with matches wins", `v: {css: [dd, li], all: true}`, `["one","two","three"]`},
		{"joined", `v: {css: li, all: true, process: [{join: ", "}]}`, `"one, two, three"`},
		{"elements lacking the attribute are left out", `v: {css: "p, img @src", all: true}`, `["/img/a.png"]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := extractJSON(t, tc.field, kindsPage)
			if want := `{"v":` + tc.want + `}`; got != want {
				t.Errorf("got %s, want %s", got, want)
			}
		})
	}
	t.Run("bounded by MaxItems", func(t *testing.T) {
		r := mustParse(t, "- domain: '*'\n  fields:\n    v: {css: li, all: true}\n    w: {xpath: '//li', all: true}\n")
		e, err := r.Extract(nil, "", []byte(kindsPage), Limits{MaxItems: 2})
		if err != nil {
			t.Fatal(err)
		}
		if got := canon(t, e.Fields); got != `{"v":["one","two"],"w":["one","two"]}` {
			t.Errorf("got %s", got)
		}
	})
}

// listingPage renders a category page with n product cards; card 2 has no
// price and card 3 no rating.
func listingPage(n int) string {
	var b strings.Builder
	b.WriteString(`<html><head><base href="https://shop.example.com/"></head><body><h1>Widgets</h1><div class="grid">`)
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, `<div class="card" data-sku="W-%d"><h3><a href="/p/%d">Widget %d</a></h3>`, i, i, i)
		if i != 2 {
			fmt.Fprintf(&b, `<span class="price">€%d,50</span>`, i)
		}
		if i != 3 {
			fmt.Fprintf(&b, `<div class="rating" data-score="4.%d"><span class="tag">new</span><span class="tag">eco</span></div>`, i)
		}
		b.WriteString(`</div>`)
	}
	b.WriteString(`</div><p class="price">not a card price</p></body></html>`)
	return b.String()
}

func TestNestedItems(t *testing.T) {
	page := listingPage(3)
	want := `{"products":[` +
		`{"name":"Widget 1","price":{"amount":1.5,"currency":"EUR"},"rating":4.1,"sku":"W-1","tags":["new","eco"],"url":"https://shop.example.com/p/1"},` +
		`{"name":"Widget 2","price":null,"rating":4.2,"sku":"W-2","tags":["new","eco"],"url":"https://shop.example.com/p/2"},` +
		`{"name":"Widget 3","price":{"amount":3.5,"currency":"EUR"},"rating":null,"sku":"W-3","tags":[],"url":"https://shop.example.com/p/3"}]` +
		`,"title":"Widgets"}`
	css := `
title: h1
products:
  items: .card
  fields:
    name: h3
    url: {css: "h3 a @href", process: [abs_url]}
    sku: "xpath: string(./@data-sku)"
    price: {css: .price, process: [price]}
    rating: {css: ".rating @data-score", process: [number]}
    tags: {css: .tag, all: true}
`
	if got := extractJSON(t, css, page); got != want {
		t.Errorf("css items:\n got %s\nwant %s", got, want)
	}
	xp := `
title: //h1
products:
  items: //div[@class='card']
  fields:
    name: .//h3
    url: {xpath: ".//h3/a/@href", process: [abs_url]}
    sku: {css: ". @data-sku", xpath: "./@data-sku"}
    price: {xpath: ".//span[@class='price']", process: [price]}
    rating: {xpath: ".//div[@class='rating']/@data-score", process: [number]}
    tags: {xpath: ".//span[@class='tag']", all: true}
`
	// ". @data-sku" is not valid CSS; use a form that is: the sku falls
	// back to XPath when the CSS selector finds nothing.
	xp = strings.Replace(xp, `{css: ". @data-sku", xpath: "./@data-sku"}`, `{css: "x-none @data-sku", xpath: "./@data-sku"}`, 1)
	if got := extractJSON(t, xp, page); got != want {
		t.Errorf("xpath items:\n got %s\nwant %s", got, want)
	}
	// One object: css + fields without all.
	one := `
first:
  css: .card
  fields:
    name: h3
missing:
  css: .nothing
  fields:
    name: h3
none_all:
  items: .nothing
  fields:
    name: h3
`
	if got := extractJSON(t, one, page); got != `{"first":{"name":"Widget 1"},"missing":null,"none_all":[]}` {
		t.Errorf("object: got %s", got)
	}
	// Nested twice.
	two := `
grid:
  css: .grid
  fields:
    cards:
      items: .card
      fields:
        tags: {css: .tag, all: true, process: [{join: "+"}]}
`
	if got := extractJSON(t, two, page); got != `{"grid":{"cards":[{"tags":"new+eco"},{"tags":"new+eco"},{"tags":""}]}}` {
		t.Errorf("nested twice: got %s", got)
	}
}

func TestMixedKindsParseOnce(t *testing.T) {
	r := mustParse(t, `
- domain: "*"
  fields:
    name: h1
    name_x: //h1
    price: {css: .price, process: [price]}
    price_x: {xpath: "//p[@class='price'][1]", process: [number]}
    items: {items: "//li", fields: {text: ".", upper: "xpath: string(.)"}}
    all_css: {css: li, all: true}
`)
	var parses atomic.Int64
	r.onParse = func() { parses.Add(1) }
	e, err := r.Extract(mustURL(t, "https://a.example/"), "", []byte(kindsPage), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if n := parses.Load(); n != 1 {
		t.Errorf("%d HTML parses for one page, want 1", n)
	}
	if e.Structured == nil || e.Structured.OpenGraph["og:title"] != "OG" {
		t.Errorf("structured = %+v", e.Structured)
	}
	got := canon(t, e.Fields)
	want := `{"all_css":["one","two","three"],"items":[{"text":"one","upper":"one"},{"text":"two","upper":"two"},{"text":"three","upper":" three "}],` +
		`"name":"Blue Widget","name_x":"Blue Widget","price":{"amount":19.99,"currency":"USD"},"price_x":19.99}`
	// string() keeps the text as XPath gives it; only clean() trims it.
	want = strings.Replace(want, `" three "`, `"three"`, 1)
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestProcessors(t *testing.T) {
	tests := []struct {
		name, in, process, want string
	}{
		{"trim collapses", "  a \n\t b  ", `[trim]`, `"a b"`},
		{"regex group", "SKU: AB-12 (new)", `[{regex: 'SKU: (\S+)'}]`, `"AB-12"`},
		{"regex whole", "Only 3 left", `[{regex: '\d+'}]`, `"3"`},
		{"regex no match", "none", `[{regex: '\d+'}]`, `null`},
		{"replace", "1 234 pcs", `[{replace: ['\s*pcs$', '']}]`, `"1 234"`},
		{"replace with group", "2024/05/06", `[{replace: ['(\d+)/(\d+)/(\d+)', '$1-$2-$3']}]`, `"2024-05-06"`},
		{"chain", "Price: 1.299,00 EUR", `[{regex: 'Price: (.*)'}, price]`, `{"amount":1299,"currency":"EUR"}`},
		{"number plain", "42", `[number]`, `42`},
		{"number negative", "-3.5 °C", `[number]`, `-3.5`},
		{"number thousands comma", "1,234 reviews", `[number]`, `1234`},
		{"number decimal comma", "4,5 stars", `[number]`, `4.5`},
		{"number both", "1.234.567,89", `[number]`, `1234567.89`},
		{"number us", "1,234,567.89", `[number]`, `1234567.89`},
		{"number spaces", "1 299 990", `[number]`, `1299990`},
		{"number none", "free", `[number]`, `null`},
		{"price dollar", "$19.99", `[price]`, `{"amount":19.99,"currency":"USD"}`},
		{"price euro after", "19,99 €", `[price]`, `{"amount":19.99,"currency":"EUR"}`},
		{"price pound", "£1,250", `[price]`, `{"amount":1250,"currency":"GBP"}`},
		{"price iso", "CHF 12.50", `[price]`, `{"amount":12.5,"currency":"CHF"}`},
		{"price iso wins over sign", "US$ 5 (USD)", `[price]`, `{"amount":5,"currency":"USD"}`},
		{"price unknown code", "ABC 5", `[price]`, `{"amount":5,"currency":null}`},
		{"price no currency", "5", `[price]`, `{"amount":5,"currency":null}`},
		{"price no amount", "call us", `[price]`, `null`},
		{"abs_url relative", "../img/x.png", `[abs_url]`, `"https://shop.example.com/img/x.png"`},
		{"abs_url absolute", "http://cdn.example.net/x", `[abs_url]`, `"http://cdn.example.net/x"`},
		{"abs_url not http", "javascript:void(0)", `[abs_url]`, `null`},
		{"date iso", "2024-05-06T07:08:09+02:00", `[date]`, `"2024-05-06T07:08:09+02:00"`},
		{"date words", "May 6, 2024", `[date]`, `"2024-05-06T00:00:00Z"`},
		{"date slash", "2024/05/06 10:30", `[date]`, `"2024-05-06T10:30:00Z"`},
		{"date layout", "06.05.2024", `[{date: "02.01.2006"}]`, `"2024-05-06T00:00:00Z"`},
		{"date bad", "yesterday-ish", `[date]`, `null`},
		{"join on a string", "x", `[{join: ","}]`, `"x"`},
		{"number then regex on the number", "Total 12.50", `[number, {regex: '^\d+'}]`, `"12"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			page := `<html><body><p id="v">` + htmlEscape(tc.in) + `</p></body></html>`
			got := extractJSON(t, "v: {css: '#v', process: "+tc.process+"}", page)
			if want := `{"v":` + tc.want + `}`; got != canon(t, want) {
				t.Errorf("%q | %s = %s, want %s", tc.in, tc.process, got, want)
			}
		})
	}
	t.Run("on lists", func(t *testing.T) {
		page := `<ul><li>$1</li><li>n/a</li><li>$3.50</li></ul>`
		got := extractJSON(t, "v: {css: li, all: true, process: [number]}", page)
		if got != `{"v":[1,3.5]}` {
			t.Errorf("got %s", got)
		}
	})
	t.Run("objects pass through", func(t *testing.T) {
		got := extractJSON(t, "v: {css: ul, fields: {a: li}, process: [trim, number]}", `<ul><li>x</li></ul>`)
		if got != `{"v":{"a":"x"}}` {
			t.Errorf("got %s", got)
		}
	})
}

func htmlEscape(s string) string {
	var b bytes.Buffer
	for _, r := range s {
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '&':
			b.WriteString("&amp;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestRichRuleErrors(t *testing.T) {
	tests := []struct {
		name, fields, wantSub string
	}{
		{"unknown key", `v: {css: h1, proces: [trim]}`, `unknown key "proces"`},
		{"no selector", `v: {all: true}`, "empty selector"},
		{"bad xpath", `v: "//h1["`, "bad XPath"},
		{"bad xpath key", `v: {xpath: "h1[@"}`, "bad XPath"},
		{"bad css in list", `v: [h1, "div["]`, "bad selector"},
		{"items and css", `v: {items: .c, css: .c, fields: {a: b}}`, "items replaces css"},
		{"items without fields", `v: {items: .c}`, "items needs fields"},
		{"item selector with attribute", `v: {css: "a @href", fields: {x: b}}`, "not an attribute"},
		{"unknown processor", `v: {css: h1, process: [shout]}`, `unknown processor "shout"`},
		{"regex without pattern", `v: {css: h1, process: [regex]}`, "needs an argument"},
		{"bad regex", `v: {css: h1, process: [{regex: "(a"}]}`, "regex"},
		{"replace one arg", `v: {css: h1, process: [{replace: [a]}]}`, "PATTERN, REPLACEMENT"},
		{"processor map two keys", `v: {css: h1, process: [{regex: a, join: b}]}`, "one key"},
		{"nested error names field", `v: {items: .c, fields: {inner: "div["}}`, `field "inner"`},
		{"too deep", `a: {css: x, fields: {b: {css: x, fields: {c: {css: x, fields: {d: {css: x, fields: {e: {css: x, fields: {f: y}}}}}}}}}}`, "nested more than"},
		{"field is a number map", `v: {css: {a: b}}`, "string or a list"},
		{"empty xpath prefix", `v: "xpath:"`, "empty XPath"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRules("r.yaml", []byte("- domain: '*'\n  fields:\n"+indent(tc.fields, "    ")))
			if err == nil || !strings.Contains(err.Error(), tc.wantSub) {
				t.Errorf("error %v, want one containing %q", err, tc.wantSub)
			}
		})
	}
}

func TestStructuredData(t *testing.T) {
	page := `<!DOCTYPE html><html><head>
<meta property="og:title" content=" Blue Widget ">
<meta property="og:type" content="product">
<meta property="og:image" content="https://cdn.example.com/a.jpg">
<meta property="og:image" content="https://cdn.example.com/b.jpg">
<meta property="product:price:amount" content="19.99">
<meta property="product:price:currency" content="USD">
<meta name="description" content="not OpenGraph">
<script type="application/ld+json">
{"@context": "https://schema.org", "@type": "Product", "name": "Blue Widget", "sku": "BW-1",
 "offers": {"@type": "Offer", "price": 19.99, "priceCurrency": "USD", "availability": "https://schema.org/InStock"}}
</script>
<script type="application/ld+json">[{"@type": "BreadcrumbList", "itemListElement": []}, {"@type": "Organization", "name": "Shop"}]</script>
<script type="application/ld+json">{ not json </script>
<script type="text/javascript">var x = {"@type": "NotLD"};</script>
</head><body>
<div itemscope itemtype="https://schema.org/Product" itemid="urn:sku:BW-1">
  <h1 itemprop="name">Blue Widget</h1>
  <img itemprop="image" src="/img/bw.jpg">
  <a itemprop="url" href="/p/bw">link</a>
  <div itemprop="offers" itemscope itemtype="https://schema.org/Offer">
    <span itemprop="price" content="19.99">$19.99</span>
    <meta itemprop="priceCurrency" content="USD">
    <time itemprop="priceValidUntil" datetime="2025-01-01">New year</time>
  </div>
  <div><span itemprop="color brand">Blue</span></div>
</div>
<div itemscope><span itemprop="note">untyped</span></div>
</body></html>`
	r := mustParse(t, "- domain: '*'\n  fields:\n    name: h1\n")
	e, err := r.Extract(mustURL(t, "https://shop.example.com/p/bw"), "", []byte(page), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if e.Structured == nil {
		t.Fatal("no structured data")
	}
	if got, want := canon(t, e.Structured.OpenGraph), `{"og:image":"https://cdn.example.com/a.jpg","og:title":"Blue Widget","og:type":"product",`+
		`"product:price:amount":"19.99","product:price:currency":"USD"}`; got != want {
		t.Errorf("opengraph\n got %s\nwant %s", got, want)
	}
	if got, want := canon(t, e.Structured.JSONLD), `[{"@context":"https://schema.org","@type":"Product","name":"Blue Widget",`+
		`"offers":{"@type":"Offer","availability":"https://schema.org/InStock","price":19.99,"priceCurrency":"USD"},"sku":"BW-1"},`+
		`{"@type":"BreadcrumbList","itemListElement":[]},{"@type":"Organization","name":"Shop"}]`; got != want {
		t.Errorf("json_ld\n got %s\nwant %s", got, want)
	}
	if got, want := canon(t, e.Structured.Microdata), `[{"id":"urn:sku:BW-1","properties":{"brand":["Blue"],"color":["Blue"],"image":["https://shop.example.com/img/bw.jpg"],"name":["Blue Widget"],`+
		`"offers":[{"properties":{"price":["$19.99"],"priceCurrency":["USD"],"priceValidUntil":["2025-01-01"]},"type":["https://schema.org/Offer"]}],`+
		`"url":["https://shop.example.com/p/bw"]},"type":["https://schema.org/Product"]},{"properties":{"note":["untyped"]}}]`; got != want {
		t.Errorf("microdata\n got %s\nwant %s", got, want)
	}

	t.Run("absent", func(t *testing.T) {
		e, err := r.Extract(nil, "", []byte(kindsPage[:strings.Index(kindsPage, "<meta")]+"</head><body><h1>x</h1></body></html>"), Limits{})
		if err != nil || e.Structured != nil {
			t.Errorf("structured = %+v, %v; want nil", e.Structured, err)
		}
	})
	t.Run("off", func(t *testing.T) {
		off := mustParse(t, "- domain: '*'\n  structured: false\n  fields:\n    name: h1\n")
		e, err := off.Extract(nil, "", []byte(page), Limits{})
		if err != nil || e.Structured != nil {
			t.Errorf("structured = %+v, %v; want nil", e.Structured, err)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		e, err := r.Extract(nil, "", []byte(page), Limits{MaxStructuredBytes: 100})
		if err != nil {
			t.Fatal(err)
		}
		// The 250-byte Product block is over the budget; the array fits.
		if len(e.Structured.JSONLD) != 2 {
			t.Errorf("json_ld = %v", e.Structured.JSONLD)
		}
	})
}

func TestXPathConcurrent(t *testing.T) {
	r := mustParse(t, "- domain: '*'\n  fields:\n    n: 'xpath: count(//li)'\n    l: {xpath: '//li', all: true}\n    c: {items: '//li', fields: {t: '.'}}\n")
	done := make(chan string)
	for i := 0; i < 8; i++ {
		go func() {
			var last string
			for j := 0; j < 50; j++ {
				e, err := r.Extract(nil, "", []byte(kindsPage), Limits{})
				if err != nil {
					last = err.Error()
					break
				}
				b, _ := json.Marshal(e.Fields)
				last = string(b)
			}
			done <- last
		}()
	}
	for i := 0; i < 8; i++ {
		if got := <-done; got != `{"c":[{"t":"one"},{"t":"two"},{"t":"three"}],"l":["one","two","three"],"n":3}` {
			t.Errorf("got %s", got)
		}
	}
}

// Nested items over deeply nested elements would multiply: the page's
// value budget ends them.
func TestNestedItemsBounded(t *testing.T) {
	page := strings.Repeat("<div>", 300) + "x" + strings.Repeat("</div>", 300)
	r := mustParse(t, "- domain: '*'\n  fields:\n    a: {items: div, fields: {b: {items: div, fields: {c: {items: div, fields: {t: '.'}}}}}}\n")
	e, err := r.Extract(nil, "", []byte(page), Limits{MaxValues: 5000})
	if err != nil {
		t.Fatal(err)
	}
	var count func(v any) int
	count = func(v any) int {
		switch x := v.(type) {
		case []any:
			n := 0
			for _, e := range x {
				n += count(e)
			}
			return n
		case map[string]any:
			n := 1
			for _, e := range x {
				n += count(e)
			}
			return n
		case nil:
			return 0
		}
		return 1
	}
	if n := count(e.Fields["a"]); n > 5000 || n < 1000 {
		t.Errorf("%d values, want at most the budget of 5000 (and not far below)", n)
	}
}
