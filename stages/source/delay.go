package source

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/record"
)

// delayFields are the fields a delay record adds to its URL message.
var delayFields = []string{"schema", "not_before", "attempts", "error"}

// DecodeDelayed parses one delay-topic record (record.Delayed): its URL
// message, checked as Decode checks one, how many times it was parked
// and the last error it carried. A record that is not one is a bad_input
// error, for a dead letter: the delay topic is sluice's own, so that
// means another writer or a corrupted record.
func DecodeDelayed(raw []byte, maxBytes int) (record.Message, *url.URL, int, *record.Error, error) {
	var d record.Delayed
	if err := json.Unmarshal(raw, &d); err != nil {
		return record.Message{}, nil, 0, nil, failure.Errorf(failure.BadInput, "not a delay record: %v", err)
	}
	// The rest is a URL message: decode it as one, so that it is checked
	// exactly as the input's were.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return record.Message{}, nil, 0, nil, failure.Errorf(failure.BadInput, "not a delay record: %v", err)
	}
	for _, f := range delayFields {
		delete(fields, f)
	}
	msgRaw, err := json.Marshal(fields)
	if err != nil {
		return record.Message{}, nil, 0, nil, failure.Errorf(failure.BadInput, "not a delay record: %v", err)
	}
	msg, u, err := Decode(msgRaw, maxBytes)
	return msg, u, max(d.Attempts, 1), d.Error, err
}

// delayDue returns when a delay record is due: its not_before, or zero
// (now) when it has none or cannot be read (it becomes a dead letter).
func delayDue(raw []byte) time.Time {
	if !bytes.Contains(raw, []byte(`"not_before"`)) {
		return time.Time{}
	}
	var d struct {
		NotBefore time.Time `json:"not_before"`
	}
	_ = json.Unmarshal(raw, &d)
	return d.NotBefore
}

// Merge returns one source that runs every run given (each the body of a
// source, such as Kafka.Run) at once into one output: the pipeline's
// backpressure holds them all alike, and each Task keeps its own Ack. It
// stops when every run has returned; the first error stops the others
// and is returned.
func Merge(name string, runs ...func(stop context.Context, emit flow.Emit[record.Task]) error) *flow.Source[record.Task] {
	return flow.NewSource(name, func(stop context.Context, emit flow.Emit[record.Task]) error {
		stop, cancel := context.WithCancelCause(stop)
		defer cancel(nil)
		var wg sync.WaitGroup
		errs := make([]error, len(runs))
		for i, run := range runs {
			wg.Go(func() { // owner: this source; ends when its run returns
				defer func() {
					if r := recover(); r != nil {
						errs[i] = fmt.Errorf("%s: panic: %v", name, r)
					}
					if errs[i] != nil {
						cancel(errs[i])
					}
				}()
				errs[i] = run(stop, emit)
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	})
}
