package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/gocolly/colly/v2"
	"github.com/gocolly/colly/v2/proxy"
)

// runColly is the Colly v2 peer, set up as its documentation shows: an
// async collector, one LimitRule with Parallelism = C, the proxies rotated
// by proxy.RoundRobinProxySwitcher, the bench's selectors in one OnHTML
// callback, every URL Visit-ed and then Wait. SetProxyFunc turns
// keep-alives off in Colly's transport (so that a rotation is a new
// connection); o.KeepAlive turns them back on, with idle pools sized for
// C, to see what that costs.
func runColly(o childOpts) error {
	w, err := newRecordWriter(o.Out)
	if err != nil {
		return err
	}
	c := colly.NewCollector(colly.Async(true))
	c.SetRequestTimeout(60 * time.Second)
	if err := c.Limit(&colly.LimitRule{DomainGlob: "*", Parallelism: o.C}); err != nil {
		return fmt.Errorf("colly limit: %w", err)
	}
	rp, err := proxy.RoundRobinProxySwitcher(o.Proxies...)
	if err != nil {
		return fmt.Errorf("colly proxies: %w", err)
	}
	tr := &http.Transport{MaxIdleConns: o.C + o.C/5 + len(o.Proxies), MaxIdleConnsPerHost: o.C/len(o.Proxies) + o.C/5 + 1, IdleConnTimeout: 90 * time.Second}
	c.WithTransport(tr)
	c.SetProxyFunc(rp) // sets tr.Proxy and tr.DisableKeepAlives = true
	if o.KeepAlive {
		tr.DisableKeepAlives = false
	}
	defer tr.CloseIdleConnections()

	c.OnHTML("html", func(e *colly.HTMLElement) {
		fields := make(map[string]*string, len(benchFields))
		for _, f := range benchFields {
			var v string
			if f.Attr != "" {
				v = e.ChildAttr(f.Selector, f.Attr)
			} else {
				v = e.ChildText(f.Selector)
			}
			fields[f.Name] = &v
		}
		w.write(outRecord{URL: e.Request.URL.String(), Status: e.Response.StatusCode, Fields: fields})
	})
	c.OnError(func(r *colly.Response, err error) {
		w.write(outRecord{URL: r.Request.URL.String(), Status: r.StatusCode, Error: &outError{Class: "colly", Message: err.Error()}})
	})
	for _, u := range o.URLs {
		if err := c.Visit(u); err != nil {
			w.write(outRecord{URL: u, Error: &outError{Class: "visit", Message: err.Error()}})
		}
	}
	c.Wait()
	return w.close()
}
