package parse

import (
	"strings"
	"testing"
)

// precheckDocs are documents near the precheck's thresholds, and some
// where bytes look like tags that the tokenizer does not count.
func precheckDocs() []string {
	return []string{
		"",
		"<",
		"<b",
		"text only",
		"<p>" + strings.Repeat("<b>x", 40),
		amplification(20, 30),
		amplification(200, 3000),
		strings.Repeat("<p></p>", 120),
		"<html><head></head><body>" + strings.Repeat("<p></p>", 100),
		"<script>" + strings.Repeat("<b>", 300) + "</script>" + strings.Repeat("<i>x", 10),
		"<!-- " + strings.Repeat("<a>", 300) + " -->" + strings.Repeat("<p>y", 50),
		`<a title="<b><b><b>">` + strings.Repeat("<B ID=1>t", 60) + strings.Repeat("</b>", 60),
		"<svg><![CDATA[" + strings.Repeat("<b>", 50) + "]]></svg>" + strings.Repeat("<u>z", 40),
		"<plaintext>" + strings.Repeat("<b>", 100),
		productPage(40),
	}
}

// TestPrecheckCannotFireIsSafe: whenever the byte scan says the precheck
// cannot fire, the tokenizing precheck indeed passes, at every limit.
func TestPrecheckCannotFireIsSafe(t *testing.T) {
	for i, doc := range precheckDocs() {
		for _, max := range []int{1, 2, 5, 10, 50, 100, 102, 103, 200, 1000, 5000, 50000, DefaultMaxNodes} {
			if !precheckCannotFire([]byte(doc), max) {
				continue
			}
			if err := precheckTokens([]byte(doc), max); err != nil {
				t.Errorf("doc %d (%.40q), max %d: the scan says the precheck cannot fire, and it does: %v", i, doc, max, err)
			}
		}
	}
}

// TestPrecheckCannotFireSkipsOrdinaryPages: an ordinary page is never
// tokenized by the precheck; hostile ones are.
func TestPrecheckCannotFireSkipsOrdinaryPages(t *testing.T) {
	if !precheckCannotFire([]byte(productPage(60)), DefaultMaxNodes) {
		t.Error("the scan would tokenize an ordinary product page")
	}
	if precheckCannotFire([]byte(amplification(200, 3000)), DefaultMaxNodes) {
		t.Error("the scan passes the amplification document")
	}
	if precheckCannotFire([]byte(strings.Repeat("<p></p>", 100)), 99) {
		t.Error("the scan passes 100 start tags at a limit of 99")
	}
}

// FuzzPrecheckCannotFire checks the scan's promise on arbitrary input.
func FuzzPrecheckCannotFire(f *testing.F) {
	for _, d := range precheckDocs() {
		f.Add(d, 100)
	}
	f.Fuzz(func(t *testing.T, doc string, max int) {
		if max < 1 || max > DefaultMaxNodes {
			return
		}
		if precheckCannotFire([]byte(doc), max) {
			if err := precheckTokens([]byte(doc), max); err != nil {
				t.Fatalf("max %d: the scan says the precheck cannot fire, and it does: %v", max, err)
			}
		}
	})
}

// BenchmarkPrecheck is the node-count precheck alone on the compare
// testbed's 60 KB page (a few tags and one long text) and on the
// benchmark product page: the byte scan, and the tokenizer it spares.
func BenchmarkPrecheck(b *testing.B) {
	for _, bc := range []struct {
		name string
		doc  []byte
	}{{"filler-60KB", []byte(fillerPage())}, {"product", []byte(productPage(40))}} {
		b.Run(bc.name+"/scan", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.doc)))
			for b.Loop() {
				if err := precheckNodes(bc.doc, DefaultMaxNodes); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/tokens", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.doc)))
			for b.Loop() {
				if err := precheckTokens(bc.doc, DefaultMaxNodes); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// fillerPage is shaped like the compare testbed's product page
// (testbed.Site): a product block, a few related links, then lorem
// filler in one paragraph up to 61,440 bytes.
func fillerPage() string {
	var b strings.Builder
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Product 42 Gizmo</title>\n</head>\n<body>\n")
	b.WriteString("<div class=\"product\" data-id=\"42\">\n<h1>Product 42 Gizmo</h1>\n<span class=\"price\">$330.11</span>\n<meta itemprop=\"sku\" content=\"SKU-42\">\n</div>\n<ul class=\"related\">\n")
	for i := 43; i < 48; i++ {
		b.WriteString("<li><a href=\"/product/" + strings.Repeat("9", 2) + "\">Product Gizmo</a></li>\n")
	}
	b.WriteString("</ul>\n<p class=\"filler\">")
	lorem := "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. "
	for b.Len() < 61440-len("</p>\n</body>\n</html>\n") {
		b.WriteString(lorem)
	}
	s := b.String()[:61440-len("</p>\n</body>\n</html>\n")]
	return s + "</p>\n</body>\n</html>\n"
}

// BenchmarkExtractFiller is Extract on the compare testbed's page shape.
func BenchmarkExtractFiller(b *testing.B) {
	rules := DefaultRules()
	body := []byte(fillerPage())
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		e, err := rules.Extract(nil, "text/html; charset=utf-8", body, Limits{})
		if err != nil || e.Fields["price"] == nil {
			b.Fatalf("extract: %v %+v", err, e)
		}
	}
}
