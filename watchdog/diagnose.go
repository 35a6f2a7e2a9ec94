package watchdog

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/sluicehq/sluice/governor"
	"github.com/sluicehq/sluice/metrics"
)

// The causes a Diagnosis can name.
const (
	CauseSinkBlocked        = "sink_blocked"        // the sink holds outputs and writes none
	CauseProxiesQuarantined = "proxies_quarantined" // inputs wait for a lease while every proxy is quarantined
	CauseLeaseWait          = "lease_wait"          // inputs wait for a lease, nothing is in flight
	CauseProxiesFailing     = "proxies_failing"     // every attempt failed, mostly at the proxies
	CauseTargetFailing      = "target_failing"      // every attempt failed, mostly at the target sites
	CauseDomainTokens       = "domain_tokens"       // inputs wait for domains' rate-limit tokens, nothing else moves
	CauseRequestsHanging    = "requests_hanging"    // requests are in flight and none finishes
	CauseDownstreamBlocked  = "downstream_blocked"  // a stage cannot hand its output on
	CauseFailing            = "failing"             // inputs finish, all as failures, without a fetch attempt
	CauseSourceEmpty        = "source_empty"        // nothing to do: the source has nothing to read
	CauseUnknown            = "unknown"
)

const (
	fetchStageName = "fetch" // the stage whose activity Sources.Fetch reports
	maxListed      = 6       // items listed in a summary before "… n more"
)

// StageState is one stage as the watchdog saw it.
type StageState struct {
	Name      string
	Queue     int
	Capacity  int
	InFlight  int
	Processed uint64
	// StillFor is how long Processed has not moved.
	StillFor time.Duration
}

func (s StageState) full() bool  { return s.Capacity > 0 && s.Queue >= s.Capacity }
func (s StageState) empty() bool { return s.Queue == 0 && s.InFlight == 0 }

// Snapshot is everything Diagnose looks at.
type Snapshot struct {
	// Since is how long there has been no successful output.
	Since time.Duration
	// After is the stall threshold: a stage still for this long is stuck.
	After time.Duration
	// Stages in pipeline order, source first, sink last.
	Stages []StageState
	// Sources give the fetch activity and the proxies' state.
	Sources metrics.Sources
	// Window is what happened since the last success.
	Window window
}

// Diagnosis names the most likely cause of a stall and what each stage is
// waiting on.
type Diagnosis struct {
	// Cause is one of the Cause constants.
	Cause string
	// Summary says in one sentence what blocks the pipeline.
	Summary string
	// Idle is true when there is simply nothing to do (CauseSourceEmpty).
	Idle bool
	// Since is how long there has been no successful output.
	Since time.Duration
	// Stages say, per stage, what it is waiting on.
	Stages []StageReport
}

// StageReport is one stage's line of a Diagnosis.
type StageReport struct {
	Name    string
	Waiting string
}

// Diagnose names the cause of a stall. It is a pure function of the
// snapshot (plus the live Sources it calls).
func Diagnose(s Snapshot) Diagnosis {
	var act *governor.Activity
	if s.Sources.Fetch != nil {
		a := s.Sources.Fetch()
		act = &a
	}
	var proxies []metrics.ProxyState
	if s.Sources.Proxies != nil {
		proxies = s.Sources.Proxies()
	}
	d := Diagnosis{Since: s.Since, Stages: stageReports(s, act)}
	d.Cause, d.Summary = cause(s, act, proxies)
	d.Idle = d.Cause == CauseSourceEmpty
	return d
}

// diag is what the checks of a diagnosis read: the snapshot, the fetch
// stage's activity (nil without one), the proxies, and derived figures.
type diag struct {
	s          Snapshot
	act        *governor.Activity
	proxies    []metrics.ProxyState
	since      time.Duration // the stall, rounded for messages
	inRequests int           // requests in flight
}

// check is one named cause: ok reports whether it explains the stall.
type check func(d *diag) (cause, summary string, ok bool)

// cause tries the checks in order; the first that explains the stall
// names it.
func cause(s Snapshot, act *governor.Activity, proxies []metrics.ProxyState) (string, string) {
	d := &diag{s: s, act: act, proxies: proxies, since: s.Since.Round(time.Millisecond)}
	if act != nil {
		for _, v := range act.Requests {
			d.inRequests += v
		}
	}
	for _, c := range []check{
		sinkBlocked,       // 1. the sink holds outputs and has written none
		leaseWait,         // 2. inputs wait for a lease, nothing in flight
		allAttemptsFailed, // 3. every attempt since the last success failed
		domainTokens,      // 4. inputs wait for domain tokens, nothing else moves
		requestsHanging,   // 5. requests in flight, none finished
		downstreamBlocked, // 6. a stage has work but cannot hand it on
		outputsFailing,    // 7. inputs finish, all failed, without attempts
		sourceEmpty,       // 8. nothing is queued or in flight anywhere
	} {
		if cause, summary, ok := c(d); ok {
			return cause, summary
		}
	}
	return CauseUnknown, fmt.Sprintf("no successful output for %s", d.since)
}

