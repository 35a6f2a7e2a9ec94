// Package sluice runs sluice's scraping pipeline from a Go program: the
// same source → fetch → parse → sink stages as `pipeline run` (per-domain
// governor, proxy pool, URL policy, bounded everything, at-least-once
// output), with extraction written in Go instead of, or as well as, YAML
// rules.
//
// An extraction function receives every fetched page, parsed once, as a
// *goquery.Document with the page's URL, status and headers, in the way of
// Colly's OnHTML, and returns the record's fields:
//
//	sum, err := sluice.Run(ctx, sluice.Config{
//		URLs: []string{"https://shop.example.com/p/1"},
//		Extract: func(p *sluice.Page) (map[string]any, error) {
//			return map[string]any{"name": p.Doc.Find("h1").First().Text()}, nil
//		},
//		OnResult: func(r *sluice.Result) { fmt.Println(r.URL, r.Fields["name"]) },
//	})
//
// Everything else (concurrency, rates, timeouts, retries, the URL policy,
// the proxy pool's model and strategy) is the config tree of `pipeline
// run`, documented in docs/config.md, in Config.Options. See
// docs/library.md.
package sluice

import (
	"context"
	"errors"
	"io"
	"reflect"
	"strings"

	"github.com/sluicehq/sluice/app"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/stages/parse"
)

// Page is what an extraction function receives: the page's final URL,
// status, headers and parsed document. The document belongs to the call:
// keep values taken from it, not the document itself.
type Page = parse.Page

// Result is one output record (docs/records.md): the page's fields, links,
// structured data, fetch facts, or its classified error.
type Result = record.Result

// Options is the config tree of `pipeline run` (docs/config.md).
type Options = app.Config

// DefaultOptions returns the config tree with every default filled in:
// what `pipeline run` uses when given no flags.
func DefaultOptions() Options { return app.Defaults() }

// Config is one run.
type Config struct {
	// URLs to scrape, each a bare URL or a JSON URL message
	// ({"url": ..., "key": ..., "session": ..., "meta": {...}}).
	URLs []string
	// Proxies are proxies as lines of a proxies file (a URL such as
	// http://user:password@host:port, or host:port, user:pass@host:port,
	// host:port:user:pass; see docs/proxies.md). Run refuses an empty
	// list unless Direct is set.
	Proxies []string
	// Direct fetches without proxies, from this machine's own address. It
	// must be asked for: a proxy list that failed to load must not expose
	// the caller's address.
	Direct bool
	// Extract, when set, makes every page's fields: it is called on
	// several goroutines at once, one page each. An error becomes the
	// result's error (class parse); a panic, an internal error. When nil,
	// Options.Rules (a rules file) or else the default rules extract.
	Extract func(p *Page) (map[string]any, error)
	// Name and Version name the extraction in every result's parser
	// object; change Version when Extract's output changes, as a rules
	// file's hash does. Defaults: "go" and "func".
	Name, Version string
	// Out, when set, receives every result as a JSON line (the JSONL
	// sink: written in batches, flushed before Run returns).
	Out io.Writer
	// OnResult, when set, is called with every result once it is written,
	// from one goroutine at a time; it must not block for long, as it
	// holds up the sink.
	OnResult func(r *Result)
	// Log receives log lines (JSON); nil discards them.
	Log io.Writer
	// Options are the rest of the settings; the zero value means
	// DefaultOptions(). Its urls, out and proxies settings are replaced
	// by URLs, Out and Proxies.
	Options Options
}

// Summary counts what a run did.
type Summary struct {
	Read    uint64         // inputs read
	Written int            // outputs written: results and dead letters
	OK      int            // results without an error
	Errors  map[string]int // by error class (docs/records.md); "dead_letter" for input that was not understood
}

// Run scrapes cfg.URLs and blocks until every one has its result written,
// or ctx ends: then it stops reading, drains what was read for
// Options.DrainTimeout and aborts the rest. It installs no signal handler.
// Errors from bad settings come before any fetch; a page that fails is a
// result with an error, not an error of Run.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	opts := cfg.Options
	if reflect.ValueOf(opts).IsZero() {
		opts = DefaultOptions()
	}
	switch {
	case len(cfg.Proxies) == 0 && !cfg.Direct:
		return Summary{}, errors.New("sluice: no Proxies: list proxies, or set Direct to fetch from this machine's own address")
	case len(cfg.Proxies) > 0 && cfg.Direct:
		return Summary{}, errors.New("sluice: Proxies and Direct: choose one")
	}
	opts.Direct = cfg.Direct
	e := app.Embedded{
		URLs:    strings.NewReader(strings.Join(cfg.URLs, "\n")),
		Proxies: cfg.Proxies,
		Out:     cfg.Out,
		Log:     cfg.Log,
	}
	for _, u := range cfg.URLs {
		if strings.ContainsAny(u, "\r\n") {
			return Summary{}, errors.New("sluice: a URL contains a line break")
		}
	}
	if cfg.Extract != nil {
		name := cfg.Name
		if name == "" {
			name = "go"
		}
		rules, err := parse.FuncRules(name, cfg.Version, cfg.Extract)
		if err != nil {
			return Summary{}, err
		}
		e.Rules = rules
	}
	if cfg.OnResult != nil {
		e.OnOutput = func(o record.Output) {
			if o.Result != nil {
				cfg.OnResult(o.Result)
			}
		}
	}
	t, err := app.RunEmbedded(ctx, opts, e)
	return Summary{Read: t.Read, Written: t.Written, OK: t.OK, Errors: t.Errors}, err
}
