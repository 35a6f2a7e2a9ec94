package sink_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/stages/sink"
	"github.com/sluicehq/sluice/stages/source"
)

// A WARC sink archives a page and its result; the reader replay uses
// gives the page back.
func ExampleNewWARC() {
	dir, err := os.MkdirTemp("", "warc-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	w, err := sink.NewWARC(sink.WARCConfig{Dir: dir})
	if err != nil {
		panic(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	u := "http://shop.example/p/42"
	out := record.Output{
		Result: &record.Result{Schema: record.SchemaVersion, URL: u, Status: 200, FetchedAt: at,
			Fields: map[string]any{}, Links: []string{}, Parser: &record.Parser{Rules: "default", Version: "1"}},
		Page: &record.Page{Schema: record.SchemaVersion, URL: u, FinalURL: u, Method: "GET", Status: 200,
			Header: map[string][]string{"Content-Type": {"text/html"}}, Body: []byte("<h1>Lamp</h1>"), FetchedAt: at},
		Ack: func() { fmt.Println("acknowledged once durable") },
	}
	src := flow.NewSource("feed", func(stop context.Context, emit flow.Emit[record.Output]) error { return emit(out) })
	flow.Connect[record.Output](src, w.Sink())
	if err := flow.Run(context.Background(), context.Background(), src, w.Sink()); err != nil {
		panic(err)
	}
	for _, f := range w.Files() {
		_ = source.ReadWARCFile(context.Background(), f, 0, func(it source.WARCItem) error {
			if it.Page != nil {
				fmt.Printf("%s %d %s\n", it.Page.URL, it.Page.Status, it.Page.Body)
			}
			return nil
		})
	}
	fmt.Println(w.Records(), "records")
	// Output:
	// acknowledged once durable
	// http://shop.example/p/42 200 <h1>Lamp</h1>
	// 4 records
}
