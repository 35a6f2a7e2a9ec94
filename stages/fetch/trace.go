package fetch

import (
	"crypto/tls"
	"net/http/httptrace"
	"sync"
	"time"

	"github.com/sluicehq/sluice/record"
)

// timer records the phases of one attempt through httptrace. The trace
// callbacks may run on the transport's goroutines, hence the lock.
type timer struct {
	now func() time.Time

	mu                                          sync.Mutex
	start, dnsStart, dnsDone, connStart         time.Time
	connDone, tlsStart, tlsDone, firstByte, end time.Time
	reused                                      bool
}

func newTimer(now func() time.Time) *timer {
	return &timer{now: now, start: now()}
}

func (tm *timer) trace() *httptrace.ClientTrace {
	set := func(p *time.Time) {
		tm.mu.Lock()
		if p.IsZero() {
			*p = tm.now()
		}
		tm.mu.Unlock()
	}
	return &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			tm.mu.Lock()
			tm.reused = info.Reused
			tm.mu.Unlock()
		},
		DNSStart:             func(httptrace.DNSStartInfo) { set(&tm.dnsStart) },
		DNSDone:              func(httptrace.DNSDoneInfo) { set(&tm.dnsDone) },
		ConnectStart:         func(string, string) { set(&tm.connStart) },
		ConnectDone:          func(string, string, error) { set(&tm.connDone) },
		TLSHandshakeStart:    func() { set(&tm.tlsStart) },
		TLSHandshakeDone:     func(tls.ConnectionState, error) { set(&tm.tlsDone) },
		GotFirstResponseByte: func() { set(&tm.firstByte) },
	}
}

// finish marks the end of the attempt.
func (tm *timer) finish() {
	tm.mu.Lock()
	if tm.end.IsZero() {
		tm.end = tm.now()
	}
	tm.mu.Unlock()
}

// timings returns the phases as durations, for the Page record.
func (tm *timer) timings() record.Timings {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	span := func(a, b time.Time) int64 {
		if a.IsZero() || b.IsZero() {
			return 0
		}
		return b.Sub(a).Milliseconds()
	}
	return record.Timings{
		DNSMS:       span(tm.dnsStart, tm.dnsDone),
		ConnectMS:   span(tm.connStart, tm.connDone),
		TLSMS:       span(tm.tlsStart, tm.tlsDone),
		FirstByteMS: span(tm.start, tm.firstByte),
		TotalMS:     span(tm.start, tm.end),
	}
}

// fill copies the recorded times into a span.
func (tm *timer) fill(sp *record.Span) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	sp.Start, sp.End, sp.Reused = tm.start, tm.end, tm.reused
	sp.DNSStart, sp.DNSDone = opt(tm.dnsStart), opt(tm.dnsDone)
	sp.ConnectStart, sp.ConnectDone = opt(tm.connStart), opt(tm.connDone)
	sp.TLSStart, sp.TLSDone = opt(tm.tlsStart), opt(tm.tlsDone)
	sp.FirstByte = opt(tm.firstByte)
}
