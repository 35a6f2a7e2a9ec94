package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/testbed"
)

// benchPartitions is the input topic's partition count in the members
// bench: enough for three members to get four each.
const benchPartitions = 12

// clockTicks is the unit of the CPU times in /proc/<pid>/stat (USER_HZ,
// 100 on Linux).
const clockTicks = 100

// memberRow is one line of the members bench: m processes in one group.
type memberRow struct {
	members   int
	elapsed   time.Duration
	cpu       time.Duration // the members' CPU time while they scraped
	benchCPU  time.Duration // this process's (site, proxies, producer)
	results   int64
	perMember []time.Duration
}

// benchMembers is `pipeline bench -members 1,2,3`: for each count, that
// many `pipeline run` processes join one consumer group on a 12-partition
// input topic; once the group is stable the bench writes o.Pages URLs of
// the catalog site to the topic and times the run until the results topic
// holds a result for each. It prints pages/s and the members' CPU time
// per 1,000 pages (from /proc, over the same interval).
func benchMembers(ctx context.Context, c Config, o BenchOptions, stdout, stderr io.Writer) error {
	if len(o.Brokers) == 0 {
		return usagef("-members needs -brokers (a Kafka broker to run the group on)")
	}
	for _, m := range o.Members {
		if m < 1 || m > benchPartitions {
			return usagef("-members: %d is not within 1..%d", m, benchPartitions)
		}
	}
	bin := o.Binary
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return err
		}
	}
	site, err := testbed.StartSite(testbed.SiteConfig{Products: o.Pages, PageBytes: o.PageBytes, Latency: o.Latency})
	if err != nil {
		return fmt.Errorf("start catalog site: %w", err)
	}
	defer site.Close()
	farm, err := testbed.StartFarm(testbed.FarmConfig{N: o.FarmProxies})
	if err != nil {
		return fmt.Errorf("start proxy farm: %w", err)
	}
	defer farm.Close()
	dir, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	proxies := filepath.Join(dir, "proxies.txt")
	if err := os.WriteFile(proxies, []byte(strings.Join(farm.URLs(), "\n")+"\n"), 0o600); err != nil {
		return err
	}
	urls := make([]kafkago.Message, o.Pages)
	for i := range urls {
		urls[i] = kafkago.Message{Value: []byte(site.ProductURL(i + 1)), Partition: i % benchPartitions}
	}
	fmt.Fprintf(stdout, "bench: %d pages (site latency %v, no rate limit) through %d proxies; %d-partition input topic; each member: pipeline run --concurrency %d\n",
		o.Pages, o.Latency, o.FarmProxies, benchPartitions, c.Fetch.Concurrency)
	var rows []memberRow
	for _, m := range o.Members {
		row, err := benchGroup(ctx, c, o, bin, proxies, urls, m, stderr)
		if err != nil {
			return fmt.Errorf("%d members: %w", m, err)
		}
		rows = append(rows, row)
		fmt.Fprintf(stdout, "  %d member(s): %d results in %v\n", m, row.results, row.elapsed.Round(time.Millisecond))
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "members\tpages\tseconds\tpages/s\tmembers CPU-s\tCPU-s per 1k pages\tper member CPU-s\tbench CPU-s (site, proxies)\t")
	for _, r := range rows {
		var per []string
		for _, d := range r.perMember {
			per = append(per, fmt.Sprintf("%.1f", d.Seconds()))
		}
		fmt.Fprintf(tw, "%d\t%d\t%.1f\t%.0f\t%.1f\t%.2f\t%s\t%.1f\t\n", r.members, o.Pages, r.elapsed.Seconds(),
			float64(o.Pages)/r.elapsed.Seconds(), r.cpu.Seconds(), 1000*r.cpu.Seconds()/float64(o.Pages),
			strings.Join(per, " "), r.benchCPU.Seconds())
	}
	return tw.Flush()
}

