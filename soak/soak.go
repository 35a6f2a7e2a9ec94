// Package soak runs `pipeline soak`: minutes of churn against real parts
// (a local catalog site, a second site that switches between 200s, 429s
// and timeouts, a proxy farm of which one proxy is killed and revived, a
// real Kafka broker whose produce quota for the members is tightened and
// lifted) with 2-3 real `pipeline run` processes in one consumer group,
// killed (SIGKILL and SIGTERM) and restarted on a schedule. It samples
// every member's RSS, heap, goroutines and open fds and the group's lag,
// and at the end reconciles every input produced with the results and
// dead letters written. See docs/soak.md.
package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	kafka "github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/testbed"
)

// Config is one soak. The zero value of each field but Brokers and
// Binary means the default documented on it.
type Config struct {
	Brokers []string // Kafka bootstrap brokers; required
	Binary  string   // the pipeline binary the members run; required

	Duration   time.Duration // input produced and churn for this long; 0: 10m
	Drain      time.Duration // after it, wait this long at most for every input to end; 0: 3m
	Members    int           // member processes in the group, 2..5; 0: 3
	Partitions int           // of the input topic; 0: 6
	Rate       float64       // URL messages produced per second; 0: 10
	Sample     time.Duration // sampling interval; 0: 10s
	Churn      time.Duration // one churn step every Churn; 0: 15s
	// SinkSlowBytes is the produce quota (bytes/s, shared by the members'
	// client id) while the sink is slowed; 0: 4096.
	SinkSlowBytes int

	// Leak bounds, judged on the anchor member (slot 0, never restarted)
	// over the second half of the churn phase. 0: the defaults below.
	MaxGoroutineSlope float64 // per minute; 0: 60
	MaxGoroutines     float64 // 0: 2000
	MaxFDSlope        float64 // per minute; 0: 10
	MaxFDs            float64 // 0: 512

	// Log receives one line per churn step and sample; nil discards.
	Log io.Writer
	// LogDir, if set, receives each member lifetime's log as NAME.log
	// ("m1.2.log": slot 1, second lifetime). It must exist.
	LogDir string
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Duration, 10*time.Minute)
	def(&c.Drain, 3*time.Minute)
	def(&c.Sample, 10*time.Second)
	def(&c.Churn, 15*time.Second)
	if c.Members == 0 {
		c.Members = 3
	}
	if c.Partitions == 0 {
		c.Partitions = 6
	}
	if c.Rate == 0 {
		c.Rate = 10
	}
	if c.SinkSlowBytes == 0 {
		c.SinkSlowBytes = 4096
	}
	if c.MaxGoroutineSlope == 0 {
		c.MaxGoroutineSlope = 60
	}
	if c.MaxGoroutines == 0 {
		c.MaxGoroutines = 2000
	}
	if c.MaxFDSlope == 0 {
		c.MaxFDSlope = 10
	}
	if c.MaxFDs == 0 {
		c.MaxFDs = 512
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return c
}

// Validate reports a setting a soak cannot run with.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case len(c.Brokers) == 0:
		return errors.New("no Kafka broker: give --kafka-brokers or set SLUICE_KAFKA_BROKERS (source .ci/setup-kafka.sh starts one)")
	case c.Binary == "":
		return errors.New("no pipeline binary for the members")
	case c.Members < 2 || c.Members > 5:
		return fmt.Errorf("members = %d, want 2..5", c.Members)
	case c.Partitions < c.Members:
		return fmt.Errorf("partitions = %d, want at least one per member (%d)", c.Partitions, c.Members)
	case c.Duration < 0 || c.Drain < 0 || c.Sample < 0 || c.Churn < 0 || c.Rate < 0 || c.SinkSlowBytes < 0:
		return errors.New("durations, rate and sink-slow-bytes must not be negative")
	case c.Sample > c.Duration/4:
		return fmt.Errorf("sample interval %v leaves fewer than 4 samples in %v", c.Sample, c.Duration)
	}
	return nil
}

