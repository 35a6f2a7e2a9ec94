package record

// Ack acknowledges one input once its output is durable: a sink calls it
// after the write that holds the input's records has been made durable, and
// an at-least-once source (the Kafka tracker) then counts the input as done.
// A nil Ack does nothing. Acks are called from the sink's goroutine.
type Ack func()

// Done calls the acknowledgement, if any.
func (a Ack) Done() {
	if a != nil {
		a()
	}
}
