package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestExpectedProductDeterministic(t *testing.T) {
	p := ExpectedProduct(42)
	want := Product{ID: 42, Name: "Product 42 Gizmo", Price: "$330.11", SKU: "SKU-000042"}
	if p != want {
		t.Fatalf("ExpectedProduct(42) = %+v, want %+v", p, want)
	}
	seen := map[string]bool{}
	for id := 1; id <= 1000; id++ {
		p := ExpectedProduct(id)
		if p != ExpectedProduct(id) {
			t.Fatalf("ExpectedProduct(%d) not deterministic", id)
		}
		if !strings.HasPrefix(p.Price, "$") || !strings.Contains(p.Price, ".") {
			t.Fatalf("bad price %q", p.Price)
		}
		if seen[p.SKU] {
			t.Fatalf("duplicate SKU %q", p.SKU)
		}
		seen[p.SKU] = true
	}
}

func TestRelatedIDs(t *testing.T) {
	cases := []struct {
		id, products int
		want         []int
	}{
		{42, 100, []int{43, 44, 95}},
		{99, 100, []int{100, 1, 94}},
		{100, 100, []int{1, 2}}, // 100*7%100+1 = 1, deduplicated
		{1, 1, []int{}},
		{0, 100, nil},
		{101, 100, nil},
	}
	for _, c := range cases {
		got := RelatedIDs(c.id, c.products)
		if len(got) != len(c.want) || (len(got) > 0 && !reflect.DeepEqual(got, c.want)) {
			t.Errorf("RelatedIDs(%d, %d) = %v, want %v", c.id, c.products, got, c.want)
		}
	}
}

func TestSiteProductPage(t *testing.T) {
	s := startSite(t, SiteConfig{Products: 100})
	c, _ := newClient(t, "", "")

	if got, want := s.ProductURL(42), s.URL()+"/product/42"; got != want {
		t.Fatalf("ProductURL = %q, want %q", got, want)
	}
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL = %q", s.URL())
	}
	r := get(t, c, s.ProductURL(42))
	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	if ct := r.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	p := ExpectedProduct(42)
	for _, want := range []string{
		"<h1>" + p.Name + "</h1>",
		`<span class="price">` + p.Price + "</span>",
		`<meta itemprop="sku" content="` + p.SKU + `">`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("page lacks %q:\n%s", want, r.body)
		}
	}
	for _, id := range RelatedIDs(42, 100) {
		if want := fmt.Sprintf(`<a href="/product/%d">`, id); !strings.Contains(r.body, want) {
			t.Errorf("page lacks link %q", want)
		}
	}
	if strings.Contains(r.body, "filler") {
		t.Errorf("unpadded page has filler")
	}

	for _, path := range []string{"/product/0", "/product/101", "/product/abc", "/product/042", "/product/-1", "/product/1/x"} {
		if r := get(t, c, s.URL()+path); r.status != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", path, r.status)
		}
	}
	st := s.Stats()
	if st.Requests != 7 || st.ByStatus[200] != 1 || st.ByStatus[404] != 6 || st.ByIP["127.0.0.1"] != 7 || st.Limited != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestSiteIndexAndDefaults(t *testing.T) {
	s := startSite(t, SiteConfig{})
	c, _ := newClient(t, "", "")
	if s.Products() != DefaultProducts {
		t.Fatalf("Products = %d", s.Products())
	}
	r := get(t, c, s.URL()+"/")
	if r.status != 200 || !strings.Contains(r.body, `<a href="/product/1">`) {
		t.Fatalf("index: %d %q", r.status, r.body)
	}
	if r := get(t, c, s.ProductURL(DefaultProducts)); r.status != 200 {
		t.Fatalf("last product: %d", r.status)
	}
	if r := get(t, c, s.URL()+"/nope"); r.status != 404 {
		t.Fatalf("unknown path: %d", r.status)
	}
	if st := s.Stats(); st.Requests != 1 {
		t.Fatalf("index and unknown paths must not count: %+v", st)
	}
}

func TestStartSiteRejectsBadConfig(t *testing.T) {
	for _, cfg := range []SiteConfig{
		{Products: -1}, {PageBytes: -1}, {Latency: -1}, {PerIPPerMinute: -1}, {FailEvery: -1},
		{Addr: "256.0.0.1:0"},
	} {
		if s, err := StartSite(cfg); err == nil {
			s.Close()
			t.Errorf("StartSite(%+v) succeeded", cfg)
		}
	}
}

