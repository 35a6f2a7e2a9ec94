package source

import (
	"bytes"
	"compress/gzip"
	"strings"
	"testing"
)

const urlset = `<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc> http://a.example/1 </loc><lastmod>2024-01-01</lastmod></url>
  <url><loc>http://a.example/2?x=1&amp;y=2</loc></url>
</urlset>`

const index = `<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>http://a.example/s1.xml</loc></sitemap>
  <sitemap><loc>http://a.example/s2.xml.gz</loc></sitemap>
</sitemapindex>`

func TestParseSitemap(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(urlset))
	zw.Close()
	for name, in := range map[string]string{"plain": urlset, "gzip": gz.String()} {
		e, err := ParseSitemap(strings.NewReader(in), 100)
		if err != nil || len(e.URLs) != 2 || e.URLs[0] != "http://a.example/1" || e.URLs[1] != "http://a.example/2?x=1&y=2" || len(e.Sitemaps) != 0 {
			t.Errorf("%s: %+v %v", name, e, err)
		}
	}
	e, err := ParseSitemap(strings.NewReader(index), 100)
	if err != nil || len(e.Sitemaps) != 2 || len(e.URLs) != 0 {
		t.Errorf("index: %+v %v", e, err)
	}
	if e, _ := ParseSitemap(strings.NewReader(urlset), 1); len(e.URLs) != 1 {
		t.Errorf("max 1: %+v", e)
	}
	for _, bad := range []string{"", "<html><body/></html>", "not xml"} {
		if _, err := ParseSitemap(strings.NewReader(bad), 10); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzParseSitemap: the parser never panics and keeps its bound.
func FuzzParseSitemap(f *testing.F) {
	f.Add([]byte(urlset))
	f.Add([]byte(index))
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		e, _ := ParseSitemap(bytes.NewReader(in), 5)
		if len(e.URLs)+len(e.Sitemaps) > 5 {
			t.Fatalf("%d entries past the bound of 5", len(e.URLs)+len(e.Sitemaps))
		}
	})
}
