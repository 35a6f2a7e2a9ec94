package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

// spawnFlag, as the first argument, makes this binary a launcher:
//
//	compare -spawn RUSAGE-FILE PROGRAM ARGS...
//
// runs PROGRAM with this process's stdin, stdout and stderr, passes on
// SIGTERM and SIGINT, and when it exits writes its rusage to RUSAGE-FILE
// and exits with its exit code.
//
// Why a launcher: Go starts a child with vfork semantics (CLONE_VM), so
// until exec the child runs in the parent's memory, and Linux carries the
// parent's peak RSS into the child's ru_maxrss at exec. A peer started
// from the harness, whose site and proxies hold tens of MB, would report
// at least the harness's peak. Started from this small launcher it
// inherits only the launcher's few MB; Report.RSSFloor measures that.
const spawnFlag = "-spawn"

// spawnUsage is what the launcher writes to its RUSAGE-FILE.
type spawnUsage struct {
	UserNS   int64 `json:"user_ns"`
	SystemNS int64 `json:"system_ns"`
	MaxRSSKB int64 `json:"max_rss_kb"`
}

func spawnMain(args []string, stderr io.Writer) int {
	if len(args) < 2 {
		fmt.Fprintln(stderr, "spawn: want RUSAGE-FILE PROGRAM [ARGS...]")
		return 2
	}
	cmd := exec.Command(args[1], args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the launcher
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "spawn: %v\n", err)
		return 127
	}
	done := make(chan struct{})
	// owner: spawnMain, which closes done after Wait; passes signals on until then
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
		if code < 0 { // killed by a signal
			code = 128 + int(ee.Sys().(syscall.WaitStatus).Signal())
		}
	case err != nil:
		fmt.Fprintf(stderr, "spawn: %v\n", err)
		return 127
	}
	u := spawnUsage{UserNS: int64(cmd.ProcessState.UserTime()), SystemNS: int64(cmd.ProcessState.SystemTime())}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		u.MaxRSSKB = ru.Maxrss
	}
	b, _ := json.Marshal(u)
	if err := os.WriteFile(args[0], b, 0o644); err != nil {
		fmt.Fprintf(stderr, "spawn: %v\n", err)
		if code == 0 {
			code = 125
		}
	}
	return code
}

// readSpawnUsage reads a launcher's RUSAGE-FILE.
func readSpawnUsage(path string, wall time.Duration) (usage, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return usage{Wall: wall}, fmt.Errorf("no rusage from the launcher: %w", err)
	}
	var su spawnUsage
	if err := json.Unmarshal(b, &su); err != nil {
		return usage{Wall: wall}, fmt.Errorf("rusage file: %w", err)
	}
	return usage{Wall: wall, CPU: time.Duration(su.UserNS + su.SystemNS), MaxRSS: su.MaxRSSKB * 1024}, nil
}
