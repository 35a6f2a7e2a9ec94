package source

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/kafka"
	"github.com/sluicehq/sluice/record"
)

// KafkaConfig configures the Kafka source. Brokers, Topics and Group are
// required; every other zero value is a documented default.
type KafkaConfig struct {
	// Brokers are the bootstrap addresses, host:port.
	Brokers []string
	// Topics are the input topics: URL messages, one per record.
	Topics []string
	// Group is the consumer group. Processes in one group split the
	// partitions between them.
	Group string
	// Dialer opens the connections (client id, TLS, SASL); nil means a
	// plain dialer with a 10 s timeout.
	Dialer *kafkago.Dialer

	// StartAtEnd makes a group that has no committed offset for a partition
	// start at its end instead of its beginning.
	StartAtEnd bool
	// Prefetch is how many records are read ahead per partition (the
	// reader's queue). 0 means 64.
	Prefetch int
	// MaxFetchBytes caps one fetch from a partition. 0 means 1 MiB.
	MaxFetchBytes int
	// MaxWait bounds how long a fetch waits for new records; it also bounds
	// how long a stop waits for a fetch. 0 means 250 ms.
	MaxWait time.Duration
	// Window is the most records per partition that may be read and not yet
	// committed (see kafka.Tracker): it bounds both what a stalled input holds
	// back and what a crash delivers again. 0 means 512.
	Window int
	// CommitInterval is how often acknowledged offsets are committed; a
	// half-full window commits at once. 0 means 1 s.
	CommitInterval time.Duration
	// Timeout bounds each call to the group coordinator: a commit, a
	// heartbeat. 0 means 5 s.
	Timeout time.Duration
	// SessionTimeout is how long the group waits for a silent member before
	// giving its partitions to others. 0 means 10 s.
	SessionTimeout time.Duration
	// HeartbeatInterval is how often the member tells the group it is alive.
	// 0 means SessionTimeout / 4.
	HeartbeatInterval time.Duration
	// RebalanceTimeout is how long a rebalance waits for members to rejoin.
	// 0 means 30 s.
	RebalanceTimeout time.Duration
	// RevokeWait bounds how long the member, when a generation ends (a
	// rebalance), waits for the acks of inputs already in flight, committing
	// as they come, before it gives its partitions up: what is not
	// acknowledged by then is delivered again to the next owner. The wait
	// is also held below half the session timeout and half the rebalance
	// timeout, so that the member rejoins before the group drops it.
	// 0 means 5 s; negative means no wait.
	RevokeWait time.Duration
	// MaxMessageBytes caps one URL message; a longer record is a dead
	// letter, keeping its first MaxMessageBytes bytes. 0 means
	// MaxMessageBytes (64 KiB).
	MaxMessageBytes int
	// Delayed makes the source read a delay topic (delay.go): each record
	// is a record.Delayed, and a partition's reader waits until its next
	// record is due before reading it in, holding no window slot and no
	// part of the pipeline meanwhile.
	Delayed bool

	// Logger receives warnings (and kafka-go's own lines at debug level).
	Logger zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (c *KafkaConfig) setDefaults() {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Dialer == nil {
		c.Dialer = &kafkago.Dialer{Timeout: 10 * time.Second, DualStack: true}
	}
	if c.Prefetch == 0 {
		c.Prefetch = 64
	}
	if c.MaxFetchBytes == 0 {
		c.MaxFetchBytes = 1 << 20
	}
	def(&c.MaxWait, 250*time.Millisecond)
	if c.Window == 0 {
		c.Window = 512
	}
	def(&c.CommitInterval, time.Second)
	def(&c.Timeout, 5*time.Second)
	def(&c.SessionTimeout, 10*time.Second)
	def(&c.HeartbeatInterval, c.SessionTimeout/4)
	def(&c.RebalanceTimeout, 30*time.Second)
	def(&c.RevokeWait, 5*time.Second)
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = MaxMessageBytes
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every invalid setting.
func (c *KafkaConfig) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("no brokers"))
	}
	if len(c.Topics) == 0 {
		errs = append(errs, errors.New("no input topic"))
	}
	if c.Group == "" {
		errs = append(errs, errors.New("no consumer group"))
	}
	if c.Prefetch < 1 || c.Window < 1 || c.MaxFetchBytes < 1 || c.MaxMessageBytes < 1 {
		errs = append(errs, fmt.Errorf("prefetch %d, window %d, max fetch bytes %d and max message bytes %d must be positive",
			c.Prefetch, c.Window, c.MaxFetchBytes, c.MaxMessageBytes))
	}
	for name, d := range map[string]time.Duration{"max wait": c.MaxWait, "commit interval": c.CommitInterval, "timeout": c.Timeout,
		"session timeout": c.SessionTimeout, "heartbeat interval": c.HeartbeatInterval, "rebalance timeout": c.RebalanceTimeout} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s %v must be positive", name, d))
		}
	}
	return errors.Join(errs...)
}

