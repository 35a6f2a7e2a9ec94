package metrics

import (
	"os"
	"syscall"
)

// fdUsage returns the number of open file descriptors and the soft limit,
// where the system tells them (Linux: /proc/self/fd).
func fdUsage() (open, limit int, ok bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, false
	}
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, 0, false
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return 0, 0, false
	}
	// The directory read holds one descriptor of its own.
	return len(names) - 1, int(min(rl.Cur, uint64(1<<31-1))), true
}
