package kafka

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"

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

// ErrRevoked is Track's error for a partition of a revoked assignment.
var ErrRevoked = errors.New("partition revoked")

// Assignment names one assignment of partitions (one call of Assign), so
// that a committer of that assignment never commits for another: see
// CommitsFor.
type Assignment uint64

// Delivery is what Deliver returns for one delivered offset.
type Delivery struct {
	// Ack is to be called once the offset's output is durable.
	Ack record.Ack
	// Owned reports whether the offset's partition still belongs to the
	// assignment it was delivered in and is not revoked. Once it reports
	// false, the caller must drop the input unprocessed: not pass it on,
	// not acknowledge it (the group delivers it again to the partition's
	// next owner). The tracker then stops waiting for its ack (see
	// Outstanding). It is cheap (one atomic load while owned) and safe for
	// concurrent use.
	Owned func() bool
}

// Tracker is the per-partition acknowledgement tracker of an at-least-once
// source. For each partition it knows which delivered offsets are
// acknowledged and names the offset to commit: the highest one below which
// every delivered offset is acknowledged. It never names an offset below
// one already committed, and it starts a partition over when the partition
// is assigned again (Assign) or an offset is delivered again (Track).
//
// Revocation (a rebalance) is Revoke, then Outstanding and CommitsFor
// while the acks of what is in flight come in, then Forget or the next
// Assign: from Revoke on, Deliver's Owned reports false for the
// assignment's offsets, so inputs still queued are dropped and not
// waited for; acks still count until Forget.
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

	mu    sync.Mutex // guards the fields below
	parts map[Partition]*partState
	epoch Assignment // the assignment parts belong to
}

// partState is one partition's state within one assignment. A reset
// replaces it, so acks that hold an old state are ignored.
type partState struct {
	committed int64   // highest offset committed or found committed; -1 unknown
	last      int64   // highest offset delivered; -1 none
	q         []entry // delivered offsets not yet committed, ascending
	done      int     // q[:done] are all acknowledged
	slots     chan struct{}
	acks      int         // acknowledged entries in q
	dropped   int         // entries in q given up unacknowledged (Owned reported false)
	gone      atomic.Bool // revoked, replaced or forgotten: Owned reports false
}

type entry struct {
	off     int64
	acked   bool
	dropped bool
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
// partition is forgotten, and acks of offsets delivered before are ignored
// (their Owned reports false). It returns the new assignment's name.
func (t *Tracker) Assign(committed map[Partition]int64) Assignment {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.forgetLocked()
	t.epoch++
	for p, off := range committed {
		t.parts[p] = t.newState(max(off, -1))
	}
	return t.epoch
}

// forgetLocked drops every partition's state.
func (t *Tracker) forgetLocked() {
	for _, ps := range t.parts {
		ps.gone.Store(true)
	}
	t.parts = map[Partition]*partState{}
}

// Revoke begins giving up assignment a (if it is the current one): from
// now on the Owned check of every offset delivered in it reports false,
// Track and Deliver fail for its partitions with ErrRevoked, and every
// ack pokes Ready, so that a committer commits as the acks of inputs
// already in flight come in. Acks count until Forget or the next Assign.
func (t *Tracker) Revoke(a Assignment) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if a != t.epoch {
		return
	}
	for _, ps := range t.parts {
		ps.gone.Store(true)
	}
}

// Forget ends assignment a (if it is the current one): every partition's
// state is dropped, and later acks of its offsets are ignored.
func (t *Tracker) Forget(a Assignment) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if a == t.epoch {
		t.forgetLocked()
	}
}

// Outstanding is the number of offsets delivered in assignment a that are
// neither acknowledged nor dropped (see Delivery.Owned): what a revocation
// waits for. 0 when a is not the current assignment.
func (t *Tracker) Outstanding(a Assignment) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if a != t.epoch {
		return 0
	}
	n := 0
	for _, ps := range t.parts {
		n += len(ps.q) - ps.acks - ps.dropped
	}
	return n
}

// Track is Deliver without the Owned check.
func (t *Tracker) Track(ctx context.Context, p Partition, off int64) (record.Ack, error) {
	d, err := t.Deliver(ctx, p, off)
	return d.Ack, err
}

// Deliver records that offset off of partition p was delivered and returns
// the Ack to call once its output is durable, and the Owned check. It blocks while p's window is
// full, until a commit frees room or ctx ends (then it returns ctx's error).
// Call Track for a partition from one goroutine, in the order the offsets
// are read. An offset at or below one already delivered means the partition is being
// read again: its state starts over, keeping only the committed offset, and
// acks of the earlier deliveries are ignored. A partition that was never
// assigned is tracked from here on as if assigned with no committed offset.
// A partition of a revoked assignment fails with ErrRevoked.
func (t *Tracker) Deliver(ctx context.Context, p Partition, off int64) (Delivery, error) {
	for {
		t.mu.Lock()
		ps := t.parts[p]
		if ps == nil {
			ps = t.newState(-1)
			t.parts[p] = ps
		}
		if ps.gone.Load() {
			t.mu.Unlock()
			return Delivery{}, ErrRevoked
		}
		if ps.last >= 0 && off <= ps.last {
			ps.gone.Store(true)
			ps = t.newState(ps.committed)
			t.parts[p] = ps
		}
		t.mu.Unlock()
		select {
		case ps.slots <- struct{}{}:
		case <-ctx.Done():
			return Delivery{}, ctx.Err()
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
		return Delivery{
			Ack: func() { t.ack(p, ps, off) },
			Owned: func() bool {
				if !ps.gone.Load() {
					return true
				}
				t.drop(p, ps, off)
				return false
			},
		}, nil
	}
}

// drop records that the input at off was given up unacknowledged.
func (t *Tracker) drop(p Partition, ps *partState, off int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.parts[p] != ps {
		return // forgotten: nothing waits for it
	}
	i := sort.Search(len(ps.q), func(i int) bool { return ps.q[i].off >= off })
	if i == len(ps.q) || ps.q[i].off != off || ps.q[i].acked || ps.q[i].dropped {
		return
	}
	ps.q[i].dropped = true
	ps.dropped++
	t.pokeLocked()
}

// pokeLocked tells the committer there is something to look at.
func (t *Tracker) pokeLocked() {
	select {
	case t.ready <- struct{}{}:
	default:
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
	if ps.q[i].dropped { // given up, then finished all the same
		ps.q[i].dropped = false
		ps.dropped--
	}
	ps.q[i].acked = true
	ps.acks++
	for ps.done < len(ps.q) && ps.q[ps.done].acked {
		ps.done++
	}
	if 2*ps.done >= t.window || ps.gone.Load() {
		t.pokeLocked()
	}
}

// Ready receives a value when some partition has half a window or more
// acknowledged and not committed, or, after Revoke, when an offset of the
// revoked assignment is acknowledged or dropped: a committer should
// commit now rather than at its next tick.
func (t *Tracker) Ready() <-chan struct{} { return t.ready }

// Commits returns, for every partition whose commit point has moved past
// its committed offset, the offset to commit. The result is in partition
// order.
func (t *Tracker) Commits() []Commit {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.commitsLocked()
}

// CommitsFor is Commits for assignment a: nothing unless a is the current
// assignment (revoked or not), so a committer of an earlier assignment
// never commits for partitions it no longer owns.
func (t *Tracker) CommitsFor(a Assignment) []Commit {
	t.mu.Lock()
	defer t.mu.Unlock()
	if a != t.epoch {
		return nil
	}
	return t.commitsLocked()
}

func (t *Tracker) commitsLocked() []Commit {
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
			if e.dropped {
				ps.dropped--
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
