package sink

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/record"
)

// errNoDelayTopic: an output was parked and the sink has no delay topic.
// The builder only parks with one; this guards against losing the input.
var errNoDelayTopic = errors.New("kafka sink: a parked input, and no delay topic")

// delayMessage encodes a parked input for the delay topic: keyed like the
// input record (so a key's inputs stay in one delay partition while the
// delay topic has as many partitions as the input), the value the
// record.Delayed JSON. A value over the record cap cannot happen: the
// URL message was at most the input's own cap.
func (k *Kafka) delayMessage(o record.Output) (kafka.Message, error) {
	if k.delay == nil {
		return kafka.Message{}, errNoDelayTopic
	}
	b, err := json.Marshal(o.Delay)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encode delay record: %w", err)
	}
	return kafka.Message{Key: o.Delay.RecordKey, Value: b, Headers: headers(KindDelayed)}, nil
}
