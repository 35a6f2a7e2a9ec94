package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/testbed"
)

// KafkaResult is sluice end to end on Kafka: the URLs on an input topic
// before it starts, the results on a results topic.
type KafkaResult struct {
	Row    Row           // Usage.Wall is start to SIGTERM; Verify is of the results topic
	Join   time.Duration // from start until /readyz answered 200 (group joined)
	Active time.Duration // from ready until the last result's timestamp
	Dead   int64         // records on the dead-letter topic
	Err    error
}

// Rate is correct pages per second over Active: the time spent fetching
// once the consumer group is joined, so the group's start-up delay (a few
// seconds, a broker setting) does not count against a short run.
func (k KafkaResult) Rate() float64 {
	if k.Active <= 0 {
		return 0
	}
	return float64(k.Row.Verify.Correct) / k.Active.Seconds()
}

// runKafka runs sluice once at KafkaC with Kafka input and output.
func (w *world) runKafka(ctx context.Context) KafkaResult {
	c := w.cfg.KafkaC
	res := KafkaResult{Row: Row{Peer: peerSluice + "+kafka", C: c, N: w.cfg.N}}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.PeerTimeout)
	defer cancel()
	brokers := w.cfg.KafkaBrokers
	in, outTopic, group := testbed.UniqueName("compare-urls"), testbed.UniqueName("compare-results"), testbed.UniqueName("compare")
	dead := outTopic + ".dead" // pipeline's default dead-letter topic
	defer deleteTopics(brokers, in, outTopic, dead)
	if err := testbed.CreateTopics(ctx, brokers, w.cfg.KafkaPartitions, in, outTopic, dead); err != nil {
		res.Err = err
		return res
	}
	if err := produceURLs(ctx, brokers, in, w.site, w.cfg.N); err != nil {
		res.Err = err
		return res
	}
	addr, err := freeAddr()
	if err != nil {
		res.Err = err
		return res
	}
	ru := filepath.Join(w.dir, "kafka.rusage")
	defer os.Remove(ru)
	cmd := w.spawn(ctx, ru, w.pipeline, sluiceArgs(sluiceRun{
		Proxies: w.proxies, Rules: w.rules, Extra: w.cfg.SluiceFlags, Concurrency: c, MetricsAddr: addr,
		Kafka: &sluiceKafka{Brokers: brokers, Topic: in, Group: group, ResultsTopic: outTopic},
	})...)
	w.site.ResetStats()
	tail, start, err := startChild(cmd)
	if err != nil {
		res.Err = err
		return res
	}
	exited := make(chan struct{})
	var waitErr error // written before exited is closed
	// owner: runKafka, which always waits on exited (in stop)
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM) // fails harmlessly if it has exited
		<-exited
		var uerr error
		res.Row.Usage, uerr = readSpawnUsage(ru, time.Since(start))
		return errors.Join(waitErr, uerr)
	}

	ready, err := waitReady(ctx, addr, exited)
	if err != nil {
		_ = stop()
		res.Err = exitError("pipeline (kafka)", err, tail)
		return res
	}
	res.Join = ready.Sub(start)
	if err := waitOffsets(ctx, brokers, outTopic, int64(w.cfg.N), exited); err != nil {
		_ = stop()
		res.Err = exitError("pipeline (kafka)", err, tail)
		return res
	}
	res.Row.Fetches = w.site.Stats().Requests
	if err := stop(); err != nil {
		res.Err = exitError("pipeline (kafka)", fmt.Errorf("after SIGTERM: %w", err), tail)
	}
	msgs, err := testbed.ReadTopic(ctx, brokers, outTopic)
	if err != nil {
		res.Err = errors.Join(res.Err, err)
		return res
	}
	vf := newVerifier(w.site.URL(), w.cfg.N)
	var last time.Time
	for _, m := range msgs {
		vf.add(m.Value)
		if m.Time.After(last) {
			last = m.Time
		}
	}
	res.Row.Verify = vf.result()
	res.Active = last.Sub(ready)
	if ends, err := testbed.EndOffsets(ctx, brokers, dead); err == nil {
		for _, n := range ends {
			res.Dead += n
		}
	}
	return res
}

// produceURLs writes the product URLs 1..n to topic, spread round-robin.
func produceURLs(ctx context.Context, brokers []string, topic string, site *testbed.Site, n int) error {
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	kw := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.RoundRobin{},
		RequiredAcks: kafka.RequireAll, BatchSize: 500, BatchTimeout: 10 * time.Millisecond, Transport: tr}
	defer kw.Close()
	msgs := make([]kafka.Message, 0, n)
	for id := 1; id <= n; id++ {
		msgs = append(msgs, kafka.Message{Value: []byte(site.ProductURL(id))})
	}
	if err := kw.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("produce URLs to %s: %w", topic, err)
	}
	return nil
}

func deleteTopics(brokers []string, names ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, done := testbed.KafkaClient(brokers)
	defer done()
	_, _ = c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: names})
}

// freeAddr returns a loopback address with a port that was free a moment
// ago, for the pipeline's metrics listener.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return "127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), nil
}

// waitReady polls http://addr/readyz until it answers 200 and returns
// when it did. It gives up when exited is closed or ctx ends.
func waitReady(ctx context.Context, addr string, exited <-chan struct{}) (time.Time, error) {
	return pollURL(ctx, "http://"+addr+"/readyz", exited)
}

// pollURL polls u every 20 ms until it answers 200.
func pollURL(ctx context.Context, u string, exited <-chan struct{}) (time.Time, error) {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return time.Now(), err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now(), nil
			}
		}
		select {
		case <-exited:
			return time.Time{}, fmt.Errorf("exited before %s answered 200", u)
		case <-ctx.Done():
			return time.Now(), fmt.Errorf("waiting for %s: %w", u, ctx.Err())
		case <-tick.C:
		}
	}
}

// waitOffsets waits until topic holds at least n records.
func waitOffsets(ctx context.Context, brokers []string, topic string, n int64, exited <-chan struct{}) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ends, err := testbed.EndOffsets(ctx, brokers, topic)
		if err == nil {
			var sum int64
			for _, e := range ends {
				sum += e
			}
			if sum >= n {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before %d results were written", n)
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d results on %s: %w", n, topic, ctx.Err())
		case <-tick.C:
		}
	}
}