// soak is one running soak: its world, its members and what it saw.
type soak struct {
	cfg   Config
	start time.Time

	site, flaky *testbed.Site
	farm        *testbed.Farm
	dir         string
	input       string // topics and group, unique per soak
	results     string
	dead        string
	group       string
	clientID    string // the members' Kafka client id: the quota's entity
	http        *http.Client

	mu      sync.Mutex // guards the fields below
	members []*member  // per slot, the current lifetime
	lives   []int      // per slot, lifetimes started
	all     []*member  // every lifetime, in start order
	series  map[string]*series
	order   []string // series keys in creation order
	events  events
}

// events counts what the churn did.
type events struct {
	Kill9, Term, Starts, Unexpected, TermNotClean int
	ProxyKills, ModeSwitches, SinkSlow            int
	Produced, ProduceFailed                       int
}

// Run runs a soak and returns its report. The error is nil only when
// nothing leaked and nothing was lost; the report is filled either way
// once the soak got going.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &soak{cfg: cfg.withDefaults(), series: map[string]*series{}, http: &http.Client{Transport: &http.Transport{}}}
	s.cfg.Log = &lockedWriter{w: s.cfg.Log} // the churn, the sampler and the drain all log
	defer s.http.CloseIdleConnections()
	name := testbed.UniqueName("soak")
	s.input, s.results, s.dead, s.group, s.clientID = name+".in", name+".results", name+".dead", name, name
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := testbed.CreateTopics(tctx, s.cfg.Brokers, s.cfg.Partitions, s.input, s.results, s.dead)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	defer s.deleteTopics()
	if err := s.startWorld(); err != nil {
		return nil, err
	}
	defer s.closeWorld()
	defer s.setSinkQuota(0) // lifted whatever happens
	defer s.stopAll()

	s.start = time.Now()
	for slot := range s.cfg.Members {
		if err := s.startSlot(ctx, slot); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(s.cfg.Log, "soak: %d members in group %s, input %s (%d partitions), %v of churn\n",
		s.cfg.Members, s.group, s.input, s.cfg.Partitions, s.cfg.Duration)

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	produced := newIDSet()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // owner: Run; ends with runCtx or the duration
		defer wg.Done()
		s.produce(runCtx, produced)
	}()
	go func() { // owner: Run; ends with runCtx
		defer wg.Done()
		s.sampleLoop(runCtx)
	}()
	churnErr := s.churn(runCtx)
	churnEnd := s.elapsed()
	// Back to calm: every fault lifted, every slot running, then drain.
	s.calm(runCtx)
	rec, drainErr := s.drain(runCtx, produced)
	s.sampleOnce(runCtx) // the last point of every series
	stopRun()
	wg.Wait()
	s.stopAll()
	rep := s.report(churnEnd, rec)
	return rep, errors.Join(churnErr, drainErr, rep.verdict())
}

func (s *soak) elapsed() float64 { return time.Since(s.start).Seconds() }

func (s *soak) startWorld() error {
	var err error
	if s.site, err = testbed.StartSite(testbed.SiteConfig{Products: 1000, PageBytes: 4 << 10}); err != nil {
		return err
	}
	// The flaky domain has a host of its own (the governor keys domains
	// by host name), on another loopback address.
	if s.flaky, err = testbed.StartSite(testbed.SiteConfig{Addr: "127.0.1.1:0", Products: 1000}); err != nil {
		return err
	}
	if s.farm, err = testbed.StartFarm(testbed.FarmConfig{N: 4}); err != nil {
		return err
	}
	if s.dir, err = os.MkdirTemp("", "sluice-soak-"); err != nil {
		return err
	}
	return os.WriteFile(s.proxiesFile(), []byte(strings.Join(s.farm.URLs(), "\n")+"\n"), 0o600)
}

func (s *soak) proxiesFile() string { return filepath.Join(s.dir, "proxies.txt") }

