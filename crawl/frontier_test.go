package crawl

import (
	"fmt"
	"testing"

	"github.com/sluicehq/sluice/record"
)

// TestFrontierSpills: past its bound the frontier spills; every message
// comes out once, in order, and Each sees what is queued.
func TestFrontierSpills(t *testing.T) {
	f := NewFrontier(3, t.TempDir())
	defer f.Close()
	next := 0
	popped := 0
	pop := func() {
		t.Helper()
		m, ok, err := f.Pop()
		if err != nil || !ok {
			t.Fatalf("pop: ok %v err %v", ok, err)
		}
		if want := fmt.Sprint(popped); m.URL != want {
			t.Fatalf("popped %q, want %q", m.URL, want)
		}
		popped++
	}
	// Interleave pushes and pops so refills meet later spills.
	for round := range 20 {
		for range 7 {
			if err := f.Push(record.Message{URL: fmt.Sprint(next), Depth: round}); err != nil {
				t.Fatal(err)
			}
			next++
		}
		if f.InMemory() > 3 {
			t.Fatalf("%d in memory, bound 3", f.InMemory())
		}
		for range 4 {
			pop()
		}
	}
	n := 0
	if err := f.Each(func(record.Message) error { n++; return nil }); err != nil || n != f.Len() || n != next-popped {
		t.Fatalf("Each saw %d (err %v), Len %d, want %d", n, err, f.Len(), next-popped)
	}
	for popped < next {
		pop()
	}
	if _, ok, _ := f.Pop(); ok || f.Len() != 0 || f.Spilled() == 0 {
		t.Fatalf("not empty at the end, or nothing spilled (%d)", f.Spilled())
	}
}
