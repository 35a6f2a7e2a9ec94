package source

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/crawl"
	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/record"
)

// CrawlConfig configures a crawl source.
type CrawlConfig struct {
	// Crawler holds the crawl's state; the pipeline's sink must give
	// every output to its Done.
	Crawler *crawl.Crawler
	// Seeds are the start URLs, a lines source's config (a file or
	// stdin). A line that is not a URL message becomes an error result,
	// as with Lines.
	Seeds LinesConfig
	// NoSeeds skips the seeds (a crawl that starts from sitemaps, or from
	// its saved state, only).
	NoSeeds bool
	// More, when set, is called once the seeds are in, to queue more start
	// URLs (the sitemaps): it calls add for each, and stops when stop
	// ends.
	More func(stop context.Context, add func(record.Message) error) error
}

// Crawl returns the source of a file-mode crawl: it queues the seeds
// (and what More adds) in the crawler, then emits what the crawler hands
// out until the crawl has finished (nothing queued, nothing in flight:
// every page's links are in) or stop ends.
func Crawl(cfg CrawlConfig) (*flow.Source[record.Task], error) {
	if cfg.Seeds.MaxLineBytes <= 0 {
		cfg.Seeds.MaxLineBytes = MaxMessageBytes
	}
	if cfg.Seeds.Now == nil {
		cfg.Seeds.Now = time.Now
	}
	var seeds func(stop context.Context, emit flow.Emit[record.Task]) error
	if !cfg.NoSeeds {
		var err error
		if seeds, err = readTasks(cfg.Seeds); err != nil {
			return nil, err
		}
	}
	c := cfg.Crawler
	return flow.NewSource("source", func(stop context.Context, emit flow.Emit[record.Task]) error {
		if seeds != nil {
			// A lines source's run, with an emit that queues instead.
			var seedErr error
			err := seeds(stop, func(t record.Task) error {
				if t.Err != nil {
					c.Hold()
					return emit(t)
				}
				_, err := c.Seed(t.Msg)
				if failure.ClassOf(err) == failure.BadInput {
					t.Err = err
					c.Hold()
					return emit(t)
				}
				if err != nil {
					seedErr = err
				}
				return err
			})
			if err == nil {
				err = seedErr
			}
			if err != nil {
				return fmt.Errorf("crawl seeds: %w", err)
			}
		}
		if cfg.More != nil {
			if err := cfg.More(stop, func(m record.Message) error { _, err := c.Seed(m); return err }); err != nil {
				return err
			}
		}
		for {
			m, ok, err := c.Next(stop)
			if err != nil {
				return err
			}
			if !ok {
				return nil
			}
			t := record.Task{Msg: m, Enqueued: cfg.Seeds.Now()}
			t.URL, t.Err = ParseURL(m.URL)
			if err := emit(t); err != nil {
				return nil
			}
		}
	}), nil
}
