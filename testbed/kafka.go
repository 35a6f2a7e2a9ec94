package testbed

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
)

// Environment variables that tell Kafka tests where a broker is; .ci/setup-kafka.sh
// exports them.
const (
	// EnvKafkaBrokers holds host:port of a running broker.
	EnvKafkaBrokers = "SLUICE_KAFKA_BROKERS"
	// EnvKafkaBrokerCmd holds the script that runs a broker of one's own
	// (.ci/kafka-broker.sh), for tests that restart it.
	EnvKafkaBrokerCmd = "SLUICE_KAFKA_BROKER_CMD"
	// EnvKafkaLibs holds the directory of Kafka's jars the script runs.
	EnvKafkaLibs = "SLUICE_KAFKA_LIBS"
)

// TB is the part of testing.TB that the test helpers here use; a
// *testing.T or *testing.B is one. It is declared here so that testbed,
// which the pipeline's demo links, does not import package testing.
type TB interface {
	Helper()
	Cleanup(func())
	TempDir() string
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}

// KafkaBrokers returns the broker of SLUICE_KAFKA_BROKERS, or skips the
// test with a message saying how to get one.
func KafkaBrokers(t TB) []string {
	t.Helper()
	b := os.Getenv(EnvKafkaBrokers)
	if b == "" {
		t.Skipf("no Kafka broker: %s is not set (run `source .ci/setup-kafka.sh` to start one)", EnvKafkaBrokers)
	}
	return strings.Split(b, ",")
}

// UniqueName returns prefix followed by a random suffix, for topics and
// groups that no other test uses.
func UniqueName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// KafkaClient returns a client for the brokers with a transport of its
// own, and the function that closes that transport's connections.
func KafkaClient(brokers []string) (*kafka.Client, func()) {
	tr := &kafka.Transport{}
	return &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: tr}, tr.CloseIdleConnections
}

// CreateKafkaTopic creates a topic with a unique name made from prefix and
// the given number of partitions, waits until every partition has a leader,
// and deletes it when the test ends.
func CreateKafkaTopic(t TB, brokers []string, prefix string, partitions int) string {
	t.Helper()
	name := UniqueName(prefix)
	if err := CreateTopics(context.Background(), brokers, partitions, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, done := KafkaClient(brokers)
		defer done()
		_, _ = c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{name}})
	})
	return name
}

// CreateTopics creates topics with the given number of partitions (an
// existing topic is left as it is) and waits until every partition has a
// leader.
func CreateTopics(ctx context.Context, brokers []string, partitions int, names ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	c, done := KafkaClient(brokers)
	defer done()
	req := &kafka.CreateTopicsRequest{}
	for _, n := range names {
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: n, NumPartitions: partitions, ReplicationFactor: 1})
	}
	res, err := c.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics %v: %w", names, err)
	}
	for n, err := range res.Errors {
		if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", n, err)
		}
	}
	for {
		md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
		if err == nil && topicsReady(md, names) {
			for _, n := range names {
				if _, err := EndOffsets(ctx, brokers, n); err != nil {
					return fmt.Errorf("topic %s: %w", n, err)
				}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topics %v have no leaders: %w", names, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func topicsReady(md *kafka.MetadataResponse, names []string) bool {
	ready := 0
	for _, tp := range md.Topics {
		if tp.Error != nil || len(tp.Partitions) == 0 {
			return false
		}
		for _, p := range tp.Partitions {
			if p.Error != nil || p.Leader.Host == "" {
				return false
			}
		}
		ready++
	}
	return ready == len(names)
}

// ProduceKafka writes msgs to topic with acks from all replicas, each to
// the partition its Partition field names (modulo the partition count).
func ProduceKafka(t TB, brokers []string, topic string, msgs []kafka.Message) {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Transport:    tr,
		Topic:        topic,
		Balancer:     kafka.BalancerFunc(func(m kafka.Message, parts ...int) int { return parts[m.Partition%len(parts)] }),
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 5 * time.Millisecond,
		BatchSize:    500,
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for len(msgs) > 0 {
		n := min(len(msgs), 1000)
		err := w.WriteMessages(ctx, msgs[:n]...)
		if errors.Is(err, kafka.UnknownTopicOrPartition) || errors.Is(err, kafka.LeaderNotAvailable) || errors.Is(err, kafka.NotLeaderForPartition) {
			// A new topic's partitions can reach the metadata a moment
			// before the broker serves them: write the batch again.
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
				continue
			}
		}
		if err != nil {
			t.Fatalf("produce to %s: %v", topic, err)
		}
		msgs = msgs[n:]
	}
}

// Spread returns one message per value, partition i mod n.
func Spread(values []string, n int) []kafka.Message {
	out := make([]kafka.Message, len(values))
	for i, v := range values {
		out[i] = kafka.Message{Value: []byte(v), Partition: i % n}
	}
	return out
}

// EndOffsets returns, per partition of topic, the offset the next record
// will get. Errors a new topic gives while its partitions settle (no
// leader yet) are retried until ctx ends.
func EndOffsets(ctx context.Context, brokers []string, topic string) (map[int]int64, error) {
	for {
		ends, err := endOffsets(ctx, brokers, topic)
		var ke kafka.Error
		if err == nil || !errors.As(err, &ke) || !ke.Temporary() {
			return ends, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func endOffsets(ctx context.Context, brokers []string, topic string) (map[int]int64, error) {
	c, done := KafkaClient(brokers)
	defer done()
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, err
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return nil, fmt.Errorf("topic %s: %v", topic, md.Topics)
	}
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kafka.LastOffsetOf(p.ID))
	}
	res, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, err
	}
	out := map[int]int64{}
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, po.Error
		}
		out[po.Partition] = po.LastOffset
	}
	return out, nil
}

