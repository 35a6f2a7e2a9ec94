package kafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestSASLPassword(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mech := range []string{"plain", "scram-sha-256", "scram-sha-512"} {
		c, err := New(Config{SASL: SASL{Mechanism: mech, Username: "u", PasswordFile: pw}})
		if err != nil {
			t.Fatalf("%s: %v", mech, err)
		}
		if c.Dialer.SASLMechanism == nil || c.Transport.SASL != c.Dialer.SASLMechanism || c.SASL.Name() != strings.ToUpper(mech) {
			t.Fatalf("%s: mechanism %v", mech, c.Dialer.SASLMechanism)
		}
	}
	// From the environment when no file is named.
	t.Setenv(EnvPassword, "from-env")
	if _, err := New(Config{SASL: SASL{Mechanism: "plain", Username: "u"}}); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvPassword, "")
	_, err := New(Config{SASL: SASL{Mechanism: "plain", Username: "u"}})
	if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), EnvPassword) {
		t.Fatalf("no password: %v", err)
	}
	if _, err := New(Config{SASL: SASL{Mechanism: "gssapi", Username: "u", PasswordFile: pw}}); err == nil {
		t.Fatal("unknown mechanism accepted")
	}
}

func TestBrokersAndTLSFromYAML(t *testing.T) {
	for _, tc := range []struct {
		yaml    string
		brokers []string
		tls     bool
	}{
		{"brokers: [a:1, b:2]", []string{"a:1", "b:2"}, false},
		{"brokers: 'a:1, b:2'", []string{"a:1", "b:2"}, false},
		{"brokers: a:1\ntls: true", []string{"a:1"}, true},
		{"brokers: [a:1]\ntls: {server_name: kafka.internal}", []string{"a:1"}, true},
		{"brokers: [a:1]\ntls: false", []string{"a:1"}, false},
	} {
		var c Config
		if err := yaml.Unmarshal([]byte(tc.yaml), &c); err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if strings.Join(c.Brokers, ",") != strings.Join(tc.brokers, ",") || c.TLS.On() != tc.tls {
			t.Errorf("%q: brokers %v tls %v", tc.yaml, c.Brokers, c.TLS.On())
		}
	}
}

// pki is a CA with a server and a client certificate, as PEM files.
type pki struct {
	dir                           string
	caFile, otherCA               string
	serverCert                    tls.Certificate
	clientCertFile, clientKeyFile string
	roots                         *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	ca, caKey := selfSigned(t, "test CA")
	p.caFile = p.writePEM(t, "ca.pem", "CERTIFICATE", ca.Raw)
	other, _ := selfSigned(t, "another CA")
	p.otherCA = p.writePEM(t, "other.pem", "CERTIFICATE", other.Raw)
	p.roots = x509.NewCertPool()
	p.roots.AddCert(ca)
	srvDER, srvKey := issue(t, ca, caKey, "broker.test", x509.ExtKeyUsageServerAuth)
	p.serverCert = tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}
	cliDER, cliKey := issue(t, ca, caKey, "sluice", x509.ExtKeyUsageClientAuth)
	p.clientCertFile = p.writePEM(t, "client.pem", "CERTIFICATE", cliDER)
	keyDER, err := x509.MarshalECPrivateKey(cliKey)
	if err != nil {
		t.Fatal(err)
	}
	p.clientKeyFile = p.writePEM(t, "client-key.pem", "EC PRIVATE KEY", keyDER)
	return p
}

func (p *pki) writePEM(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func selfSigned(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

// tlsBroker is a TLS listener on loopback that requires a client
// certificate from the CA, and reports each handshake's outcome.
func tlsBroker(t *testing.T, p *pki) (addr string, results <-chan error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{p.serverCert}, ClientCAs: p.roots, ClientAuth: tls.RequireAndVerifyClientCert,
		MinVersion: tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan error, 16)
	done := make(chan struct{})
	go func() { // owner: this test; ends when the listener closes
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			err = c.(*tls.Conn).Handshake()
			c.Close()
			out <- err
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String(), out
}

// TestTLSHandshake dials a real TLS listener with the client New builds:
// the CA file, the client certificate and the server name decide, on
// both sides, whether the handshake succeeds.
func TestTLSHandshake(t *testing.T) {
	p := newPKI(t)
	addr, serverSide := tlsBroker(t, p)
	full := TLS{CAFile: p.caFile, CertFile: p.clientCertFile, KeyFile: p.clientKeyFile, ServerName: "broker.test"}
	for _, tc := range []struct {
		name       string
		tls        TLS
		clientOK   bool
		serverOK   bool
		clientWant string
	}{
		{"CA, client cert, server name", full, true, true, ""},
		{"no client cert", TLS{CAFile: p.caFile, ServerName: "broker.test"}, true, false, ""},
		{"wrong CA", TLS{CAFile: p.otherCA, CertFile: p.clientCertFile, KeyFile: p.clientKeyFile, ServerName: "broker.test"}, false, false, "unknown authority"},
		{"system roots", TLS{Enabled: true, CertFile: p.clientCertFile, KeyFile: p.clientKeyFile, ServerName: "broker.test"}, false, false, "certificate"},
		{"wrong server name", TLS{CAFile: p.caFile, CertFile: p.clientCertFile, KeyFile: p.clientKeyFile, ServerName: "other.test"}, false, false, "other.test"},
		{"insecure skip verify", TLS{InsecureSkipVerify: true, CertFile: p.clientCertFile, KeyFile: p.clientKeyFile}, true, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Config{Brokers: Brokers{addr}, TLS: tc.tls})
			if err != nil {
				t.Fatal(err)
			}
			if c.Transport.TLS != c.Dialer.TLS || c.TLS == nil {
				t.Fatal("dialer and transport do not share one TLS config")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn, err := c.Dialer.DialContext(ctx, "tcp", addr)
			if err == nil {
				// TLS 1.3 sends the client certificate after the client's
				// handshake is done: a read shows the server's verdict.
				_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, _ = conn.Read(make([]byte, 1))
				conn.Close()
			}
			if (err == nil) != tc.clientOK || err != nil && !strings.Contains(err.Error(), tc.clientWant) {
				t.Fatalf("client side: %v, want ok=%v (%q)", err, tc.clientOK, tc.clientWant)
			}
			if serr := <-serverSide; (serr == nil) != tc.serverOK {
				t.Fatalf("server side: %v, want ok=%v", serr, tc.serverOK)
			}
		})
	}
}

func TestTLSConfigErrors(t *testing.T) {
	p := newPKI(t)
	for _, tc := range []struct {
		tls  TLS
		want string
	}{
		{TLS{CAFile: filepath.Join(p.dir, "missing.pem")}, "ca_file"},
		{TLS{CAFile: p.clientKeyFile}, "no PEM certificate"},
		{TLS{CertFile: p.clientCertFile}, "go together"},
		{TLS{CertFile: p.clientCertFile, KeyFile: p.caFile}, "cert_file/key_file"},
	} {
		_, err := New(Config{TLS: tc.tls})
		if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.tls, err, tc.want)
		}
	}
}
