package source

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/kafka"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

// collector is a test sink that records the Tasks it receives and
// acknowledges those that ack accepts.
type collector struct {
	mu    sync.Mutex
	tasks []record.Task
	held  map[int64]record.Ack // unacknowledged, by offset (single-partition tests)
	ack   func(record.Task) bool
}

func (c *collector) sink() *flow.Sink[record.Task] {
	var s *flow.Sink[record.Task]
	s = flow.NewSink("collect", 16, func(ctx context.Context, in flow.Inbox[record.Task]) error {
		for {
			t, ok := in.Recv(ctx)
			if !ok {
				return nil
			}
			c.mu.Lock()
			c.tasks = append(c.tasks, t)
			if c.ack == nil || c.ack(t) {
				t.Ack.Done()
			} else {
				if c.held == nil {
					c.held = map[int64]record.Ack{}
				}
				c.held[t.Origin.Offset] = t.Ack
			}
			c.mu.Unlock()
			s.Stats().Done(1)
		}
	})
	return s
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.tasks)
}

func (c *collector) snapshot() []record.Task {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]record.Task(nil), c.tasks...)
}

func (c *collector) release(off int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held[off].Done()
	delete(c.held, off)
}

// running is a Kafka source wired to a collector, running in the background.
type running struct {
	k      *Kafka
	c      *collector
	cancel context.CancelFunc
	done   chan error
}

