package crawl

import (
	"context"
	"sort"
	"testing"

	"github.com/sluicehq/sluice/record"
)

// TestCrawlerSaveLoad: a saved state holds the seen-set and every URL not
// yet done (in flight or queued); a crawler loaded from it hands those
// out again, and nothing done or seen is taken again.
func TestCrawlerSaveLoad(t *testing.T) {
	cfg := Defaults()
	cfg.Follow, cfg.Expected, cfg.StateDir, cfg.Queue = true, 1000, t.TempDir(), 2
	c, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"http://a.example/", "http://a.example/x", "http://a.example/y", "http://a.example/x#dup"} {
		if _, err := c.Seed(record.Message{URL: u}); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	home, _, _ := c.Next(ctx)
	x, _, _ := c.Next(ctx) // stays in flight
	res := &record.Result{URL: home.URL, Links: []string{"http://a.example/z?b=1&a=2", "http://a.example/z", "http://a.example/x?utm_source=q", "http://b.example/out"}}
	if err := c.Done(record.Output{Result: res}); err != nil {
		t.Fatal(err)
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var got []string
	for {
		m, ok, err := d.TryNext()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, m.URL)
	}
	sort.Strings(got)
	want := []string{x.URL, "http://a.example/y", "http://a.example/z", "http://a.example/z?a=2&b=1"}
	sort.Strings(want)
	if len(got) != len(want) {
		t.Fatalf("after load: %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("after load: %v, want %v", got, want)
		}
	}
	if ok, _ := d.Seed(record.Message{URL: "http://a.example/"}); ok {
		t.Error("a done start URL taken again after the restart")
	}
}