// CommittedOffsets returns the group's committed offset per partition of
// topic (-1 where none).
func CommittedOffsets(ctx context.Context, brokers []string, group, topic string, partitions int) (map[int]int64, error) {
	ids := make([]int, partitions)
	for i := range ids {
		ids[i] = i
	}
	c, done := KafkaClient(brokers)
	defer done()
	res, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
	if err != nil {
		return nil, err
	}
	if res.Error != nil {
		return nil, res.Error
	}
	out := map[int]int64{}
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return nil, p.Error
		}
		out[p.Partition] = p.CommittedOffset
	}
	return out, nil
}

// GroupAssignments returns, per member of the group, the partitions of
// topic it is assigned.
func GroupAssignments(ctx context.Context, brokers []string, group, topic string) (map[string][]int, error) {
	c, done := KafkaClient(brokers)
	defer done()
	res, err := c.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return nil, err
	}
	out := map[string][]int{}
	for _, g := range res.Groups {
		if g.Error != nil {
			return nil, g.Error
		}
		for _, m := range g.Members {
			for _, tp := range m.MemberAssignments.Topics {
				if tp.Topic == topic {
					out[m.MemberID] = append(out[m.MemberID], tp.Partitions...)
				}
			}
		}
	}
	return out, nil
}

// ReadKafka returns every record of topic that exists when it is called,
// partition by partition in offset order.
func ReadKafka(t TB, brokers []string, topic string) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	msgs, err := ReadTopic(ctx, brokers, topic)
	if err != nil {
		t.Fatalf("read %s: %v", topic, err)
	}
	return msgs
}

// ReadTopic returns every record of topic below the end offsets it finds
// when called.
func ReadTopic(ctx context.Context, brokers []string, topic string) ([]kafka.Message, error) {
	ends, err := EndOffsets(ctx, brokers, topic)
	if err != nil {
		return nil, err
	}
	parts := make([][]kafka.Message, len(ends))
	errs := make([]error, len(ends))
	var wg sync.WaitGroup
	for p, end := range ends {
		if end == 0 || p >= len(parts) {
			continue
		}
		wg.Add(1)
		go func() { // owner: ReadTopic; ends with the partition's read
			defer wg.Done()
			parts[p], errs[p] = readPartition(ctx, brokers, topic, p, end)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var out []kafka.Message
	for _, msgs := range parts {
		out = append(out, msgs...)
	}
	return out, nil
}

func readPartition(ctx context.Context, brokers []string, topic string, p int, end int64) ([]kafka.Message, error) {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MaxWait: 250 * time.Millisecond, MaxBytes: 8 << 20})
	defer r.Close()
	if err := r.SetOffset(kafka.FirstOffset); err != nil {
		return nil, err
	}
	var out []kafka.Message
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return nil, fmt.Errorf("partition %d: %w", p, err)
		}
		out = append(out, m)
		if m.Offset >= end-1 {
			return out, nil
		}
	}
}