// revokeWait is the effective RevokeWait: at most half the session and
// rebalance timeouts; 0 for no wait.
func (c *KafkaConfig) revokeWait() time.Duration {
	return max(0, min(c.RevokeWait, c.SessionTimeout/2, c.RebalanceTimeout/2))
}

// Kafka is a consumer-group source. Each generation of the group assigns
// this member some partitions; one reader per partition fetches records
// (kafka-go FetchMessage, which never commits by itself) into Tasks, and a
// committer commits, per partition, the offset below which every Task is
// acknowledged (see kafka.Tracker), at an interval, at the end of each
// generation and at Close. Input that is not a URL message becomes a Task
// with Dead set, which the pipeline writes as a dead letter and
// acknowledges, so it is committed like any other record.
//
// Revocation: when a generation ends (a rebalance), the readers stop, Tasks
// not yet fetched are disowned (Task.Owned reports false: the fetch stage
// drops them, unacknowledged, and the next owner reads them again), and
// the member waits, at most RevokeWait, for the acks of the Tasks in
// flight, committing as they come; then it commits and gives its
// partitions up. Commits are made with the generation's id and only for
// the partitions of that generation's assignment (kafka.Tracker
// CommitsFor), so a member never commits for a partition it no longer
// owns, and the broker refuses a late commit of an ended generation.
//
// Lifecycle: NewKafka starts nothing. Running the Source joins the group;
// when its stop context ends the readers stop and the source's output
// closes, but the member stays in the group, committing what the pipeline
// acknowledges while it drains. Close, after the pipeline has finished,
// commits a last time and leaves the group.
type Kafka struct {
	cfg     KafkaConfig
	tracker *kafka.Tracker
	src     *flow.Source[record.Task]
	log     zerolog.Logger
	broken  chan error // the first panic in a goroutine of the source's own; run returns it

	mu       sync.Mutex // guards the fields below
	group    *kafkago.ConsumerGroup
	cancel   context.CancelFunc // ends the generation manager
	mgrDone  chan struct{}
	assigned []kafka.Partition
	inGen    bool                      // a member of a live generation
	high     map[kafka.Partition]int64 // high-water marks seen, by partition
	commits  uint64
	revokes  uint64 // generations given up
	leftover uint64 // inputs in flight when a revoke wait ran out
	closed   bool
}

// NewKafka validates cfg and builds the source. It starts nothing.
func NewKafka(cfg KafkaConfig) (*Kafka, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka source config: %w", err)
	}
	k := &Kafka{cfg: cfg, tracker: kafka.NewTracker(cfg.Window), log: cfg.Logger.With().Str("stage", "source").Logger(),
		broken: make(chan error, 1)}
	k.src = flow.NewSource("source", k.run)
	return k, nil
}

// Source returns the stage to connect into a pipeline.
func (k *Kafka) Source() *flow.Source[record.Task] { return k.src }

// Tracker returns the acknowledgement tracker, for gauges.
func (k *Kafka) Tracker() *kafka.Tracker { return k.tracker }

// Assigned returns the partitions of the current generation.
func (k *Kafka) Assigned() []kafka.Partition {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]kafka.Partition(nil), k.assigned...)
}

