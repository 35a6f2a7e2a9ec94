package soak

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// window is the members' --kafka-window: records per partition read and
// not yet committed, at most. It bounds what a membership change can
// deliver twice.
const window = 64

// Row is one series over its lifetime.
type Row struct {
	Owner      string // member lifetime ("m0.1") or "group"
	Series     string // rss_mb, heap_mb, goroutines, fds, lag
	From, To   float64
	Samples    int
	Start, End float64
	Max        float64
	Slope      float64 // least squares, per minute, over the whole lifetime
}

// Judged is one leak check on the anchor member.
type Judged struct {
	Series          string
	From, To        float64 // the window judged, seconds since the start
	Slope, Max      float64
	MaxSlope, Bound float64
	Samples         int
	OK              bool
}

// Report is what a soak saw.
type Report struct {
	Config         Config
	Anchor         string  // the member lifetime judged for leaks
	ChurnEnd       float64 // seconds: the last churn step ended (past Duration when a SIGTERM drain ran long)
	Rows           []Row
	Judged         []Judged
	Events         events
	Reconciliation Reconciliation
	DupBound       int
	Crashes        []string // members that exited by themselves, or panicked
}

func (s *soak) report(churnEnd float64, rec Reconciliation) *Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &Report{Config: s.cfg, Events: s.events, Reconciliation: rec, ChurnEnd: churnEnd}
	changes := s.events.Kill9 + s.events.Term + s.events.Starts + s.events.Unexpected
	r.DupBound = changes * s.cfg.Partitions * window
	for _, key := range s.order {
		sr := s.series[key]
		ps := sr.points
		if len(ps) == 0 {
			continue
		}
		r.Rows = append(r.Rows, Row{Owner: sr.owner, Series: sr.name, From: ps[0].t, To: ps[len(ps)-1].t,
			Samples: len(ps), Start: ps[0].v, End: ps[len(ps)-1].v, Max: maxOf(ps), Slope: slope(ps)})
	}
	for _, m := range s.all {
		m.mu.Lock()
		if m.panicked {
			r.Crashes = append(r.Crashes, m.name+" logged a panic or a data race")
		}
		m.mu.Unlock()
	}
	if s.events.Unexpected > 0 {
		r.Crashes = append(r.Crashes, fmt.Sprintf("%d member exits nobody asked for", s.events.Unexpected))
	}
	if len(s.all) == 0 {
		return r
	}
	anchor := s.all[0] // slot 0, first lifetime: never restarted
	r.Anchor = anchor.name
	from, to := churnEnd/2, churnEnd
	for _, b := range []struct {
		name            string
		maxSlope, bound float64
	}{
		{"goroutines", s.cfg.MaxGoroutineSlope, s.cfg.MaxGoroutines},
		{"fds", s.cfg.MaxFDSlope, s.cfg.MaxFDs},
	} {
		j := Judged{Series: b.name, From: from, To: to, MaxSlope: b.maxSlope, Bound: b.bound}
		if sr := s.series[anchor.name+"/"+b.name]; sr != nil {
			ps := within(sr.points, from, to)
			j.Samples, j.Slope, j.Max = len(ps), slope(ps), maxOf(ps)
		}
		j.OK = j.Samples >= 3 && j.Slope <= j.MaxSlope && j.Max <= j.Bound
		r.Judged = append(r.Judged, j)
	}
	return r
}

