package app

import (
	"errors"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/kafka"
	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/stages/sink"
	"github.com/sluicehq/sluice/stages/source"
)

// pipelineIO is a run's source and sink, and what must happen once the
// pipeline has finished.
type pipelineIO struct {
	src       *flow.Source[record.Task]
	out       *flow.Sink[record.Output]
	keepPage  bool
	batchSize int // the most outputs the sink holds besides its queue
	close     []func() error

	client    *kafka.Client // nil without Kafka
	srcKafka  *source.Kafka // nil for a file or stdin
	srcDelay  *source.Kafka // the delay topic's reader; nil unless parking (delay.go)
	sinkKafka *sink.Kafka   // nil for JSONL
	sinkJSONL *sink.JSONL
	warc      *sink.WARC // the web archive between parse and sink; nil without one
}

// sourceReady is the readiness check of the source: a file or stdin is
// ready once open; the Kafka source once it is a member of a generation.
func (p pipelineIO) sourceReady() error {
	if p.srcKafka != nil {
		err := p.srcKafka.Ready()
		if p.srcDelay != nil {
			err = errors.Join(err, p.srcDelay.Ready())
		}
		return err
	}
	return nil
}

// sinkReady is the readiness check of the sink.
func (p pipelineIO) sinkReady() error {
	var err error
	if p.warc != nil {
		err = p.warc.Ready()
	}
	if p.sinkKafka != nil {
		return errors.Join(err, p.sinkKafka.Ready())
	}
	return errors.Join(err, p.sinkJSONL.Ready())
}

// kafkaState reports the Kafka source's partitions and the Kafka sink's
// writes, for the metrics.
func (p pipelineIO) kafkaState() metrics.KafkaState {
	var st metrics.KafkaState
	for _, src := range []*source.Kafka{p.srcKafka, p.srcDelay} {
		if src == nil {
			continue
		}
		for _, pos := range src.Positions() {
			lag := int64(0)
			if pos.Committed >= 0 && pos.HighWater >= pos.Committed {
				lag = pos.HighWater - pos.Committed
			}
			st.Partitions = append(st.Partitions, metrics.PartitionState{Topic: pos.Topic, Partition: pos.ID, Committed: pos.Committed, Lag: lag})
		}
	}
	if p.sinkKafka != nil {
		st.Writes = p.sinkKafka.Written()
		st.DeadLetters = st.Writes[p.sinkKafka.DeadTopic()]
	}
	return st
}

// closeAll runs the closers in order and joins their errors.
func closeAll(fns []func() error) error {
	var errs []error
	for _, f := range fns {
		errs = append(errs, f())
	}
	return errors.Join(errs...)
}
