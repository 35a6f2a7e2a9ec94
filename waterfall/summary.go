package waterfall

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/record"
)

// Summary sums up the attempts of one proxy (or one domain).
type Summary struct {
	Key      string // proxy id or domain
	Attempts int
	OK       int
	// Median and P95 are of the attempts' durations, start to end,
	// failures included (a timeout is as slow as its deadline).
	Median, P95 time.Duration
	Errors      map[string]int // failed attempts by class
	Bytes       int64
	// Late counts attempts whose lease ran far past its expected time (a
	// soft failure of the proxy), Hedges attempts that were the hedge of
	// a late one, Probation attempts leased while the proxy was on
	// probation (a probe, or its cap below its maximum).
	Late, Hedges, Probation int
	// Streak is the longest run of failed attempts in a row, by start: for
	// a proxy, what it cost before it was caught (its catch cost, as far as
	// the spans show it).
	Streak int
}

// SuccessRate is OK over Attempts, 0 without attempts.
func (s Summary) SuccessRate() float64 {
	if s.Attempts == 0 {
		return 0
	}
	return float64(s.OK) / float64(s.Attempts)
}

// ErrorList renders Errors as "class ×n, …", most frequent first.
func (s Summary) ErrorList() string {
	keys := make([]string, 0, len(s.Errors))
	for k := range s.Errors {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if s.Errors[keys[i]] != s.Errors[keys[j]] {
			return s.Errors[keys[i]] > s.Errors[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " ×" + strconv.Itoa(s.Errors[k])
	}
	return strings.Join(parts, ", ")
}

// ByProxy summarises spans per proxy, in natural order of the ids (p2
// before p10), followed by the total over all spans under Key "all".
func ByProxy(spans []record.Span) []Summary {
	return summarize(spans, func(sp record.Span) string { return sp.Proxy })
}

// ByDomain summarises spans per domain, then the total.
func ByDomain(spans []record.Span) []Summary {
	return summarize(spans, func(sp record.Span) string { return sp.Domain })
}

func summarize(spans []record.Span, key func(record.Span) string) []Summary {
	type acc struct {
		s    Summary
		durs []time.Duration
		runs []run
	}
	groups := map[string]*acc{}
	total := &acc{s: Summary{Key: "all", Errors: map[string]int{}}}
	for _, sp := range spans {
		k := key(sp)
		g := groups[k]
		if g == nil {
			g = &acc{s: Summary{Key: k, Errors: map[string]int{}}}
			groups[k] = g
		}
		d := max(sp.End.Sub(sp.Start), 0)
		for _, a := range []*acc{g, total} {
			a.s.Attempts++
			a.s.Bytes += sp.Bytes
			a.durs = append(a.durs, d)
			a.runs = append(a.runs, run{sp.Start, sp.Error != "" && sp.Error != "canceled"})
			if sp.Late {
				a.s.Late++
			}
			if sp.Hedge {
				a.s.Hedges++
			}
			if sp.Probation {
				a.s.Probation++
			}
			if sp.Error == "" {
				a.s.OK++
			} else {
				a.s.Errors[sp.Error]++
			}
		}
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return naturalLess(keys[i], keys[j]) })
	out := make([]Summary, 0, len(keys)+1)
	for _, k := range append(keys, "") {
		a := total
		if k != "" {
			a = groups[k]
		}
		sort.Slice(a.durs, func(i, j int) bool { return a.durs[i] < a.durs[j] })
		a.s.Median, a.s.P95 = percentile(a.durs, 50), percentile(a.durs, 95)
		if k != "" {
			a.s.Streak = longestStreak(a.runs)
		}
		out = append(out, a.s)
	}
	return out
}

// run is one attempt for longestStreak.
type run struct {
	start  time.Time
	failed bool
}

// longestStreak is the longest run of failed attempts in a row, by start.
func longestStreak(runs []run) int {
	sort.SliceStable(runs, func(i, j int) bool { return runs[i].start.Before(runs[j].start) })
	best, cur := 0, 0
	for _, r := range runs {
		if !r.failed {
			cur = 0
			continue
		}
		cur++
		best = max(best, cur)
	}
	return best
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 × n)
	return sorted[max(rank, 1)-1]
}

// naturalLess orders strings with their trailing numbers compared as
// numbers: p2 < p10.
func naturalLess(a, b string) bool {
	pa, na, oka := splitNum(a)
	pb, nb, okb := splitNum(b)
	if oka && okb && pa == pb {
		return na < nb
	}
	return a < b
}

func splitNum(s string) (string, int, bool) {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	if i == len(s) || len(s)-i > 9 {
		return s, 0, false
	}
	n, err := strconv.Atoi(s[i:])
	return s[:i], n, err == nil
}