// Ready reports whether the source is a member of a live generation of
// its group (readiness: an error while it joins or rebalances). Safe for
// concurrent use.
func (k *Kafka) Ready() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.inGen {
		return fmt.Errorf("not in a generation of consumer group %q", k.cfg.Group)
	}
	return nil
}

// Position is an assigned partition's committed offset and the high-water
// mark (the end of the partition) last seen by its reader; their
// difference is the consumer lag.
type Position struct {
	kafka.Partition
	Committed int64 // -1: none yet
	HighWater int64 // -1: nothing fetched yet
}

// Positions returns the positions of the assigned partitions. Safe for
// concurrent use.
func (k *Kafka) Positions() []Position {
	st := k.tracker.Status()
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]Position, 0, len(st))
	for _, s := range st {
		hw, ok := k.high[s.Partition]
		if !ok {
			hw = -1
		}
		out = append(out, Position{Partition: s.Partition, Committed: s.Committed, HighWater: hw})
	}
	return out
}

// Revocations returns how many generations the member has given up and
// how many inputs were still in flight (neither acknowledged nor dropped)
// when the revoke wait ran out: those are delivered again.
func (k *Kafka) Revocations() (generations, abandoned uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.revokes, k.leftover
}

// Commits returns how many commits the broker has accepted.
func (k *Kafka) Commits() uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.commits
}

func (k *Kafka) run(stop context.Context, emit flow.Emit[record.Task]) error {
	start := kafkago.FirstOffset
	if k.cfg.StartAtEnd {
		start = kafkago.LastOffset
	}
	group, err := kafkago.NewConsumerGroup(kafkago.ConsumerGroupConfig{
		ID:                    k.cfg.Group,
		Brokers:               k.cfg.Brokers,
		Dialer:                k.cfg.Dialer,
		Topics:                k.cfg.Topics,
		HeartbeatInterval:     k.cfg.HeartbeatInterval,
		SessionTimeout:        k.cfg.SessionTimeout,
		RebalanceTimeout:      k.cfg.RebalanceTimeout,
		JoinGroupBackoff:      time.Second,
		WatchPartitionChanges: true,
		StartOffset:           start,
		Timeout:               k.cfg.Timeout,
		Logger:                kafkago.LoggerFunc(k.debugf),
		ErrorLogger:           kafkago.LoggerFunc(k.debugf),
	})
	if err != nil {
		return fmt.Errorf("kafka consumer group: %w", err)
	}
	life, cancel := context.WithCancel(context.Background())
	tasks := make(chan record.Task)
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		cancel()
		return group.Close()
	}
	k.group, k.cancel, k.mgrDone = group, cancel, make(chan struct{})
	k.mu.Unlock()
	go k.manage(life, stop, group, tasks) // owner: k; ends in Close
	for {
		select {
		case <-stop.Done():
			return nil
		case err := <-k.broken:
			return err
		case t := <-tasks:
			if !t.StillOwned() {
				continue // revoked while it waited here: the next owner reads it
			}
			if err := emit(t); err != nil {
				return nil // hard stop: t stays unacknowledged
			}
		}
	}
}

// manage follows the group's generations until Close.
func (k *Kafka) manage(life, stop context.Context, group *kafkago.ConsumerGroup, tasks chan<- record.Task) {
	defer close(k.mgrDone)
	defer k.recovered("group")
	for {
		gen, err := group.Next(life)
		if err != nil {
			if errors.Is(err, kafkago.ErrGroupClosed) || life.Err() != nil {
				return
			}
			k.log.Warn().Err(err).Str("group", k.cfg.Group).Msg("joining the consumer group failed; retrying")
			continue
		}
		committed := map[kafka.Partition]int64{}
		var parts []kafka.Partition
		for topic, pas := range gen.Assignments {
			for _, pa := range pas {
				p := kafka.Partition{Topic: topic, ID: pa.ID}
				committed[p] = pa.Offset
				parts = append(parts, p)
			}
		}
		a := k.tracker.Assign(committed)
		k.mu.Lock()
		k.assigned, k.inGen = parts, true
		k.mu.Unlock()
		k.log.Info().Str("group", k.cfg.Group).Int32("generation", gen.ID).Int("partitions", len(parts)).
			Str("assigned", fmt.Sprint(parts)).Msg("partitions assigned")
		gen.Start(func(ctx context.Context) {
			defer k.recovered("generation")
			k.generation(ctx, stop, gen, a, tasks)
		})
	}
}

