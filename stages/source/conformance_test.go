package source

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sluicehq/sluice/crawl"
	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/flow/flowtest"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

// lineGen reads n URL lines, numbered from 0 (n < 0: without end).
type lineGen struct {
	n, i int
	buf  []byte
}

func (g *lineGen) Read(p []byte) (int, error) {
	for len(g.buf) == 0 {
		if g.n >= 0 && g.i >= g.n {
			return 0, io.EOF
		}
		g.buf = fmt.Appendf(nil, "http://shop.test/product/%d\n", g.i)
		g.i++
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

type panicReader struct{ lines lineGen }

func (p *panicReader) Read(b []byte) (int, error) {
	if p.lines.i == 5 {
		panic("reader broke")
	}
	return p.lines.Read(b)
}

func TestLinesConforms(t *testing.T) {
	lines := func(t *testing.T, r io.Reader) flowtest.Built[*flow.Source[record.Task]] {
		src, err := Lines(LinesConfig{Reader: r})
		if err != nil {
			t.Fatal(err)
		}
		return flowtest.Built[*flow.Source[record.Task]]{Component: src}
	}
	flowtest.CheckSource(t, flowtest.Source[record.Task]{
		New: func(t *testing.T, n int) flowtest.Built[*flow.Source[record.Task]] {
			return lines(t, &lineGen{n: n})
		},
		Panicking: func(t *testing.T) flowtest.Built[*flow.Source[record.Task]] {
			return lines(t, &panicReader{lines: lineGen{n: -1}})
		},
		Index: func(task record.Task) int {
			if task.Err != nil {
				t.Errorf("line %d: %v", task.Origin.Offset, task.Err)
			}
			return int(task.Origin.Offset) - 1
		},
	})
}

// TestKafkaConforms runs the suite on the Kafka source, reading one
// partition of a fresh topic in a fresh group (input i is offset i).
func TestKafkaConforms(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	kafkaSource := func(t *testing.T, n int, now func() time.Time) flowtest.Built[*flow.Source[record.Task]] {
		if n < 0 {
			n = 300 // more than any check reads before it stops the source
		}
		topic := testbed.CreateKafkaTopic(t, brokers, "src-conform", 1)
		testbed.ProduceKafka(t, brokers, topic, testbed.Spread(urlValues(n), 1))
		k, err := NewKafka(KafkaConfig{Brokers: brokers, Topics: []string{topic}, Group: testbed.UniqueName("g"),
			SessionTimeout: 3 * time.Second, CommitInterval: 100 * time.Millisecond, Now: now,
			Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
		if err != nil {
			t.Fatal(err)
		}
		return flowtest.Built[*flow.Source[record.Task]]{Component: k.Source(), Close: k.Close}
	}
	flowtest.CheckSource(t, flowtest.Source[record.Task]{
		New: func(t *testing.T, n int) flowtest.Built[*flow.Source[record.Task]] {
			return kafkaSource(t, n, nil)
		},
		// The clock is read where a record is decoded, in a partition's
		// reader goroutine.
		Panicking: func(t *testing.T) flowtest.Built[*flow.Source[record.Task]] {
			return kafkaSource(t, 10, func() time.Time { panic("clock broke") })
		},
		Index: func(task record.Task) int {
			if task.Err != nil {
				t.Errorf("offset %d: %v", task.Origin.Offset, task.Err)
			}
			return int(task.Origin.Offset)
		},
		Streaming: true,
	})
}

// TestCrawlConforms runs the suite on the crawl source, whose start URLs
// are lines: nothing gives its outputs back to the crawler, so it does
// not end by itself, as a streaming source.
func TestCrawlConforms(t *testing.T) {
	crawlSource := func(t *testing.T, r io.Reader) flowtest.Built[*flow.Source[record.Task]] {
		cfg := crawl.Defaults()
		cfg.Expected, cfg.Queue = 10_000, 16
		c, err := crawl.New(cfg, crawl.Options{SpillDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		src, err := Crawl(CrawlConfig{Crawler: c, Seeds: LinesConfig{Reader: r}})
		if err != nil {
			t.Fatal(err)
		}
		return flowtest.Built[*flow.Source[record.Task]]{Component: src, Close: c.Close}
	}
	flowtest.CheckSource(t, flowtest.Source[record.Task]{
		New: func(t *testing.T, n int) flowtest.Built[*flow.Source[record.Task]] {
			return crawlSource(t, &lineGen{n: n})
		},
		Panicking: func(t *testing.T) flowtest.Built[*flow.Source[record.Task]] {
			return crawlSource(t, &panicReader{lines: lineGen{n: -1}})
		},
		Index: func(task record.Task) int {
			if task.Err != nil {
				t.Errorf("%s: %v", task.Msg.URL, task.Err)
			}
			var i int
			if _, err := fmt.Sscanf(task.Msg.URL, "http://shop.test/product/%d", &i); err != nil {
				t.Errorf("%s: %v", task.Msg.URL, err)
			}
			return i
		},
		Streaming: true,
	})
}