func TestSitePageBytes(t *testing.T) {
	const size = 20000
	s := startSite(t, SiteConfig{Products: 50, PageBytes: size})
	c, _ := newClient(t, "", "")
	for _, id := range []int{1, 7, 50} {
		r := get(t, c, s.ProductURL(id))
		if len(r.body) != size {
			t.Errorf("product %d: %d bytes, want %d", id, len(r.body), size)
		}
		if !strings.Contains(r.body, `<p class="filler">Lorem ipsum`) {
			t.Errorf("product %d: no filler", id)
		}
		if !strings.Contains(r.body, "<h1>"+ExpectedProduct(id).Name+"</h1>") {
			t.Errorf("product %d: no h1", id)
		}
		if !strings.HasSuffix(r.body, "</html>\n") {
			t.Errorf("product %d: filler after </html>", id)
		}
	}

	small := startSite(t, SiteConfig{Products: 50, PageBytes: 10})
	r := get(t, c, small.ProductURL(3))
	if r.status != 200 || len(r.body) <= 10 || strings.Contains(r.body, "filler") {
		t.Fatalf("tiny PageBytes: status %d, %d bytes", r.status, len(r.body))
	}
}

func TestSiteRateLimitSlidingWindow(t *testing.T) {
	clk := newFakeClock()
	s := startSite(t, SiteConfig{Products: 100, PerIPPerMinute: 3, Now: clk.Now})
	c, _ := newClient(t, "", "")

	expect := func(step string, status int, retryAfter string) {
		t.Helper()
		r := get(t, c, s.ProductURL(1))
		if r.status != status {
			t.Fatalf("%s: status %d, want %d", step, r.status, status)
		}
		if got := r.header.Get("Retry-After"); got != retryAfter {
			t.Fatalf("%s: Retry-After %q, want %q", step, got, retryAfter)
		}
	}
	expect("t=0", 200, "")
	clk.Advance(10 * time.Second)
	expect("t=10", 200, "")
	clk.Advance(10 * time.Second)
	expect("t=20", 200, "")
	clk.Advance(10 * time.Second)
	expect("t=30 over limit", 429, "30") // slot of t=0 frees at t=60
	expect("t=30 again", 429, "30")
	clk.Advance(29500 * time.Millisecond)
	expect("t=59.5", 429, "1") // 0.5 s rounds up
	clk.Advance(500 * time.Millisecond)
	expect("t=60 t=0 left the window", 200, "")
	expect("t=60 full again", 429, "10") // t=10 frees at t=70
	clk.Advance(9999 * time.Millisecond)
	expect("t=69.999", 429, "1")

	// Another source IP has its own window.
	c2, _ := newClient(t, "", "127.0.0.9")
	if r := get(t, c2, s.ProductURL(1)); r.status != 200 {
		t.Fatalf("other IP: status %d", r.status)
	}

	st := s.Stats()
	if st.Requests != 10 || st.Limited != 5 || st.ByStatus[429] != 5 || st.ByStatus[200] != 5 {
		t.Fatalf("stats = %+v", st)
	}
	if st.ByIP["127.0.0.1"] != 9 || st.ByIP["127.0.0.9"] != 1 {
		t.Fatalf("ByIP = %v", st.ByIP)
	}
	if st.MaxPerIPPerMinute["127.0.0.1"] != 3 || st.MaxPerIPPerMinute["127.0.0.9"] != 1 {
		t.Fatalf("MaxPerIPPerMinute = %v", st.MaxPerIPPerMinute)
	}

	// Long idle: everything leaves the window; the limit is per window, not
	// per reset.
	s.ResetStats()
	clk.Advance(time.Hour)
	for i := range 3 {
		expect("after idle "+strconv.Itoa(i), 200, "")
	}
	expect("after idle over limit", 429, "60")
	if st := s.Stats(); st.Requests != 4 || st.MaxPerIPPerMinute["127.0.0.1"] != 3 || len(st.ByIP) != 1 {
		t.Fatalf("stats after reset = %+v", st)
	}
}