// generation runs one generation: a reader per assigned partition (unless
// the source has stopped) and the committer. It returns when the generation
// ends, after the revocation (see revoke).
func (k *Kafka) generation(ctx, stop context.Context, gen *kafkago.Generation, a kafka.Assignment, tasks chan<- record.Task) {
	fetchCtx, cancel := context.WithCancel(ctx)
	defer context.AfterFunc(stop, cancel)()
	var wg sync.WaitGroup
	if stop.Err() == nil {
		for topic, pas := range gen.Assignments {
			for _, pa := range pas {
				wg.Add(1)
				go func() { // owner: this generation; ends when fetchCtx does
					defer wg.Done()
					defer k.recovered(fmt.Sprintf("partition %s/%d", topic, pa.ID))
					k.fetch(fetchCtx, topic, pa, tasks)
				}()
			}
		}
	}
	tick := time.NewTicker(k.cfg.CommitInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			k.revoke(gen, a, func() { cancel(); wg.Wait() })
			return
		case <-tick.C:
			k.commit(gen, a)
		case <-k.tracker.Ready():
			k.commit(gen, a)
		}
	}
}

// revoke gives up the generation's partitions: it disowns what is not yet
// fetched, stops the readers (stopReaders), waits at most the revoke wait
// for the acks of what is in flight, committing as they come (the
// coordinator still takes commits of this generation while the group
// prepares the rebalance: it waits for this member to rejoin), commits a
// last time and forgets the assignment. After Close it does not wait: the
// pipeline has finished, and what it left unacknowledged never will be.
func (k *Kafka) revoke(gen *kafkago.Generation, a kafka.Assignment, stopReaders func()) {
	k.tracker.Revoke(a)
	stopReaders()
	k.mu.Lock()
	k.inGen = false
	closed := k.closed
	k.mu.Unlock()
	wait := k.cfg.revokeWait()
	if closed {
		wait = 0
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	left := k.tracker.Outstanding(a)
waiting:
	for left > 0 && wait > 0 {
		select {
		case <-k.tracker.Ready():
			k.commit(gen, a)
			left = k.tracker.Outstanding(a)
		case <-timer.C:
			break waiting
		}
	}
	k.commit(gen, a)
	k.tracker.Forget(a)
	k.mu.Lock()
	k.revokes++
	k.leftover += uint64(left)
	k.mu.Unlock()
	if left > 0 {
		k.log.Info().Str("group", k.cfg.Group).Int32("generation", gen.ID).Int("abandoned", left).Dur("waited", wait).
			Msg("partitions given up with inputs in flight: they are delivered again to the next owner")
	}
}

// recovered, deferred in a goroutine of the source's own (flow guards
// only run's), turns a panic into the source's error: run returns it, so
// the pipeline stops reading and drains instead of crashing.
func (k *Kafka) recovered(where string) {
	if r := recover(); r != nil {
		select {
		case k.broken <- fmt.Errorf("%s: panic: %v", where, r):
		default: // run has one already
		}
	}
}

// commit commits what the tracker names for assignment a, within the
// coordinator timeout.
func (k *Kafka) commit(gen *kafkago.Generation, a kafka.Assignment) {
	cs := k.tracker.CommitsFor(a)
	if len(cs) == 0 {
		return
	}
	offsets := map[string]map[int]int64{}
	for _, c := range cs {
		if offsets[c.Topic] == nil {
			offsets[c.Topic] = map[int]int64{}
		}
		offsets[c.Topic][c.ID] = c.Offset
	}
	if err := gen.CommitOffsets(offsets); err != nil {
		// The generation is ending or the coordinator is away: what is not
		// committed is delivered again, to this member or another.
		k.log.Warn().Err(err).Int32("generation", gen.ID).Msg("commit failed")
		return
	}
	k.tracker.Committed(cs)
	k.mu.Lock()
	k.commits++
	k.mu.Unlock()
}

// fetch reads one partition until ctx ends. The reader is closed only
// after the loop has stopped calling FetchMessage.
func (k *Kafka) fetch(ctx context.Context, topic string, pa kafkago.PartitionAssignment, tasks chan<- record.Task) {
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:        k.cfg.Brokers,
		Topic:          topic,
		Partition:      pa.ID,
		Dialer:         k.cfg.Dialer,
		QueueCapacity:  k.cfg.Prefetch,
		MinBytes:       1,
		MaxBytes:       k.cfg.MaxFetchBytes,
		MaxWait:        k.cfg.MaxWait,
		ReadBackoffMin: 100 * time.Millisecond,
		ReadBackoffMax: time.Second,
		MaxAttempts:    3,
		Logger:         kafkago.LoggerFunc(k.debugf),
		ErrorLogger:    kafkago.LoggerFunc(k.debugf),
	})
	defer r.Close()
	if err := r.SetOffset(pa.Offset); err != nil {
		k.log.Warn().Err(err).Str("topic", topic).Int("partition", pa.ID).Msg("cannot set the read offset")
		return
	}
	p := kafka.Partition{Topic: topic, ID: pa.ID}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			k.log.Warn().Err(err).Str("topic", topic).Int("partition", pa.ID).Msg("fetch failed; retrying")
			if !sleepCtx(ctx, time.Second) {
				return
			}
			continue
		}
		k.mu.Lock()
		if k.high == nil {
			k.high = map[kafka.Partition]int64{}
		}
		k.high[p] = m.HighWaterMark
		k.mu.Unlock()
		if k.cfg.Delayed && !sleepCtx(ctx, delayDue(m.Value).Sub(k.cfg.Now())) {
			return
		}
		d, err := k.tracker.Deliver(ctx, p, m.Offset)
		if err != nil {
			return
		}
		select {
		case tasks <- k.task(m, d):
		case <-ctx.Done():
			return
		}
	}
}

