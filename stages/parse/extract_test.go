package parse

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/sluicehq/sluice/failure"
)

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func sp(s string) any { return s }

// fieldsString renders Fields deterministically for comparison messages.
func fieldsString(m map[string]any) string {
	var b strings.Builder
	b.WriteString("{")
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortStrings(keys)
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		if m[k] == nil {
			fmt.Fprintf(&b, "%s: null", k)
		} else {
			fmt.Fprintf(&b, "%s: %#v", k, m[k])
		}
	}
	b.WriteString("}")
	return b.String()
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestExtractFields(t *testing.T) {
	rules := mustParse(t, `
- domain: "*"
  fields:
    name: "h1"
    price: ".price"
    sku: "meta[itemprop=sku] @content"
    image: "img.main @SRC"
    missing_attr: "h1 @data-nope"
    nested: "div.desc"
    group: "h3, h2"
    svglink: "svg a @xlink:href"
`)
	page := mustURL(t, "https://shop.example.com/p/1")
	tests := []struct {
		name string
		html string
		want map[string]any
	}{
		{
			name: "all present",
			html: `<html><head><meta itemprop="sku" content=" SKU-1 "></head><body>
				<h1>  Blue
				Widget </h1><span class="price">
				  $9.99 </span><img class="main" src="/w.png">
				<div class="desc"> Very <b>good</b> widget</div><h2>sub</h2><h3>third</h3>
				<svg><a xlink:href="/svg-target"><text>x</text></a></svg></body></html>`,
			want: map[string]any{
				"name": sp("Blue\n\t\t\t\tWidget"), "price": sp("$9.99"), "sku": sp("SKU-1"),
				"image": sp("/w.png"), "missing_attr": nil, "nested": sp("Very good widget"),
				"group": sp("sub"), "svglink": sp("/svg-target"),
			},
		},
		{
			name: "first match wins",
			html: `<h1>first</h1><h1>second</h1><p class="price">1</p><p class="price">2</p>
				<meta itemprop=sku><meta itemprop=sku content=later>`,
			want: map[string]any{
				"name": sp("first"), "price": sp("1"), "sku": nil, // first match lacks the attribute
				"image": nil, "missing_attr": nil, "nested": nil, "group": nil, "svglink": nil,
			},
		},
		{
			name: "absent is null, empty is empty string",
			html: `<h1>   </h1><div class="desc"></div><img class=main src="">`,
			want: map[string]any{
				"name": sp(""), "price": nil, "sku": nil, "image": sp(""),
				"missing_attr": nil, "nested": sp(""), "group": nil, "svglink": nil,
			},
		},
		{
			name: "entities and nbsp trimmed",
			html: `<h1>&nbsp; Caf&eacute; &amp; co&#x20;&nbsp;</h1>`,
			want: map[string]any{
				"name": sp("Café & co"), "price": nil, "sku": nil, "image": nil,
				"missing_attr": nil, "nested": nil, "group": nil, "svglink": nil,
			},
		},
		{
			name: "empty body",
			html: ``,
			want: map[string]any{
				"name": nil, "price": nil, "sku": nil, "image": nil,
				"missing_attr": nil, "nested": nil, "group": nil, "svglink": nil,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := rules.Extract(page, "text/html; charset=utf-8", []byte(tc.html), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Rule != "*" {
				t.Errorf("Rule = %q, want *", got.Rule)
			}
			if !reflect.DeepEqual(got.Fields, tc.want) {
				t.Errorf("Fields =\n  %s\nwant\n  %s", fieldsString(got.Fields), fieldsString(tc.want))
			}
		})
	}
}

func TestExtractDefaultRules(t *testing.T) {
	got, err := DefaultRules().Extract(mustURL(t, "http://x.test/"), "",
		[]byte(`<meta itemprop="sku" content="A1"><h1>Name</h1><b class="price">3</b>`), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"name": sp("Name"), "price": sp("3"), "sku": sp("A1")}
	if !reflect.DeepEqual(got.Fields, want) || got.Rule != "*" {
		t.Errorf("got %s rule %q", fieldsString(got.Fields), got.Rule)
	}
}

func TestExtractDomainMatching(t *testing.T) {
	rules := mustParse(t, `
- domain: "shop.example.com"
  fields: {which: "#exact"}
- domain: "*.Example.com"
  fields: {which: "#sub"}
- domain: "example.com"
  fields: {which: "#apex"}
- domain: "10.0.0.7"
  fields: {which: "#ip"}
- domain: "*.example.com"
  fields: {which: "#never"}
`)
	body := []byte(`<p id=exact>exact</p><p id=sub>sub</p><p id=apex>apex</p><p id=ip>ip</p><p id=never>never</p>`)
	tests := []struct {
		url, rule, which string
	}{
		{"https://shop.example.com/x", "shop.example.com", "exact"},
		{"https://SHOP.Example.COM:8443/x", "shop.example.com", "exact"},
		{"https://shop.example.com./x", "shop.example.com", "exact"},
		{"https://a.example.com/", "*.example.com", "sub"},
		{"https://a.b.example.com/", "*.example.com", "sub"},
		{"https://example.com/", "example.com", "apex"},
		{"http://10.0.0.7:8080/", "10.0.0.7", "ip"},
		{"http://10.0.0.8/", "", ""},
		{"https://notexample.com/", "", ""},
		{"https://example.org/", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			got, err := rules.Extract(mustURL(t, tc.url), "", body, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Rule != tc.rule {
				t.Errorf("Rule = %q, want %q", got.Rule, tc.rule)
			}
			if tc.rule == "" {
				if got.Fields == nil || len(got.Fields) != 0 {
					t.Errorf("no rule matched: Fields = %v, want empty non-nil map", got.Fields)
				}
				return
			}
			if v := got.Fields["which"]; v == nil || v != tc.which {
				t.Errorf("which = %s, want %q", fieldsString(got.Fields), tc.which)
			}
		})
	}

	t.Run("catch-all after specific", func(t *testing.T) {
		r := mustParse(t, "- domain: a.com\n  fields: {x: '#a'}\n- domain: '*'\n  fields: {x: '#all'}\n")
		for host, want := range map[string]string{"a.com": "a.com", "b.com": "*"} {
			got, err := r.Extract(mustURL(t, "http://"+host+"/"), "", body, Limits{})
			if err != nil || got.Rule != want {
				t.Errorf("%s: rule %q err %v, want %q", host, got.Rule, err, want)
			}
		}
	})
	t.Run("nil page URL", func(t *testing.T) {
		got, err := rules.Extract(nil, "", body, Limits{})
		if err != nil || got.Rule != "" || len(got.Fields) != 0 {
			t.Errorf("got %+v, %v", got, err)
		}
		got, err = DefaultRules().Extract(nil, "", body, Limits{})
		if err != nil || got.Rule != "*" {
			t.Errorf("default rules with nil URL: got %+v, %v", got, err)
		}
	})
}

func TestExtractLinks(t *testing.T) {
	page := "https://example.com/dir/page.html?q=1#top"
	tests := []struct {
		name string
		html string
		max  int
		want []string
	}{
		{
			name: "relative and absolute",
			html: `<a href="other.html">1</a><a href="/root">2</a><a href="../up">3</a>
				<a href="//cdn.example.net/x">4</a><a href="http://abs.test/p?x=1">5</a>
				<a href="?q=2">6</a><a href="">7</a>`,
			want: []string{
				"https://example.com/dir/other.html", "https://example.com/root", "https://example.com/up",
				"https://cdn.example.net/x", "http://abs.test/p?x=1", "https://example.com/dir/page.html?q=2",
				"https://example.com/dir/page.html?q=1",
			},
		},
		{
			name: "fragments removed and deduplicated in page order",
			html: `<a href="#a">self</a><a href="b#x">b</a><a href="b#y">b again</a><a href="#b">self again</a><a href="b">b plain</a>`,
			want: []string{"https://example.com/dir/page.html?q=1", "https://example.com/dir/b"},
		},
		{
			name: "non-http schemes dropped",
			html: `<a href="javascript:void(0)">j</a><a href="JavaScript:alert(1)">J</a><a href="mailto:a@b.c">m</a>
				<a href="tel:+1">t</a><a href="ftp://f.test/">f</a><a href="data:text/html,hi">d</a>
				<a href="HTTPS://Upper.Example.COM/Path">u</a><a href="http:///nohost">n</a>`,
			want: []string{"https://upper.example.com/Path"},
		},
		{
			name: "base href",
			html: `<head><base href="/base/sub/"><base href="https://ignored.test/"></head>
				<a href="x">x</a><a href="/abs">abs</a><a href="#f">frag</a>`,
			want: []string{"https://example.com/base/sub/x", "https://example.com/abs", "https://example.com/base/sub/"},
		},
		{
			name: "absolute base on other host",
			html: `<a href="early">e</a><base href="http://mirror.test/m/"><a href="late">l</a>`,
			want: []string{"http://mirror.test/m/early", "http://mirror.test/m/late"},
		},
		{
			name: "javascript base ignored",
			html: `<base href="javascript:alert(1)"><a href="x">x</a>`,
			want: []string{"https://example.com/dir/x"},
		},
		{
			name: "base without href ignored",
			html: `<base target="_blank"><base href="/b/"><a href="x">x</a>`,
			want: []string{"https://example.com/b/x"},
		},
		{
			name: "whitespace and newlines in href",
			html: "<a href=\"  /a\nb\tc  \">x</a><a href=\"\n/a\r\nbc\">dup</a>",
			want: []string{"https://example.com/abc"},
		},
		{
			name: "anchors without href and other elements ignored",
			html: `<a name="x">x</a><link href="/style.css"><area href="/area"><img src="/i.png">`,
			want: []string{},
		},
		{
			name: "unparsable href skipped",
			html: `<a href="http://[::1">bad</a><a href="%zz">bad escape</a><a href="ok">ok</a>`,
			want: []string{"https://example.com/dir/ok"},
		},
		{
			name: "cap",
			html: `<a href="/1">1</a><a href="/1#x">dup</a><a href="/2">2</a><a href="/3">3</a>`,
			max:  2,
			want: []string{"https://example.com/1", "https://example.com/2"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DefaultRules().Extract(mustURL(t, page), "text/html", []byte(tc.html), Limits{MaxLinks: tc.max})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Links, tc.want) {
				t.Errorf("Links =\n  %q\nwant\n  %q", got.Links, tc.want)
			}
		})
	}

	t.Run("default cap", func(t *testing.T) {
		var b strings.Builder
		for i := 0; i < DefaultMaxLinks+50; i++ {
			fmt.Fprintf(&b, `<a href="/p%d">%d</a>`, i, i)
		}
		got, err := DefaultRules().Extract(mustURL(t, page), "", []byte(b.String()), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Links) != DefaultMaxLinks || got.Links[DefaultMaxLinks-1] != fmt.Sprintf("https://example.com/p%d", DefaultMaxLinks-1) {
			t.Errorf("got %d links, last %q", len(got.Links), got.Links[len(got.Links)-1])
		}
	})
	t.Run("nil page URL keeps absolute links only", func(t *testing.T) {
		got, err := DefaultRules().Extract(nil, "", []byte(`<a href="/rel">r</a><a href="https://a.test/x#f">a</a>`), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"https://a.test/x"}; !reflect.DeepEqual(got.Links, want) {
			t.Errorf("Links = %q, want %q", got.Links, want)
		}
	})
}

