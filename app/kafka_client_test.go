package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"reflect"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/stages/parse"
)

// caPEM is a self-signed CA certificate, PEM-encoded.
func caPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// TestRunAndReplayShareTheKafkaClientConfig: from one job config, run's
// source and sink and replay's source and sink get the same Kafka client
// settings (brokers, client id, TLS with its CA and server name, SASL).
// Replay once lost TLS and SASL by building its own clients.
func TestRunAndReplayShareTheKafkaClientConfig(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "ca.pem", caPEM(t))
	writeFile(t, dir, "pw", "s3cret\n")
	file := writeFile(t, dir, "job.yaml", `kafka:
  brokers: "127.0.0.1:1, 127.0.0.1:2"
  client_id: job-7
  topic: urls
  results_topic: results
  pages_topic: pages
  tls: {ca_file: ca.pem, server_name: kafka.internal}
  sasl: {mechanism: plain, username: sluice, password_file: pw}
`)
	c, err := load(t, Defaults(), "--config", file)
	if err != nil {
		t.Fatal(err)
	}
	job, err := newJob(c, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	pio, err := buildIO(job, func(record.Output) {}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(pio.close)
	rp, err := buildReplay(replayConfig{Kafka: c.Kafka, Rules: parse.DefaultRules(), Log: zerolog.Nop()}, func(record.Output) {})
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(rp.closers)
	run, replay := pio.client, rp.client
	if run == nil || replay == nil {
		t.Fatal("no Kafka client built")
	}
	if run.TLS == nil || run.TLS.ServerName != "kafka.internal" || run.TLS.RootCAs == nil || run.SASL == nil {
		t.Fatalf("run's client lacks TLS or SASL: %+v", run)
	}
	rd, pd := *run.Dialer, *replay.Dialer
	rd.TLS, pd.TLS = nil, nil
	rt, pt := run.TLS, replay.TLS
	if !reflect.DeepEqual(run.Brokers, replay.Brokers) || !reflect.DeepEqual(rd, pd) ||
		!reflect.DeepEqual(run.Transport.SASL, replay.Transport.SASL) || run.Transport.ClientID != replay.Transport.ClientID ||
		run.Transport.ClientID != "job-7" || run.Dialer.TLS != rt || run.Transport.TLS != rt || replay.Transport.TLS != pt {
		t.Fatalf("run and replay differ:\nrun    %+v\nreplay %+v", rd, pd)
	}
	if rt.ServerName != pt.ServerName || rt.MinVersion != pt.MinVersion || rt.InsecureSkipVerify != pt.InsecureSkipVerify ||
		!rt.RootCAs.Equal(pt.RootCAs) || len(rt.Certificates) != len(pt.Certificates) {
		t.Fatalf("TLS differs: run %+v, replay %+v", rt, pt)
	}
	if pio.sinkKafka == nil || pio.srcKafka == nil {
		t.Fatal("run did not build its Kafka source and sink")
	}
}