func (s *soak) closeWorld() {
	if s.site != nil {
		_ = s.site.Close()
	}
	if s.flaky != nil {
		_ = s.flaky.Close()
	}
	if s.farm != nil {
		_ = s.farm.Close()
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

func (s *soak) deleteTopics() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, done := testbed.KafkaClient(s.cfg.Brokers)
	defer done()
	_, _ = c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{s.input, s.results, s.dead}})
}

// memberArgs is the command line of every member.
func (s *soak) memberArgs() []string {
	return []string{"run",
		"--kafka-brokers", strings.Join(s.cfg.Brokers, ","),
		"--kafka-topic", s.input, "--kafka-group", s.group,
		"--kafka-results-topic", s.results, "--kafka-dead-topic", s.dead,
		"--kafka-client-id", s.clientID, "--kafka-session-timeout", "6s",
		"--proxies", s.proxiesFile(), "--allow-loopback",
		"--metrics-addr", "127.0.0.1:0", "--pprof", "--progress", "log", "--stats-interval", "10s", "--log-level", "info",
		"--rate", "50", "--concurrency", "16", "--timeout", "2s", "--max-attempts", "3",
		"--drain-timeout", "20s", "--kafka-window", strconv.Itoa(window),
	}
}

// startSlot starts the next lifetime of a member slot.
func (s *soak) startSlot(ctx context.Context, slot int) error {
	s.mu.Lock()
	for len(s.lives) <= slot {
		s.lives = append(s.lives, 0)
		s.members = append(s.members, nil)
	}
	s.lives[slot]++
	life := s.lives[slot]
	s.mu.Unlock()
	m, err := startMember(ctx, s.cfg.Binary, s.memberArgs(), slot, life, s.cfg.LogDir)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.members[slot] = m
	s.all = append(s.all, m)
	s.events.Starts++
	s.mu.Unlock()
	return nil
}

// stopAll stops every running member with SIGTERM (the end of the soak).
func (s *soak) stopAll() {
	s.mu.Lock()
	ms := append([]*member(nil), s.members...)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, m := range ms {
		if m == nil || m.exited() {
			continue
		}
		wg.Add(1)
		go func() { // owner: stopAll, which waits
			defer wg.Done()
			_ = m.stop(30 * time.Second)
		}()
	}
	wg.Wait()
}