// task decodes one record. A record that is not a URL message becomes a
// dead Task carrying at most MaxMessageBytes of the original bytes.
func (k *Kafka) task(m kafkago.Message, d kafka.Delivery) record.Task {
	t := record.Task{
		Origin: record.Origin{
			Topic: m.Topic, Partition: m.Partition, Offset: m.Offset,
			Raw: clipBytes(m.Value, k.cfg.MaxMessageBytes), RawKey: clipBytes(m.Key, k.cfg.MaxMessageBytes),
		},
		Enqueued: k.cfg.Now(),
		Ack:      d.Ack,
		Owned:    d.Owned,
	}
	if k.cfg.Delayed {
		t.Msg, t.URL, t.Parks, t.ParkErr, t.Err = DecodeDelayed(m.Value, k.cfg.MaxMessageBytes)
	} else {
		t.Msg, t.URL, t.Err = Decode(m.Value, k.cfg.MaxMessageBytes)
	}
	t.Dead = t.Err != nil
	return t
}

// Run runs the source's body, as Source does: for a source that merges
// this one with others (Merge).
func (k *Kafka) Run(stop context.Context, emit flow.Emit[record.Task]) error {
	return k.run(stop, emit)
}

// Close commits what is acknowledged and leaves the group. Call it once the
// pipeline has finished (flow.Run returned). It blocks until the member has
// left, which is bounded by the coordinator timeout. Close is idempotent.
func (k *Kafka) Close() error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil
	}
	k.closed = true
	group, cancel, done := k.group, k.cancel, k.mgrDone
	k.mu.Unlock()
	if group == nil {
		return nil
	}
	// Closing the group ends the generation (whose last commit runs first)
	// and then leaves the group.
	err := group.Close()
	cancel()
	<-done
	return err
}

func (k *Kafka) debugf(format string, args ...any) {
	k.log.Debug().Msgf(format, args...)
}

func clipBytes(b []byte, n int) []byte {
	if len(b) > n {
		b = b[:n]
	}
	return append([]byte(nil), b...)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
