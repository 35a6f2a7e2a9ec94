package sluice_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"

	"github.com/PuerkitoBio/goquery"

	"github.com/sluicehq/sluice"
)

// A Go program scrapes a listing page with its own extraction function:
// every product card becomes an object in the "products" field.
func Example() {
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<html><body><h1>Widgets</h1>
<div class="card"><a href="/p/1">Blue widget</a><span class="price">$19.99</span></div>
<div class="card"><a href="/p/2">Red widget</a><span class="price">$24.50</span></div>
</body></html>`)
	}))
	defer site.Close()

	opts := sluice.DefaultOptions()
	opts.Policy.AllowLoopback = true // the test site is on 127.0.0.1; refused by default
	opts.Observe.Progress = "off"

	var (
		mu    sync.Mutex
		lines []string
	)
	sum, err := sluice.Run(context.Background(), sluice.Config{
		URLs:    []string{site.URL + "/widgets", site.URL + "/gadgets"},
		Direct:  true, // the example site is local; a real job lists Proxies
		Options: opts,
		Extract: func(p *sluice.Page) (map[string]any, error) {
			var products []any
			p.Doc.Find(".card").Each(func(_ int, card *goquery.Selection) {
				href, _ := card.Find("a").Attr("href")
				products = append(products, map[string]any{
					"name": card.Find("a").Text(),
					"url":  href,
				})
			})
			return map[string]any{"title": p.Doc.Find("h1").Text(), "status": p.Status, "products": products}, nil
		},
		OnResult: func(r *sluice.Result) {
			mu.Lock()
			defer mu.Unlock()
			path := strings.TrimPrefix(r.URL, site.URL)
			lines = append(lines, fmt.Sprintf("%s %v %v %v (%s)", path, r.Fields["title"], r.Fields["status"], r.Fields["products"], r.Parser.Rules))
		},
	})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	fmt.Printf("%d read, %d ok\n", sum.Read, sum.OK)
	// Output:
	// /gadgets Widgets 200 [map[name:Blue widget url:/p/1] map[name:Red widget url:/p/2]] (go)
	// /widgets Widgets 200 [map[name:Blue widget url:/p/1] map[name:Red widget url:/p/2]] (go)
	// 2 read, 2 ok
}
