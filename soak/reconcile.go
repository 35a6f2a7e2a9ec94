package soak

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

// idSet is the ids of the inputs produced, safe for concurrent use.
type idSet struct {
	mu  sync.Mutex
	ids map[int]struct{}
}

func newIDSet() *idSet { return &idSet{ids: map[int]struct{}{}} }

func (s *idSet) add(ids ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		s.ids[id] = struct{}{}
	}
}

func (s *idSet) snapshot() map[int]struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int]struct{}, len(s.ids))
	for id := range s.ids {
		out[id] = struct{}{}
	}
	return out
}

// Reconciliation is how every input produced ended.
type Reconciliation struct {
	Produced   int            // inputs the broker acknowledged
	OK         int            // inputs with a result without error
	Errors     int            // inputs whose only outcome is an error result
	Dead       int            // inputs that ended as a dead letter
	Lost       int            // inputs with no outcome at all; -1: not reconciled (interrupted)
	LostIDs    []int          // the first of them
	Duplicates int            // outcomes past the first, over all inputs
	ErrorClass map[string]int // error results by class
	Stray      int            // outcomes of ids never produced (a failed produce that got through)
}

var soakID = regexp.MustCompile(`soak=(\d+)`)

// outcomes reads the results and dead-letter topics and tallies them
// against produced.
func (s *soak) outcomes(ctx context.Context, produced map[int]struct{}) (Reconciliation, error) {
	rec := Reconciliation{Produced: len(produced), ErrorClass: map[string]int{}}
	type tally struct{ ok, errs, dead int }
	seen := map[int]*tally{}
	get := func(id int) *tally {
		t := seen[id]
		if t == nil {
			t = &tally{}
			seen[id] = t
		}
		return t
	}
	results, err := testbed.ReadTopic(ctx, s.cfg.Brokers, s.results)
	if err != nil {
		return rec, fmt.Errorf("read results: %w", err)
	}
	errClass := map[int]string{}
	for _, m := range results {
		var r record.Result
		if err := json.Unmarshal(m.Value, &r); err != nil {
			return rec, fmt.Errorf("result record at %d/%d: %w", m.Partition, m.Offset, err)
		}
		id, ok := idOf(r.URL)
		if !ok {
			continue
		}
		if r.Error != nil {
			get(id).errs++
			errClass[id] = r.Error.Class
		} else {
			get(id).ok++
		}
	}
	dead, err := testbed.ReadTopic(ctx, s.cfg.Brokers, s.dead)
	if err != nil {
		return rec, fmt.Errorf("read dead letters: %w", err)
	}
	for _, m := range dead {
		var d record.DeadLetter
		if err := json.Unmarshal(m.Value, &d); err != nil {
			return rec, fmt.Errorf("dead letter at %d/%d: %w", m.Partition, m.Offset, err)
		}
		if id, ok := idOf(string(d.Value)); ok {
			get(id).dead++
		}
	}
	for id := range produced {
		t := seen[id]
		switch {
		case t == nil:
			rec.Lost++
			rec.LostIDs = append(rec.LostIDs, id)
			continue
		case t.ok > 0:
			rec.OK++
		case t.dead > 0:
			rec.Dead++
		default:
			rec.Errors++
			rec.ErrorClass[errClass[id]]++
		}
		rec.Duplicates += t.ok + t.errs + t.dead - 1
	}
	for id := range seen {
		if _, ok := produced[id]; !ok {
			rec.Stray++
		}
	}
	sort.Ints(rec.LostIDs)
	if len(rec.LostIDs) > 20 {
		rec.LostIDs = rec.LostIDs[:20]
	}
	return rec, nil
}

func idOf(s string) (int, bool) {
	m := soakID.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	id, err := strconv.Atoi(m[1])
	return id, err == nil
}

// drain waits, up to cfg.Drain, until the group has no lag and every
// input produced has an outcome, then returns the reconciliation. (Lag 0
// alone is not enough: an input parked on a delay topic is committed
// before its result is written.)
func (s *soak) drain(ctx context.Context, produced *idSet) (Reconciliation, error) {
	deadline := time.Now().Add(s.cfg.Drain)
	ids := produced.snapshot()
	for {
		lag, err := s.lag(ctx)
		if err == nil && lag == 0 {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			rec, err := s.outcomes(rctx, ids)
			cancel()
			if err == nil && rec.Lost == 0 || time.Now().After(deadline) {
				fmt.Fprintf(s.cfg.Log, "%6.1fs drained: %d produced, %d lost\n", s.elapsed(), rec.Produced, rec.Lost)
				return rec, err
			}
		} else if time.Now().After(deadline) {
			s.dumpStuck(ctx)
			rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			rec, rerr := s.outcomes(rctx, ids)
			if rerr != nil {
				return rec, rerr
			}
			return rec, fmt.Errorf("lag still %d after the drain of %v (%v)", lag, s.cfg.Drain, err)
		}
		_ = s.restartCrashed(ctx)
		select {
		case <-ctx.Done():
			return Reconciliation{Produced: len(ids), Lost: -1}, fmt.Errorf("not reconciled: %w", ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}
