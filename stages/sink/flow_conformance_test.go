package sink

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/flow/flowtest"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

// stallWriter blocks every write until stall is closed (a full disk, a
// reader that stopped reading).
type stallWriter struct {
	stall <-chan struct{}
	w     io.Writer
}

func (s stallWriter) Write(p []byte) (int, error) {
	if s.stall != nil {
		<-s.stall
	}
	return s.w.Write(p)
}

// TestJSONLFlowConforms runs the stage contract's suite (flow/flowtest) on
// the JSONL sink; the sink suite in conformance_test.go checks what it
// writes.
func TestJSONLFlowConforms(t *testing.T) {
	build := func(t *testing.T, cfg JSONLConfig) flowtest.Built[*flow.Sink[record.Output]] {
		cfg.BatchSize, cfg.QueueSize, cfg.FlushInterval = 8, 4, 2*time.Millisecond
		j, err := NewJSONL(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return flowtest.Built[*flow.Sink[record.Output]]{Component: j.Sink(), Holds: j.BatchSize()}
	}
	flowtest.CheckSink(t, flowtest.Sink[record.Output]{
		New: func(t *testing.T, stall <-chan struct{}) flowtest.Built[*flow.Sink[record.Output]] {
			return build(t, JSONLConfig{Writer: stallWriter{stall, io.Discard}})
		},
		Panicking: func(t *testing.T) flowtest.Built[*flow.Sink[record.Output]] {
			return build(t, JSONLConfig{Writer: io.Discard, OnDone: func(record.Output) { panic("hook broke") }})
		},
		Input: flowInput,
	})
}

// flowInput is output i of the suite: a result, acknowledged by ack.
func flowInput(i int, ack func()) record.Output {
	u := fmt.Sprintf("http://shop.test/product/%d", i)
	return record.Output{Ack: ack, Result: &record.Result{Schema: record.SchemaVersion, URL: u, Status: 200,
		Fields: map[string]any{}, Links: []string{}}}
}

// stallConn is a connection to a broker whose writes block until stall
// is closed: a broker that stopped taking requests.
type stallConn struct {
	net.Conn
	stall <-chan struct{}
}

func (c stallConn) Write(p []byte) (int, error) {
	<-c.stall
	return c.Conn.Write(p)
}

// TestKafkaFlowConforms runs the stage contract's suite on the Kafka sink,
// against the real broker.
func TestKafkaFlowConforms(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	build := func(t *testing.T, stall <-chan struct{}, onDone func(record.Output)) flowtest.Built[*flow.Sink[record.Output]] {
		cfg := kafkaTopics(t, brokers, 1)
		cfg.BatchSize, cfg.QueueSize, cfg.FlushInterval, cfg.OnDone = 8, 4, 2*time.Millisecond, onDone
		var closeTr func() error
		if stall != nil {
			d := &net.Dialer{}
			tr := &kafkago.Transport{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := d.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return stallConn{c, stall}, nil
			}}
			cfg.Transport = tr
			closeTr = func() error { tr.CloseIdleConnections(); return nil }
		}
		k, err := NewKafka(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return flowtest.Built[*flow.Sink[record.Output]]{Component: k.Sink(), Holds: k.BatchSize(), Close: closeTr}
	}
	flowtest.CheckSink(t, flowtest.Sink[record.Output]{
		New: func(t *testing.T, stall <-chan struct{}) flowtest.Built[*flow.Sink[record.Output]] {
			return build(t, stall, nil)
		},
		Panicking: func(t *testing.T) flowtest.Built[*flow.Sink[record.Output]] {
			return build(t, nil, func(record.Output) { panic("hook broke") })
		},
		Input: flowInput,
	})
}
