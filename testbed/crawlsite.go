package testbed

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// CrawlSiteConfig configures StartCrawlSite. The zero value is usable.
type CrawlSiteConfig struct {
	// Pages is the number of pages: the home page "/" (page 0) and
	// /p/1 … /p/{Pages-1}. 0 means 2000.
	Pages int
	// Fanout is the number of child pages each page links to: page i links
	// to pages Fanout·i+1 … Fanout·i+Fanout. 0 means 10.
	Fanout int
	// CrawlDelay, if positive, is written into robots.txt as Crawl-delay
	// (seconds).
	CrawlDelay float64
}

// CrawlSite is a site with link structure, for crawls: a tree of pages
// (each page links to its children, to the home page, to its parent
// spelled with tracking parameters, to itself with a fragment), links to
// another host (out of scope for a same-host crawl), a robots.txt that
// disallows /private/ (every tenth page links there), a sitemap index
// (/sitemap.xml) over a plain and a gzip'd sitemap that list every page
// and Orphans pages nothing links to, and counts of requests per path on
// both hosts. Safe for concurrent use.
type CrawlSite struct {
	cfg   CrawlSiteConfig
	main  *http.Server
	other *http.Server
	mainL net.Listener
	othL  net.Listener

	mu     sync.Mutex // guards hits
	hits   map[string]int
	others map[string]int
}

// StartCrawlSite starts the site and its other host on loopback.
func StartCrawlSite(cfg CrawlSiteConfig) (*CrawlSite, error) {
	if cfg.Pages <= 0 {
		cfg.Pages = 2000
	}
	if cfg.Fanout <= 0 {
		cfg.Fanout = 10
	}
	s := &CrawlSite{cfg: cfg, hits: map[string]int{}, others: map[string]int{}}
	var err error
	if s.mainL, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	if s.othL, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		_ = s.mainL.Close()
		return nil, err
	}
	s.main = &http.Server{Handler: http.HandlerFunc(s.serve)}
	s.other = &http.Server{Handler: http.HandlerFunc(s.serveOther)}
	go func() { _ = s.main.Serve(s.mainL) }() // owner: s; ends at Close
	go func() { _ = s.other.Serve(s.othL) }() // owner: s; ends at Close
	return s, nil
}

// URL is the home page's URL.
func (s *CrawlSite) URL() string { return "http://" + s.mainL.Addr().String() + "/" }

// OtherURL is the other host's base URL (no trailing slash).
func (s *CrawlSite) OtherURL() string { return "http://" + s.othL.Addr().String() }

// PageURL is page i's URL.
func (s *CrawlSite) PageURL(i int) string {
	if i == 0 {
		return s.URL()
	}
	return fmt.Sprintf("http://%s/p/%d", s.mainL.Addr().String(), i)
}

// Pages is the number of pages.
func (s *CrawlSite) Pages() int { return s.cfg.Pages }

// Hits returns the requests per path on the site (robots.txt included).
func (s *CrawlSite) Hits() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.hits)
}

// OtherHits returns the requests per path on the other host.
func (s *CrawlSite) OtherHits() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.others)
}

// Close stops both hosts.
func (s *CrawlSite) Close() error {
	return errors.Join(s.main.Close(), s.other.Close())
}

func (s *CrawlSite) serveOther(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.others[r.URL.Path]++
	s.mu.Unlock()
	fmt.Fprint(w, "<html><body><h1>other</h1></body></html>")
}

func (s *CrawlSite) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.hits[r.URL.Path]++
	s.mu.Unlock()
	p := r.URL.Path
	switch {
	case p == "/robots.txt":
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "User-agent: *\nDisallow: /private/\n")
		if s.cfg.CrawlDelay > 0 {
			fmt.Fprintf(w, "Crawl-delay: %g\n", s.cfg.CrawlDelay)
		}
		return
	case p == "/sitemap.xml":
		w.Header().Set("Content-Type", "application/xml")
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<sitemap><loc>http://%[1]s/sitemap-1.xml</loc></sitemap>
<sitemap><loc>http://%[1]s/sitemap-2.xml.gz</loc></sitemap>
</sitemapindex>`, s.mainL.Addr())
		return
	case p == "/sitemap-1.xml":
		w.Header().Set("Content-Type", "application/xml")
		s.writeSitemap(w, 1, s.cfg.Pages/2, false)
		return
	case p == "/sitemap-2.xml.gz":
		w.Header().Set("Content-Type", "application/gzip")
		zw := gzip.NewWriter(w)
		s.writeSitemap(zw, s.cfg.Pages/2, s.cfg.Pages, true)
		_ = zw.Close()
		return
	case strings.HasPrefix(p, "/orphan/"):
		fmt.Fprint(w, "<html><body><h1>orphan</h1><a href=\"/\">home</a></body></html>")
		return
	case strings.HasPrefix(p, "/private/"):
		fmt.Fprint(w, "<html><body><h1>private</h1></body></html>")
		return
	}
	i := 0
	if p != "/" {
		n, err := strconv.Atoi(strings.TrimPrefix(p, "/p/"))
		if !strings.HasPrefix(p, "/p/") || err != nil || n <= 0 || n >= s.cfg.Pages {
			http.NotFound(w, r)
			return
		}
		i = n
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	var b strings.Builder
	fmt.Fprintf(&b, "<html><head><title>page %d</title></head><body><h1>Page %d</h1>\n", i, i)
	for c := s.cfg.Fanout*i + 1; c <= s.cfg.Fanout*i+s.cfg.Fanout && c < s.cfg.Pages; c++ {
		fmt.Fprintf(&b, "<a href=\"/p/%d\">child %d</a>\n", c, c)
	}
	b.WriteString("<a href=\"/\">home</a>\n")
	if i > 0 {
		parent := (i - 1) / s.cfg.Fanout
		if parent == 0 {
			b.WriteString("<a href=\"/?utm_source=crawl&amp;gclid=x\">up</a>\n")
		} else {
			fmt.Fprintf(&b, "<a href=\"/p/%d?utm_source=crawl&amp;fbclid=y\">up</a>\n", parent)
		}
		fmt.Fprintf(&b, "<a href=\"http://%s:%s/p/%d#top\">self</a>\n", "127.0.0.1", portOf(s.mainL), i)
	}
	fmt.Fprintf(&b, "<a href=\"%s/p/%d\">elsewhere</a>\n", s.OtherURL(), i)
	if i%10 == 0 {
		fmt.Fprintf(&b, "<a href=\"/private/%d\">private</a>\n", i)
	}
	b.WriteString("</body></html>\n")
	fmt.Fprint(w, b.String())
}

// writeSitemap lists pages [from, to); with orphans, also /orphan/0 …
// /orphan/{Orphans-1} (linked from no page) and a URL on the other host
// (which a sitemap may not list, so it is skipped).
func (s *CrawlSite) writeSitemap(w io.Writer, from, to int, orphans bool) {
	fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">`+"\n")
	for i := from; i < to; i++ {
		fmt.Fprintf(w, "<url><loc>%s</loc><lastmod>2024-01-01</lastmod></url>\n", s.PageURL(i))
	}
	if orphans {
		for i := range Orphans {
			fmt.Fprintf(w, "<url><loc>http://%s/orphan/%d</loc></url>\n", s.mainL.Addr(), i)
		}
		fmt.Fprintf(w, "<url><loc>%s/p/1</loc></url>\n", s.OtherURL())
	}
	fmt.Fprint(w, "</urlset>\n")
}

// Orphans is the number of /orphan/ pages the sitemap lists and no page
// links to.
const Orphans = 50

func portOf(l net.Listener) string {
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}