func TestExtractCharset(t *testing.T) {
	rules := DefaultRules()
	page := mustURL(t, "http://example.fr/")
	latin1 := []byte("<html><head><title>t</title></head><body><h1>Caf\xe9 cr\xe8me \xbd</h1>" +
		"<a href=\"/caf\xe9?q=\xe9\">l</a></body></html>")
	latin1Meta := []byte("<html><head><meta charset=\"iso-8859-1\"></head><body><h1>Caf\xe9 cr\xe8me \xbd</h1>" +
		"<a href=\"/caf\xe9?q=\xe9\">l</a></body></html>")
	latin1HTTPEquiv := []byte("<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=windows-1252\">" +
		"</head><body><h1>Caf\xe9 cr\xe8me \xbd</h1><a href=\"/caf\xe9?q=\xe9\">l</a></body></html>")
	want := "Café crème ½"
	wantLink := "http://example.fr/caf%C3%A9?q=é"
	tests := []struct {
		name, contentType string
		body              []byte
		wantName          string
		wantLink          string
	}{
		{"latin1 in content type", "text/html; charset=ISO-8859-1", latin1, want, wantLink},
		{"latin1 in meta charset", "text/html", latin1Meta, want, wantLink},
		{"latin1 in http-equiv", "", latin1HTTPEquiv, want, wantLink},
		{"undeclared latin1 sniffed", "", latin1, want, wantLink},
		{"utf8 declared", "text/html; charset=utf-8", []byte("<h1>Caf\u00e9</h1>"), "Café", ""},
		{"utf8 with BOM overrides header", "text/html; charset=iso-8859-1", []byte("\xef\xbb\xbf<h1>Caf\u00e9</h1>"), "Café", ""},
		{"latin1 wrongly declared utf-8", "text/html; charset=utf-8", latin1, "Caf\uFFFD cr\uFFFDme \uFFFD", "http://example.fr/caf%EF%BF%BD?q=\uFFFD"},
		{"unknown charset label", "text/html; charset=x-klingon", []byte("<h1>ok</h1>"), "ok", ""},
		{"garbage content type", ";;;=", []byte("<h1>ok</h1>"), "ok", ""},
		{"utf-16 declared", "text/html; charset=utf-16le", []byte("<\x00h\x001\x00>\x00\xe9\x00<\x00/\x00h\x001\x00>\x00"), "é", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := rules.Extract(page, tc.contentType, tc.body, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			name := got.Fields["name"]
			if name == nil || name != tc.wantName {
				t.Errorf("name = %s, want %q", fieldsString(got.Fields), tc.wantName)
			}
			if tc.wantLink != "" && (len(got.Links) != 1 || got.Links[0] != tc.wantLink) {
				t.Errorf("Links = %q, want [%q]", got.Links, tc.wantLink)
			}
			assertValidUTF8(t, got)
		})
	}
}