// produce writes URL messages at cfg.Rate until the churn phase ends.
// Every 50th message is not a URL message (a dead letter); every 5th is
// for the flaky domain; the rest for the catalog site. Each carries its
// id as `soak=N` in its URL (or its bytes) and as meta.soak.
func (s *soak) produce(ctx context.Context, produced *idSet) {
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{
		Addr: kafka.TCP(s.cfg.Brokers...), Topic: s.input, Balancer: &kafka.RoundRobin{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 5 * time.Millisecond, Transport: tr,
	}
	defer w.Close()
	const tick = 250 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	end := s.start.Add(s.cfg.Duration)
	next, owed := 0, 0.0
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		owed += s.cfg.Rate * tick.Seconds()
		var batch []kafka.Message
		var ids []int
		for ; owed >= 1; owed-- {
			batch = append(batch, kafka.Message{Value: s.message(next)})
			ids = append(ids, next)
			next++
		}
		if len(batch) == 0 {
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := w.WriteMessages(wctx, batch...)
		cancel()
		s.mu.Lock()
		if err != nil {
			s.events.ProduceFailed += len(ids)
		} else {
			s.events.Produced += len(ids)
		}
		s.mu.Unlock()
		if err == nil {
			produced.add(ids...)
		}
	}
}

func (s *soak) message(id int) []byte {
	switch {
	case id%50 == 49:
		return []byte(`{"url": soak=` + strconv.Itoa(id) + ` is not JSON`)
	case id%5 == 0:
		return urlMessage(s.flaky.ProductURL(id%1000+1), id)
	default:
		return urlMessage(s.site.ProductURL(id%1000+1), id)
	}
}

func urlMessage(u string, id int) []byte {
	n := strconv.Itoa(id)
	return []byte(`{"url":"` + u + `?soak=` + n + `","meta":{"soak":` + n + `}}`)
}

// churn runs one step every cfg.Churn until the duration has passed: in
// turn a member killed with SIGKILL and restarted, the flaky domain's next
// mode, a farm proxy killed or revived, a member stopped with SIGTERM and
// restarted, the sink slowed or sped up. Slot 0 is never restarted: it is
// the anchor whose series run the whole soak.
func (s *soak) churn(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Churn)
	defer t.Stop()
	end := s.start.Add(s.cfg.Duration)
	modes := []testbed.SiteMode{testbed.SiteLimited, testbed.SiteHang, testbed.SiteNormal}
	modeNames := map[testbed.SiteMode]string{testbed.SiteNormal: "200", testbed.SiteLimited: "429", testbed.SiteHang: "hang"}
	proxyDown, sinkSlow := false, false
	victim := 0 // cycles over slots 1..Members-1
	nextVictim := func() int {
		victim = victim%(s.cfg.Members-1) + 1
		return victim
	}
	done := time.NewTimer(time.Until(end))
	defer done.Stop()
	var errs []error
	for step := 0; ; step++ {
		select {
		case <-ctx.Done():
			return errors.Join(errs...)
		case <-done.C:
			return errors.Join(errs...)
		case <-t.C:
		}
		if err := s.restartCrashed(ctx); err != nil {
			errs = append(errs, err)
		}
		var what string
		switch step % 5 {
		case 0:
			slot := nextVictim()
			m := s.current(slot)
			m.kill()
			what = "kill -9 " + m.name
			s.count(func(e *events) { e.Kill9++ })
			if err := s.startSlot(ctx, slot); err != nil {
				errs = append(errs, err)
			}
		case 1:
			m := modes[(step/5)%len(modes)]
			s.flaky.SetMode(m)
			what = "flaky domain answers " + modeNames[m]
			s.count(func(e *events) { e.ModeSwitches++ })
		case 2:
			p := s.farm.Proxy(0)
			if proxyDown {
				if err := p.Revive(); err != nil {
					errs = append(errs, err)
				}
				what = "proxy 0 revived"
			} else {
				p.Kill()
				what = "proxy 0 killed"
				s.count(func(e *events) { e.ProxyKills++ })
			}
			proxyDown = !proxyDown
		case 3:
			slot := nextVictim()
			m := s.current(slot)
			err := m.stop(40 * time.Second)
			what = "SIGTERM " + m.name
			s.count(func(e *events) {
				e.Term++
				if err != nil {
					e.TermNotClean++
				}
			})
			if err != nil {
				what += fmt.Sprintf(" (exit: %v)", err)
			}
			if err := s.startSlot(ctx, slot); err != nil {
				errs = append(errs, err)
			}
		case 4:
			sinkSlow = !sinkSlow
			rate := 0
			what = "sink fast (quota lifted)"
			if sinkSlow {
				rate = s.cfg.SinkSlowBytes
				what = fmt.Sprintf("sink slow (produce quota %d B/s)", rate)
				s.count(func(e *events) { e.SinkSlow++ })
			}
			if err := s.setSinkQuota(rate); err != nil {
				errs = append(errs, err)
			}
		}
		fmt.Fprintf(s.cfg.Log, "%6.1fs churn: %s\n", s.elapsed(), what)
	}
}

func (s *soak) count(f func(*events)) {
	s.mu.Lock()
	f(&s.events)
	s.mu.Unlock()
}

func (s *soak) current(slot int) *member {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.members[slot]
}

