package fetch

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"

	"github.com/andybalholm/brotli"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/proxy"
)

// This file holds the fetch stage's defences against hostile targets and
// proxies: the URL policy hooks (transport and redirects), the body caps
// with content decoding done here rather than by net/http, and the body
// deadline.

// acceptEncoding is what every request asks for. The transport's own
// transparent gzip is off, so every encoding is decoded by readBody, under
// the cap.
const acceptEncoding = "gzip, deflate, br"

// proxyPolicy puts the URL policy on the transport of an HTTP(S) proxy
// (SOCKS5 proxies check in socksTarget). By default the proxy resolves
// target names, after the URL and name checks (guard's ProxyFunc); with
// local proxy DNS, targets are resolved and checked here and reached
// through CONNECT tunnels to the checked IP (guard's Tunnel), which take
// over from the transport's own proxying.
func (s *Stage) proxyPolicy(tr *http.Transport, p *proxy.Proxy) {
	if p.URL.Scheme != "http" && p.URL.Scheme != "https" {
		return
	}
	if !s.policy.LocalDNS() {
		tr.Proxy = s.policy.ProxyFunc(p.URL)
		return
	}
	tr.Proxy = nil
	tr.DialTLSContext = nil // toProxy does the TLS with an https:// proxy
	tr.DialContext = s.policy.Tunnel(s.toProxy[p.ID], p.URL, tr)
}

// socksTarget is the address a SOCKS5 proxy is asked for: for socks5://,
// the checked IP of addr (IPv4 preferred: SOCKS proxies often lack IPv6);
// for socks5h://, which resolves names itself, addr after the name check.
func (s *Stage) socksTarget(ctx context.Context, network, addr string, local bool) (string, error) {
	if !local {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return "", failure.Errorf(failure.BadInput, "dial address %q: %v", addr, err)
		}
		if err := s.policy.CheckName(ctx, host); err != nil {
			return "", err
		}
		return addr, nil
	}
	targets, err := s.policy.Resolve(ctx, network, addr)
	if err != nil {
		return "", err
	}
	for _, t := range targets {
		if a := t.Addr().Unmap(); a.Is4() {
			return netip.AddrPortFrom(a, t.Port()).String(), nil
		}
	}
	return targets[0].String(), nil
}

// checkRedirect is every client's CheckRedirect: the URL policy on the
// new location, a bound on the number of redirects, and loop detection.
func (s *Stage) checkRedirect(req *http.Request, via []*http.Request) error {
	if s.cfg.MaxRedirects < 0 {
		return http.ErrUseLastResponse
	}
	if len(via) > s.cfg.MaxRedirects {
		return failure.Errorf(failure.Redirects, "stopped after %d redirects", s.cfg.MaxRedirects)
	}
	c, err := s.policy.CheckURL(req.URL)
	if err != nil {
		var fe *failure.Error
		if errors.As(err, &fe) {
			return failure.New(fe.Class, fe.Kind, fmt.Errorf("redirect to %s: %w", clipURL(req.URL), fe.Err))
		}
		return err
	}
	for _, v := range via {
		if v.URL.String() == c.String() {
			return failure.Errorf(failure.Redirects, "redirect loop back to %s after %d redirects", clipURL(c), len(via))
		}
	}
	req.URL = c
	return nil
}

func clipURL(u *url.URL) string {
	s := u.Redacted()
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "") + "…"
	}
	return s
}

// errBodyTimeout is the cancel cause when BodyTimeout passes.
var errBodyTimeout = errors.New("body timeout")

// errWireTooLarge marks a body whose encoded bytes passed the cap.
var errWireTooLarge = errors.New("encoded body exceeds the cap")

