package waterfall

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"time"

	"github.com/sluicehq/sluice/record"
)

//go:embed page.html
var pageHTML string

//go:embed waterfall.js
var pageJS string

//go:embed waterfall.css
var pageCSS string

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"ms":  func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) },
	"pct": func(f float64) string { return fmt.Sprintf("%.1f%%", f*100) },
	"bytes": func(n int64) string {
		switch {
		case n >= 1<<30:
			return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
		case n >= 1<<20:
			return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
		case n >= 1<<10:
			return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
		}
		return fmt.Sprintf("%d B", n)
	},
}).Parse(pageHTML))

// Options configure Render.
type Options struct {
	// Title heads the page. "" means "sluice request waterfall".
	Title string
	// Source names where the spans came from (a file name), shown under
	// the title.
	Source string
	// MaxSpans caps the bars drawn; the earliest spans by start are kept
	// and the page says how many were left out. 0 means 20,000.
	MaxSpans int
}

// view is what the template sees.
type view struct {
	Title, Source string
	Spans         int
	Omitted       int
	Began         string
	Duration      string
	Proxies       []Summary
	Domains       []Summary
	Slow          map[string]bool // proxies whose median is over twice the overall
	Failing       map[string]bool // proxies whose success rate is under 95%
	Data          template.JS
	Script        template.JS
	Style         template.CSS
}

// Render writes the waterfall page for spans to w. The page needs no
// network: its script, style and data are inline.
func Render(w io.Writer, spans []record.Span, opt Options) error {
	if opt.Title == "" {
		opt.Title = "sluice request waterfall"
	}
	if opt.MaxSpans == 0 {
		opt.MaxSpans = 20000
	}
	spans = append([]record.Span(nil), spans...)
	sort.SliceStable(spans, func(i, j int) bool { return begin(spans[i]).Before(begin(spans[j])) })
	omitted := 0
	if len(spans) > opt.MaxSpans {
		omitted = len(spans) - opt.MaxSpans
		spans = spans[:opt.MaxSpans]
	}
	data, t0, t1 := encode(spans)
	v := view{
		Title: opt.Title, Source: opt.Source, Spans: len(spans), Omitted: omitted,
		Proxies: ByProxy(spans), Domains: ByDomain(spans),
		Slow: map[string]bool{}, Failing: map[string]bool{},
		Data: template.JS(data), Script: template.JS(pageJS), Style: template.CSS(pageCSS),
	}
	if len(spans) > 0 {
		v.Began = t0.UTC().Format(time.RFC3339Nano)
		v.Duration = t1.Sub(t0).Round(time.Millisecond).String()
	}
	if all := v.Proxies[len(v.Proxies)-1]; len(v.Proxies) > 2 {
		for _, p := range v.Proxies[:len(v.Proxies)-1] {
			v.Slow[p.Key] = p.Median > 2*all.Median
			v.Failing[p.Key] = p.SuccessRate() < 0.95
		}
	}
	if len(v.Domains) <= 2 {
		v.Domains = nil // one domain: the total says it all
	}
	return page.Execute(w, v)
}

// begin is where a span's bar starts: its token wait, or its start.
func begin(sp record.Span) time.Time {
	if !sp.WaitStart.IsZero() {
		return sp.WaitStart
	}
	return sp.Start
}

// jsSpan is one span as the page's script reads it. T holds the phase
// times in milliseconds from the first time of the trace, null when the
// phase did not happen: enqueued, wait start, wait end, start, DNS start,
// DNS done, connect start, connect done, TLS start, TLS done, first byte,
// end.
type jsSpan struct {
	P int        `json:"p"` // index into proxies
	D int        `json:"d"` // index into domains
	A int        `json:"a"`
	S int        `json:"s"`
	B int64      `json:"b"`
	E string     `json:"e,omitempty"`
	U string     `json:"u"`
	R bool       `json:"r,omitempty"` // connection reused
	L bool       `json:"l,omitempty"` // the lease ran late
	H bool       `json:"h,omitempty"` // a hedge of a late attempt
	Q bool       `json:"q,omitempty"` // the proxy was on probation
	C int        `json:"c,omitempty"` // the proxy's cap when leased
	T []*float64 `json:"t"`
}

type jsData struct {
	Began   string   `json:"began"`
	Proxies []string `json:"proxies"`
	Domains []string `json:"domains"`
	Spans   []jsSpan `json:"spans"`
}

// encode turns spans into the page's JSON data; json.Marshal escapes <, >
// and & so the data cannot end the script element it sits in.
func encode(spans []record.Span) (string, time.Time, time.Time) {
	var t0, t1 time.Time
	for _, sp := range spans {
		for _, t := range times(sp) {
			if t == nil {
				continue
			}
			if t0.IsZero() || t.Before(t0) {
				t0 = *t
			}
			if t.After(t1) {
				t1 = *t
			}
		}
	}
	d := jsData{Began: t0.UTC().Format(time.RFC3339Nano), Spans: make([]jsSpan, 0, len(spans))}
	proxies, domains := map[string]int{}, map[string]int{}
	index := func(m map[string]int, list *[]string, k string) int {
		i, ok := m[k]
		if !ok {
			i = len(*list)
			m[k] = i
			*list = append(*list, k)
		}
		return i
	}
	ids := make([]string, 0)
	for _, sp := range spans {
		if _, ok := proxies[sp.Proxy]; !ok {
			proxies[sp.Proxy] = -1
			ids = append(ids, sp.Proxy)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return naturalLess(ids[i], ids[j]) })
	clear(proxies)
	for _, id := range ids {
		index(proxies, &d.Proxies, id)
	}
	for _, sp := range spans {
		js := jsSpan{P: proxies[sp.Proxy], D: index(domains, &d.Domains, sp.Domain), A: sp.Attempt, S: sp.Status,
			B: sp.Bytes, E: sp.Error, U: sp.URL, R: sp.Reused,
			L: sp.Late, H: sp.Hedge, Q: sp.Probation, C: sp.Cap}
		for _, t := range times(sp) {
			if t == nil {
				js.T = append(js.T, nil)
				continue
			}
			ms := math.Round(float64(t.Sub(t0))/1e3) / 1e3 // microsecond precision
			js.T = append(js.T, &ms)
		}
		d.Spans = append(d.Spans, js)
	}
	if d.Proxies == nil {
		d.Proxies = []string{}
	}
	if d.Domains == nil {
		d.Domains = []string{}
	}
	b, err := json.Marshal(d)
	if err != nil {
		// Only strings, numbers and slices: Marshal cannot fail.
		panic(fmt.Sprintf("waterfall: encode: %v", err))
	}
	return string(b), t0, t1
}

// times lists a span's phase times in the order jsSpan.T documents.
func times(sp record.Span) []*time.Time {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	return []*time.Time{opt(sp.Enqueued), opt(sp.WaitStart), opt(sp.WaitEnd), opt(sp.Start),
		sp.DNSStart, sp.DNSDone, sp.ConnectStart, sp.ConnectDone, sp.TLSStart, sp.TLSDone, sp.FirstByte, opt(sp.End)}
}
