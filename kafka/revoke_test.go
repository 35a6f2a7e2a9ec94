package kafka

import (
	"context"
	"errors"
	"testing"
)

// deliver delivers offsets on p and returns their deliveries by offset.
func deliver(t *testing.T, tr *Tracker, p Partition, offs ...int64) map[int64]Delivery {
	t.Helper()
	out := map[int64]Delivery{}
	for _, off := range offs {
		d, err := tr.Deliver(context.Background(), p, off)
		if err != nil {
			t.Fatalf("Deliver(%d): %v", off, err)
		}
		out[off] = d
	}
	return out
}

// TestTrackerRevoke walks a revocation: offsets still queued are disowned
// and dropped, the revocation waits only for those in flight, commits
// stop at the first dropped one, and the assignment's acks count until it
// is forgotten.
func TestTrackerRevoke(t *testing.T) {
	p1 := Partition{Topic: "urls", ID: 1}
	tr := NewTracker(16)
	a := tr.Assign(map[Partition]int64{p0: 10, p1: -1})
	d0 := deliver(t, tr, p0, 10, 11, 12, 13)
	d1 := deliver(t, tr, p1, 0, 1)
	if !d0[10].Owned() || tr.Outstanding(a) != 6 {
		t.Fatalf("owned %v, outstanding %d before the revocation", d0[10].Owned(), tr.Outstanding(a))
	}
	d0[10].Ack()

	tr.Revoke(a)
	if _, err := tr.Deliver(context.Background(), p0, 14); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Deliver on a revoked partition: %v", err)
	}
	// 12 and p1's 1 were still queued: the fetch stage sees them disowned.
	if d0[12].Owned() || d1[1].Owned() {
		t.Fatal("a revoked partition's offset still owned")
	}
	if n := tr.Outstanding(a); n != 3 { // p0's 11 and 13, p1's 0
		t.Fatalf("outstanding %d after the drops, want 3", n)
	}
	// The in-flight ones finish during the wait; each ack pokes Ready.
	drainReady(tr)
	d0[11].Ack()
	select {
	case <-tr.Ready():
	default:
		t.Fatal("an ack during the revocation did not poke Ready")
	}
	d0[13].Ack()
	d1[0].Ack()
	if n := tr.Outstanding(a); n != 0 {
		t.Fatalf("outstanding %d once the in-flight inputs are acked", n)
	}
	cs := tr.CommitsFor(a)
	got := map[Partition]int64{}
	for _, c := range cs {
		got[c.Partition] = c.Offset
	}
	// p0 stops at the dropped 12 (13 is acked but comes after it); p1 at 1.
	if len(got) != 2 || got[p0] != 12 || got[p1] != 1 {
		t.Fatalf("commits during the revocation %v, want urls/0:12 urls/1:1", got)
	}
	tr.Committed(cs)
	tr.Forget(a)
	if cs := tr.CommitsFor(a); len(cs) != 0 || len(tr.Status()) != 0 || tr.Outstanding(a) != 0 {
		t.Fatalf("after Forget: commits %v, status %v", cs, tr.Status())
	}
}

// TestTrackerNeverCommitsForAnotherAssignment: a committer holding an
// earlier assignment gets nothing to commit once the partitions were
// assigned again, even for a partition this member keeps, and the late
// acks of the earlier assignment move nothing.
func TestTrackerNeverCommitsForAnotherAssignment(t *testing.T) {
	p1 := Partition{Topic: "urls", ID: 1}
	tr := NewTracker(16)
	old := tr.Assign(map[Partition]int64{p0: 0, p1: 0})
	d := deliver(t, tr, p1, 0, 1, 2)
	stale := tr.CommitsFor(old)
	cur := tr.Assign(map[Partition]int64{p0: 5})
	for _, x := range d {
		x.Ack()
		if x.Owned() {
			t.Fatal("an offset of an earlier assignment is owned")
		}
	}
	if cs := tr.CommitsFor(old); len(cs) != 0 {
		t.Fatalf("the earlier assignment's committer may commit %v", cs)
	}
	tr.Committed(stale)
	tr.Revoke(old) // no effect on the current assignment
	tr.Forget(old)
	e := deliver(t, tr, p0, 5)
	if !e[5].Owned() {
		t.Fatal("Revoke or Forget of an earlier assignment touched the current one")
	}
	e[5].Ack()
	cs := tr.CommitsFor(cur)
	if len(cs) != 1 || cs[0].Partition != p0 || cs[0].Offset != 6 {
		t.Fatalf("current commits %v, want urls/0:6 only", cs)
	}
}

// TestTrackerDroppedThenAcked: an input given up and then finished all the
// same (a stage that did not honour Owned) counts as acknowledged.
func TestTrackerDroppedThenAcked(t *testing.T) {
	tr := NewTracker(16)
	a := tr.Assign(map[Partition]int64{p0: 0})
	d := deliver(t, tr, p0, 0, 1)
	tr.Revoke(a)
	_ = d[0].Owned()
	_ = d[0].Owned() // a second look records nothing more
	if n := tr.Outstanding(a); n != 1 {
		t.Fatalf("outstanding %d, want 1", n)
	}
	d[0].Ack()
	d[1].Ack()
	if n := tr.Outstanding(a); n != 0 {
		t.Fatalf("outstanding %d, want 0", n)
	}
	if cs := tr.CommitsFor(a); len(cs) != 1 || cs[0].Offset != 2 {
		t.Fatalf("commits %v, want urls/0:2", cs)
	}
}

func drainReady(tr *Tracker) {
	for {
		select {
		case <-tr.Ready():
		default:
			return
		}
	}
}
