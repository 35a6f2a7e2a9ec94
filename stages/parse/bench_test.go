package parse

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// productPage renders a realistic product page with `related` related-product
// cards; productPage(40) is about 20 KB.
func productPage(related int) string {
	var b strings.Builder
	b.WriteString(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Blue Widget 3000 – Example Shop</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta itemprop="sku" content="BW-3000">
<link rel="stylesheet" href="/static/site.css"><link rel="canonical" href="https://shop.example.com/p/blue-widget-3000">
<script>window.dataLayer = window.dataLayer || []; function gtag(){dataLayer.push(arguments);} gtag('js', new Date());</script>
<style>.price{font-weight:bold}.card{display:inline-block;width:200px}</style>
</head><body>
<header><nav><ul>`)
	for i := 0; i < 15; i++ {
		fmt.Fprintf(&b, `<li><a href="/c/category-%d" class="nav-link">Category %d</a></li>`, i, i)
	}
	b.WriteString(`</ul></nav></header>
<main><div class="breadcrumbs"><a href="/">Home</a> › <a href="/c/widgets">Widgets</a> › <span>Blue Widget 3000</span></div>
<article class="product" itemscope itemtype="https://schema.org/Product">
<h1 itemprop="name">
   Blue Widget 3000
</h1>
<div class="gallery"><img class="main" src="/img/bw3000.jpg" alt="Blue Widget"><img src="/img/bw3000-2.jpg" alt=""></div>
<p class="price" itemprop="price"> $19.99 </p>
<div class="description">`)
	for i := 0; i < 6; i++ {
		b.WriteString(`<p>The Blue Widget 3000 is our most popular widget. It is made of <b>recycled</b> materials,
ships in <i>two days</i>, and comes with a <a href="/warranty#terms">lifetime warranty</a>. &nbsp;</p>`)
	}
	b.WriteString(`</div><table class="specs"><tbody>`)
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&b, `<tr><th>Spec %d</th><td>Value %d</td></tr>`, i, i)
	}
	b.WriteString(`</tbody></table></article><section class="related"><h2>Related products</h2>`)
	for i := 0; i < related; i++ {
		fmt.Fprintf(&b, `<div class="card"><a href="/p/widget-%d?ref=related#reviews"><img src="/img/w%d.jpg" alt="Widget %d"></a>
<h3><a href="/p/widget-%d">Widget %d</a></h3><span class="card-price">$%d.99</span>
<p class="blurb">Short description of widget %d: a sturdy, reliable tool for everyday jobs around the house.</p>
<div class="rating" data-score="4.%d">&#9733;&#9733;&#9733;&#9733;&#9734; <small>(%d reviews)</small></div></div>
`, i, i, i, i, i, 10+i, i, i%10, 3*i+7)
	}
	b.WriteString(`</section></main><footer><a href="mailto:help@example.com">Help</a> <a href="javascript:void(0)">Top</a>
<a href="https://twitter.com/exampleshop">Twitter</a></footer></body></html>`)
	return b.String()
}

func BenchmarkExtract(b *testing.B) {
	rules := DefaultRules()
	body := []byte(productPage(40))
	page, _ := url.Parse("https://shop.example.com/p/blue-widget-3000")
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		e, err := rules.Extract(page, "text/html; charset=utf-8", body, Limits{})
		if err != nil || e.Fields["price"] == nil {
			b.Fatalf("extract: %v %+v", err, e)
		}
	}
}

func TestProductPage(t *testing.T) {
	body := productPage(40)
	if n := len(body); n < 18000 || n > 24000 {
		t.Errorf("product page is %d bytes, want ~20 KB", n)
	}
	page, _ := url.Parse("https://shop.example.com/p/blue-widget-3000")
	e, err := DefaultRules().Extract(page, "text/html; charset=utf-8", []byte(body), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"name": "Blue Widget 3000", "price": "$19.99", "sku": "BW-3000"}
	for k, v := range want {
		if e.Fields[k] == nil || e.Fields[k] != v {
			t.Errorf("%s = %s, want %q", k, fieldsString(e.Fields), v)
		}
	}
	// 15 nav + home + widgets + warranty + 40 related (two URLs each,
	// fragment dropped) + twitter; mailto: and javascript: are skipped.
	if got := len(e.Links); got != 15+2+1+2*40+1 {
		t.Errorf("got %d links: %q", got, e.Links)
	}
}

// tenFieldsCSS and tenFieldsXPath extract the same ten fields from
// productPage, by CSS and by XPath.
const tenFieldsCSS = `
- domain: "*"
  fields:
    name: "h1"
    price: ".price"
    sku: "meta[itemprop=sku] @content"
    title: "title"
    image: "img.main @src"
    canonical: "link[rel=canonical] @href"
    breadcrumb: ".breadcrumbs span"
    spec: "table.specs td"
    first_related: ".related .card h3 a"
    rating: ".rating @data-score"
`

const tenFieldsXPath = `
- domain: "*"
  fields:
    name: "//h1"
    price: "//p[@class='price']"
    sku: "//meta[@itemprop='sku']/@content"
    title: "//title"
    image: "//img[@class='main']/@src"
    canonical: "//link[@rel='canonical']/@href"
    breadcrumb: "//div[@class='breadcrumbs']/span"
    spec: "//table[@class='specs']//td"
    first_related: "//section[@class='related']//div[@class='card']//h3/a"
    rating: "//div[@class='rating']/@data-score"
`

var tenFieldsWant = map[string]any{
	"name": "Blue Widget 3000", "price": "$19.99", "sku": "BW-3000", "title": "Blue Widget 3000 – Example Shop",
	"image": "/img/bw3000.jpg", "canonical": "https://shop.example.com/p/blue-widget-3000", "breadcrumb": "Blue Widget 3000",
	"spec": "Value 0", "first_related": "Widget 0", "rating": "4.0",
}

func TestTenFields(t *testing.T) {
	page := mustURL(t, "https://shop.example.com/p/blue-widget-3000")
	for name, yml := range map[string]string{"css": tenFieldsCSS, "xpath": tenFieldsXPath} {
		e, err := mustParse(t, yml).Extract(page, "text/html; charset=utf-8", []byte(productPage(40)), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := canon(t, e.Fields), canon(t, tenFieldsWant); got != want {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
}

func benchmarkFields(b *testing.B, yml string) {
	rules, err := ParseRules("bench", []byte(yml))
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(productPage(40))
	page, _ := url.Parse("https://shop.example.com/p/blue-widget-3000")
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		e, err := rules.Extract(page, "text/html; charset=utf-8", body, Limits{})
		if err != nil || e.Fields["rating"] == nil {
			b.Fatalf("extract: %v %+v", err, e.Fields)
		}
	}
}

// BenchmarkExtract10CSS is a 20 KB product page with ten CSS fields.
func BenchmarkExtract10CSS(b *testing.B) { benchmarkFields(b, tenFieldsCSS) }

// BenchmarkExtract10XPath is the same page and fields by XPath.
func BenchmarkExtract10XPath(b *testing.B) { benchmarkFields(b, tenFieldsXPath) }
