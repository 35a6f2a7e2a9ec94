package source

import (
	"fmt"
	"io"
	"testing"

	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/flow/flowtest"
	"github.com/sluicehq/sluice/record"
)

// lineGen reads n URL lines, numbered from 0 (n < 0: without end).
type lineGen struct {
	n, i int
	buf  []byte
}

func (g *lineGen) Read(p []byte) (int, error) {
	for len(g.buf) == 0 {
		if g.n >= 0 && g.i >= g.n {
			return 0, io.EOF
		}
		g.buf = fmt.Appendf(nil, "http://shop.test/product/%d\n", g.i)
		g.i++
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

type panicReader struct{ lines lineGen }

func (p *panicReader) Read(b []byte) (int, error) {
	if p.lines.i == 5 {
		panic("reader broke")
	}
	return p.lines.Read(b)
}

func TestLinesConforms(t *testing.T) {
	lines := func(t *testing.T, r io.Reader) flowtest.Built[*flow.Source[record.Task]] {
		src, err := Lines(LinesConfig{Reader: r})
		if err != nil {
			t.Fatal(err)
		}
		return flowtest.Built[*flow.Source[record.Task]]{Component: src}
	}
	flowtest.CheckSource(t, flowtest.Source[record.Task]{
		New: func(t *testing.T, n int) flowtest.Built[*flow.Source[record.Task]] {
			return lines(t, &lineGen{n: n})
		},
		Panicking: func(t *testing.T) flowtest.Built[*flow.Source[record.Task]] {
			return lines(t, &panicReader{lines: lineGen{n: -1}})
		},
		Index: func(task record.Task) int {
			if task.Err != nil {
				t.Errorf("line %d: %v", task.Origin.Offset, task.Err)
			}
			return int(task.Origin.Offset) - 1
		},
	})
}
