package dnscache

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestCacheBounded: many names stay within MaxEntries; once their TTL is
// over, the next lookup sweeps them; a name evicted and asked again gets
// its right answer from a fresh query.
func TestCacheBounded(t *testing.T) {
	names := map[string]string{}
	for i := range 1000 {
		names[fmt.Sprintf("h%d.test.", i)] = fmt.Sprintf("127.0.%d.%d", i/250, i%250+1)
	}
	srv := startDNS(t, 30, 0, names)
	var mu sync.Mutex
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	c := New(Config{Servers: []string{srv.addr}, MaxEntries: 100, ResolvConf: "/nonexistent"}, clock)
	check := func(i int) {
		t.Helper()
		addrs, err := c.LookupHost(t.Context(), fmt.Sprintf("h%d.test", i))
		if err != nil || len(addrs) != 1 || addrs[0].String() != names[fmt.Sprintf("h%d.test.", i)] {
			t.Fatalf("h%d.test: %v %v", i, addrs, err)
		}
	}
	peak := 0
	for i := range 1000 {
		check(i)
		peak = max(peak, c.Len())
	}
	if peak > 100 {
		t.Errorf("cache peaked at %d entries, bound 100", peak)
	}
	before := c.Stats().Queries
	check(0) // evicted long ago
	if c.Stats().Queries != before+1 {
		t.Error("an evicted name was not asked again")
	}
	mu.Lock()
	now = now.Add(61 * time.Second) // past every TTL and the sweep interval
	mu.Unlock()
	check(1)
	if n := c.Len(); n != 1 {
		t.Errorf("after every TTL ran out: %d entries, want 1", n)
	}
}
