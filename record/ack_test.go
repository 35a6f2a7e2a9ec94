package record

import "testing"

func TestAckDone(t *testing.T) {
	var n int
	Ack(func() { n++ }).Done()
	Ack(nil).Done()
	if n != 1 {
		t.Fatalf("ack called %d times, want 1", n)
	}
}
