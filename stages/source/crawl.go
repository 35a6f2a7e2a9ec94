package source

import (
	"context"
	"errors"
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
		// aborted is set once emit fails: the hard stop; nothing more
		// can be passed on.
		aborted := false
		emit0 := emit
		emit = func(t record.Task) error {
			err := emit0(t)
			if err != nil {
				aborted = true
			}
			return err
		}
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
					return err
				}
				// One out for each one in, so the seeds flow at the
				// pipeline's pace instead of all going to the frontier.
				return emitNext(c, emit, cfg.Seeds.Now, &seedErr)
			})
			if aborted {
				return nil
			}
			if err == nil {
				err = seedErr
			}
			if err != nil {
				return fmt.Errorf("crawl seeds: %w", err)
			}
		}
		if cfg.More != nil && !aborted {
			var ferr error
			err := cfg.More(stop, func(m record.Message) error {
				if _, err := c.Seed(m); err != nil {
					return err
				}
				return emitNext(c, emit, cfg.Seeds.Now, &ferr)
			})
			if aborted {
				return nil
			}
			if err := errors.Join(err, ferr); err != nil {
				return err
			}
		}
		for !aborted {
			m, ok, err := c.Next(stop)
			if err != nil {
				return err
			}
			if !ok {
				return nil
			}
			if err := emit(crawlTask(m, cfg.Seeds.Now)); err != nil {
				return nil
			}
		}
		return nil
	}), nil
}

// emitNext emits the next queued URL, if any, without waiting. A
// frontier error is kept in *ferr.
func emitNext(c *crawl.Crawler, emit flow.Emit[record.Task], now func() time.Time, ferr *error) error {
	m, ok, err := c.TryNext()
	if err != nil {
		*ferr = err
		return err
	}
	if !ok {
		return nil
	}
	return emit(crawlTask(m, now))
}

func crawlTask(m record.Message, now func() time.Time) record.Task {
	t := record.Task{Msg: m, Enqueued: now()}
	t.URL, t.Err = ParseURL(m.URL)
	return t
}