func TestSiteRateLimitConcurrent(t *testing.T) {
	clk := newFakeClock()
	s := startSite(t, SiteConfig{Products: 100, PerIPPerMinute: 7, Now: clk.Now})
	c, _ := newClient(t, "", "")
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := range 40 {
		wg.Go(func() {
			resp, err := c.Get(s.ProductURL(i + 1))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if codes[200] != 7 || codes[429] != 33 {
		t.Fatalf("codes = %v", codes)
	}
	if st := s.Stats(); st.MaxPerIPPerMinute["127.0.0.1"] != 7 || st.Limited != 33 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestSiteFailEvery(t *testing.T) {
	s := startSite(t, SiteConfig{Products: 100, FailEvery: 3})
	c, _ := newClient(t, "", "")
	var got []int
	for id := 1; id <= 9; id++ {
		got = append(got, get(t, c, s.ProductURL(id)).status)
	}
	want := []int{200, 200, 503, 200, 200, 503, 200, 200, 503}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("statuses = %v, want %v", got, want)
	}
	// 404s do not advance the failure counter.
	if r := get(t, c, s.ProductURL(1000)); r.status != 404 {
		t.Fatalf("status %d", r.status)
	}
	if r := get(t, c, s.ProductURL(10)); r.status != 200 {
		t.Fatalf("10th valid request: %d", r.status)
	}
	st := s.Stats()
	if st.Requests != 11 || st.ByStatus[503] != 3 || st.ByStatus[200] != 7 || st.ByStatus[404] != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestSiteStatsEndpointAndReset(t *testing.T) {
	s := startSite(t, SiteConfig{Products: 10})
	c, _ := newClient(t, "", "")
	get(t, c, s.ProductURL(1))
	get(t, c, s.ProductURL(11))
	r := get(t, c, s.URL()+"/stats")
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("/stats: %d %q", r.status, r.header.Get("Content-Type"))
	}
	var st Stats
	if err := json.Unmarshal([]byte(r.body), &st); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
	if !reflect.DeepEqual(st, s.Stats()) {
		t.Fatalf("/stats %+v != Stats() %+v", st, s.Stats())
	}
	if st.Requests != 2 || st.ByStatus[200] != 1 || st.ByStatus[404] != 1 || st.MaxPerIPPerMinute["127.0.0.1"] != 2 {
		t.Fatalf("stats = %+v", st)
	}
	// The snapshot is a copy.
	st.ByIP["x"] = 1
	if _, ok := s.Stats().ByIP["x"]; ok {
		t.Fatal("Stats shares its maps")
	}
	s.ResetStats()
	if st := s.Stats(); st.Requests != 0 || len(st.ByIP) != 0 || len(st.ByStatus) != 0 || len(st.MaxPerIPPerMinute) != 0 {
		t.Fatalf("after reset: %+v", st)
	}
}

func TestSiteLatencyHonoursClientCancel(t *testing.T) {
	s := startSite(t, SiteConfig{Products: 10, Latency: time.Hour})
	c, _ := newClient(t, "", "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.ProductURL(1), nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, "request to reach the site", func() bool { return s.Stats().Requests == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client error = %v, want context.Canceled", err)
	}
	waitFor(t, "499 to be recorded", func() bool { return s.Stats().ByStatus[StatusClientClosed] == 1 })
}

func TestSiteCloseCutsLatency(t *testing.T) {
	s, err := StartSite(SiteConfig{Products: 10, Latency: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := newClient(t, "", "")
	type res struct {
		status int
		err    error
	}
	done := make(chan res, 1)
	go func() {
		resp, err := c.Get(s.ProductURL(1))
		if err != nil {
			done <- res{err: err}
			return
		}
		resp.Body.Close()
		done <- res{status: resp.StatusCode}
	}()
	waitFor(t, "request to reach the site", func() bool { return s.Stats().Requests == 1 })
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if r := <-done; r.err == nil && r.status != http.StatusServiceUnavailable {
		t.Fatalf("in-flight request during Close: status %d", r.status)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.Get(s.ProductURL(1)); err == nil {
		t.Fatal("closed site still answers")
	}
}

// TestSiteMode: SetMode moves the site between 200s, 429s with
// Retry-After, and hanging until the client gives up.
func TestSiteMode(t *testing.T) {
	site := startSite(t, SiteConfig{Products: 3})
	client := &http.Client{Timeout: 200 * time.Millisecond}
	get := func() (*http.Response, error) {
		resp, err := client.Get(site.ProductURL(1))
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	if resp, err := get(); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("normal: %v %v", resp, err)
	}
	site.SetMode(SiteLimited)
	if resp, err := get(); err != nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("limited: %v %v", resp, err)
	}
	site.SetMode(SiteHang)
	if _, err := get(); err == nil {
		t.Fatal("hang: got an answer")
	}
	site.SetMode(SiteNormal)
	if resp, err := get(); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("normal again: %v %v", resp, err)
	}
	st := site.Stats()
	if st.Requests != 4 || st.Limited != 1 || st.ByStatus[http.StatusOK] != 2 {
		t.Errorf("stats %+v", st)
	}
	client.CloseIdleConnections()
}
