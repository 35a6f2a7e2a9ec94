package flow

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"
	"unsafe"

	"github.com/reugn/go-streams"

	"github.com/sluicehq/sluice/record"
)

// What a `chan any` edge costs per element against a typed channel, for
// the three values that cross the dataflow's edges (one of each per page):
//
//	go test -run '^$' -bench Edge -benchmem ./flow
//
// typed and any move b.N values between two goroutines over a buffered
// channel (the queue of a stage), nothing else; any boxes each value into
// an interface, as go-streams' channels do. flow is a whole flow edge:
// Emit → the source's output → the connection → the sink's queue →
// Inbox.Recv. map is a flow edge with a Map of one worker in it, the
// parse stage's shape. docs/architecture.md has the figures.

func edgeValues() (record.Task, record.Fetched, record.Output) {
	u, _ := url.Parse("https://shop.example.com/product/1234?ref=feed")
	task := record.Task{Msg: record.Message{URL: u.String(), Key: "k1234"}, URL: u,
		Origin: record.Origin{Topic: "urls", Partition: 3, Offset: 987654, Raw: []byte(u.String())}, Enqueued: time.Now()}
	f := record.Fetched{Task: task, FinalURL: u.String(), Status: 200, Body: make([]byte, 32<<10), Attempts: 1, Proxy: "p7",
		Started: time.Now(), Elapsed: 40 * time.Millisecond}
	name := "Blue widget"
	out := record.Output{Result: &record.Result{Schema: record.SchemaVersion, URL: u.String(), Status: 200,
		Fields: map[string]any{"name": name}}}
	return task, f, out
}

func BenchmarkEdge(b *testing.B) {
	task, fetched, output := edgeValues()
	b.Run(fmt.Sprintf("Task_%dB", unsafe.Sizeof(task)), func(b *testing.B) { benchEdge(b, task) })
	b.Run(fmt.Sprintf("Fetched_%dB", unsafe.Sizeof(fetched)), func(b *testing.B) { benchEdge(b, fetched) })
	b.Run(fmt.Sprintf("Output_%dB", unsafe.Sizeof(output)), func(b *testing.B) { benchEdge(b, output) })
}

func benchEdge[T any](b *testing.B, v T) {
	const queue = 16
	b.Run("typed", func(b *testing.B) {
		b.ReportAllocs()
		ch := make(chan T, queue)
		go func() {
			for range b.N {
				ch <- v
			}
			close(ch)
		}()
		var sink T
		for e := range ch {
			sink = e
		}
		_ = sink
	})
	b.Run("any", func(b *testing.B) {
		b.ReportAllocs()
		ch := make(chan any, queue)
		go func() {
			for range b.N {
				ch <- v
			}
			close(ch)
		}()
		var sink T
		for e := range ch {
			sink = e.(T)
		}
		_ = sink
	})
	b.Run("flow", func(b *testing.B) {
		b.ReportAllocs()
		n := b.N
		src := NewSource("src", func(stop context.Context, emit Emit[T]) error {
			for range n {
				if err := emit(v); err != nil {
					return err
				}
			}
			return nil
		})
		sink := counter[T](queue)
		if err := Stream(context.Background(), context.Background(), src, func(streams.Source) { src.To(sink) }); err != nil {
			b.Fatal(err)
		}
	})
	b.Run("map", func(b *testing.B) {
		b.ReportAllocs()
		n := b.N
		src := NewSource("src", func(stop context.Context, emit Emit[T]) error {
			for range n {
				if err := emit(v); err != nil {
					return err
				}
			}
			return nil
		})
		m := NewMap("map", queue, 1, func(v T) T { return v })
		sink := counter[T](queue)
		if err := Stream(context.Background(), context.Background(), src, func(s streams.Source) { s.Via(m).To(sink) }); err != nil {
			b.Fatal(err)
		}
	})
}

func counter[T any](queue int) *Sink[T] {
	var s *Sink[T]
	s = NewSink("count", queue, func(ctx context.Context, in Inbox[T]) error {
		for {
			if _, ok := in.Recv(ctx); !ok {
				return nil
			}
			s.Stats().Done(1)
		}
	})
	return s
}
