package app

import (
	"github.com/rs/zerolog"

	"github.com/sluicehq/sluice/kafka"
	"github.com/sluicehq/sluice/stages/source"
)

// The delay path (docs/kafka.md#delay-topic): with kafka.park_after set,
// an input of the Kafka topic that cannot be attempted within it is
// written to the delay topic by the sink and acknowledged, so it holds
// no offset of its partition; a second consumer group reads the delay
// topic back and hands each record to the pipeline once it is due.

// parking reports whether a run parks: a Kafka input with park_after set
// (validation has checked that the sink is Kafka's).
func parking(kc KafkaConfig) bool {
	return kc.Topic != "" && kc.ParkAfter > 0 && kc.ResultsTopic != "" && kc.DelayTopic != ""
}

// buildDelaySource adds the delay topic's reader to pio: its own group
// (the input's + ".delay"), merged with the input k into one source.
func buildDelaySource(pio *pipelineIO, kc KafkaConfig, client *kafka.Client, k *source.Kafka, log zerolog.Logger) error {
	d, err := source.NewKafka(source.KafkaConfig{
		Brokers: client.Brokers, Topics: []string{kc.DelayTopic}, Group: kc.Group + ".delay", Dialer: client.Dialer,
		Window: kc.Window, Prefetch: kc.Prefetch, CommitInterval: kc.CommitInterval, SessionTimeout: kc.SessionTimeout,
		Delayed: true, Logger: log.With().Str("input", "delay").Logger(),
	})
	if err != nil {
		return usageError{err}
	}
	pio.srcDelay = d
	pio.src = source.Merge("source", k.Run, d.Run)
	pio.close = append([]func() error{d.Close}, pio.close...)
	return nil
}
