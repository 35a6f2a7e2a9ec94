package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/metrics"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/stages/sink"
	"github.com/sluicehq/sluice/stages/source"
)

// EnvKafkaPassword holds the SASL password when the config file names no
// password_file. Secrets never come from flags.
const EnvKafkaPassword = "SLUICE_KAFKA_PASSWORD"

// kafkaConfig is where a run reads and writes Kafka: the `kafka:` section
// of the job config file (--config, config.go), overridden by the flags
// given on the command line (kafkaFlags).
type kafkaConfig struct {
	Brokers        []string      `yaml:"brokers"`
	ClientID       string        `yaml:"client_id"`
	TLS            bool          `yaml:"tls"`
	SASL           saslConfig    `yaml:"sasl"`
	Topic          string        `yaml:"topic"` // input
	Group          string        `yaml:"group"`
	StartAtEnd     bool          `yaml:"start_at_end"`
	ResultsTopic   string        `yaml:"results_topic"`
	PagesTopic     string        `yaml:"pages_topic"`
	DeadTopic      string        `yaml:"dead_topic"`
	Window         int           `yaml:"window"`
	Prefetch       int           `yaml:"prefetch"`
	CommitInterval time.Duration `yaml:"commit_interval"`
	SessionTimeout time.Duration `yaml:"session_timeout"`
}

type saslConfig struct {
	Mechanism    string `yaml:"mechanism"` // plain, scram-sha-256, scram-sha-512
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
}