func assertValidUTF8(t testing.TB, e Extraction) {
	t.Helper()
	for k, v := range e.Fields {
		if !utf8.ValidString(k) {
			t.Errorf("field name %q is not valid UTF-8", k)
		}
		if s, ok := v.(string); ok && !utf8.ValidString(s) {
			t.Errorf("field %s = %q is not valid UTF-8", k, s)
		}
	}
	for _, l := range e.Links {
		if !utf8.ValidString(l) {
			t.Errorf("link %q is not valid UTF-8", l)
		}
	}
}

func TestExtractInvalidUTF8(t *testing.T) {
	bodies := map[string][]byte{
		"stray continuation":      []byte("<h1>a\x80b\xbf</h1><a href=\"/x\xff\">x</a>"),
		"truncated sequence":      []byte("<h1>\xe2\x82</h1><span class=price>\xf0\x9f\x98</span>"),
		"overlong and surrogates": []byte("<h1>\xc0\xaf\xed\xa0\x80</h1><meta itemprop=sku content=\"\xfe\xfe\">"),
		"nul and numeric refs":    []byte("<h1>a\x00b&#0;&#xD800;&#x110000;</h1>"),
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			for _, ct := range []string{"", "text/html; charset=utf-8"} {
				got, err := DefaultRules().Extract(mustURL(t, "http://x.test/"), ct, body, Limits{})
				if err != nil {
					t.Fatal(err)
				}
				assertValidUTF8(t, got)
				if got.Fields["name"] == nil {
					t.Errorf("name missing")
				}
			}
		})
	}
}

