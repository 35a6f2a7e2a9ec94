//go:build unix

package fetch

import (
	"syscall"
)

// raiseFDLimit sets the soft RLIMIT_NOFILE to the hard limit (where the
// system refuses, for an unlimited hard limit on some systems, it keeps
// the soft one) and returns the limits before and after.
func raiseFDLimit() (before, after FDLimit, err error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return before, after, err
	}
	before = FDLimit{Soft: uint64(rl.Cur), Hard: uint64(rl.Max)}
	if rl.Cur < rl.Max {
		want := rl
		want.Cur = rl.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
			rl = want
		}
	}
	return before, FDLimit{Soft: uint64(rl.Cur), Hard: uint64(rl.Max)}, nil
}
