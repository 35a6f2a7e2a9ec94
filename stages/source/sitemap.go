package source

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/rs/zerolog"

	"github.com/sluicehq/sluice/record"
)

// MaxSitemapBytes caps one sitemap after gunzip: the protocol's 50 MB.
const MaxSitemapBytes = 50 << 20

// SitemapEntries are what one sitemap file lists: page URLs (a urlset)
// or further sitemaps (a sitemap index).
type SitemapEntries struct {
	URLs     []string
	Sitemaps []string
}

// ParseSitemap reads a sitemap or a sitemap index (gzip'd or not: the
// magic bytes decide), at most MaxSitemapBytes after gunzip, keeping at
// most max <loc> entries. Unknown elements are skipped; a document that
// is neither a urlset nor a sitemapindex is an error.
func ParseSitemap(r io.Reader, max int) (SitemapEntries, error) {
	var out SitemapEntries
	br := bufio.NewReader(r)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return out, fmt.Errorf("sitemap: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReader(zr)
	}
	lr := &io.LimitedReader{R: br, N: MaxSitemapBytes + 1}
	dec := xml.NewDecoder(lr)
	dec.Strict = false
	var root string
	var inLoc bool
	var loc bytes.Buffer
	depth := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("sitemap: %w", err)
		}
		if lr.N <= 0 {
			return out, fmt.Errorf("sitemap: larger than %d bytes", MaxSitemapBytes)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 1 {
				root = t.Name.Local
				if root != "urlset" && root != "sitemapindex" {
					return out, fmt.Errorf("sitemap: root element <%s>, want urlset or sitemapindex", root)
				}
			}
			if depth == 3 && t.Name.Local == "loc" {
				inLoc = true
				loc.Reset()
			}
		case xml.CharData:
			if inLoc && loc.Len() < MaxMessageBytes {
				loc.Write(t)
			}
		case xml.EndElement:
			if inLoc && depth == 3 {
				inLoc = false
				s := strings.TrimSpace(loc.String())
				if s != "" && len(out.URLs)+len(out.Sitemaps) < max {
					if root == "urlset" {
						out.URLs = append(out.URLs, s)
					} else {
						out.Sitemaps = append(out.Sitemaps, s)
					}
				}
			}
			depth--
		}
	}
	if root == "" {
		return out, errors.New("sitemap: empty document")
	}
	return out, nil
}

// SitemapConfig configures Sitemaps.
type SitemapConfig struct {
	// Roots are the sitemap (or index) URLs to start from.
	Roots []string
	// Fetch gets one URL: its status and body (the fetch stage's Get).
	Fetch func(ctx context.Context, u *url.URL) (int, []byte, error)
	// MaxFiles bounds the sitemap files read, indexes included; MaxURLs
	// the page URLs taken.
	MaxFiles, MaxURLs int
	Logger            zerolog.Logger
}

// Sitemaps reads the sitemaps (following indexes, breadth first) and
// calls add for each page URL on the sitemap's own host, as the protocol
// requires, until MaxURLs or MaxFiles is reached or stop ends. A sitemap
// that cannot be fetched or parsed is logged and skipped. It returns the
// error of add, if any.
func Sitemaps(stop context.Context, cfg SitemapConfig, add func(record.Message) error) error {
	queue := append([]string(nil), cfg.Roots...)
	files, taken := 0, 0
	for len(queue) > 0 && files < cfg.MaxFiles && taken < cfg.MaxURLs && stop.Err() == nil {
		raw := queue[0]
		queue = queue[1:]
		files++
		u, err := ParseURL(raw)
		if err != nil {
			cfg.Logger.Warn().Err(err).Msg("sitemap skipped")
			continue
		}
		status, body, err := cfg.Fetch(stop, u)
		if err != nil || status < 200 || status > 299 {
			cfg.Logger.Warn().Str("sitemap", u.Redacted()).Int("status", status).AnErr("error", err).Msg("sitemap not fetched")
			continue
		}
		ents, err := ParseSitemap(bytes.NewReader(body), cfg.MaxURLs-taken+cfg.MaxFiles)
		if err != nil {
			cfg.Logger.Warn().Str("sitemap", u.Redacted()).Err(err).Msg("sitemap not read")
			continue
		}
		queue = append(queue, ents.Sitemaps...)
		if len(queue) > cfg.MaxFiles {
			queue = queue[:cfg.MaxFiles]
		}
		for _, s := range ents.URLs {
			if taken >= cfg.MaxURLs {
				break
			}
			pu, err := ParseURL(s)
			if err != nil || !strings.EqualFold(pu.Host, u.Host) {
				continue
			}
			taken++
			if err := add(record.Message{URL: s}); err != nil {
				return err
			}
		}
	}
	cfg.Logger.Info().Int("files", files).Int("urls", taken).Msg("sitemaps read")
	return nil
}
