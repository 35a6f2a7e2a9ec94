package flowtest

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/flow"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The suite's own check: flow's building blocks, used as plainly as a
// stage author would, conform.

func TestMapConforms(t *testing.T) {
	CheckStage(t, Stage[int, int]{
		New: func(t *testing.T) Built[flow.Processor[int, int]] {
			m := flow.NewMap("double", 4, 3, func(v int) int { return 2 * v })
			return Built[flow.Processor[int, int]]{Component: m, Holds: m.Workers() + 2}
		},
		Panicking: func(t *testing.T) Built[flow.Processor[int, int]] {
			return Built[flow.Processor[int, int]]{Component: flow.NewMap("boom", 4, 3, func(v int) int { panic("boom") })}
		},
		Input: func(i int) int { return i },
		Index: func(v int) int { return v / 2 },
	})
}

func identity(ctx context.Context, in flow.Inbox[int], out flow.Outbox[int]) error {
	for {
		v, ok := in.Recv(ctx)
		if !ok {
			return nil
		}
		if err := out.Send(ctx, v); err != nil {
			return nil
		}
	}
}

func TestStageConforms(t *testing.T) {
	CheckStage(t, Stage[int, int]{
		New: func(t *testing.T) Built[flow.Processor[int, int]] {
			return Built[flow.Processor[int, int]]{Component: flow.NewStage("identity", 5, identity), Holds: 1}
		},
		Panicking: func(t *testing.T) Built[flow.Processor[int, int]] {
			return Built[flow.Processor[int, int]]{Component: flow.NewStage("boom", 5, func(ctx context.Context, in flow.Inbox[int], out flow.Outbox[int]) error {
				in.Recv(ctx)
				panic("boom")
			})}
		},
		Input: func(i int) int { return i },
		Index: func(v int) int { return v },
	})
}

func TestSourceConforms(t *testing.T) {
	counter := func(n int, panics bool) *flow.Source[int] {
		return flow.NewSource("counter", func(stop context.Context, emit flow.Emit[int]) error {
			for i := 0; n < 0 || i < n; i++ {
				if panics && i == 3 {
					panic("boom")
				}
				if stop.Err() != nil {
					return nil
				}
				if err := emit(i); err != nil {
					return nil
				}
			}
			return nil
		})
	}
	CheckSource(t, Source[int]{
		New: func(t *testing.T, n int) Built[*flow.Source[int]] {
			return Built[*flow.Source[int]]{Component: counter(n, false)}
		},
		Panicking: func(t *testing.T) Built[*flow.Source[int]] {
			return Built[*flow.Source[int]]{Component: counter(-1, true)}
		},
		Index: func(v int) int { return v },
	})
}

type acked struct {
	i   int
	ack func()
}

func TestSinkConforms(t *testing.T) {
	const batch = 8
	sink := func(stall <-chan struct{}, panics bool) *flow.Sink[acked] {
		var s *flow.Sink[acked]
		s = flow.NewSink("batcher", 4, func(ctx context.Context, in flow.Inbox[acked]) error {
			var held []acked
			write := func() error {
				if stall != nil {
					select {
					case <-stall:
					case <-ctx.Done():
						return errors.New("aborted in a write")
					}
				}
				if panics {
					panic("boom")
				}
				for _, a := range held {
					a.ack()
				}
				s.Stats().Done(len(held))
				held = held[:0]
				return nil
			}
			for {
				v, st := in.RecvBefore(ctx, nil)
				switch st {
				case flow.Got:
					if held = append(held, v); len(held) == batch {
						if err := write(); err != nil {
							return err
						}
					}
				case flow.Closed:
					return write()
				default:
					return nil
				}
			}
		})
		return s
	}
	CheckSink(t, Sink[acked]{
		New: func(t *testing.T, stall <-chan struct{}) Built[*flow.Sink[acked]] {
			return Built[*flow.Sink[acked]]{Component: sink(stall, false), Holds: batch}
		},
		Panicking: func(t *testing.T) Built[*flow.Sink[acked]] {
			return Built[*flow.Sink[acked]]{Component: sink(nil, true)}
		},
		Input: func(i int, ack func()) acked { return acked{i, ack} },
	})
}