// sinkBlocked: the sink holds outputs and has written none for as long
// as the stall.
func sinkBlocked(d *diag) (string, string, bool) {
	n := len(d.s.Stages)
	if n == 0 {
		return "", "", false
	}
	sink := d.s.Stages[n-1]
	if (sink.InFlight == 0 && sink.Queue == 0) || sink.StillFor < d.s.After {
		return "", "", false
	}
	return CauseSinkBlocked, fmt.Sprintf("sink blocked: it holds %d outputs (queue %d/%d) and has written none for %s",
		sink.InFlight+sink.Queue, sink.Queue, sink.Capacity, sink.StillFor.Round(time.Millisecond)), true
}

// leaseWait: inputs wait for a lease and nothing is in flight.
func leaseWait(d *diag) (string, string, bool) {
	if d.act == nil || d.act.LeaseWait == 0 || d.inRequests > 0 {
		return "", "", false
	}
	q := quarantined(d.proxies)
	if len(d.proxies) > 0 && len(q) == len(d.proxies) {
		return CauseProxiesQuarantined, fmt.Sprintf("all %d proxies are quarantined (%s); %d inputs wait for a proxy",
			len(d.proxies), list(q), d.act.LeaseWait), true
	}
	return CauseLeaseWait, fmt.Sprintf("%d inputs wait for a proxy lease and no request is in flight (%d of %d proxies quarantined)",
		d.act.LeaseWait, len(q), len(d.proxies)), true
}

// allAttemptsFailed: attempts were made since the last success and all
// of them failed, at the proxies or at the target.
func allAttemptsFailed(d *diag) (string, string, bool) {
	w := d.s.Window
	if w.attempts == 0 || w.failed != w.attempts {
		return "", "", false
	}
	if proxyFailures(w) >= w.failed-w.failed/5 {
		failing := make([]string, 0, len(w.byProxy))
		for id, pw := range w.byProxy {
			failing = append(failing, fmt.Sprintf("%s: %s", id, counts(pw.byClass)))
		}
		sort.Strings(failing)
		all := ""
		if len(d.proxies) > 0 && len(w.byProxy) >= len(d.proxies) {
			all = fmt.Sprintf("all %d proxies failing; ", len(d.proxies))
		}
		return CauseProxiesFailing, fmt.Sprintf("%severy attempt for %s failed at the proxies (%d attempts: %s)",
			all, d.since, w.attempts, clip(failing)), true
	}
	doms := make([]string, 0, len(w.byDomain))
	for dom, m := range w.byDomain {
		doms = append(doms, fmt.Sprintf("%s: %s", dom, counts(m)))
	}
	sort.Strings(doms)
	return CauseTargetFailing, fmt.Sprintf("every attempt for %s failed at the target (%d attempts: %s)", d.since, w.attempts, clip(doms)), true
}

// domainTokens: inputs wait for domain tokens and nothing else moves.
func domainTokens(d *diag) (string, string, bool) {
	if d.act == nil || d.inRequests > 0 || len(d.act.TokenWait) == 0 {
		return "", "", false
	}
	waiting, top, topN := 0, "", 0
	for dom, v := range d.act.TokenWait {
		waiting += v
		if v > topN || v == topN && dom < top {
			top, topN = dom, v
		}
	}
	rate := ""
	var domains []governor.DomainStats
	switch {
	case d.s.Sources.DomainsOf != nil:
		domains = d.s.Sources.DomainsOf([]string{top})
	case d.s.Sources.Domains != nil:
		domains = d.s.Sources.Domains()
	}
	if domains != nil {
		for _, ds := range domains {
			if ds.Domain == top && !math.IsInf(ds.Rate, 1) {
				rate = fmt.Sprintf(" (rate %.3g/s)", ds.Rate)
			}
		}
	}
	return CauseDomainTokens, fmt.Sprintf("%d of %d fetch workers wait for rate-limit tokens, %d of them for %s%s",
		waiting, d.act.Workers, topN, top, rate), true
}

// requestsHanging: requests are in flight and none has finished since
// the last success.
func requestsHanging(d *diag) (string, string, bool) {
	if d.act == nil || d.inRequests == 0 || d.s.Window.attempts != 0 {
		return "", "", false
	}
	return CauseRequestsHanging, fmt.Sprintf("%d requests in flight have had no answer for %s (by proxy: %s)",
		d.inRequests, d.since, counts(d.act.Requests)), true
}

// downstreamBlocked: a stage has work but cannot hand it on.
func downstreamBlocked(d *diag) (string, string, bool) {
	for i := 0; i+1 < len(d.s.Stages); i++ {
		cur, next := d.s.Stages[i], d.s.Stages[i+1]
		if next.full() && next.StillFor >= d.s.After && !cur.empty() {
			return CauseDownstreamBlocked, fmt.Sprintf("%s cannot hand on: the %s queue is full (%d/%d) and %s has passed nothing on for %s",
				cur.Name, next.Name, next.Queue, next.Capacity, next.Name, next.StillFor.Round(time.Millisecond)), true
		}
	}
	return "", "", false
}

