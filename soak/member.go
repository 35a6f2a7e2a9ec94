package soak

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// member is one `pipeline run` child process: one lifetime of a member
// slot. A slot that is restarted gets a new member.
type member struct {
	name    string // "m1.2": slot 1, second lifetime
	slot    int
	cmd     *exec.Cmd
	started time.Time
	logFile *os.File // the member's log, or nil; written by watch only

	addr chan string   // the metrics address, once, from the log
	done chan struct{} // closed once the process has exited and its stderr is read

	mu       sync.Mutex // guards the fields below
	metrics  string     // "127.0.0.1:PORT" of /metrics; "" until logged
	tail     []string   // the last lines of stderr
	panicked bool       // a "panic:" line was seen
	stopping bool       // we signalled or killed it
	exitErr  error      // from Wait, set before done is closed
}

const tailLines = 20

// startMember starts bin with args and waits until it logs its metrics
// address (or exits, or ctx ends).
// With logDir set, the member's log is also written to logDir/NAME.log.
func startMember(ctx context.Context, bin string, args []string, slot, life int, logDir string) (*member, error) {
	m := &member{
		name: fmt.Sprintf("m%d.%d", slot, life), slot: slot,
		addr: make(chan string, 1), done: make(chan struct{}),
	}
	if logDir != "" {
		f, err := os.Create(filepath.Join(logDir, m.name+".log"))
		if err != nil {
			return nil, err
		}
		m.logFile = f
	}
	m.cmd = exec.Command(bin, args...)
	m.cmd.SysProcAttr = procAttr()
	m.cmd.Stdout = io.Discard
	stderr, err := m.cmd.StderrPipe()
	if err == nil {
		err = m.cmd.Start()
	}
	if err != nil {
		if m.logFile != nil {
			_ = m.logFile.Close()
		}
		return nil, fmt.Errorf("start member %s: %w", m.name, err)
	}
	m.started = time.Now()
	go m.watch(stderr) // owner: m; exits when the process has exited (done)
	wait := time.NewTimer(60 * time.Second)
	defer wait.Stop()
	select {
	case a := <-m.addr:
		m.mu.Lock()
		m.metrics = a
		m.mu.Unlock()
		return m, nil
	case <-m.done:
		return nil, fmt.Errorf("member %s exited at start (%v): %s", m.name, m.exitErr, m.lastLines())
	case <-wait.C:
	case <-ctx.Done():
	}
	m.kill()
	return nil, fmt.Errorf("member %s logged no metrics address: %s", m.name, m.lastLines())
}

// watch reads the member's log until the process closes it, then reaps
// the process and closes done.
func (m *member) watch(stderr io.Reader) {
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sent := false
	for sc.Scan() {
		line := sc.Text()
		if !sent && strings.Contains(line, "serving /metrics") {
			var l struct {
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.Addr != "" {
				m.addr <- l.Addr
				sent = true
			}
		}
		if m.logFile != nil {
			_, _ = io.WriteString(m.logFile, line+"\n")
		}
		m.mu.Lock()
		if strings.HasPrefix(line, "panic:") || strings.Contains(line, "DATA RACE") {
			m.panicked = true
		}
		m.tail = append(m.tail, line)
		if len(m.tail) > tailLines {
			m.tail = m.tail[len(m.tail)-tailLines:]
		}
		m.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, stderr) // a line past the buffer: keep the pipe drained
	m.exitErr = m.cmd.Wait()
	if m.logFile != nil {
		_ = m.logFile.Close()
	}
	close(m.done)
}

func (m *member) metricsAddr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.metrics
}

func (m *member) lastLines() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return strings.Join(m.tail, "\n")
}

// exited reports whether the process has exited.
func (m *member) exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// unexpected reports whether the process exited without being told to.
func (m *member) unexpected() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.stopping && m.exited()
}

// kill sends SIGKILL and waits for the process to be reaped.
func (m *member) kill() {
	m.mu.Lock()
	m.stopping = true
	m.mu.Unlock()
	_ = m.cmd.Process.Kill()
	<-m.done
}

// stop sends SIGTERM and waits up to grace for the process to drain and
// exit; past it, SIGKILL. It returns the exit error (nil: exit 0).
func (m *member) stop(grace time.Duration) error {
	m.mu.Lock()
	m.stopping = true
	m.mu.Unlock()
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-m.done:
		return m.exitErr
	case <-t.C:
		_ = m.cmd.Process.Kill()
		<-m.done
		return errors.New("did not exit within the grace period after SIGTERM: killed")
	}
}