// KafkaBroker is a broker of a test's own, run by SLUICE_KAFKA_BROKER_CMD
// on a free port with its own data directory, so that the test can stop
// and restart it. Methods are not safe for concurrent use.
type KafkaBroker struct {
	t    TB
	cmd  string
	dir  string
	port int
	proc *exec.Cmd
	done chan struct{}
	log  *os.File
}

// StartKafkaBroker starts a broker of the test's own and stops it when the
// test ends. It skips the test when the script or jars are not configured.
func StartKafkaBroker(t TB) *KafkaBroker {
	t.Helper()
	cmd, libs := os.Getenv(EnvKafkaBrokerCmd), os.Getenv(EnvKafkaLibs)
	if cmd == "" || libs == "" {
		t.Skipf("cannot run a Kafka broker of the test's own: %s or %s is not set (run `source .ci/setup-kafka.sh`)", EnvKafkaBrokerCmd, EnvKafkaLibs)
	}
	port, err := freePortPair()
	if err != nil {
		t.Fatal(err)
	}
	b := &KafkaBroker{t: t, cmd: cmd, dir: t.TempDir(), port: port}
	t.Cleanup(func() { b.Stop(syscall.SIGKILL) })
	// A port taken between the check and the bind (by a test of another
	// package, run in parallel) fails the first start: try other ports.
	for try := 1; ; try++ {
		err := b.start()
		if err == nil {
			return b
		}
		if try == 3 || !strings.Contains(b.tail(), "BindException") {
			t.Fatal(err)
		}
		if b.port, err = freePortPair(); err != nil {
			t.Fatal(err)
		}
		b.dir = t.TempDir()
	}
}

// Addr returns the broker's host:port.
func (b *KafkaBroker) Addr() string { return "127.0.0.1:" + strconv.Itoa(b.port) }

// Start starts the broker (again, after Stop, on the same port and data)
// and waits until it has started.
func (b *KafkaBroker) Start() {
	b.t.Helper()
	if err := b.start(); err != nil {
		b.t.Fatal(err)
	}
}

func (b *KafkaBroker) start() error {
	logf, err := os.OpenFile(filepath.Join(b.dir, "broker.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	start, _ := logf.Seek(0, 2)
	cmd := exec.Command("bash", b.cmd, filepath.Join(b.dir, "data"), strconv.Itoa(b.port))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	b.proc, b.log, b.done = cmd, logf, make(chan struct{})
	go func() { // owner: b; ends when the broker process exits
		_ = cmd.Wait()
		close(b.done)
	}()
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		if b.started(start) {
			return nil
		}
		select {
		case <-b.done:
			b.proc = nil
			logf.Close()
			return fmt.Errorf("broker exited at start; log:\n%s", b.tail())
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("broker did not start; log:\n%s", b.tail())
}

func (b *KafkaBroker) started(from int64) bool {
	f, err := os.Open(filepath.Join(b.dir, "broker.log"))
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := f.Seek(from, 0); err != nil {
		return false
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "Kafka Server started") {
			c, err := net.DialTimeout("tcp", b.Addr(), time.Second)
			if err != nil {
				return false
			}
			c.Close()
			return true
		}
	}
	return false
}

func (b *KafkaBroker) tail() string {
	data, _ := os.ReadFile(filepath.Join(b.dir, "broker.log"))
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

// Stop sends sig (SIGTERM: orderly shutdown; SIGKILL: crash) and waits for
// the broker to exit. Stopping a stopped broker does nothing.
func (b *KafkaBroker) Stop(sig syscall.Signal) {
	if b.proc == nil {
		return
	}
	_ = b.proc.Process.Signal(sig)
	select {
	case <-b.done:
	case <-time.After(60 * time.Second):
		_ = b.proc.Process.Kill()
		<-b.done
	}
	b.log.Close()
	b.proc = nil
}

// freePortPair finds a port p such that p and p+1 are both free (the
// broker and its controller).
func freePortPair() (int, error) {
	// Below Linux's ephemeral range (32768-60999 by default), where the
	// source ports of outgoing connections are picked: a port the kernel
	// never hands out by itself stays free between this check and the
	// broker's bind, whatever else the tests dial meanwhile.
	for range 200 {
		p := 20000 + mrand.IntN(12000)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		l.Close()
		if err == nil {
			l2.Close()
			return p, nil
		}
	}
	return 0, errors.New("no free pair of ports")
}
