package governor

import (
	"math"
	"testing"
	"time"
)

func feed(c *Controller, n int, s Signal) (changes int) {
	for range n {
		s.Epoch = c.Epoch()
		if c.Observe(s) {
			changes++
		}
	}
	return changes
}

var (
	ok20 = Signal{OK: true, Latency: 20 * time.Millisecond, HasLatency: true}
	fail = Signal{Latency: 20 * time.Millisecond, HasLatency: true}
	over = Signal{Overload: true, Latency: 20 * time.Millisecond, HasLatency: true}
	near = func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
)

func TestControllerRaisesByTwentyPercentPerHealthyWindow(t *testing.T) {
	c := NewController(Adaptive{})
	if c.Level() != 0.5 {
		t.Fatalf("start level %v, want 0.5", c.Level())
	}
	feed(c, 49, ok20)
	if c.Level() != 0.5 {
		t.Fatalf("raised before a full window of 50: %v", c.Level())
	}
	feed(c, 1, ok20)
	if !near(c.Level(), 0.6) {
		t.Fatalf("after 50 successes level %v, want 0.6", c.Level())
	}
	// 96% (2 spread failures in 50) still raises.
	for i := range 50 {
		s := ok20
		if i == 20 || i == 40 {
			s = fail
		}
		feed(c, 1, s)
	}
	if !near(c.Level(), 0.72) {
		t.Fatalf("after a window at 96%% level %v, want 0.72", c.Level())
	}
	feed(c, 50*10, ok20)
	if c.Level() != 1 {
		t.Fatalf("level %v after many healthy windows, want the maximum 1", c.Level())
	}
}

func TestControllerHoldsBetween90And95(t *testing.T) {
	c := NewController(Adaptive{})
	// 4 failures in every 50 (92%): neither raise nor cut.
	for i := range 500 {
		s := ok20
		if k := i % 50; k%12 == 10 && k < 48 { // at 10, 22, 34, 46
			s = fail
		}
		feed(c, 1, s)
	}
	if c.Level() != 0.5 {
		t.Errorf("level %v after windows at 92–96%% success, want unchanged 0.5", c.Level())
	}
}

func TestControllerCuts(t *testing.T) {
	t.Run("at once on 429 or 503", func(t *testing.T) {
		c := NewController(Adaptive{Start: 1})
		if feed(c, 1, over) != 1 || !near(c.Level(), 0.8) {
			t.Fatalf("level %v after one overload answer, want 0.8", c.Level())
		}
	})
	t.Run("below 90 percent success", func(t *testing.T) {
		c := NewController(Adaptive{Start: 1})
		feed(c, 8, ok20)
		feed(c, 1, fail)
		if c.Level() != 1 {
			t.Fatalf("cut on 1 failure in 9 (fewer than MinSamples): %v", c.Level())
		}
		feed(c, 1, fail) // 8 of 10: 80%
		if !near(c.Level(), 0.8) {
			t.Fatalf("level %v at 80%% success, want 0.8", c.Level())
		}
	})
	t.Run("on median latency over twice the baseline", func(t *testing.T) {
		c := NewController(Adaptive{Start: 1, LatencyFloor: time.Millisecond})
		feed(c, 100, Signal{OK: true, Latency: 40 * time.Millisecond, HasLatency: true})
		if c.Baseline() != 40*time.Millisecond || c.Level() != 1 {
			t.Fatalf("baseline %v level %v, want 40ms and 1", c.Baseline(), c.Level())
		}
		slow := Signal{OK: true, Latency: 81 * time.Millisecond, HasLatency: true}
		feed(c, 49, slow)
		if c.Level() != 1 {
			t.Fatalf("cut while the median of the last 100 was still 40ms: %v", c.Level())
		}
		feed(c, 1, slow) // half of the last 100 at 81ms: the (upper) median is 81ms
		if !near(c.Level(), 0.8) {
			t.Fatalf("level %v with the median at 81ms over a 40ms baseline, want 0.8", c.Level())
		}
		// The next latency cut needs 100 responses of the new level.
		feed(c, 99, slow)
		if !near(c.Level(), 0.8) {
			t.Fatalf("cut again before 100 responses at the new level: %v", c.Level())
		}
		feed(c, 1, slow)
		if !near(c.Level(), 0.64) {
			t.Fatalf("level %v after 100 more slow responses, want 0.64", c.Level())
		}
		// Exactly twice the baseline is not over it.
		c2 := NewController(Adaptive{Start: 1, LatencyFloor: time.Millisecond})
		feed(c2, 100, Signal{OK: true, Latency: 40 * time.Millisecond, HasLatency: true})
		feed(c2, 300, Signal{OK: true, Latency: 80 * time.Millisecond, HasLatency: true})
		if c2.Level() != 1 {
			t.Errorf("cut at exactly twice the baseline: %v", c2.Level())
		}
	})
	t.Run("latency floor", func(t *testing.T) {
		c := NewController(Adaptive{Start: 1}) // floor 25ms
		feed(c, 100, Signal{OK: true, Latency: time.Millisecond, HasLatency: true})
		feed(c, 200, Signal{OK: true, Latency: 40 * time.Millisecond, HasLatency: true})
		if c.Level() != 1 {
			t.Errorf("1ms → 40ms cut although under twice the 25ms floor: %v", c.Level())
		}
	})
	t.Run("never below min", func(t *testing.T) {
		c := NewController(Adaptive{Min: 0.1})
		feed(c, 100, over)
		if c.Level() != 0.1 {
			t.Errorf("level %v after 100 overloads, want the floor 0.1", c.Level())
		}
	})
}

func TestControllerIgnoresOutcomesOfAnEarlierLevel(t *testing.T) {
	c := NewController(Adaptive{Start: 1})
	e := c.Epoch()
	over := over
	over.Epoch = e
	if !c.Observe(over) {
		t.Fatal("first overload did not cut")
	}
	// Nine more 429s of requests started before the cut arrive together:
	// they reflect the old level and must not cut again.
	for range 9 {
		if c.Observe(over) {
			t.Fatal("a stale outcome moved the level")
		}
	}
	if !near(c.Level(), 0.8) {
		t.Errorf("level %v, want one cut to 0.8", c.Level())
	}
}

func TestControllerOff(t *testing.T) {
	c := NewController(Adaptive{Off: true})
	feed(c, 10, over)
	if c.Level() != 1 {
		t.Errorf("level %v with control off, want 1", c.Level())
	}
}
