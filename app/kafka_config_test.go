package app

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// parseKafkaFlags parses args as `run` does (config file first, then the
// flags given) and returns the Kafka part.
func parseKafkaFlags(t *testing.T, args ...string) (kafkaConfig, error) {
	t.Helper()
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fill := runFlags(fs)
	fillKafka := kafkaFlags(fs)
	if err := fs.Parse(args); err != nil {
		return kafkaConfig{}, err
	}
	var cfg jobConfig
	if err := fill(&cfg); err != nil {
		return kafkaConfig{}, err
	}
	err := fillKafka(&cfg.Kafka)
	return cfg.Kafka, err
}

func TestKafkaConfigFileAndFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(file, []byte(`kafka:
  brokers: [k1:9092, k2:9092]
  topic: urls
  group: scrapers
  results_topic: results
  pages_topic: pages
  window: 100
  commit_interval: 2s
  sasl: {mechanism: plain, username: sluice, password_file: pw}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want kafkaConfig
		err  string
	}{
		{"flags alone", []string{"--brokers", "a:1, b:2", "--topic", "in", "--results-topic", "out"}, kafkaConfig{
			Brokers: []string{"a:1", "b:2"}, Topic: "in", Group: "sluice", ResultsTopic: "out", DeadTopic: "out.dead",
			Window: 512, CommitInterval: time.Second, SessionTimeout: 10 * time.Second}, ""},
		{"file", []string{"--config", file}, kafkaConfig{
			Brokers: []string{"k1:9092", "k2:9092"}, Topic: "urls", Group: "scrapers", ResultsTopic: "results", PagesTopic: "pages",
			DeadTopic: "results.dead", Window: 100, CommitInterval: 2 * time.Second, SessionTimeout: 10 * time.Second,
			SASL: saslConfig{Mechanism: "plain", Username: "sluice", PasswordFile: filepath.Join(dir, "pw")}}, ""},
		{"flags given override the file", []string{"--config", file, "--group", "other", "--kafka-window", "7", "--brokers", "x:1"}, kafkaConfig{
			Brokers: []string{"x:1"}, Topic: "urls", Group: "other", ResultsTopic: "results", PagesTopic: "pages",
			DeadTopic: "results.dead", Window: 7, CommitInterval: 2 * time.Second, SessionTimeout: 10 * time.Second,
			SASL: saslConfig{Mechanism: "plain", Username: "sluice", PasswordFile: filepath.Join(dir, "pw")}}, ""},
		{"topic without brokers", []string{"--topic", "in"}, kafkaConfig{}, "needs --brokers"},
		{"no password flag", []string{"--sasl-password", "secret"}, kafkaConfig{}, "not defined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseKafkaFlags(t, tc.args...)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestKafkaConfigRejectsUnknownKeys(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(file, []byte("kafka:\n  brokers: [a:1]\n  pasword: oops\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := parseKafkaFlags(t, "--config", file); err == nil || !strings.Contains(err.Error(), "pasword") {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestKafkaSASLPassword(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mech := range []string{"plain", "scram-sha-256", "scram-sha-512"} {
		c := kafkaConfig{SASL: saslConfig{Mechanism: mech, Username: "u", PasswordFile: pw}}
		d, tr, err := c.connect()
		if err != nil {
			t.Fatalf("%s: %v", mech, err)
		}
		if d.SASLMechanism == nil || tr.SASL == nil || d.SASLMechanism.Name() != strings.ToUpper(mech) {
			t.Fatalf("%s: mechanism %v", mech, d.SASLMechanism)
		}
	}
	// From the environment when no file is named.
	t.Setenv(EnvKafkaPassword, "from-env")
	if _, _, err := (kafkaConfig{SASL: saslConfig{Mechanism: "plain", Username: "u"}}).connect(); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvKafkaPassword, "")
	_, _, err := (kafkaConfig{SASL: saslConfig{Mechanism: "plain", Username: "u"}}).connect()
	if err == nil || strings.Contains(err.Error(), "from-env") || !strings.Contains(err.Error(), EnvKafkaPassword) {
		t.Fatalf("no password: %v", err)
	}
	if _, _, err := (kafkaConfig{SASL: saslConfig{Mechanism: "gssapi", Username: "u", PasswordFile: pw}}).connect(); err == nil {
		t.Fatal("unknown mechanism accepted")
	}
}

// TestDeployConfigLoads keeps docker-compose's config file valid.
func TestDeployConfigLoads(t *testing.T) {
	fc, err := loadConfig(filepath.Join("..", "..", "deploy", "sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	k := fc.Kafka
	if len(k.Brokers) != 1 || k.Topic != "sluice.urls" || k.ResultsTopic != "sluice.results" || k.PagesTopic != "sluice.pages" || k.DeadTopic != "sluice.dead-letters" {
		t.Fatalf("kafka section %+v", k)
	}
}
