package kafka_test

import (
	"context"
	"fmt"

	"github.com/sluicehq/sluice/kafka"
	"github.com/sluicehq/sluice/record"
)

// A source tracks each record it reads; acks arrive in any order; the
// committer commits only below the first unacknowledged offset.
func ExampleTracker() {
	tr := kafka.NewTracker(100)
	p := kafka.Partition{Topic: "urls", ID: 0}
	tr.Assign(map[kafka.Partition]int64{p: 10}) // the group had committed 10

	var acks []record.Ack
	for off := int64(10); off < 15; off++ {
		ack, _ := tr.Track(context.Background(), p, off)
		acks = append(acks, ack)
	}
	acks[0].Done() // 10
	acks[1].Done() // 11
	acks[3].Done() // 13: 12 is still in flight
	for _, c := range tr.Commits() {
		fmt.Println("commit", c.Topic, c.ID, c.Offset)
		tr.Committed([]kafka.Commit{c})
	}
	acks[2].Done() // 12
	acks[4].Done() // 14
	for _, c := range tr.Commits() {
		fmt.Println("commit", c.Topic, c.ID, c.Offset)
	}
	// Output:
	// commit urls 0 12
	// commit urls 0 15
}