func TestExtractFieldTruncation(t *testing.T) {
	rules := mustParse(t, "- domain: '*'\n  fields:\n    t: p\n    a: 'p @title'\n")
	tests := []struct {
		name, text string
		max        int
		want       string
	}{
		{"ascii", "abcdefghij", 4, "abcd"},
		{"fits", "abcd", 4, "abcd"},
		{"multibyte boundary", "ééé", 5, "éé"}, // é is 2 bytes: 5 bytes would split the third
		{"euro boundary", "a€b", 3, "a"},
		{"leading space not counted", "     abcdef", 3, "abc"},
		{"trailing space after cut trimmed", "ab   cd", 4, "ab"},
		{"long text spread over nodes", strings.Repeat("<b>xy</b> ", 20000), 10, "xy xy xy x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := fmt.Sprintf("<p title=%q>%s</p>", tc.text, tc.text)
			got, err := rules.Extract(nil, "", []byte(body), Limits{MaxFieldBytes: tc.max})
			if err != nil {
				t.Fatal(err)
			}
			if v := got.Fields["t"]; v == nil || v != tc.want {
				t.Errorf("text = %s, want %q", fieldsString(got.Fields), tc.want)
			}
			if !strings.Contains(tc.text, "<") {
				if v := got.Fields["a"]; v == nil || v != tc.want {
					t.Errorf("attr = %s, want %q", fieldsString(got.Fields), tc.want)
				}
			}
		})
	}
	t.Run("default 64KiB", func(t *testing.T) {
		body := "<p>" + strings.Repeat("x", DefaultMaxFieldBytes+100) + "</p>"
		got, err := rules.Extract(nil, "", []byte(body), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if v := got.Fields["t"]; v == nil || len(v.(string)) != DefaultMaxFieldBytes {
			t.Errorf("len = %d, want %d", len(got.Fields["t"].(string)), DefaultMaxFieldBytes)
		}
	})
}

