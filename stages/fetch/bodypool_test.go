package fetch

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/record"
)

// pageBytes is page i of TestRecycledBodies: its number, then filler,
// between 3 KB and 75 KB long, so that several size classes are used.
func pageBytes(i int) []byte {
	n := 3000 + (i*7919)%72000
	b := bytes.Repeat([]byte{byte('a' + i%26)}, n)
	copy(b, fmt.Sprintf("page %d;", i))
	return b
}

// TestRecycledBodies runs pages through the stage at concurrency 16 into
// a consumer that checks each body and then recycles it from other
// goroutines, as the parse stage does. Every body must be the page's own
// bytes, though buffers are reused (at least one is: the pool works); the
// race detector sees any write into a buffer that a consumer still reads.
// The bodies held at once never exceed the read-ahead.
func TestRecycledBodies(t *testing.T) {
	const pages = 300
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i, err := strconv.Atoi(r.URL.Query().Get("i"))
		if err != nil {
			http.Error(w, "no i", http.StatusBadRequest)
			return
		}
		b := pageBytes(i)
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b)
	}))
	defer srv.Close()
	var urls []string
	for i := range pages {
		urls = append(urls, fmt.Sprintf("%s/p?i=%d", srv.URL, i))
	}
	ts := tasks(t, urls...)
	cfg := quickConfig(nil, 16)
	cfg.ReadAhead = 256 << 10 // a few bodies at once: answers wait for the consumer
	st, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	var (
		mu       sync.Mutex
		seen     = map[*byte]int{} // buffer -> bodies read into it
		recycled int
		bad      []string
		done     int
		wg       sync.WaitGroup
	)
	src := flow.NewSource("src", func(stop context.Context, emit flow.Emit[record.Task]) error {
		for _, tk := range ts {
			if err := emit(tk); err != nil {
				return nil
			}
		}
		return nil
	})
	sink := flow.NewSink("consume", 4, func(ctx context.Context, in flow.Inbox[record.Fetched]) error {
		for {
			f, ok := in.Recv(ctx)
			if !ok {
				return nil
			}
			wg.Add(1)
			go func() { // owner: the sink, which waits for it below
				defer wg.Done()
				i, _ := strconv.Atoi(f.Task.URL.Query().Get("i"))
				mu.Lock()
				defer mu.Unlock()
				done++
				if f.Err != nil || !bytes.Equal(f.Body, pageBytes(i)) {
					bad = append(bad, fmt.Sprintf("page %d: err %v, %d bytes", i, f.Err, len(f.Body)))
				}
				if f.Recycle != nil {
					seen[&f.Body[:1][0]]++
					recycled++
					f.Recycle()
					f.Recycle() // a second call does nothing
				}
			}()
		}
	})
	flow.Connect(src, st.Flow())
	flow.Connect(st.Flow(), sink)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := flow.Run(ctx, ctx, src, st.Flow(), sink); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if done != pages || len(bad) > 0 {
		t.Fatalf("%d of %d pages out; wrong: %v", done, pages, bad)
	}
	if peak := st.Governor().BodyBytesPeak; peak > cfg.ReadAhead {
		t.Errorf("bodies held at once: %d bytes, over the read-ahead of %d", peak, cfg.ReadAhead)
	}
	reused := recycled - len(seen)
	t.Logf("%d bodies recycled into %d buffers", recycled, len(seen))
	if recycled != pages || reused < 1 {
		t.Errorf("%d of %d bodies recycled, %d reused a buffer; want all recycled and some reused", recycled, pages, reused)
	}
}

// TestBodyClass: the smallest power of two from 4 KiB that holds a size,
// none past 1 MiB.
func TestBodyClass(t *testing.T) {
	for _, tc := range []struct {
		size int64
		want int
	}{{0, -1}, {1, 0}, {4096, 0}, {4097, 1}, {61440, 4}, {65536, 4}, {1 << 20, 8}, {1<<20 + 1, -1}} {
		if got := bodyClass(tc.size); got != tc.want {
			t.Errorf("bodyClass(%d) = %d, want %d", tc.size, got, tc.want)
		}
	}
	var p bodyPool
	b := p.get(61440)
	if len(*b) != 65536 {
		t.Fatalf("get(61440): %d bytes", len(*b))
	}
	small := make([]byte, 100)
	p.put(&small) // not a class size: dropped, not pooled
	p.put(nil)
}
