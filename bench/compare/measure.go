package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// usage is what one peer's process cost.
type usage struct {
	Wall   time.Duration // from start to exit
	CPU    time.Duration // user + system time of the process (rusage)
	MaxRSS int64         // peak resident set, bytes (ru_maxrss)
}

// tailBuffer keeps the last max bytes written to it; safe for concurrent
// use (a child's stdout and stderr may share it).
type tailBuffer struct {
	mu  sync.Mutex // guards buf
	buf []byte
	max int
}

func newTail(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.buf))
}

// exitError describes a child that did not exit 0, with the tail of its
// output.
func exitError(name string, err error, tail *tailBuffer) error {
	out := tail.String()
	if out == "" {
		return fmt.Errorf("%s: %w", name, err)
	}
	return fmt.Errorf("%s: %w; its last output:\n%s", name, err, indent(out))
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// startChild starts cmd with its output captured in a tail buffer, and
// returns the time it started.
func startChild(cmd *exec.Cmd) (*tailBuffer, time.Time, error) {
	tail := newTail(8 << 10)
	if cmd.Stdout == nil {
		cmd.Stdout = tail
	}
	if cmd.Stderr == nil {
		cmd.Stderr = tail
	}
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, start, err
	}
	return tail, start, nil
}
