// Package kafka holds what sluice's Kafka clients need and nothing else
// does: the client config (brokers, client id, TLS, SASL) and the one
// constructor of the clients built from it (New), which every reader,
// writer, dialer and transport of a process comes from.
package kafka

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// EnvPassword holds the SASL password when the config names no
// password_file. Secrets never come from flags.
const EnvPassword = "SLUICE_KAFKA_PASSWORD"

// Config is how a process connects to Kafka: the client part of the
// `kafka:` section of a job config. The zero value connects to nothing.
type Config struct {
	// Brokers are the bootstrap addresses, host:port. In YAML a list or
	// one comma-separated string; as a flag, comma-separated.
	Brokers Brokers `yaml:"brokers" flag:",alias=brokers" help:"Kafka bootstrap brokers, comma-separated host:port"`
	// ClientID names the client to the brokers. "" means "sluice".
	ClientID string `yaml:"client_id" help:"client id sent to the Kafka brokers (empty: sluice)"`
	// TLS configures TLS to the brokers; the zero value is plaintext.
	TLS TLS `yaml:"tls"`
	// SASL configures authentication; the zero value is none.
	SASL SASL `yaml:"sasl"`
}

// TLS configures TLS to the brokers. It is on when Enabled is set or any
// file or ServerName is given. In YAML `tls: true` is short for
// `tls: {enabled: true}`.
type TLS struct {
	Enabled bool `yaml:"enabled" help:"connect to the Kafka brokers with TLS (system roots unless --kafka-tls-ca-file)"`
	// CAFile is a PEM bundle of the roots that verify the brokers; ""
	// means the system roots.
	CAFile string `yaml:"ca_file" help:"PEM file of the CA certificates that verify the Kafka brokers (default: the system roots)"`
	// CertFile and KeyFile are the client certificate and its key (PEM),
	// for brokers that require client authentication; both or neither.
	CertFile string `yaml:"cert_file" help:"PEM client certificate for Kafka TLS client authentication (with --kafka-tls-key-file)"`
	KeyFile  string `yaml:"key_file" help:"PEM private key of --kafka-tls-cert-file"`
	// ServerName is the name the brokers' certificates are checked
	// against; "" means the host of the address dialled.
	ServerName string `yaml:"server_name" help:"name the Kafka brokers' certificates must carry (default: the host dialled)"`
	// InsecureSkipVerify accepts any broker certificate. DANGEROUS: anyone
	// on the path can read and change the traffic, SASL credentials
	// included. For a test broker only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify" help:"DANGEROUS: accept any Kafka broker certificate (test brokers only)"`
}

// On reports whether TLS is to be used.
func (t TLS) On() bool {
	return t.Enabled || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify
}

// UnmarshalYAML accepts a boolean (tls: true) or the mapping.
func (t *TLS) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var on bool
		if err := n.Decode(&on); err != nil {
			return fmt.Errorf("line %d: tls: want true, false or a mapping (enabled, ca_file, cert_file, key_file, server_name)", n.Line)
		}
		*t = TLS{Enabled: on}
		return nil
	}
	type plain TLS
	return n.Decode((*plain)(t))
}

// SASL configures authentication. The password is read from PasswordFile,
// or else from the environment variable SLUICE_KAFKA_PASSWORD, when the
// clients are built; it is kept nowhere else.
type SASL struct {
	Mechanism    string `yaml:"mechanism" help:"Kafka SASL mechanism: plain, scram-sha-256 or scram-sha-512 (password from --kafka-sasl-password-file or $SLUICE_KAFKA_PASSWORD)"`
	Username     string `yaml:"username" help:"Kafka SASL user name"`
	PasswordFile string `yaml:"password_file" help:"file holding the Kafka SASL password (default: $SLUICE_KAFKA_PASSWORD)"`
}

// Brokers is a list of host:port that reads from YAML as a list or a
// comma-separated string, and from a flag as a comma-separated string.
type Brokers []string

// ParseBrokers splits a comma-separated list, dropping blanks.
func ParseBrokers(s string) Brokers {
	var out Brokers
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// UnmarshalYAML accepts a sequence of strings or one comma-separated string.
func (b *Brokers) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*b = ParseBrokers(n.Value)
		return nil
	case yaml.SequenceNode:
		var list []string
		if err := n.Decode(&list); err != nil {
			return err
		}
		*b = ParseBrokers(strings.Join(list, ","))
		return nil
	}
	return fmt.Errorf("line %d: brokers: want a list or a comma-separated string", n.Line)
}

// String joins the list with commas.
func (b Brokers) String() string { return strings.Join(b, ",") }

// Set replaces the list with the comma-separated s (flag.Value).
func (b *Brokers) Set(s string) error { *b = ParseBrokers(s); return nil }

// Resolve makes the relative file names of c relative to dir (the
// directory of the config file they were read from).
func (c *Config) Resolve(dir string) {
	for _, p := range []*string{&c.TLS.CAFile, &c.TLS.CertFile, &c.TLS.KeyFile, &c.SASL.PasswordFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

// Validate reports settings that cannot work, without reading any file.
func (c Config) Validate() error {
	var errs []error
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("kafka tls: cert_file and key_file go together"))
	}
	switch strings.ToLower(c.SASL.Mechanism) {
	case "", "plain", "scram-sha-256", "scram-sha-512":
	default:
		errs = append(errs, fmt.Errorf("kafka sasl mechanism %q: want plain, scram-sha-256 or scram-sha-512", c.SASL.Mechanism))
	}
	if c.SASL.Mechanism != "" && c.SASL.Username == "" {
		errs = append(errs, fmt.Errorf("kafka sasl %s needs a username", c.SASL.Mechanism))
	}
	return errors.Join(errs...)
}