// kafkaFlags declares the Kafka flags into fs and returns the function
// that, once fs is parsed and the config file applied, sets the flags that
// were given over cfg, fills in defaults and checks the result.
func kafkaFlags(fs *flag.FlagSet) func(cfg *kafkaConfig) error {
	brokers := fs.String("brokers", "", "Kafka bootstrap brokers, comma-separated host:port")
	topic := fs.String("topic", "", "read URL messages from this Kafka topic (instead of --urls)")
	group := fs.String("group", "sluice", "Kafka consumer group: processes in one group split the partitions")
	results := fs.String("results-topic", "", "write results to this Kafka topic (instead of --out)")
	pages := fs.String("pages-topic", "", "write raw pages, compressed, to this Kafka topic (for replay)")
	dead := fs.String("dead-topic", "", "write dead letters to this Kafka topic (default: the results topic + \".dead\")")
	window := fs.Int("kafka-window", 512, "records per partition read and not yet committed, at most (also the most a crash delivers again)")
	session := fs.Duration("kafka-session-timeout", 10*time.Second, "how long the group waits for a silent member")
	commit := fs.Duration("kafka-commit-interval", time.Second, "how often acknowledged offsets are committed")
	return func(cfg *kafkaConfig) error {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		apply := func(name string, dst *string, v string) {
			if set[name] || *dst == "" {
				*dst = v
			}
		}
		if set["brokers"] || len(cfg.Brokers) == 0 {
			cfg.Brokers = splitList(*brokers)
		}
		apply("topic", &cfg.Topic, *topic)
		apply("group", &cfg.Group, *group)
		apply("results-topic", &cfg.ResultsTopic, *results)
		apply("pages-topic", &cfg.PagesTopic, *pages)
		apply("dead-topic", &cfg.DeadTopic, *dead)
		if set["kafka-window"] || cfg.Window == 0 {
			cfg.Window = *window
		}
		if set["kafka-session-timeout"] || cfg.SessionTimeout == 0 {
			cfg.SessionTimeout = *session
		}
		if set["kafka-commit-interval"] || cfg.CommitInterval == 0 {
			cfg.CommitInterval = *commit
		}
		if cfg.ResultsTopic != "" && cfg.DeadTopic == "" {
			cfg.DeadTopic = cfg.ResultsTopic + ".dead"
		}
		if (cfg.Topic != "" || cfg.ResultsTopic != "" || cfg.PagesTopic != "") && len(cfg.Brokers) == 0 {
			return usagef("a Kafka topic needs --brokers (or kafka.brokers in the config file)")
		}
		return nil
	}
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// connect builds the dialer (consumer side) and transport (producer side)
// with the configured TLS and SASL. The password is read here, from the
// file the config names or from SLUICE_KAFKA_PASSWORD, and kept nowhere
// else.
func (c kafkaConfig) connect() (*kafka.Dialer, *kafka.Transport, error) {
	var mech sasl.Mechanism
	if c.SASL.Mechanism != "" {
		pw := os.Getenv(EnvKafkaPassword)
		if c.SASL.PasswordFile != "" {
			data, err := os.ReadFile(c.SASL.PasswordFile)
			if err != nil {
				return nil, nil, usageError{fmt.Errorf("sasl password file: %w", err)}
			}
			pw = strings.TrimRight(string(data), "\r\n")
		}
		if c.SASL.Username == "" || pw == "" {
			return nil, nil, usagef("sasl %s needs a username and a password (password_file or %s)", c.SASL.Mechanism, EnvKafkaPassword)
		}
		var err error
		switch strings.ToLower(c.SASL.Mechanism) {
		case "plain":
			mech = plain.Mechanism{Username: c.SASL.Username, Password: pw}
		case "scram-sha-256":
			mech, err = scram.Mechanism(scram.SHA256, c.SASL.Username, pw)
		case "scram-sha-512":
			mech, err = scram.Mechanism(scram.SHA512, c.SASL.Username, pw)
		default:
			return nil, nil, usagef("sasl mechanism %q: want plain, scram-sha-256 or scram-sha-512", c.SASL.Mechanism)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("sasl: %w", err)
		}
	}
	var tlsCfg *tls.Config
	if c.TLS {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	id := c.ClientID
	if id == "" {
		id = "sluice"
	}
	d := &kafka.Dialer{ClientID: id, Timeout: 10 * time.Second, DualStack: true, TLS: tlsCfg, SASLMechanism: mech}
	tr := &kafka.Transport{ClientID: id, DialTimeout: 10 * time.Second, TLS: tlsCfg, SASL: mech}
	return d, tr, nil
}

// pipelineIO is a run's source and sink, and what must happen once the
// pipeline has finished.
type pipelineIO struct {
	src       *flow.Source[record.Task]
	out       *flow.Sink[record.Output]
	keepPage  bool
	batchSize int // the most outputs the sink holds besides its queue
	close     []func() error

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

// buildIO builds the source (Kafka when an input topic is set, else lines
// of a file or stdin) and the sink (Kafka when a results topic is set,
// else JSONL).
func buildIO(cfg jobConfig, onDone func(record.Output), log zerolog.Logger) (pipelineIO, error) {
	var pio pipelineIO
	kc := cfg.Kafka
	if kc.PagesTopic != "" && kc.ResultsTopic == "" {
		return pio, usagef("--pages-topic needs --results-topic")
	}
	var dialer *kafka.Dialer
	var transport *kafka.Transport
	if kc.Topic != "" || kc.ResultsTopic != "" {
		var err error
		if dialer, transport, err = kc.connect(); err != nil {
			return pio, err
		}
		pio.close = append(pio.close, func() error { transport.CloseIdleConnections(); return nil })
	}
	if kc.Topic != "" {
		k, err := source.NewKafka(source.KafkaConfig{
			Brokers: kc.Brokers, Topics: []string{kc.Topic}, Group: kc.Group, Dialer: dialer, StartAtEnd: kc.StartAtEnd,
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
	if kc.ResultsTopic != "" {
		k, err := sink.NewKafka(sink.KafkaConfig{
			Brokers: kc.Brokers, Transport: transport, ResultsTopic: kc.ResultsTopic, PagesTopic: kc.PagesTopic,
			DeadTopic: kc.DeadTopic, OnDone: onDone, Logger: log,
		})
		if err != nil {
			return pio, usageError{err}
		}
		pio.out, pio.keepPage, pio.batchSize, pio.sinkKafka = k.Sink(), kc.PagesTopic != "", k.BatchSize(), k
		return pio, nil
	}
	sc := cfg.Sink
	sc.Path, sc.Writer, sc.PagesPath = cfg.Out, cfg.OutWriter, cfg.Pages
	sc.OnDone = onDone
	j, err := sink.NewJSONL(sc)
	if err != nil {
		return pio, err
	}
	pio.out, pio.keepPage, pio.batchSize, pio.sinkJSONL = j.Sink(), cfg.Pages != "", j.BatchSize(), j
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
