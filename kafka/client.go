package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	kgo "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// ErrConfig marks a client config that cannot be used: a file that cannot
// be read, a bad certificate, a missing password. Callers treat it as a
// usage error.
var ErrConfig = errors.New("kafka client config")

// Client is the connection settings of every Kafka client of a process,
// built once from a Config by New: the dialer (consumers, readers) and the
// transport (producers, admin requests) share one TLS config and one SASL
// mechanism. Safe for concurrent use.
type Client struct {
	// Brokers are the bootstrap addresses.
	Brokers []string
	// Dialer opens consumer and reader connections.
	Dialer *kgo.Dialer
	// Transport carries producer and admin requests.
	Transport *kgo.Transport
	// TLS is the TLS config of both; nil for plaintext.
	TLS *tls.Config
	// SASL is the mechanism of both; nil for none.
	SASL sasl.Mechanism
}

// DialTimeout bounds a connection to a broker, TLS and SASL included.
const DialTimeout = 10 * time.Second

// New builds the clients' settings: it reads the CA, certificate, key and
// password files (or SLUICE_KAFKA_PASSWORD) named by c. Errors wrap
// ErrConfig. It opens no connection.
func New(c Config) (*Client, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	mech, err := c.SASL.mechanism()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	tlsCfg, err := c.TLS.Config()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	id := c.ClientID
	if id == "" {
		id = "sluice"
	}
	return &Client{
		Brokers:   append([]string(nil), c.Brokers...),
		Dialer:    &kgo.Dialer{ClientID: id, Timeout: DialTimeout, DualStack: true, TLS: tlsCfg, SASLMechanism: mech},
		Transport: &kgo.Transport{ClientID: id, DialTimeout: DialTimeout, TLS: tlsCfg, SASL: mech},
		TLS:       tlsCfg,
		SASL:      mech,
	}, nil
}

// Close releases the transport's idle connections.
func (c *Client) Close() error {
	c.Transport.CloseIdleConnections()
	return nil
}

// Reader returns a reader of one partition (or a group, as rc says) that
// dials with the client's dialer; rc's Brokers and Dialer are set here.
func (c *Client) Reader(rc kgo.ReaderConfig) *kgo.Reader {
	rc.Brokers, rc.Dialer = c.Brokers, c.Dialer
	return kgo.NewReader(rc)
}

// Admin returns a client for metadata and offset requests.
func (c *Client) Admin() *kgo.Client {
	return &kgo.Client{Addr: kgo.TCP(c.Brokers...), Transport: c.Transport, Timeout: DialTimeout}
}

// Config returns the *tls.Config t describes, or nil when TLS is off.
func (t TLS) Config() (*tls.Config, error) {
	if !t.On() {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // documented as dangerous
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca_file %s: no PEM certificate in it", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls cert_file/key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// mechanism reads the password and builds the SASL mechanism; nil without
// one.
func (s SASL) mechanism() (sasl.Mechanism, error) {
	if s.Mechanism == "" {
		return nil, nil
	}
	pw := os.Getenv(EnvPassword)
	if s.PasswordFile != "" {
		data, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("sasl password file: %w", err)
		}
		pw = strings.TrimRight(string(data), "\r\n")
	}
	if s.Username == "" || pw == "" {
		return nil, fmt.Errorf("sasl %s needs a username and a password (password_file or %s)", s.Mechanism, EnvPassword)
	}
	switch strings.ToLower(s.Mechanism) {
	case "plain":
		return plain.Mechanism{Username: s.Username, Password: pw}, nil
	case "scram-sha-256":
		return scram.Mechanism(scram.SHA256, s.Username, pw)
	case "scram-sha-512":
		return scram.Mechanism(scram.SHA512, s.Username, pw)
	}
	return nil, fmt.Errorf("sasl mechanism %q: want plain, scram-sha-256 or scram-sha-512", s.Mechanism)
}
