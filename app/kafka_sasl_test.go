package app

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	kgo "github.com/segmentio/kafka-go"

	"github.com/sluicehq/sluice/kafka"
	"github.com/sluicehq/sluice/testbed"
)

// saslBroker starts a broker of the test's own with .ci/kafka-broker.sh,
// with a SASL_PLAINTEXT listener (PLAIN and SCRAM-SHA-512) for the user
// sluice, and returns that listener's address. It skips without the jars.
func saslBroker(t *testing.T, password string) string {
	t.Helper()
	libs := os.Getenv(testbed.EnvKafkaLibs)
	if libs == "" {
		t.Skipf("%s is not set (source .ci/setup-kafka.sh): no broker of the test's own", testbed.EnvKafkaLibs)
	}
	ports := freePorts(t, 3)
	dir := t.TempDir()
	logf, err := os.Create(filepath.Join(dir, "broker.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "../.ci/kafka-broker.sh", filepath.Join(dir, "data"), strconv.Itoa(ports[0]), strconv.Itoa(ports[1]))
	cmd.Env = append(os.Environ(), "SLUICE_KAFKA_SASL_PORT="+strconv.Itoa(ports[2]), "SLUICE_KAFKA_SASL_PASSWORD="+password)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }() // owner: this test; ends when the broker exits
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "broker.log"))
			t.Logf("broker log (end):\n%s", b[max(0, len(b)-3000):])
		}
	})
	return "127.0.0.1:" + strconv.Itoa(ports[2])
}

// freePorts returns n free loopback ports, the first two adjacent (the
// broker and its controller).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	for range 50 {
		var lns []net.Listener
		var ports []int
		ok := true
		for i := range n {
			addr := "127.0.0.1:0"
			if i == 1 {
				addr = "127.0.0.1:" + strconv.Itoa(ports[0]+1)
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				ok = false
				break
			}
			lns = append(lns, ln)
			ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
		}
		for _, ln := range lns {
			ln.Close()
		}
		if ok {
			return ports
		}
	}
	t.Fatal("no free ports")
	return nil
}

// TestKafkaSASLRunAndReplay runs `run` and then `replay` from one job config
// against a broker that requires SASL: run writes results and pages over
// SASL, replay reads the pages back with the same settings (PLAIN, and
// SCRAM-SHA-512), and a replay with the wrong password fails.
func TestKafkaSASLRunAndReplay(t *testing.T) {
	const password, n = "sasl-pw-5c1f", 30
	addr := saslBroker(t, password)
	dir := t.TempDir()
	pw := writeFile(t, dir, "pw", password+"\n")
	client, err := kafka.New(kafka.Config{Brokers: kafka.Brokers{addr}, SASL: kafka.SASL{Mechanism: "plain", Username: "sluice", PasswordFile: pw}})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for { // the broker is up once it answers over SASL
		_, err := client.Admin().CreateTopics(ctx, &kgo.CreateTopicsRequest{Topics: []kgo.TopicConfig{
			{Topic: "results", NumPartitions: 2, ReplicationFactor: 1}, {Topic: "results.dead", NumPartitions: 1, ReplicationFactor: 1},
			{Topic: "pages", NumPartitions: 2, ReplicationFactor: 1},
		}})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("broker did not answer over SASL: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	site, err := testbed.StartSite(testbed.SiteConfig{Products: n})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	var urls strings.Builder
	for id := 1; id <= n; id++ {
		urls.WriteString(site.ProductURL(id) + "\n")
	}
	writeFile(t, dir, "urls.txt", urls.String())
	job := writeFile(t, dir, "job.yaml", `urls: urls.txt
log_level: warn
direct: true
policy: {allow_loopback: true}
fetch: {rate: -1, stagger_max: 0}
observe: {progress: "off", stall_after: 0}
kafka:
  brokers: `+addr+`
  results_topic: results
  pages_topic: pages
  sasl: {mechanism: plain, username: sluice, password_file: pw}
`)
	c, err := load(t, Defaults(), "--config", job)
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	if err := Run(ctx, c, &bytes.Buffer{}, &stderr); err != nil {
		t.Fatalf("run over SASL: %v\n%s", err, stderr.String())
	}
	for _, mech := range []string{"plain", "scram-sha-512"} {
		out := filepath.Join(dir, mech+".jsonl")
		// The same config; results to a file instead of the topic.
		c, err := load(t, Defaults(), "--config", job, "--kafka-results-topic", "", "--out", out, "--kafka-sasl-mechanism", mech)
		if err != nil {
			t.Fatal(err)
		}
		if err := Replay(ctx, c, ReplayOptions{FromOffset: -1}, &bytes.Buffer{}, &stderr); err != nil {
			t.Fatalf("replay over SASL %s: %v\n%s", mech, err, stderr.String())
		}
		v, err := VerifyFile(out, n)
		if err != nil || !v.OK() || v.Correct != n {
			t.Fatalf("replay over SASL %s: %+v %v", mech, v, err)
		}
	}
	wrong := writeFile(t, dir, "wrong", "not-the-password\n")
	c, err = load(t, Defaults(), "--config", job, "--kafka-results-topic", "", "--out", filepath.Join(dir, "x.jsonl"), "--kafka-sasl-password-file", wrong)
	if err != nil {
		t.Fatal(err)
	}
	if err := Replay(ctx, c, ReplayOptions{FromOffset: -1}, &bytes.Buffer{}, &stderr); err == nil || IsUsage(err) {
		t.Fatalf("replay with the wrong password: %v, want a failure", err)
	}
}
