package main

import (
	"fmt"
	"io"
	"strings"
)

// rowLine is a one-line progress note for a finished run.
func rowLine(r Row) string {
	s := fmt.Sprintf("%8.1f pages/s  %6.2f CPU-s/1k  %6.1f MB  %s", r.Rate(), r.CPUPer1k(), r.RSSMB(), correctCell(r))
	if r.Err != nil {
		s += "  error: " + firstLine(r.Err.Error())
	}
	return s
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

// correctCell is the correctness column: "ok" when every URL has one
// correct record and the site saw one request per URL.
func correctCell(r Row) string {
	switch {
	case r.Err != nil:
		return "FAIL (crashed) " + r.Verify.String()
	case !r.Verify.OK():
		return "FAIL " + r.Verify.String()
	case r.Fetches > int64(r.N):
		return fmt.Sprintf("ok %s (+%d refetched)", r.Verify, r.Fetches-int64(r.N))
	}
	return "ok " + r.Verify.String()
}

func printTable(out io.Writer, rep *Report) {
	fmt.Fprintln(out, "| c | peer | pages/s | CPU-s / 1k pages | peak RSS MB | correct | site requests | wall s |")
	fmt.Fprintln(out, "|---:|---|---:|---:|---:|---|---:|---:|")
	for _, r := range rep.Rows {
		fmt.Fprintf(out, "| %d | %s | %.1f | %.2f | %.1f | %s | %d | %.2f |\n",
			r.C, r.Peer, r.Rate(), r.CPUPer1k(), r.RSSMB(), correctCell(r), r.Fetches, r.Usage.Wall.Seconds())
	}
	fmt.Fprintln(out)
}

// find returns the row of peer at c.
func (rep *Report) find(peer string, c int) (Row, bool) {
	for _, r := range rep.Rows {
		if r.Peer == peer && r.C == c {
			return r, true
		}
	}
	return Row{}, false
}

func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func printRatios(out io.Writer, rep *Report) {
	var cs []int
	for _, r := range rep.Rows {
		if r.Peer == peerSluice {
			cs = append(cs, r.C)
		}
	}
	if len(cs) == 0 {
		return
	}
	fmt.Fprintln(out, "| c | pages/s sluice/Colly | pages/s sluice/floor | CPU sluice/Colly | CPU sluice/floor | RSS sluice/Colly | RSS sluice/floor |")
	fmt.Fprintln(out, "|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range cs {
		s, _ := rep.find(peerSluice, c)
		col, okC := rep.find(peerColly, c)
		fl, okF := rep.find(peerFloor, c)
		cell := func(ok bool, a, b float64) string {
			if !ok {
				return "–"
			}
			return ratio(a, b)
		}
		fmt.Fprintf(out, "| %d | %s | %s | %s | %s | %s | %s |\n", c,
			cell(okC, s.Rate(), col.Rate()), cell(okF, s.Rate(), fl.Rate()),
			cell(okC, s.CPUPer1k(), col.CPUPer1k()), cell(okF, s.CPUPer1k(), fl.CPUPer1k()),
			cell(okC, s.RSSMB(), col.RSSMB()), cell(okF, s.RSSMB(), fl.RSSMB()))
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "Targets (reported, not enforced):")
	for _, c := range cs {
		s, _ := rep.find(peerSluice, c)
		if col, ok := rep.find(peerColly, c); ok && (c == 200 || c == 1000) {
			target(out, fmt.Sprintf("c=%d pages/s sluice >= 1.3x Colly", c), s.Rate()/col.Rate(), 1.3, true)
		}
		if fl, ok := rep.find(peerFloor, c); ok && (c == 50 || c == 200) {
			target(out, fmt.Sprintf("c=%d pages/s sluice >= 0.9x floor", c), s.Rate()/fl.Rate(), 0.9, true)
		}
		if col, ok := rep.find(peerColly, c); ok {
			target(out, fmt.Sprintf("c=%d CPU-s/1k sluice <= 0.8x Colly", c), s.CPUPer1k()/col.CPUPer1k(), 0.8, false)
		}
		if c == 1000 {
			target(out, "c=1000 peak RSS sluice <= 120 MB", s.RSSMB(), 120, false)
		}
	}
	fmt.Fprintln(out)
}

// target prints one target line: got against want, at least (atLeast)
// or at most.
func target(out io.Writer, name string, got, want float64, atLeast bool) {
	met := got <= want
	if atLeast {
		met = got >= want
	}
	verdict := "missed"
	if met {
		verdict = "met"
	}
	fmt.Fprintf(out, "- %s: %.2f, %s\n", name, got, verdict)
}

func printKafka(out io.Writer, rep *Report) {
	k := rep.Kafka
	fmt.Fprintf(out, "## Kafka end to end (sluice, c=%d)\n\n", k.Row.C)
	if k.Err != nil {
		fmt.Fprintf(out, "Kafka run failed: %v\n\n", k.Err)
		return
	}
	fmt.Fprintln(out, "| mode | pages/s | CPU-s / 1k pages | peak RSS MB | correct | dead letters | group join s |")
	fmt.Fprintln(out, "|---|---:|---:|---:|---|---:|---:|")
	file, okF := rep.find(peerSluice, k.Row.C)
	if okF {
		fmt.Fprintf(out, "| file (JSONL) | %.1f | %.2f | %.1f | %s | – | – |\n", file.Rate(), file.CPUPer1k(), file.RSSMB(), correctCell(file))
	}
	fmt.Fprintf(out, "| Kafka | %.1f | %.2f | %.1f | %s | %d | %.2f |\n\n",
		k.Rate(), k.Row.CPUPer1k(), k.Row.RSSMB(), correctCell(k.Row), k.Dead, k.Join.Seconds())
	if okF {
		target(out, fmt.Sprintf("c=%d pages/s Kafka >= 0.9x file", k.Row.C), k.Rate()/file.Rate(), 0.9, true)
		fmt.Fprintln(out)
	}
}

func printProfile(out io.Writer, p Profile) {
	fmt.Fprintf(out, "## sluice profile at c=%d\n\n", p.C)
	if p.Err != nil {
		fmt.Fprintf(out, "profiling failed: %v\n\n", p.Err)
		return
	}
	fmt.Fprintf(out, "CPU profile %s, allocations %s, mid-run heap %s and goroutines %s; the profiled run's records: %s\n\n",
		p.CPUFile, p.AllocsFile, p.HeapFile, p.GoroutineFile, p.Verify)
	fmt.Fprintf(out, "CPU (top):\n```\n%s\n```\n\nAllocated bytes (top, alloc_space):\n```\n%s\n```\n\n", p.CPUTop, p.AllocTop)
	fmt.Fprintf(out, "Live heap mid-run (top, inuse_space):\n```\n%s\n```\n\n", p.HeapTop)
}
