package app

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/testbed"
)

// TestBenchMembers runs the scaling bench on a small scale: one and two
// member processes each finish every page, and the table has a row per
// count.
func TestBenchMembers(t *testing.T) {
	brokers := testbed.KafkaBrokers(t)
	c := Defaults()
	c.Fetch.Concurrency = 8
	o := BenchOptions{Pages: 300, FarmProxies: 4, PerIP: 1, Window: time.Minute, Latency: 5 * time.Millisecond,
		Binary: pipelineBinary(t)}
	if err := o.ParseMembers("1,2", strings.Join(brokers, ",")); err != nil {
		t.Fatal(err)
	}
	var out, errs bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := Bench(ctx, c, o, &out, &errs); err != nil {
		t.Fatalf("bench: %v\n%s\n%s", err, out.String(), errs.String())
	}
	t.Logf("\n%s", out.String())
	for _, m := range []string{"1", "2"} {
		row := regexp.MustCompile(`(?m)^\s+` + m + `\s+300\s+[0-9.]+\s+[0-9]+\s+[0-9.]+\s+[0-9.]+`)
		if !row.MatchString(out.String()) {
			t.Errorf("no row for %s member(s):\n%s", m, out.String())
		}
	}
	for _, bad := range []string{"0", "13", "x"} {
		if err := o.ParseMembers(bad, "127.0.0.1:1"); err == nil {
			t.Errorf("-members %s accepted", bad)
		}
	}
	if err := o.ParseMembers("1", ""); err == nil {
		t.Error("-members without -brokers accepted")
	}
}