// outputsFailing: inputs finish, all failed, without fetch attempts (bad
// input, say).
func outputsFailing(d *diag) (string, string, bool) {
	w := d.s.Window
	if len(w.outputs) == 0 || w.attempts != 0 {
		return "", "", false
	}
	return CauseFailing, fmt.Sprintf("every output for %s was a failure (%s)", d.since, counts(w.outputs)), true
}

// sourceEmpty: nothing is queued or in flight anywhere: the source has
// nothing.
func sourceEmpty(d *diag) (string, string, bool) {
	for _, st := range d.s.Stages {
		if st.Queue > 0 || st.InFlight > 0 {
			return "", "", false
		}
	}
	if len(d.s.Stages) == 0 {
		return CauseSourceEmpty, "the source has had nothing to read", true
	}
	src := d.s.Stages[0]
	return CauseSourceEmpty, fmt.Sprintf("the source has read nothing new for %s (%d read so far)", src.StillFor.Round(time.Millisecond), src.Processed), true
}

// stageReports says what each stage is waiting on.
func stageReports(s Snapshot, act *governor.Activity) []StageReport {
	out := make([]StageReport, 0, len(s.Stages))
	n := len(s.Stages)
	for i, st := range s.Stages {
		var b strings.Builder
		switch {
		case i == 0:
			fmt.Fprintf(&b, "read %d", st.Processed)
			if n > 1 && s.Stages[1].full() {
				fmt.Fprintf(&b, "; blocked: the %s queue is full (%d/%d)", s.Stages[1].Name, s.Stages[1].Queue, s.Stages[1].Capacity)
			} else {
				fmt.Fprintf(&b, "; nothing read for %s", st.StillFor.Round(time.Millisecond))
			}
		case i == n-1:
			fmt.Fprintf(&b, "queue %d/%d, holds %d, last write %s ago", st.Queue, st.Capacity, st.InFlight, st.StillFor.Round(time.Millisecond))
		default:
			fmt.Fprintf(&b, "queue %d/%d, %d in flight", st.Queue, st.Capacity, st.InFlight)
			if st.Name == fetchStageName && act != nil {
				b.WriteString(activityLine(*act, nextName(s.Stages, i)))
			}
			fmt.Fprintf(&b, ", passed nothing on for %s", st.StillFor.Round(time.Millisecond))
		}
		out = append(out, StageReport{Name: st.Name, Waiting: b.String()})
	}
	return out
}

func nextName(st []StageState, i int) string {
	if i+1 < len(st) {
		return st[i+1].Name
	}
	return "the next stage"
}

func activityLine(a governor.Activity, next string) string {
	var parts []string
	if len(a.TokenWait) > 0 {
		parts = append(parts, fmt.Sprintf("%d waiting for tokens (%s)", sum(a.TokenWait), counts(a.TokenWait)))
	}
	if a.LeaseWait > 0 {
		parts = append(parts, fmt.Sprintf("%d waiting for a proxy", a.LeaseWait))
	}
	if len(a.Requests) > 0 {
		parts = append(parts, fmt.Sprintf("%d in requests (%s)", sum(a.Requests), counts(a.Requests)))
	}
	if a.Backoff > 0 {
		parts = append(parts, fmt.Sprintf("%d backing off", a.Backoff))
	}
	if a.Handover > 0 {
		parts = append(parts, fmt.Sprintf("%d waiting for %s to take them", a.Handover, next))
	}
	if len(parts) == 0 {
		return ""
	}
	return ": " + strings.Join(parts, ", ")
}

func quarantined(ps []metrics.ProxyState) []string {
	var out []string
	for _, p := range ps {
		if p.Quarantined {
			out = append(out, p.ID)
		}
	}
	return out
}

// proxyFailures counts failures whose class blames the proxy
// (failure.ProxyConnect, ProxyAuth, ProxyProtocol).
func proxyFailures(w window) int {
	n := 0
	for cl, v := range w.byClass {
		if strings.HasPrefix(cl, "proxy_") {
			n += v
		}
	}
	return n
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// counts renders a map as "a ×3, b ×1", largest first, at most maxListed.
func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, 0, min(len(keys), maxListed)+1)
	for i, k := range keys {
		if i == maxListed {
			parts = append(parts, fmt.Sprintf("… %d more", len(keys)-maxListed))
			break
		}
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func list(ids []string) string {
	sort.Strings(ids)
	return clip(ids)
}

func clip(items []string) string {
	if len(items) > maxListed {
		return strings.Join(items[:maxListed], "; ") + fmt.Sprintf("; … %d more", len(items)-maxListed)
	}
	return strings.Join(items, "; ")
}