func startSource(t *testing.T, cfg KafkaConfig, c *collector) *running {
	t.Helper()
	if cfg.CommitInterval == 0 {
		cfg.CommitInterval = 100 * time.Millisecond
	}
	if cfg.SessionTimeout == 0 {
		cfg.SessionTimeout = 3 * time.Second
	}
	cfg.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	k, err := NewKafka(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sink := c.sink()
	flow.Connect(k.Source(), sink)
	soft, cancel := context.WithCancel(context.Background())
	r := &running{k: k, c: c, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- flow.Run(context.Background(), soft, k.Source(), sink) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop stops reading, waits for the pipeline to drain and closes the
// source (last commit, leave the group). Stopping twice does nothing.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		t.Errorf("pipeline: %v", err)
	}
	if err := r.k.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline (a safety net, not a timing assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func committed(t *testing.T, brokers []string, group, topic string, partitions int) map[int]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := testbed.CommittedOffsets(ctx, brokers, group, topic, partitions)
	if err != nil {
		t.Fatal(err)
	}
	return offs
}

func urlValues(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("http://127.0.0.1:1/product/%d", i+1)
	}
	return out
}

func TestKafkaSourceDeliversDecodesAndCommits(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	topic := testbed.CreateKafkaTopic(t, brokers, "src-all", 3)
	group := testbed.UniqueName("g")
	values := urlValues(300)
	poison := map[string]string{
		"\xff\xfe not utf-8":                                "not valid UTF-8",
		"ftp://example.com/file":                            "not http or https",
		`{"url": "http://127.0.0.1:1/x", "colour": "blue"}`: "not a URL message",
		strings.Repeat("x", 70<<10):                         "exceeds the cap",
		"":                                                  "empty URL",
	}
	for v := range poison {
		values = append(values, v)
	}
	values = append(values, `{"url": "http://127.0.0.1:1/json", "key": "k1", "meta": {"a": 1}}`)
	testbed.ProduceKafka(t, brokers, topic, testbed.Spread(values, 3))

	c := &collector{}
	r := startSource(t, KafkaConfig{Brokers: brokers, Topics: []string{topic}, Group: group}, c)
	waitFor(t, "every record", func() bool { return c.count() >= len(values) })
	waitFor(t, "every offset committed", func() bool {
		offs := committed(t, brokers, group, topic, 3)
		return offs[0]+offs[1]+offs[2] == int64(len(values))
	})
	r.stop(t)

	tasks := c.snapshot()
	if len(tasks) != len(values) {
		t.Fatalf("%d tasks for %d records", len(tasks), len(values))
	}
	dead := 0
	for _, task := range tasks {
		if task.Origin.Topic != topic || len(task.Origin.Raw) > MaxMessageBytes {
			t.Errorf("origin %s/%d@%d with %d raw bytes", task.Origin.Topic, task.Origin.Partition, task.Origin.Offset, len(task.Origin.Raw))
		}
		if !task.Dead {
			if task.Err != nil || task.URL == nil {
				t.Errorf("live task with error %v", task.Err)
			}
			continue
		}
		dead++
		if failure.ClassOf(task.Err) != failure.BadInput {
			t.Errorf("dead task of class %q: %v", failure.ClassOf(task.Err), task.Err)
		}
		raw := string(task.Origin.Raw)
		var want string
		for v, reason := range poison {
			if v == raw || (len(v) > MaxMessageBytes && strings.HasPrefix(v, raw) && len(raw) == MaxMessageBytes) {
				want = reason
			}
		}
		if want == "" || !strings.Contains(task.Err.Error(), want) {
			t.Errorf("dead task %q: error %v, want one saying %q", clip(raw), task.Err, want)
		}
	}
	if dead != len(poison) {
		t.Errorf("%d dead tasks, want %d", dead, len(poison))
	}
	for _, task := range tasks {
		if task.Msg.Key == "k1" && (task.Msg.URL != "http://127.0.0.1:1/json" || string(task.Msg.Meta) != `{"a": 1}`) {
			t.Errorf("JSON message decoded as %+v", task.Msg)
		}
	}
}

// TestKafkaSourceCommitStopsAtUnacked acknowledges every record of a
// partition but one: the committed offset stops at that one, and a new
// member of the group starts reading there again.
func TestKafkaSourceCommitStopsAtUnacked(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	topic := testbed.CreateKafkaTopic(t, brokers, "src-gap", 1)
	group := testbed.UniqueName("g")
	testbed.ProduceKafka(t, brokers, topic, testbed.Spread(urlValues(40), 1))

	const stalled = 7
	c := &collector{ack: func(t record.Task) bool { return t.Origin.Offset != stalled }}
	r := startSource(t, KafkaConfig{Brokers: brokers, Topics: []string{topic}, Group: group}, c)
	waitFor(t, "every record", func() bool { return c.count() == 40 })
	waitFor(t, "the commit up to the stalled record", func() bool { return committed(t, brokers, group, topic, 1)[0] == stalled })
	// The tracker learns of the commit once the broker has answered.
	waitFor(t, "the tracker to record the commit", func() bool {
		st := r.k.Tracker().Status()
		return len(st) == 1 && st[0].Committed == stalled
	})
	st := r.k.Tracker().Status()
	if len(st) != 1 || st[0].Committed != stalled || st[0].Unacked != 1 || st[0].Uncommitted != 40-stalled {
		t.Fatalf("tracker status %+v", st)
	}
	// The member leaves with offset 7 unacknowledged (a crash would do the
	// same): the committed offset never passed it.
	r.stop(t)
	if got := committed(t, brokers, group, topic, 1)[0]; got != stalled {
		t.Fatalf("committed %d after close, want %d", got, stalled)
	}

	// The next member starts at the stalled record: 7..39 come again.
	c2 := &collector{}
	r2 := startSource(t, KafkaConfig{Brokers: brokers, Topics: []string{topic}, Group: group}, c2)
	waitFor(t, "redelivery", func() bool { return c2.count() == 40-stalled })
	waitFor(t, "the full commit", func() bool { return committed(t, brokers, group, topic, 1)[0] == 40 })
	r2.stop(t)
	for i, task := range c2.snapshot() {
		if task.Origin.Offset != int64(stalled+i) {
			t.Fatalf("redelivered offset %d at %d, want %d", task.Origin.Offset, i, stalled+i)
		}
	}
}

// TestKafkaSourceWindowBoundsUncommitted holds back every ack: the source
// reads exactly a window per partition and then waits, and releasing the
// acks lets it finish.
func TestKafkaSourceWindowBoundsUncommitted(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	topic := testbed.CreateKafkaTopic(t, brokers, "src-window", 2)
	group := testbed.UniqueName("g")
	testbed.ProduceKafka(t, brokers, topic, testbed.Spread(urlValues(200), 2))

	const window = 16
	var mu sync.Mutex
	hold := true
	var held []record.Ack
	c := &collector{}
	c.ack = func(t record.Task) bool {
		mu.Lock()
		defer mu.Unlock()
		if hold {
			held = append(held, t.Ack)
		}
		return !hold
	}
	r := startSource(t, KafkaConfig{Brokers: brokers, Topics: []string{topic}, Group: group, Window: window, Prefetch: 4}, c)
	waitFor(t, "a full window per partition", func() bool { return c.count() == 2*window })
	// Give the readers every chance to overrun the window (an upper bound,
	// checked after a pause, not a timing assertion).
	time.Sleep(time.Second)
	if n := c.count(); n != 2*window {
		t.Fatalf("%d records delivered with %d unacknowledged allowed", n, 2*window)
	}
	mu.Lock()
	hold = false
	for _, a := range held {
		a.Done()
	}
	mu.Unlock()
	waitFor(t, "every record", func() bool { return c.count() == 200 })
	waitFor(t, "every commit", func() bool {
		offs := committed(t, brokers, group, topic, 2)
		return offs[0]+offs[1] == 200
	})
	r.stop(t)
}

// TestKafkaSourceRebalance runs two members of one group in one process:
// they split the partitions, and when one leaves the other takes them over.
func TestKafkaSourceRebalance(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	topic := testbed.CreateKafkaTopic(t, brokers, "src-rebalance", 4)
	group := testbed.UniqueName("g")
	cfg := KafkaConfig{Brokers: brokers, Topics: []string{topic}, Group: group}
	a := startSource(t, cfg, &collector{})
	waitFor(t, "member a's assignment", func() bool { return len(a.k.Assigned()) == 4 })
	b := startSource(t, cfg, &collector{})
	waitFor(t, "the split", func() bool { return len(a.k.Assigned()) == 2 && len(b.k.Assigned()) == 2 })
	union := map[kafka.Partition]bool{}
	for _, p := range append(a.k.Assigned(), b.k.Assigned()...) {
		union[p] = true
	}
	if len(union) != 4 {
		t.Fatalf("members cover %v", union)
	}
	values := urlValues(400)
	testbed.ProduceKafka(t, brokers, topic, testbed.Spread(values, 4))
	waitFor(t, "both members' records", func() bool { return a.c.count()+b.c.count() >= 400 })
	if a.c.count() == 0 || b.c.count() == 0 {
		t.Fatalf("records split %d / %d", a.c.count(), b.c.count())
	}
	waitFor(t, "the commits", func() bool {
		offs := committed(t, brokers, group, topic, 4)
		return offs[0]+offs[1]+offs[2]+offs[3] == 400
	})
	b.stop(t)
	waitFor(t, "member a takes every partition", func() bool { return len(a.k.Assigned()) == 4 })
	testbed.ProduceKafka(t, brokers, topic, testbed.Spread(urlValues(100), 4))
	waitFor(t, "the later records", func() bool { return a.c.count() == 400-b.c.count()+100 })
	a.stop(t)
	seen := map[string]int{}
	for _, task := range append(a.c.snapshot(), b.c.snapshot()...) {
		seen[fmt.Sprintf("%d@%d", task.Origin.Partition, task.Origin.Offset)]++
	}
	if len(seen) != 500 {
		t.Fatalf("%d distinct records of 500", len(seen))
	}
}

func TestKafkaConfigValidate(t *testing.T) {
	if _, err := NewKafka(KafkaConfig{}); err == nil || !strings.Contains(err.Error(), "no brokers") {
		t.Fatalf("empty config: %v", err)
	}
	if _, err := NewKafka(KafkaConfig{Brokers: []string{"x:1"}, Topics: []string{"t"}, Group: "g", Window: -1}); err == nil {
		t.Fatal("negative window accepted")
	}
	k, err := NewKafka(KafkaConfig{Brokers: []string{"x:1"}, Topics: []string{"t"}, Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Close(); err != nil { // never started: nothing to close
		t.Fatal(err)
	}
}