// restartCrashed restarts members that exited without being told to, and
// reports them: a crash is a failure of the soak.
func (s *soak) restartCrashed(ctx context.Context) error {
	var errs []error
	for slot := range s.cfg.Members {
		m := s.current(slot)
		if m == nil || !m.unexpected() {
			continue
		}
		s.count(func(e *events) { e.Unexpected++ })
		errs = append(errs, fmt.Errorf("member %s exited by itself (%v): %s", m.name, m.exitErr, m.lastLines()))
		if err := s.startSlot(ctx, slot); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// calm lifts every fault: the flaky domain answers 200, the proxy is
// back, the quota is gone, every slot runs.
func (s *soak) calm(ctx context.Context) {
	s.flaky.SetMode(testbed.SiteNormal)
	_ = s.farm.Proxy(0).Revive()
	_ = s.setSinkQuota(0)
	_ = s.restartCrashed(ctx)
	fmt.Fprintf(s.cfg.Log, "%6.1fs calm: faults lifted, draining\n", s.elapsed())
}

// setSinkQuota sets the broker's produce quota of the members' client id
// to bytesPerSec, or lifts it (0). The broker then delays its answers to
// the members' produce requests: the sink is slower, for real.
func (s *soak) setSinkQuota(bytesPerSec int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, done := testbed.KafkaClient(s.cfg.Brokers)
	defer done()
	op := kafka.AlterClientQuotaOps{Key: "producer_byte_rate", Value: float64(bytesPerSec), Remove: bytesPerSec == 0}
	res, err := c.AlterClientQuotas(ctx, &kafka.AlterClientQuotasRequest{Entries: []kafka.AlterClientQuotaEntry{{
		Entities: []kafka.AlterClientQuotaEntity{{EntityType: "client-id", EntityName: s.clientID}},
		Ops:      []kafka.AlterClientQuotaOps{op},
	}}})
	if err != nil {
		return fmt.Errorf("sink quota: %w", err)
	}
	for _, e := range res.Entries {
		if e.Error != nil {
			return fmt.Errorf("sink quota: %w", e.Error)
		}
	}
	return nil
}

// sampleLoop samples every cfg.Sample until ctx ends.
func (s *soak) sampleLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Sample)
	defer t.Stop()
	s.sampleOnce(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sampleOnce(ctx)
		}
	}
}

// sampleOnce scrapes every live member and the group's lag.
func (s *soak) sampleOnce(ctx context.Context) {
	s.mu.Lock()
	ms := append([]*member(nil), s.members...)
	s.mu.Unlock()
	now := s.elapsed()
	var parts []string
	for _, m := range ms {
		if m == nil || m.exited() {
			continue
		}
		vals, err := scrape(ctx, s.http, m.metricsAddr())
		if err != nil {
			continue // killed between the check and the scrape
		}
		for _, ps := range processSeries {
			s.add(ps.name, m.name, point{now, vals[ps.name]})
		}
		parts = append(parts, fmt.Sprintf("%s g=%.0f fd=%.0f rss=%.0fMB", m.name, vals["goroutines"], vals["fds"], vals["rss_mb"]))
	}
	if lag, err := s.lag(ctx); err == nil {
		s.add("lag", "group", point{now, float64(lag)})
		parts = append(parts, fmt.Sprintf("lag=%d", lag))
	}
	fmt.Fprintf(s.cfg.Log, "%6.1fs sample: %s\n", now, strings.Join(parts, " "))
}

func (s *soak) add(name, owner string, p point) {
	key := owner + "/" + name
	s.mu.Lock()
	defer s.mu.Unlock()
	sr := s.series[key]
	if sr == nil {
		sr = &series{name: name, owner: owner}
		s.series[key] = sr
		s.order = append(s.order, key)
	}
	sr.points = append(sr.points, p)
}

// lag is the group's consumer lag on the input topic: end offsets minus
// committed offsets (a partition with no commit counts from 0).
func (s *soak) lag(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ends, err := testbed.EndOffsets(ctx, s.cfg.Brokers, s.input)
	if err != nil {
		return 0, err
	}
	committed, err := testbed.CommittedOffsets(ctx, s.cfg.Brokers, s.group, s.input, s.cfg.Partitions)
	if err != nil {
		return 0, err
	}
	var lag int64
	for p, end := range ends {
		lag += end - max(committed[p], 0)
	}
	return lag, nil
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
