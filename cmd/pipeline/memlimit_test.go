package main

import (
	"runtime/debug"
	"testing"
)

// TestSetMemoryLimit: the setting is applied and put back after; 0 and a
// GOMEMLIMIT in the environment leave the runtime's limit alone.
func TestSetMemoryLimit(t *testing.T) {
	was := debug.SetMemoryLimit(-1)
	for _, tc := range []struct {
		limit int64
		env   string
		want  int64
	}{
		{limit: 200 << 20, want: 200 << 20},
		{limit: 0, want: was},
		{limit: 200 << 20, env: "1GiB", want: was},
	} {
		restore := setMemoryLimit(tc.limit, tc.env)
		if got := debug.SetMemoryLimit(-1); got != tc.want {
			t.Errorf("limit %d, GOMEMLIMIT %q: runtime limit %d, want %d", tc.limit, tc.env, got, tc.want)
		}
		restore()
		if got := debug.SetMemoryLimit(-1); got != was {
			t.Errorf("limit %d: %d after restore, want %d", tc.limit, got, was)
		}
	}
}
