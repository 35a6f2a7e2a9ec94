package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/dnscache"
	"github.com/sluicehq/sluice/governor"
	"github.com/sluicehq/sluice/guard"
)

// fileConfig is a job's config file (--config FILE, YAML). Every key is
// optional; flags given on the command line override it. Relative paths
// are relative to the file's directory.
type fileConfig struct {
	URLs         string            `yaml:"urls"`
	Out          string            `yaml:"out"`
	Proxies      string            `yaml:"proxies"`
	PoolSize     int               `yaml:"pool_size"` // for `plan` without a proxy file
	Rules        string            `yaml:"rules"`
	Pages        string            `yaml:"pages"`
	DrainTimeout time.Duration     `yaml:"drain_timeout"`
	Fetch        fetchSection      `yaml:"fetch"`
	Policy       guard.Config      `yaml:"policy"` // the URL policy (see package guard)
	Domains      []governor.Domain `yaml:"domains"`
	Kafka        kafkaConfig       `yaml:"kafka"` // see kafka.go
}

// fetchSection is the `fetch:` section: fetch.Config's settings, zero
// meaning the stage's default.
type fetchSection struct {
	Concurrency    int               `yaml:"concurrency"`
	Rate           float64           `yaml:"rate"` // per domain, for hosts `domains:` does not list
	Burst          int               `yaml:"burst"`
	MaxAttempts    int               `yaml:"max_attempts"`
	Timeout        time.Duration     `yaml:"timeout"`
	MaxBody        int64             `yaml:"max_body"`
	Pending        int               `yaml:"pending"`
	StaggerMin     time.Duration     `yaml:"stagger_min"`
	StaggerMax     time.Duration     `yaml:"stagger_max"`
	SpoolThreshold int64             `yaml:"spool_threshold"`
	SpoolDir       string            `yaml:"spool_dir"`
	BodyBudget     int64             `yaml:"body_budget"`
	Adaptive       governor.Adaptive `yaml:"adaptive"`
	DNS            dnscache.Config   `yaml:"dns"`
	BodyTimeout    time.Duration     `yaml:"body_timeout"`
	MaxHeaderBytes int64             `yaml:"max_header_bytes"`
	MaxRedirects   int               `yaml:"max_redirects"` // 0: the default; negative: none followed
	Truncate       bool              `yaml:"truncate"`
}

// loadConfig reads and decodes a config file; unknown keys are errors.
func loadConfig(path string) (fileConfig, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fileConfig{}, fmt.Errorf("config: %w", err)
	}
	var fc fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		return fileConfig{}, fmt.Errorf("config %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	for _, p := range []*string{&fc.URLs, &fc.Out, &fc.Proxies, &fc.Rules, &fc.Pages, &fc.Fetch.SpoolDir, &fc.Kafka.SASL.PasswordFile} {
		if *p != "" && *p != "-" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if fc.PoolSize < 0 {
		return fileConfig{}, fmt.Errorf("config %s: pool_size %d must be >= 0", path, fc.PoolSize)
	}
	return fc, nil
}

// apply copies the file's settings into cfg.
func (fc fileConfig) apply(cfg *jobConfig) {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cfg.URLs, fc.URLs)
	set(&cfg.Out, fc.Out)
	set(&cfg.ProxiesFile, fc.Proxies)
	set(&cfg.RulesFile, fc.Rules)
	set(&cfg.Pages, fc.Pages)
	if fc.DrainTimeout != 0 {
		cfg.Drain = fc.DrainTimeout
	}
	cfg.PoolSize = fc.PoolSize
	f, fs := &cfg.Fetch, fc.Fetch
	f.Concurrency = fs.Concurrency
	f.DomainRate = fs.Rate
	f.DomainBurst = fs.Burst
	f.MaxAttempts = fs.MaxAttempts
	f.AttemptTimeout = fs.Timeout
	f.MaxBodyBytes = fs.MaxBody
	f.Pending = fs.Pending
	f.StaggerMin, f.StaggerMax = fs.StaggerMin, fs.StaggerMax
	f.SpoolThreshold, f.SpoolDir, f.BodyBudget = fs.SpoolThreshold, fs.SpoolDir, fs.BodyBudget
	f.Adaptive = fs.Adaptive
	f.DNS = fs.DNS
	f.BodyTimeout, f.MaxHeaderBytes, f.MaxRedirects, f.TruncateLarge = fs.BodyTimeout, fs.MaxHeaderBytes, fs.MaxRedirects, fs.Truncate
	f.Policy = fc.Policy
	f.Domains = fc.Domains
	cfg.Kafka = fc.Kafka
}
