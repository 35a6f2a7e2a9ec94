package source

import (
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

// TestKafkaSourceRevokeWaitsForInFlight: member a holds the acks of every
// record it read when member b joins. a's generation ends; a stops
// reading, and while it waits for its inputs in flight (the revoke wait)
// the acks come in: a commits them before it gives its partitions up, so
// b, which takes some of them over, reads nothing again.
func TestKafkaSourceRevokeWaitsForInFlight(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	topic := testbed.CreateKafkaTopic(t, brokers, "src-revoke", 2)
	group := testbed.UniqueName("g")
	const n = 40
	testbed.ProduceKafka(t, brokers, topic, testbed.Spread(urlValues(n), 2))

	var mu sync.Mutex
	var held []record.Ack
	hold := true
	ca := &collector{ack: func(task record.Task) bool {
		mu.Lock()
		defer mu.Unlock()
		if hold {
			held = append(held, task.Ack)
		}
		return !hold
	}}
	// A 10 s session lets the revoke wait run its full 5 s.
	cfg := KafkaConfig{Brokers: brokers, Topics: []string{topic}, Group: group, SessionTimeout: 10 * time.Second, RevokeWait: 5 * time.Second}
	a := startSource(t, cfg, ca)
	waitFor(t, "member a's records", func() bool { return ca.count() == n })
	if got := committed(t, brokers, group, topic, 2); got[0] > 0 || got[1] > 0 {
		t.Fatalf("committed %v with every ack held", got)
	}
	cb := &collector{}
	b := startSource(t, cfg, cb)
	// a is giving its partitions up: out of the generation, waiting for
	// the acks of its 40 inputs in flight.
	waitFor(t, "member a's revocation", func() bool { return a.k.Ready() != nil })
	mu.Lock()
	hold = false
	for _, ack := range held {
		ack.Done()
	}
	held = nil
	mu.Unlock()
	waitFor(t, "the split", func() bool {
		return len(a.k.Assigned()) == 1 && len(b.k.Assigned()) == 1 && a.k.Ready() == nil && b.k.Ready() == nil
	})
	if got := committed(t, brokers, group, topic, 2); got[0]+got[1] != n {
		t.Fatalf("committed %v after the revocation, want all %d", got, n)
	}
	testbed.ProduceKafka(t, brokers, topic, testbed.Spread(urlValues(10), 2))
	waitFor(t, "the later records", func() bool { return ca.count()+cb.count() == n+10 })
	a.stop(t)
	b.stop(t)
	if cb.count() != 5 || ca.count() != n+5 {
		t.Fatalf("member b read %d records, a %d: want b only its partition's 5 new ones", cb.count(), ca.count())
	}
	revokes, left := a.k.Revocations()
	if revokes == 0 || left != 0 {
		t.Fatalf("member a: %d revocations, %d inputs left in flight; want at least 1 and 0", revokes, left)
	}
}

// TestKafkaSourceRevokeWaitRunsOut: member a never acknowledges; when b
// joins, a's revoke wait runs out and it gives its partitions up with
// every input still in flight: it commits nothing, and b reads its
// partition from the start again.
func TestKafkaSourceRevokeWaitRunsOut(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	topic := testbed.CreateKafkaTopic(t, brokers, "src-revoke-out", 2)
	group := testbed.UniqueName("g")
	const n = 40
	testbed.ProduceKafka(t, brokers, topic, testbed.Spread(urlValues(n), 2))
	ca := &collector{ack: func(record.Task) bool { return false }}
	cfg := KafkaConfig{Brokers: brokers, Topics: []string{topic}, Group: group, SessionTimeout: 10 * time.Second,
		RevokeWait: 200 * time.Millisecond}
	a := startSource(t, cfg, ca)
	waitFor(t, "member a's records", func() bool { return ca.count() == n })
	cb := &collector{}
	b := startSource(t, cfg, cb)
	waitFor(t, "member b's partition, read from its start", func() bool { return cb.count() == n/2 })
	b.stop(t)
	a.stop(t)
	revokes, left := a.k.Revocations()
	if revokes == 0 || left < n {
		t.Fatalf("member a: %d revocations, %d inputs left in flight; want at least 1 and %d", revokes, left, n)
	}
	// Only b acknowledged: its partition is committed, a's is not.
	if got := committed(t, brokers, group, topic, 2); max(got[0], 0)+max(got[1], 0) != n/2 {
		t.Fatalf("committed %v, want only member b's %d", got, n/2)
	}
}
