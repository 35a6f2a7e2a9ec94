package kafka

import (
	"context"
	"sort"
	"sync"

	"github.com/sluicehq/sluice/record"
)

// Partition names one partition of a topic.
type Partition struct {
	Topic string
	ID    int
}

// Commit is an offset that may be committed for a partition: the next
// offset to read, everything below it being acknowledged. Pass it back to
// Tracker.Committed once the broker has accepted it.
type Commit struct {
	Partition
	Offset int64
	state  *partState // the partition state it was computed from
}

// DefaultWindow is the default Tracker window.
const DefaultWindow = 1024

// Tracker is the per-partition acknowledgement tracker of an at-least-once
// source. For each partition it knows which delivered offsets are
// acknowledged and names the offset to commit: the highest one below which
// every delivered offset is acknowledged. It never names an offset below
// one already committed, and it starts a partition over when the partition
// is assigned again (Assign) or an offset is delivered again (Track).
//
// At most Window offsets per partition are delivered and not yet committed;
// Track blocks while a partition's window is full, so a stalled input holds
// back its partition instead of growing memory, and a crash delivers at most
// Window offsets per partition again.
//
// The zero value is not usable: build a Tracker with NewTracker. A Tracker is
// safe for concurrent use; acks may come from any goroutine.
type Tracker struct {
	window int
	ready  chan struct{} // poked when a partition has half a window to commit

	mu    sync.Mutex // guards parts
	parts map[Partition]*partState
}

// partState is one partition's state within one assignment. A reset
// replaces it, so acks that hold an old state are ignored.
type partState struct {
	committed int64   // highest offset committed or found committed; -1 unknown
	last      int64   // highest offset delivered; -1 none
	q         []entry // delivered offsets not yet committed, ascending
	done      int     // q[:done] are all acknowledged
	slots     chan struct{}
	acks      int // acknowledged entries in q
}

type entry struct {
	off   int64
	acked bool
}

// NewTracker returns a tracker whose partitions each hold at most window
// uncommitted offsets; 0 means DefaultWindow.
func NewTracker(window int) *Tracker {
	if window <= 0 {
		window = DefaultWindow
	}
	return &Tracker{window: window, ready: make(chan struct{}, 1), parts: map[Partition]*partState{}}
}

// Window is the most uncommitted offsets a partition may hold.
func (t *Tracker) Window() int { return t.window }

func (t *Tracker) newState(committed int64) *partState {
	return &partState{committed: committed, last: -1, slots: make(chan struct{}, t.window)}
}

// Assign starts a new assignment: the given partitions start over at their
// committed offsets (a negative offset means none is known), every other
// partition is forgotten, and acks of offsets delivered before are ignored.
func (t *Tracker) Assign(committed map[Partition]int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.parts = make(map[Partition]*partState, len(committed))
	for p, off := range committed {
		t.parts[p] = t.newState(max(off, -1))
	}
}

// Track records that offset off of partition p was delivered and returns the
// Ack to call once its output is durable. It blocks while p's window is
// full, until a commit frees room or ctx ends (then it returns ctx's error).
// Call Track for a partition from one goroutine, in the order the offsets
// are read. An offset at or below one already delivered means the partition is being
// read again: its state starts over, keeping only the committed offset, and
// acks of the earlier deliveries are ignored. A partition that was never
// assigned is tracked from here on as if assigned with no committed offset.
func (t *Tracker) Track(ctx context.Context, p Partition, off int64) (record.Ack, error) {
	for {
		t.mu.Lock()
		ps := t.parts[p]
		if ps == nil {
			ps = t.newState(-1)
			t.parts[p] = ps
		}
		if ps.last >= 0 && off <= ps.last {
			ps = t.newState(ps.committed)
			t.parts[p] = ps
		}
		t.mu.Unlock()
		select {
		case ps.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		t.mu.Lock()
		if t.parts[p] != ps || (ps.last >= 0 && off <= ps.last) {
			// Reassigned or reset while waiting: start again on the new state.
			t.mu.Unlock()
			continue
		}
		ps.last = off
		ps.q = append(ps.q, entry{off: off})
		t.mu.Unlock()
		return func() { t.ack(p, ps, off) }, nil
	}
}

func (t *Tracker) ack(p Partition, ps *partState, off int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.parts[p] != ps {
		return // from an earlier assignment or reading
	}
	i := sort.Search(len(ps.q), func(i int) bool { return ps.q[i].off >= off })
	if i == len(ps.q) || ps.q[i].off != off || ps.q[i].acked {
		return // already committed, or a second ack
	}
	ps.q[i].acked = true
	ps.acks++
	for ps.done < len(ps.q) && ps.q[ps.done].acked {
		ps.done++
	}
	if 2*ps.done >= t.window {
		select {
		case t.ready <- struct{}{}:
		default:
		}
	}
}

// Ready receives a value when some partition has half a window or more
// acknowledged and not committed: a committer should commit now rather
// than at its next tick.
func (t *Tracker) Ready() <-chan struct{} { return t.ready }

// Commits returns, for every partition whose commit point has moved past
// its committed offset, the offset to commit. The result is in partition
// order.
func (t *Tracker) Commits() []Commit {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Commit
	for p, ps := range t.parts {
		if ps.done == 0 {
			continue
		}
		next := ps.q[ps.done-1].off + 1
		if next <= ps.committed {
			continue // never backwards (after a reset below the committed offset)
		}
		out = append(out, Commit{Partition: p, Offset: next, state: ps})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Committed records that the broker accepted cs (from Commits): their
// entries leave the window, freeing room for Track. Commits from an earlier
// assignment or reading are ignored.
func (t *Tracker) Committed(cs []Commit) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range cs {
		ps := t.parts[c.Partition]
		if ps != c.state || c.Offset <= ps.committed {
			continue
		}
		ps.committed = c.Offset
		n := sort.Search(len(ps.q), func(i int) bool { return ps.q[i].off >= c.Offset })
		for _, e := range ps.q[:n] {
			if e.acked {
				ps.acks--
			}
		}
		ps.q = append(ps.q[:0], ps.q[n:]...)
		ps.done -= n
		for range n {
			<-ps.slots
		}
	}
}

// PartitionStatus is one partition's state, for gauges and tests.
type PartitionStatus struct {
	Partition
	Committed   int64 // -1 when unknown
	Delivered   int64 // highest offset delivered, -1 none
	Uncommitted int   // delivered offsets not yet committed (at most Window)
	Unacked     int   // delivered offsets not yet acknowledged
}

// Status returns every tracked partition's state, in partition order.
func (t *Tracker) Status() []PartitionStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]PartitionStatus, 0, len(t.parts))
	for p, ps := range t.parts {
		out = append(out, PartitionStatus{Partition: p, Committed: ps.committed, Delivered: ps.last,
			Uncommitted: len(ps.q), Unacked: len(ps.q) - ps.acks})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].ID < out[j].ID
	})
	return out
}