// cappedReader fails with errWireTooLarge once more than n bytes have
// been read through it.
type cappedReader struct {
	r io.Reader
	n int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.n < 0 {
		return 0, errWireTooLarge
	}
	if int64(len(p)) > c.n+1 {
		p = p[:c.n+1]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	if c.n < 0 {
		return n, errWireTooLarge
	}
	return n, err
}

// bodyReader returns resp's body with its Content-Encoding undone, for
// the spooler to read under MaxBodyBytes (which bounds the decoded bytes,
// and marks a cut body truncated). The encoded bytes are capped at
// MaxBodyBytes too, so that a stream that decodes to little (empty deflate
// blocks, say) cannot be read forever; past it the read fails with
// errWireTooLarge. An unencoded body whose Content-Length is over the cap
// is refused before it is read. When the body is decoded, the
// Content-Encoding and Content-Length headers are dropped, since they no
// longer describe it.
func (s *Stage) bodyReader(resp *http.Response) (io.Reader, error) {
	limit := s.cfg.MaxBodyBytes
	r, encoded, err := decoder(resp.Header.Get("Content-Encoding"), &cappedReader{r: resp.Body, n: limit})
	if err != nil {
		return nil, err
	}
	if !encoded {
		if resp.ContentLength > limit && !s.cfg.TruncateLarge {
			return nil, failure.Errorf(failure.TooLarge, "Content-Length %d exceeds the cap of %d bytes", resp.ContentLength, limit)
		}
		return resp.Body, nil // the decoded cap is the wire cap
	}
	resp.Header.Del("Content-Encoding")
	resp.Header.Del("Content-Length")
	return r, nil
}

// bodyError classifies an error met while reading or decoding a body.
func (s *Stage) bodyError(err error, ctx, bodyCtx context.Context, viaProxy bool) error {
	if errors.Is(err, errWireTooLarge) {
		return failure.Errorf(failure.TooLarge, "encoded body exceeds the cap of %d bytes", s.cfg.MaxBodyBytes)
	}
	if fe := (*failure.Error)(nil); errors.As(err, &fe) {
		return err // too_large, a refused Content-Length, a spool failure
	}
	if ctx.Err() != nil {
		return failure.New(failure.Canceled, failure.ErrPermanent, ctx.Err())
	}
	if cause := context.Cause(bodyCtx); cause != nil {
		if errors.Is(cause, errBodyTimeout) {
			return failure.New(failure.Timeout, failure.ErrRetryable, fmt.Errorf("body not read within %v", s.cfg.BodyTimeout))
		}
		return failure.New(failure.Timeout, failure.ErrRetryable, fmt.Errorf("attempt deadline of %v passed while reading the body", s.cfg.AttemptTimeout))
	}
	var de *decodeError
	var ne net.Error
	if errors.As(err, &de) && !errors.As(de.err, &ne) && !errors.Is(de.err, io.ErrUnexpectedEOF) && !errors.Is(de.err, syscall.ECONNRESET) {
		return failure.New(failure.Protocol, failure.ErrPermanent, err) // the bytes arrived and are not what they claim
	}
	return classifyBody(err, ctx, viaProxy)
}

// decodeError marks a body that cannot be decoded.
type decodeError struct {
	enc string
	err error
}

func (e *decodeError) Error() string { return fmt.Sprintf("decoding %s body: %v", e.enc, e.err) }
func (e *decodeError) Unwrap() error { return e.err }

// decodingReader labels the errors of a decoder.
type decodingReader struct {
	enc string
	r   io.Reader
}

func (d *decodingReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF && !errors.Is(err, errWireTooLarge) {
		err = &decodeError{d.enc, err}
	}
	return n, err
}

// maxEncodings bounds how many stacked Content-Encodings are undone.
const maxEncodings = 2

// decoder returns a reader that undoes the Content-Encoding header value
// ce (a comma-separated list, applied in order, so undone in reverse) and
// whether there was anything to undo.
func decoder(ce string, r io.Reader) (io.Reader, bool, error) {
	var encs []string
	for e := range strings.SplitSeq(ce, ",") {
		e = strings.ToLower(strings.TrimSpace(e))
		if e != "" && e != "identity" {
			encs = append(encs, e)
		}
	}
	if len(encs) > maxEncodings {
		return nil, false, &decodeError{ce, fmt.Errorf("more than %d content encodings", maxEncodings)}
	}
	for i := len(encs) - 1; i >= 0; i-- {
		var err error
		switch encs[i] {
		case "gzip", "x-gzip":
			var zr *gzip.Reader
			if zr, err = gzip.NewReader(r); err == nil {
				r = zr
			}
		case "deflate":
			r, err = deflateReader(r)
		case "br":
			r = brotli.NewReader(r)
		default:
			err = fmt.Errorf("unsupported content encoding %q", encs[i])
		}
		if err != nil {
			if errors.Is(err, errWireTooLarge) {
				return nil, false, err
			}
			return nil, false, &decodeError{encs[i], err}
		}
		r = &decodingReader{encs[i], r}
	}
	return r, len(encs) > 0, nil
}

// deflateReader reads HTTP "deflate": a zlib stream, or (as some servers
// send it) a raw deflate stream.
func deflateReader(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	h, err := br.Peek(2)
	if err != nil && len(h) < 2 {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if (uint16(h[0])<<8|uint16(h[1]))%31 == 0 && h[0]&0x0f == 8 {
		return zlib.NewReader(br)
	}
	return flate.NewReader(br), nil
}
