package crawl

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sluicehq/sluice/record"
)

// Frontier is the queue of URL messages still to crawl: up to a bound in
// memory, past it in a spill file, so that Push never blocks and memory
// never grows past the bound. Order is first in, first out within memory
// and within the file; a URL spilled waits until memory has drained.
//
// Not safe for concurrent use: the Crawler guards it with its lock.
type Frontier struct {
	max  int
	mem  []record.Message // a queue: mem[head:]
	head int
	dir  string // where the spill file is made; "" the system's temp dir

	file    *os.File // nil until the first spill
	w       *bufio.Writer
	r       *bufio.Reader
	readOff int64 // bytes of the file read back
	wrote   int64 // bytes written to the file
	spilled int   // messages in the file not yet read back
	total   int   // messages ever spilled
}

// NewFrontier returns an empty frontier holding max messages in memory,
// spilling to a file in dir.
func NewFrontier(max int, dir string) *Frontier {
	return &Frontier{max: max, dir: dir}
}

// Len is the number of messages queued, in memory and spilled.
func (f *Frontier) Len() int { return len(f.mem) - f.head + f.spilled }

// InMemory is the number of messages queued in memory.
func (f *Frontier) InMemory() int { return len(f.mem) - f.head }

// Spilled is the number of messages ever written to the spill file.
func (f *Frontier) Spilled() int { return f.total }

// Push queues m: in memory while there is room and nothing is spilled
// (so order holds), else at the end of the spill file.
func (f *Frontier) Push(m record.Message) error {
	if f.spilled == 0 && f.InMemory() < f.max {
		if f.head > 0 && f.head >= len(f.mem)/2 {
			f.mem = append(f.mem[:0], f.mem[f.head:]...)
			f.head = 0
		}
		f.mem = append(f.mem, m)
		return nil
	}
	if f.file == nil {
		file, err := os.CreateTemp(f.dir, "sluice-frontier-*.jsonl")
		if err != nil {
			return fmt.Errorf("frontier spill: %w", err)
		}
		f.file, f.w = file, bufio.NewWriter(file)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if _, err := f.w.Write(b); err != nil {
		return fmt.Errorf("frontier spill: %w", err)
	}
	f.wrote += int64(len(b))
	f.spilled++
	f.total++
	return nil
}

// Pop takes the next message; ok is false when the frontier is empty.
func (f *Frontier) Pop() (m record.Message, ok bool, err error) {
	if f.InMemory() == 0 && f.spilled > 0 {
		if err := f.refill(); err != nil {
			return m, false, err
		}
	}
	if f.InMemory() == 0 {
		return m, false, nil
	}
	m = f.mem[f.head]
	f.mem[f.head] = record.Message{}
	f.head++
	if f.head == len(f.mem) {
		f.mem, f.head = f.mem[:0], 0
	}
	return m, true, nil
}

// refill reads up to max messages back from the spill file; once the file
// is read to its end it is truncated, to be written afresh.
func (f *Frontier) refill() error {
	if err := f.w.Flush(); err != nil {
		return fmt.Errorf("frontier spill: %w", err)
	}
	// Reads go through ReadAt, so the file offset stays where writes go.
	f.r = bufio.NewReader(io.NewSectionReader(f.file, f.readOff, f.wrote-f.readOff))
	f.mem, f.head = f.mem[:0], 0
	for len(f.mem) < f.max && f.spilled > 0 {
		line, err := f.r.ReadBytes('\n')
		if err != nil {
			return fmt.Errorf("frontier spill read: %w", err)
		}
		f.readOff += int64(len(line))
		var m record.Message
		if err := json.Unmarshal(line, &m); err != nil {
			return fmt.Errorf("frontier spill read: %w", err)
		}
		f.mem = append(f.mem, m)
		f.spilled--
	}
	f.r = nil // the next refill reads from readOff over what was written since
	if f.spilled == 0 {
		if err := f.file.Truncate(0); err != nil {
			return err
		}
		f.readOff, f.wrote = 0, 0
		f.w.Reset(f.file)
		if _, err := f.file.Seek(0, io.SeekStart); err != nil {
			return err
		}
	}
	return nil
}

// Each calls fn for every queued message, in memory first, then spilled,
// without taking any.
func (f *Frontier) Each(fn func(record.Message) error) error {
	for _, m := range f.mem[f.head:] {
		if err := fn(m); err != nil {
			return err
		}
	}
	if f.spilled == 0 {
		return nil
	}
	if err := f.w.Flush(); err != nil {
		return err
	}
	r := bufio.NewReader(io.NewSectionReader(f.file, f.readOff, f.wrote-f.readOff))
	for {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var m record.Message
		if err := json.Unmarshal(line, &m); err != nil {
			return err
		}
		if err := fn(m); err != nil {
			return err
		}
	}
}

// Close removes the spill file.
func (f *Frontier) Close() error {
	if f.file == nil {
		return nil
	}
	name := f.file.Name()
	err := f.file.Close()
	f.file = nil
	return errors.Join(err, os.Remove(name))
}