// benchGroup runs one row: m members, one fresh group and fresh topics.
func benchGroup(ctx context.Context, c Config, o BenchOptions, bin, proxies string, urls []kafkago.Message, m int, stderr io.Writer) (memberRow, error) {
	row := memberRow{members: m}
	in, results := testbed.UniqueName("bench-urls"), testbed.UniqueName("bench-results")
	group := testbed.UniqueName("bench")
	if err := testbed.CreateTopics(ctx, o.Brokers, benchPartitions, in); err != nil {
		return row, err
	}
	if err := testbed.CreateTopics(ctx, o.Brokers, 4, results, results+".dead"); err != nil {
		return row, err
	}
	defer deleteTopics(o.Brokers, in, results, results+".dead")
	args := []string{"run", "--kafka-brokers", strings.Join(o.Brokers, ","), "--kafka-topic", in, "--kafka-group", group,
		"--kafka-results-topic", results, "--proxies", proxies, "--allow-loopback", "--rate", "-1",
		"--concurrency", strconv.Itoa(c.Fetch.Concurrency), "--log-level", "warn", "--progress", "off"}
	var members []*member
	defer func() {
		for _, p := range members {
			p.kill()
		}
	}()
	for i := range m {
		p, err := startMember(bin, fmt.Sprintf("member %d", i+1), args)
		if err != nil {
			return row, err
		}
		members = append(members, p)
	}
	// The group is stable: every member holds partitions, all of them
	// are assigned.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		a, err := testbed.GroupAssignments(ctx, o.Brokers, group, in)
		n := 0
		for _, ps := range a {
			n += len(ps)
		}
		if err == nil && len(a) == m && n == benchPartitions {
			break
		}
		for _, p := range members {
			if p.exited() {
				return row, fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.tail())
			}
		}
		if time.Now().After(deadline) {
			return row, fmt.Errorf("the group did not settle on %d members: %v", m, a)
		}
		if err := sleepOrDone(ctx, 100*time.Millisecond); err != nil {
			return row, err
		}
	}
	cpu0, err := membersCPU(members)
	if err != nil {
		return row, err
	}
	self0 := selfCPU()
	start := time.Now()
	if err := produce(ctx, o.Brokers, in, urls); err != nil {
		return row, err
	}
	for {
		ends, err := testbed.EndOffsets(ctx, o.Brokers, results)
		var n int64
		for _, e := range ends {
			n += e
		}
		if err == nil && n >= int64(len(urls)) {
			row.results = n
			break
		}
		for _, p := range members {
			if p.exited() {
				return row, fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.tail())
			}
		}
		if err := sleepOrDone(ctx, 50*time.Millisecond); err != nil {
			return row, err
		}
	}
	row.elapsed = time.Since(start)
	cpu1, err := membersCPU(members)
	if err != nil {
		return row, err
	}
	row.benchCPU = selfCPU() - self0
	for i := range cpu1 {
		row.perMember = append(row.perMember, cpu1[i]-cpu0[i])
		row.cpu += cpu1[i] - cpu0[i]
	}
	for _, p := range members {
		if err := p.stop(); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n%s", p.name, err, p.tail())
		}
	}
	return row, nil
}

// member is one `pipeline run` child process of the members bench.
type member struct {
	name string
	cmd  *exec.Cmd
	out  *memberLog
	done chan struct{}
	err  error // set before done closes
}

// memberLog keeps the first 64 KiB a member writes.
type memberLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *memberLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 64<<10 { // keep the start and stop reading: a bound
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *memberLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startMember(bin, name string, args []string) (*member, error) {
	p := &member{name: name, cmd: exec.Command(bin, args...), out: &memberLog{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { // owner: p; ends when the process exits
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *member) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *member) tail() string {
	s := p.out.String()
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return s
}

// stop asks the member to drain and exit, and waits at most a minute.
func (p *member) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(time.Minute):
		p.kill()
		return errors.New("did not exit within a minute of SIGTERM")
	}
}

// kill ends the member if it still runs and waits for it.
func (p *member) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// membersCPU returns each member's CPU time (user + system) so far.
func membersCPU(ms []*member) ([]time.Duration, error) {
	out := make([]time.Duration, len(ms))
	for i, p := range ms {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
		if err != nil {
			return nil, fmt.Errorf("CPU time of %s: %w (the members bench needs Linux's /proc)", p.name, err)
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) < 13 {
			return nil, fmt.Errorf("CPU time of %s: short /proc stat line", p.name)
		}
		u, err1 := strconv.ParseInt(f[11], 10, 64)
		k, err2 := strconv.ParseInt(f[12], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("CPU time of %s: %w", p.name, err)
		}
		out[i] = time.Duration(u+k) * time.Second / clockTicks
	}
	return out, nil
}

// selfCPU is this process's CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// produce writes msgs to topic, each to the partition it names.
func produce(ctx context.Context, brokers []string, topic string, msgs []kafkago.Message) error {
	tr := &kafkago.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafkago.Writer{Addr: kafkago.TCP(brokers...), Transport: tr, Topic: topic, RequiredAcks: kafkago.RequireAll,
		Balancer:     kafkago.BalancerFunc(func(m kafkago.Message, parts ...int) int { return parts[m.Partition%len(parts)] }),
		BatchTimeout: 5 * time.Millisecond, BatchSize: 500}
	defer w.Close()
	for len(msgs) > 0 {
		n := min(len(msgs), 1000)
		if err := w.WriteMessages(ctx, msgs[:n]...); err != nil {
			return fmt.Errorf("produce to %s: %w", topic, err)
		}
		msgs = msgs[n:]
	}
	return nil
}

func deleteTopics(brokers []string, names ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, done := testbed.KafkaClient(brokers)
	defer done()
	_, _ = c.DeleteTopics(ctx, &kafkago.DeleteTopicsRequest{Topics: names})
}

func sleepOrDone(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ParseMembers sets Members and Brokers from the -members and -brokers
// flags: a comma-separated list of member counts, and host:port,....
func (o *BenchOptions) ParseMembers(members, brokers string) error {
	o.Members, o.Brokers = nil, nil
	if members == "" {
		if brokers != "" {
			return errors.New("-brokers is for -members")
		}
		return nil
	}
	for _, f := range strings.Split(members, ",") {
		m, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || m < 1 || m > benchPartitions {
			return fmt.Errorf("-members: %q is not a count within 1..%d", f, benchPartitions)
		}
		o.Members = append(o.Members, m)
	}
	for _, b := range strings.Split(brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			o.Brokers = append(o.Brokers, b)
		}
	}
	if len(o.Brokers) == 0 {
		return errors.New("-members needs -brokers host:port")
	}
	return nil
}
