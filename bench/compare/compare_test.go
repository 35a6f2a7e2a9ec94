package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The harness runs the floor and Colly, and the launcher, by executing
	// its own binary with -child or -spawn; under go test that binary is
	// this test binary.
	if code, ok := subcommand(os.Args[1:]); ok {
		os.Exit(code)
	}
	goleak.VerifyTestMain(m)
}

// TestCompareTiny runs the whole comparison at a tiny size and checks that
// every peer ran and wrote one correct record per URL. It asserts nothing
// about speed.
func TestCompareTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/pipeline and runs three peers")
	}
	cfg := Config{
		N:           100,
		Proxies:     5,
		Latency:     200 * time.Millisecond,
		PageBytes:   60 << 10,
		Concurrency: []int{10},
		Root:        "../..",
		PeerTimeout: 2 * time.Minute,
		Profile:     []int{10},
		ProfileDir:  t.TempDir(),
		KafkaC:      10,
	}
	if b := os.Getenv(envKafkaBrokers); b != "" {
		cfg.KafkaBrokers = splitList(b)
	}
	var out strings.Builder
	rep, err := Run(context.Background(), cfg, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 3 {
		t.Fatalf("%d rows, want one per peer", len(rep.Rows))
	}
	for _, r := range rep.Rows {
		if !r.Correct() {
			t.Errorf("%s c=%d: %s, err %v, problems %v", r.Peer, r.C, correctCell(r), r.Err, r.Verify.Examples)
		}
		if r.Fetches != int64(cfg.N) {
			t.Errorf("%s c=%d: the site saw %d requests, want %d", r.Peer, r.C, r.Fetches, cfg.N)
		}
		if r.Usage.CPU <= 0 || r.Usage.MaxRSS <= 0 {
			t.Errorf("%s c=%d: usage %+v not measured", r.Peer, r.C, r.Usage)
		}
	}
	if err := rep.Err(); err != nil {
		t.Error(err)
	}
	if len(rep.Profiles) != 1 {
		t.Fatalf("%d profiles, want 1", len(rep.Profiles))
	}
	if p := rep.Profiles[0]; p.Err != nil || !p.Verify.OK() || !strings.Contains(p.CPUTop, "flat") || !strings.Contains(p.AllocTop, "flat") || !strings.Contains(p.HeapTop, "flat") {
		t.Errorf("profile: err %v, records %s, CPU top %q, alloc top %q, heap top %q", p.Err, p.Verify, p.CPUTop, p.AllocTop, p.HeapTop)
	}
	if cfg.KafkaBrokers != nil {
		if k := rep.Kafka; k == nil || k.Err != nil || !k.Row.Verify.OK() || k.Dead != 0 {
			t.Errorf("kafka: %+v", k)
		}
	}
}

func TestRulesYAMLMatchesSelectors(t *testing.T) {
	want := "- domain: \"*\"\n  fields:\n    name: \"h1\"\n    price: \".price\"\n    sku: \"meta[itemprop=sku] @content\"\n"
	if got := rulesYAML(); got != want {
		t.Errorf("rulesYAML() =\n%s\nwant\n%s", got, want)
	}
}

func TestVerifier(t *testing.T) {
	const site = "http://127.0.0.1:1"
	lines := strings.Join([]string{
		`{"url":"http://127.0.0.1:1/product/1","status":200,"fields":{"name":"Product 1 Gadget","price":"$80.32","sku":"SKU-000001"},"error":null}`,
		`{"url":"http://127.0.0.1:1/product/1","status":200,"fields":{"name":"Product 1 Gadget","price":"$80.32","sku":"SKU-000001"},"error":null}`,
		`{"url":"http://127.0.0.1:1/product/2","status":200,"fields":{"name":"wrong","price":"$1","sku":"x"},"error":null}`,
		`{"url":"http://127.0.0.1:1/product/3","status":0,"fields":null,"error":{"class":"fetch","message":"boom"}}`,
		`not json`,
	}, "\n")
	v, err := verifyReader(strings.NewReader(lines), site, 4)
	if err != nil {
		t.Fatal(err)
	}
	if v.Records != 5 || v.Correct != 1 || v.Duplicates != 1 || v.Wrong != 3 || v.Missing != 1 || v.OK() {
		t.Errorf("got %+v", v)
	}
}