func TestExtractNodeLimit(t *testing.T) {
	paras := func(k int) string { return strings.Repeat("<p></p>", k) }
	tests := []struct {
		name    string
		html    string
		max     int
		wantErr bool
	}{
		// html, head and body are implied: k paragraphs make k+3 elements.
		{"at limit", paras(100), 103, false},
		{"one over (exact count on tree)", paras(100), 102, true},
		{"explicit tags at limit", "<html><head></head><body>" + paras(100), 103, false},
		{"explicit tags over (caught by start-tag precheck)", "<html><head></head><body>" + paras(100), 102, true},
		{"text does not count", "<p>" + strings.Repeat("text &amp; ", 1000) + "<!-- c -->", 4, false},
		{"default limit ok", paras(1000), 0, false},
		{"default limit exceeded", paras(DefaultMaxNodes), 0, true},
		{"formatting-element amplification", amplification(200, 3000), 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DefaultRules().Extract(nil, "", []byte(tc.html), Limits{MaxNodes: tc.max})
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			var pe *failure.Error
			if !errors.As(err, &pe) || pe.Class != failure.Parse || !errors.Is(err, failure.ErrPermanent) {
				t.Fatalf("err = %#v, want a permanent *failure.Error of class %q", err, failure.Parse)
			}
			if !errors.Is(err, ErrTooManyNodes) {
				t.Errorf("err = %v, want ErrTooManyNodes", err)
			}
			if !strings.HasPrefix(err.Error(), "parse: too many element nodes") {
				t.Errorf("message %q", err.Error())
			}
		})
	}
}

// amplification builds a small document that makes the HTML parser
// re-create `depth` unclosed formatting elements for every one of `reps`
// paragraphs: about depth*reps element nodes from a few bytes per rep.
func amplification(depth, reps int) string {
	var b strings.Builder
	b.WriteString("<p>")
	for i := 0; i < depth; i++ {
		fmt.Fprintf(&b, "<b id=%d>", i)
	}
	b.WriteString(strings.Repeat("<p>x", reps))
	return b.String()
}

func TestPrecheckCatchesAmplificationBeforeParsing(t *testing.T) {
	doc := []byte(amplification(200, 3000))
	if err := precheckNodes(doc, DefaultMaxNodes); !errors.Is(err, ErrTooManyNodes) {
		t.Fatalf("precheck err = %v, want ErrTooManyNodes", err)
	}
	// An ordinary well-formed page is far below its estimate's threshold.
	if err := precheckNodes([]byte(productPage(60)), 2000); err != nil {
		t.Fatalf("precheck rejected an ordinary page: %v", err)
	}
}

func TestExtractParseErrors(t *testing.T) {
	deep := strings.Repeat("<div>", 600) // x/net/html refuses more than 512 open elements
	_, err := DefaultRules().Extract(nil, "", []byte(deep), Limits{})
	var pe *failure.Error
	if !errors.As(err, &pe) || pe.Class != failure.Parse || pe.Err == nil {
		t.Fatalf("err = %v, want parse-class *failure.Error", err)
	}
	if errors.Is(err, ErrTooManyNodes) {
		t.Errorf("deep nesting reported as too many nodes")
	}
}

func TestExtractNilRules(t *testing.T) {
	var r *Rules
	got, err := r.Extract(mustURL(t, "http://a.test/"), "", []byte(`<h1>x</h1><a href="/y">y</a>`), Limits{})
	if err != nil || got.Rule != "" || got.Fields == nil || len(got.Fields) != 0 || len(got.Links) != 1 {
		t.Errorf("got %+v, %v", got, err)
	}
}

// TestExtractConcurrent shares one Rules between goroutines; run with -race.
func TestExtractConcurrent(t *testing.T) {
	rules := mustParse(t, defaultRulesYAML)
	body := []byte(productPage(40))
	page := mustURL(t, "https://shop.example.com/item/7")
	want, err := rules.Extract(page, "text/html; charset=utf-8", body, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				got, err := rules.Extract(page, "text/html; charset=utf-8", body, Limits{})
				if err != nil {
					errs <- err
					return
				}
				if !reflect.DeepEqual(got, want) {
					errs <- fmt.Errorf("concurrent result differs")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
