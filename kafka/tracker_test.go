package kafka

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicehq/sluice/record"
)

var p0 = Partition{Topic: "urls", ID: 0}

// track delivers offsets on p and returns their acks by offset.
func track(t *testing.T, tr *Tracker, p Partition, offs ...int64) map[int64]record.Ack {
	t.Helper()
	acks := map[int64]record.Ack{}
	for _, off := range offs {
		ack, err := tr.Track(context.Background(), p, off)
		if err != nil {
			t.Fatalf("Track(%d): %v", off, err)
		}
		acks[off] = ack
	}
	return acks
}

// commitAll commits what Commits names and returns it as a map.
func commitAll(tr *Tracker) map[Partition]int64 {
	cs := tr.Commits()
	tr.Committed(cs)
	out := map[Partition]int64{}
	for _, c := range cs {
		out[c.Partition] = c.Offset
	}
	return out
}

func TestTrackerCommitPoint(t *testing.T) {
	tests := []struct {
		name    string
		offsets []int64
		acked   []int64
		want    int64 // -1: nothing to commit
	}{
		{"nothing acked", []int64{0, 1, 2}, nil, -1},
		{"in order", []int64{0, 1, 2}, []int64{0, 1}, 2},
		{"all", []int64{0, 1, 2}, []int64{2, 1, 0}, 3},
		{"gap holds the commit back", []int64{0, 1, 2, 3}, []int64{0, 2, 3}, 1},
		{"first unacked", []int64{5, 6, 7}, []int64{6, 7}, -1},
		{"offset gaps (compaction, markers)", []int64{10, 12, 15}, []int64{10, 12}, 13},
		{"double ack is harmless", []int64{0, 1}, []int64{0, 0}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker(16)
			acks := track(t, tr, p0, tc.offsets...)
			for _, off := range tc.acked {
				acks[off].Done()
			}
			got := commitAll(tr)
			off, ok := got[p0]
			if tc.want < 0 {
				if ok {
					t.Fatalf("commit %d, want none", off)
				}
				return
			}
			if off != tc.want {
				t.Fatalf("commit %d, want %d", off, tc.want)
			}
		})
	}
}

func TestTrackerNeverBackwards(t *testing.T) {
	tr := NewTracker(16)
	tr.Assign(map[Partition]int64{p0: 100})
	// The partition is read again from below its committed offset (a seek,
	// say): acked offsets below 100 must not be committed.
	acks := track(t, tr, p0, 90, 91, 92)
	acks[90].Done()
	acks[91].Done()
	if got := commitAll(tr); len(got) != 0 {
		t.Fatalf("committed %v below the committed offset 100", got)
	}
	more := track(t, tr, p0, 100, 101)
	acks[92].Done()
	for _, off := range []int64{100, 101} {
		more[off].Done()
	}
	// Everything up to 101 is acked (93..99 were never delivered: gaps).
	if got := commitAll(tr); got[p0] != 102 {
		t.Fatalf("commit %v, want 102", got)
	}
	// A stale Commit, computed before a newer one was applied, is ignored.
	late := track(t, tr, p0, 102, 103)
	late[102].Done()
	stale := tr.Commits()
	late[103].Done()
	tr.Committed(tr.Commits())
	tr.Committed(stale)
	if st := tr.Status()[0]; st.Committed != 104 || st.Uncommitted != 0 {
		t.Fatalf("status %+v, want committed 104 and nothing uncommitted", st)
	}
}

func TestTrackerResetOnRefetch(t *testing.T) {
	tr := NewTracker(16)
	acks := track(t, tr, p0, 0, 1, 2, 3)
	acks[0].Done()
	commitAll(tr) // committed 1
	// The reader fetches offset 1 again (a reconnect, say): the state starts
	// over, and acks of the first deliveries no longer count.
	again := track(t, tr, p0, 1, 2)
	acks[1].Done()
	acks[2].Done()
	acks[3].Done()
	if got := commitAll(tr); len(got) != 0 {
		t.Fatalf("stale acks committed %v", got)
	}
	again[1].Done()
	if got := commitAll(tr); got[p0] != 2 {
		t.Fatalf("commit %v, want 2", got)
	}
}

