package sink

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

// TestPageRecordSize measures what one page costs on the pages topic: the
// record as the Kafka sink encodes it (JSON, body in base64) and its size
// after the topic's zstd, alone and in a batch of the sink's default
// BatchSize pages. The pages are the testbed's ~60 KB product pages
// (fetched over HTTP from the local site) and two real-world pages kept
// in goquery's test data (a Wikipedia article, a review site's page).
// docs/capacity.md sizes the brokers from its log.
func TestPageRecordSize(t *testing.T) {
	k, err := NewKafka(KafkaConfig{Brokers: []string{"127.0.0.1:9"}, ResultsTopic: "results", PagesTopic: "pages", DeadTopic: "dead"})
	if err != nil {
		t.Fatal(err)
	}
	codec := kafka.Zstd.Codec()
	compressed := func(vals ...[]byte) int {
		var buf bytes.Buffer
		w := codec.NewWriter(&buf)
		for _, v := range vals {
			if _, err := w.Write(v); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Len()
	}
	encode := func(url string, body []byte, header http.Header) []byte {
		m, ok := k.pageMessage(&record.Page{Schema: 1, URL: url, FinalURL: url, Method: http.MethodGet, Status: 200,
			Header: header, Body: body, FetchedAt: time.Now(), Attempts: 1, Proxy: "p1",
			Timings: record.Timings{DNSMS: 1, ConnectMS: 2, FirstByteMS: 200, TotalMS: 203}})
		if !ok {
			t.Fatalf("%s: not encoded", url)
		}
		return m.Value
	}

	site, err := testbed.StartSite(testbed.SiteConfig{PageBytes: 61440})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	const batch = 256 // KafkaConfig.BatchSize's default
	var vals [][]byte
	body := 0
	for id := 1; id <= batch; id++ {
		resp, err := http.Get(site.ProductURL(id))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("product %d: %d %v", id, resp.StatusCode, err)
		}
		body += len(b)
		vals = append(vals, encode(site.ProductURL(id), b, resp.Header))
	}
	rec := 0
	for _, v := range vals {
		rec += len(v)
	}
	t.Logf("testbed product page: body %d B, record %d B, zstd alone %d B, zstd in a batch of %d %d B per page",
		body/batch, rec/batch, compressed(vals[0]), batch, compressed(vals...)/batch)

	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/PuerkitoBio/goquery").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, name := range []string{"gowiki.html", "metalreview.html"} {
		b, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "testdata", name))
		if err != nil {
			t.Skipf("goquery test data: %v", err)
		}
		v := encode("https://example.org/"+name, b, http.Header{"Content-Type": {"text/html; charset=utf-8"}})
		t.Logf("%s: body %d B, record %d B, zstd alone %d B (%.1f%% of the body; the bare HTML would be %d B)", name, len(b), len(v), compressed(v),
			100*float64(compressed(v))/float64(len(b)), compressed(b))
		if compressed(v) >= len(v) {
			t.Errorf("%s: zstd did not shrink the record", name)
		}
	}
}
