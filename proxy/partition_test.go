package proxy

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func used(t *testing.T, p *Pool, domain string, n int) []string {
	t.Helper()
	c := leaseCounts(t, p, domain, n)
	var ids []string
	for id := range c {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func TestPartitionsByConfig(t *testing.T) {
	p := newPool(t, 6,
		WithPartition("a.example", "p1", "p2"),
		WithPartition("B.example.", "p3", "p4"),
		seeded(51))
	for _, tc := range []struct {
		domain string
		want   []string
	}{
		{"a.example", []string{"p1", "p2"}},
		{"www.a.example", []string{"p1", "p2"}},
		{"b.example", []string{"p3", "p4"}},
		{"c.example", []string{"p5", "p6"}}, // the unpartitioned rest
		{"xa.example", []string{"p5", "p6"}},
	} {
		if got := used(t, p, tc.domain, 60); !slices.Equal(got, tc.want) {
			t.Errorf("%s served by %v, want %v", tc.domain, got, tc.want)
		}
	}
	parts := map[string]string{}
	for _, s := range p.Stats().Proxies {
		parts[s.ID] = s.Partition
	}
	if parts["p1"] != "a.example" || parts["p4"] != "b.example" || parts["p6"] != "" {
		t.Errorf("partitions in stats: %v", parts)
	}
}

func TestPartitionsEven(t *testing.T) {
	p := newPool(t, 7, WithEvenPartitions("a", "b", "c"), seeded(52))
	want := map[string][]string{"a": {"p1", "p2", "p3"}, "b": {"p4", "p5"}, "c": {"p6", "p7"}}
	for d, w := range want {
		if got := used(t, p, d, 60); !slices.Equal(got, w) {
			t.Errorf("%s served by %v, want %v", d, got, w)
		}
	}
	// Every proxy is partitioned: other domains share the whole pool.
	if got := used(t, p, "other", 300); len(got) != 7 {
		t.Errorf("unpartitioned domain served by %v", got)
	}
}

func TestPartitionWithSessionsAndHealth(t *testing.T) {
	p := newPool(t, 4, WithPartition("a", "p1", "p2"), WithPartition("b", "p3", "p4"), seeded(53))
	// The same session key on two domains binds once per partition.
	ia := once(t, p, Request{Domain: "a", Session: "s"}, ok)
	ib := once(t, p, Request{Domain: "b", Session: "s"}, ok)
	if !slices.Contains([]string{"p1", "p2"}, ia) || !slices.Contains([]string{"p3", "p4"}, ib) || len(p.Sessions()) != 2 {
		t.Fatalf("session bound to %s on a, %s on b: %v", ia, ib, p.Sessions())
	}
	// A partition whose proxies are all quarantined waits rather than
	// borrowing from another partition.
	for range 3 {
		once(t, p, Request{Domain: "a", Avoid: []string{"p2"}}, connFail)
		once(t, p, Request{Domain: "a", Avoid: []string{"p1"}}, connFail)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if l, err := p.Acquire(ctx, Request{Domain: "a"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("partition a with every proxy quarantined: lease %v, error %v", l, err)
	}
	if id := once(t, p, Request{Domain: "b"}, ok); id != "p3" && id != "p4" {
		t.Fatalf("partition b served by %s", id)
	}
}
