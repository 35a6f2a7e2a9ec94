package app

import (
	"errors"

	"github.com/rs/zerolog"

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
	sinkKafka *sink.Kafka   // nil for JSONL
	sinkJSONL *sink.JSONL
}

// sourceReady is the readiness check of the source: a file or stdin is
// ready once open; the Kafka source once it is a member of a generation.
func (p pipelineIO) sourceReady() error {
	if p.srcKafka != nil {
		return p.srcKafka.Ready()
	}
	return nil
}

// sinkReady is the readiness check of the sink.
func (p pipelineIO) sinkReady() error {
	if p.sinkKafka != nil {
		return p.sinkKafka.Ready()
	}
	return p.sinkJSONL.Ready()
}

// kafkaState reports the Kafka source's partitions and the Kafka sink's
// writes, for the metrics.
func (p pipelineIO) kafkaState() metrics.KafkaState {
	var st metrics.KafkaState
	if p.srcKafka != nil {
		for _, pos := range p.srcKafka.Positions() {
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

// kafkaClient builds the Kafka client of a run from the one client config,
// when any topic is set; nil otherwise. Run and replay both come here.
func kafkaClient(kc KafkaConfig) (*kafka.Client, error) {
	if kc.Topic == "" && kc.ResultsTopic == "" && kc.PagesTopic == "" {
		return nil, nil
	}
	c, err := kafka.New(kc.Config)
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

// sinkParts is a built sink.
type sinkParts struct {
	out       *flow.Sink[record.Output]
	keepPage  bool
	batchSize int
	kafka     *sink.Kafka
	jsonl     *sink.JSONL
}

// buildSink builds the sink of run and replay alike: Kafka when a results
// topic is set (over client's transport), else JSONL to out (pages to
// pagesPath).
func buildSink(kc KafkaConfig, client *kafka.Client, sc sink.JSONLConfig, onDone func(record.Output), log zerolog.Logger) (sinkParts, error) {
	if kc.ResultsTopic != "" {
		k, err := sink.NewKafka(sink.KafkaConfig{
			Brokers: client.Brokers, Transport: client.Transport, ResultsTopic: kc.ResultsTopic, PagesTopic: kc.PagesTopic,
			DeadTopic: kc.DeadTopic, OnDone: onDone, Logger: log,
		})
		if err != nil {
			return sinkParts{}, usageError{err}
		}
		return sinkParts{out: k.Sink(), keepPage: kc.PagesTopic != "", batchSize: k.BatchSize(), kafka: k}, nil
	}
	sc.OnDone = onDone
	j, err := sink.NewJSONL(sc)
	if err != nil {
		return sinkParts{}, err
	}
	return sinkParts{out: j.Sink(), keepPage: sc.PagesPath != "", batchSize: j.BatchSize(), jsonl: j}, nil
}

// buildIO builds the source (Kafka when an input topic is set, else lines
// of a file or stdin) and the sink (Kafka when a results topic is set,
// else JSONL).
func buildIO(cfg jobConfig, onDone func(record.Output), log zerolog.Logger) (pipelineIO, error) {
	var pio pipelineIO
	kc := cfg.Kafka
	if kc.PagesTopic != "" && kc.ResultsTopic == "" {
		return pio, usagef("--kafka-pages-topic needs --kafka-results-topic")
	}
	client, err := kafkaClient(kc)
	if err != nil {
		return pio, err
	}
	if client != nil {
		pio.client = client
		pio.close = append(pio.close, client.Close)
	}
	if kc.Topic != "" {
		k, err := source.NewKafka(source.KafkaConfig{
			Brokers: client.Brokers, Topics: []string{kc.Topic}, Group: kc.Group, Dialer: client.Dialer, StartAtEnd: kc.StartAtEnd,
			Window: kc.Window, Prefetch: kc.Prefetch, CommitInterval: kc.CommitInterval, SessionTimeout: kc.SessionTimeout,
			Logger: log,
		})
		if err != nil {
			return pio, usageError{err}
		}
		pio.src, pio.srcKafka = k.Source(), k
		pio.close = append([]func() error{k.Close}, pio.close...)
	} else {
		src, err := source.Lines(source.LinesConfig{Path: cfg.URLs, Reader: cfg.URLReader})
		if err != nil {
			return pio, err
		}
		pio.src = src
	}
	sc := cfg.Sink
	sc.Path, sc.Writer, sc.PagesPath = cfg.Out, cfg.OutWriter, cfg.Pages
	sp, err := buildSink(kc, client, sc, onDone, log)
	if err != nil {
		return pio, err
	}
	pio.out, pio.keepPage, pio.batchSize, pio.sinkKafka, pio.sinkJSONL = sp.out, sp.keepPage, sp.batchSize, sp.kafka, sp.jsonl
	return pio, nil
}

// closeAll runs the closers in order and joins their errors.
func closeAll(fns []func() error) error {
	var errs []error
	for _, f := range fns {
		errs = append(errs, f())
	}
	return errors.Join(errs...)
}