// verdict is nil when nothing leaked, nothing was lost, duplicates stayed
// within the bound and no member crashed.
func (r *Report) verdict() error {
	var errs []error
	for _, j := range r.Judged {
		if !j.OK {
			errs = append(errs, fmt.Errorf("leak: %s of %s over %.0f-%.0fs: slope %.1f/min (bound %.0f), max %.0f (bound %.0f), %d samples (need 3)",
				j.Series, r.Anchor, j.From, j.To, j.Slope, j.MaxSlope, j.Max, j.Bound, j.Samples))
		}
	}
	rec := r.Reconciliation
	if rec.Lost < 0 {
		errs = append(errs, errors.New("not reconciled: the soak was interrupted"))
	}
	if rec.Lost > 0 {
		errs = append(errs, fmt.Errorf("lost: %d of %d inputs have no result, error result or dead letter (ids %v)", rec.Lost, rec.Produced, rec.LostIDs))
	}
	if rec.Produced == 0 {
		errs = append(errs, errors.New("nothing was produced"))
	}
	if rec.Duplicates > r.DupBound {
		errs = append(errs, fmt.Errorf("duplicates: %d, above the bound of %d", rec.Duplicates, r.DupBound))
	}
	for _, c := range r.Crashes {
		errs = append(errs, errors.New("crash: "+c))
	}
	return errors.Join(errs...)
}

// Print writes the report as Markdown tables.
func (r *Report) Print(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "\n## soak: %v of input (churn until %.0fs), %d members, %d partitions, %.0f inputs/s, a sample every %v, a churn step every %v\n\n",
		c.Duration, r.ChurnEnd, c.Members, c.Partitions, c.Rate, c.Sample, c.Churn)
	e := r.Events
	fmt.Fprintf(w, "churn: %d kill -9, %d SIGTERM (%d not exit 0), %d member starts, %d proxy kills, %d flaky-domain mode switches, %d sink slow-downs, %d unexpected exits\n\n",
		e.Kill9, e.Term, e.TermNotClean, e.Starts, e.ProxyKills, e.ModeSwitches, e.SinkSlow, e.Unexpected)
	fmt.Fprintln(w, "| member | series | from s | to s | samples | start | end | max | slope /min |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, row := range r.Rows {
		sl := "-" // too few points for a slope that means anything
		if row.Samples >= 5 {
			sl = fmt.Sprintf("%.2f", row.Slope)
		}
		fmt.Fprintf(w, "| %s | %s | %.0f | %.0f | %d | %s | %s | %s | %s |\n", row.Owner, row.Series, row.From, row.To,
			row.Samples, num(row.Start), num(row.End), num(row.Max), sl)
	}
	fmt.Fprintf(w, "\nleak checks on the anchor %s (never restarted), second half of the churn phase:\n\n", r.Anchor)
	fmt.Fprintln(w, "| series | window s | samples | slope /min | bound | max | bound | ok |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, j := range r.Judged {
		fmt.Fprintf(w, "| %s | %.0f-%.0f | %d | %.2f | %.0f | %.0f | %.0f | %v |\n", j.Series, j.From, j.To, j.Samples, j.Slope, j.MaxSlope, j.Max, j.Bound, j.OK)
	}
	rec := r.Reconciliation
	fmt.Fprintln(w, "\nreconciliation:")
	fmt.Fprintln(w, "\n| produced | result ok | error result | dead letter | lost | duplicates | duplicate bound | stray |")
	fmt.Fprintln(w, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	fmt.Fprintf(w, "| %d | %d | %d | %d | %d | %d | %d | %d |\n", rec.Produced, rec.OK, rec.Errors, rec.Dead, rec.Lost, rec.Duplicates, r.DupBound, rec.Stray)
	if len(rec.ErrorClass) > 0 {
		var parts []string
		for k, v := range rec.ErrorClass {
			parts = append(parts, fmt.Sprintf("%s %d", k, v))
		}
		fmt.Fprintf(w, "\nerror results by class: %s\n", strings.Join(parts, ", "))
	}
	if err := r.verdict(); err != nil {
		fmt.Fprintf(w, "\nFAIL: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
	} else {
		fmt.Fprintln(w, "\nPASS: nothing grew past its bound, nothing was lost")
	}
}

// num prints a value with a precision that suits its size.
func num(v float64) string {
	if v >= 100 || v == float64(int64(v)) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}