func TestTrackerAssignForgetsOldAcks(t *testing.T) {
	p1 := Partition{Topic: "urls", ID: 1}
	tr := NewTracker(16)
	tr.Assign(map[Partition]int64{p0: 0, p1: 0})
	a0 := track(t, tr, p0, 0, 1)
	a1 := track(t, tr, p1, 0)
	// Rebalance: this member keeps p0 (committed offset still 0) and loses p1.
	tr.Assign(map[Partition]int64{p0: 0})
	a0[0].Done()
	a0[1].Done()
	a1[0].Done()
	if got := commitAll(tr); len(got) != 0 {
		t.Fatalf("acks from the previous assignment committed %v", got)
	}
	st := tr.Status()
	if len(st) != 1 || st[0].Partition != p0 || st[0].Committed != 0 || st[0].Delivered != -1 {
		t.Fatalf("status after reassignment %+v", st)
	}
	b := track(t, tr, p0, 0)
	b[0].Done()
	if got := commitAll(tr); got[p0] != 1 {
		t.Fatalf("commit %v, want 1", got)
	}
}

func TestTrackerWindowBlocksUntilCommit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := NewTracker(4)
		acks := track(t, tr, p0, 0, 1, 2, 3)
		// The window is full: a fifth delivery waits, even once everything
		// is acked, until a commit frees room.
		tracked := make(chan error, 1)
		go func() {
			_, err := tr.Track(context.Background(), p0, 4)
			tracked <- err
		}()
		for _, off := range []int64{1, 2, 3, 0} {
			acks[off].Done()
		}
		synctest.Wait()
		select {
		case err := <-tracked:
			t.Fatalf("Track returned %v with a full window", err)
		default:
		}
		select {
		case <-tr.Ready():
		default:
			t.Fatal("no Ready signal with a whole window acked")
		}
		if got := commitAll(tr); got[p0] != 4 {
			t.Fatalf("commit %v, want 4", got)
		}
		if err := <-tracked; err != nil {
			t.Fatalf("Track after commit: %v", err)
		}
		// A full window and a context that ends: Track gives up.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		track(t, tr, p0, 5, 6, 7)
		if _, err := tr.Track(ctx, p0, 8); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Track with a full window and an ended context: %v", err)
		}
	})
}

// TestTrackerRandomAcks acks offsets in random order and checks after every
// ack that the commit point is exactly the first unacked offset, never
// moves backwards, and that the window bound holds.
func TestTrackerRandomAcks(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		const window, n = 32, 2000
		tr := NewTracker(window)
		acked := map[int64]bool{}
		var pending []int64
		acks := map[int64]record.Ack{}
		var next, lastCommit int64
		uncommitted := func() int {
			if st := tr.Status(); len(st) == 1 {
				return st[0].Uncommitted
			}
			return 0
		}
		for next < n || len(pending) > 0 {
			full := uncommitted() == window
			switch {
			case next < n && !full && rng.IntN(3) > 0:
				ack, err := tr.Track(context.Background(), p0, next)
				if err != nil {
					t.Fatal(err)
				}
				acks[next] = ack
				pending = append(pending, next)
				next++
			case len(pending) > 0 && (!full || rng.IntN(2) == 0):
				i := rng.IntN(len(pending))
				off := pending[i]
				pending = append(pending[:i], pending[i+1:]...)
				acks[off].Done()
				acked[off] = true
			default:
				got := commitAll(tr)
				if c, ok := got[p0]; ok {
					want := lastCommit
					for acked[want] {
						want++
					}
					if c != want || c <= lastCommit {
						t.Fatalf("seed %d: commit %d, last %d, want %d", seed, c, lastCommit, want)
					}
					lastCommit = c
				}
			}
			if u := uncommitted(); u > window {
				t.Fatalf("seed %d: %d uncommitted, window %d", seed, u, window)
			}
		}
		if c, ok := commitAll(tr)[p0]; ok {
			lastCommit = c
		}
		if lastCommit != n {
			t.Fatalf("seed %d: final commit %d, want %d", seed, lastCommit, n)
		}
	}
}

func BenchmarkTrackerTrackAck(b *testing.B) {
	tr := NewTracker(DefaultWindow)
	ctx := context.Background()
	b.ReportAllocs()
	for i := range b.N {
		ack, err := tr.Track(ctx, p0, int64(i))
		if err != nil {
			b.Fatal(err)
		}
		ack()
		if i%512 == 511 {
			tr.Committed(tr.Commits())
		}
	}
}
