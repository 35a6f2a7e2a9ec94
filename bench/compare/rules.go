package main

import (
	"fmt"
	"strings"
)

// benchField is one extraction rule of the bench: a CSS selector and, if
// set, the attribute to read instead of the element's text.
type benchField struct {
	Name, Selector, Attr string
}

// benchFields are the bench's rules, the same as sluice's built-in
// default rules. sluice gets them as a rules file (rulesYAML), Colly as
// its OnHTML selectors; the floor cuts the same values out by substring.
var benchFields = []benchField{
	{Name: "name", Selector: "h1"},
	{Name: "price", Selector: ".price"},
	{Name: "sku", Selector: "meta[itemprop=sku]", Attr: "content"},
}

// rulesYAML renders benchFields as a sluice rules file (--rules).
func rulesYAML() string {
	var b strings.Builder
	b.WriteString("- domain: \"*\"\n  fields:\n")
	for _, f := range benchFields {
		spec := f.Selector
		if f.Attr != "" {
			spec += " @" + f.Attr
		}
		fmt.Fprintf(&b, "    %s: %q\n", f.Name, spec)
	}
	return b.String()
}
