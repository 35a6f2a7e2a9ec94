package parse

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/PuerkitoBio/goquery"
)

// Page is what a Func receives: one fetched page, parsed once.
type Page struct {
	// URL is the page's final URL (after redirects); nil when unknown.
	URL    *url.URL
	Status int
	Header http.Header
	// Doc is the parsed page. It belongs to this call only: keep values
	// taken from it, not the document.
	Doc *goquery.Document
}

// Func is extraction written in Go, in the way of Colly's OnHTML: it
// returns the record's fields (any JSON-encodable values; nil: none). An
// error becomes the record's error, of class parse. It is called from
// several goroutines at once, one page each.
type Func func(p *Page) (map[string]any, error)

// FuncRules returns a rule set whose fields come from fn for every page,
// instead of YAML rules. name and version are what the Results' parser
// object reports (version "" means "func"); change version when fn's
// output changes, as a rules file's hash does. Structured data and links
// are collected as for YAML rules.
func FuncRules(name, version string, fn Func) (*Rules, error) {
	if fn == nil {
		return nil, errors.New("parse: FuncRules needs a function")
	}
	if version == "" {
		version = "func"
	}
	return &Rules{name: name, version: version, fn: fn}, nil
}
