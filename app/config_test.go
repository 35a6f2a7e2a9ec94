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

	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/kafka"
)

// load parses args as the CLI does (all settings bound over defaults) and
// returns the resolved Config.
func load(t *testing.T, defaults Config, args ...string) (Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := Bind(fs, defaults, nil)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	return f.Load()
}

// sampleValue is a valid, non-default value for a setting, as a flag string and
// as a YAML value.
func sampleValue(t *testing.T, s Setting, dir string) (string, any) {
	special := map[string]string{
		"urls": writeFile(t, dir, "urls.txt", "https://example.com/\n"), "proxies": writeFile(t, dir, "proxies.txt", "http://127.0.0.1:3128\n"),
		"rules": writeFile(t, dir, "rules.yaml", "name: r\nfields:\n  title: {css: h1}\n"),
		"out":   filepath.Join(dir, "out.jsonl"), "pages": filepath.Join(dir, "pages.jsonl"), "warc": filepath.Join(dir, "archive"), "spool-dir": dir, "trace": filepath.Join(dir, "t.jsonl"),
		"log-level": "debug", "progress": "log", "proxy-dns": "local", "proxy-model": "exclusive", "proxy-strategy": "random",
		"proxy-domain-strategy": "a.example=random", "proxy-partition": "a.example=p1", "allow-nets": "10.0.0.0/8",
		"deny-nets": "192.0.2.0/24", "allow-ports": "443", "deny-ports": "25", "allow-hosts": "a.example", "deny-hosts": "b.example",
		"dns-servers": "127.0.0.1:53", "kafka-brokers": "k1:9092,k2:9092", "kafka-sasl-mechanism": "plain",
		"kafka-tls-ca-file": filepath.Join(dir, "ca.pem"), "kafka-tls-cert-file": filepath.Join(dir, "c.pem"),
		"kafka-tls-key-file": filepath.Join(dir, "k.pem"), "kafka-sasl-password-file": filepath.Join(dir, "pw"),
		"metrics-addr": "127.0.0.1:0", "adaptive-start": "0.25", "adaptive-min": "0.1",
		"crawl-state-dir": filepath.Join(dir, "state"), "crawl-scope": "domain", "crawl-false-positive": "0.01",
	}
	if v, ok := special[s.Flag]; ok {
		if s.Type.Kind() == reflect.Slice {
			return v, strings.Split(v, ",")
		}
		if s.Type.Kind() == reflect.Float64 {
			var f float64
			_ = yaml.Unmarshal([]byte(v), &f)
			return v, f
		}
		return v, v
	}
	switch {
	case s.Type == durationType:
		return "3s", "3s"
	case s.Type.Kind() == reflect.Bool:
		return "true", true
	case s.Type.Kind() == reflect.Float64:
		return "7.5", 7.5
	case s.Type.Kind() == reflect.Int, s.Type.Kind() == reflect.Int64:
		return "7", 7
	case s.Type.Kind() == reflect.Slice:
		return "x.example", []string{"x.example"}
	}
	return "x", "x"
}

// yamlFor writes the YAML file that sets key to v (and whatever else the
// extra map sets).
func yamlFor(t *testing.T, dir, key string, v any) string {
	t.Helper()
	root := map[string]any{}
	m := root
	parts := strings.Split(key, ".")
	for _, p := range parts[:len(parts)-1] {
		next := map[string]any{}
		m[p] = next
		m = next
	}
	m[parts[len(parts)-1]] = v
	b, err := yaml.Marshal(root)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, "c.yaml", string(b))
}

// TestEverySettingFlagEqualsYAML: for every setting of the tree, the flag
// and the YAML key give the same resolved config, for a sample value and
// for zero (both the same config, or both the same refusal).
func TestEverySettingFlagEqualsYAML(t *testing.T) {
	for _, s := range Settings() {
		t.Run(s.Flag, func(t *testing.T) {
			dir := t.TempDir()
			fv, yv := sampleValue(t, s, dir)
			values := [][2]any{{fv, yv}}
			if s.Type.Kind() != reflect.Bool && s.Type.Kind() != reflect.String && s.Type.Kind() != reflect.Slice {
				values = append(values, [2]any{"0", 0})
			}
			for _, v := range values {
				byFlag, ferr := load(t, Defaults(), "--"+s.Flag+"="+v[0].(string))
				byYAML, yerr := load(t, Defaults(), "--config", yamlFor(t, dir, s.Key, v[1]))
				if (ferr == nil) != (yerr == nil) || ferr != nil && ferr.Error() != yerr.Error() {
					t.Fatalf("%s=%v: flag error %v, YAML error %v", s.Key, v[0], ferr, yerr)
				}
				if ferr == nil && !reflect.DeepEqual(byFlag, byYAML) {
					t.Fatalf("%s=%v: flag and YAML differ:\nflag %+v\nyaml %+v", s.Key, v[0], byFlag, byYAML)
				}
				if ferr == nil && v[0] != "0" && reflect.DeepEqual(byFlag, Defaults()) {
					t.Fatalf("%s=%v: no effect", s.Key, v[0])
				}
			}
		})
	}
}

// TestFlagNamesAreKeys: a flag is its YAML key with - for _, after its
// section's prefix; no two settings share a flag.
func TestFlagNamesAreKeys(t *testing.T) {
	seen := map[string]string{}
	for _, s := range Settings() {
		leaf := s.Key[strings.LastIndexByte(s.Key, '.')+1:]
		if !strings.HasSuffix(s.Flag, strings.ReplaceAll(leaf, "_", "-")) {
			t.Errorf("%s: flag --%s is not its key", s.Key, s.Flag)
		}
		if s.Help == "" {
			t.Errorf("%s: no help", s.Key)
		}
		if other, dup := seen[s.Flag]; dup {
			t.Errorf("--%s is both %s and %s", s.Flag, other, s.Key)
		}
		seen[s.Flag] = s.Key
	}
}

func TestPrecedenceAndPaths(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "urls.txt", "https://example.com/\n")
	file := writeFile(t, dir, "job.yaml", `urls: urls.txt
out: out.jsonl
fetch:
  concurrency: 7
  max_redirects: 0
  stagger_max: -1
kafka:
  brokers: "k1:9092, k2:9092"
  tls: true
  sasl: {mechanism: plain, username: sluice, password_file: pw}
`)
	c, err := load(t, Defaults(), "--config", file, "--rate", "3")
	if err != nil {
		t.Fatal(err)
	}
	fc := c.FetchStage()
	switch {
	case c.URLs != filepath.Join(dir, "urls.txt") || c.Out != filepath.Join(dir, "out.jsonl"):
		t.Errorf("paths not relative to the file: %q %q", c.URLs, c.Out)
	case fc.Concurrency != 7 || fc.DomainRate != 3 || fc.MaxRedirects != -1 || fc.StaggerMax != -1:
		t.Errorf("fetch config %+v", fc)
	case !reflect.DeepEqual([]string(c.Kafka.Brokers), []string{"k1:9092", "k2:9092"}) || !c.Kafka.TLS.On():
		t.Errorf("kafka %+v", c.Kafka)
	case c.Kafka.SASL.PasswordFile != filepath.Join(dir, "pw"):
		t.Errorf("password file %q", c.Kafka.SASL.PasswordFile)
	}
	// The flag overrides the file.
	if c, err = load(t, Defaults(), "--config", file, "--concurrency", "9", "--kafka-brokers", "x:1"); err != nil {
		t.Fatal(err)
	}
	if c.Fetch.Concurrency != 9 || !reflect.DeepEqual(c.Kafka.Brokers, kafka.Brokers{"x:1"}) {
		t.Errorf("flags do not override: %d %v", c.Fetch.Concurrency, c.Kafka.Brokers)
	}
}

func TestConfigRefusals(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		yaml string
		args []string
		want string
	}{
		{"unknown key", "kafka:\n  brokers: [a:1]\n  pasword: oops\n", nil, `unknown key "pasword"`},
		{"unknown top key", "concurency: 3\n", nil, `unknown key "concurency"`},
		{"duration without unit", "fetch:\n  timeout: 30\n", nil, "needs a unit"},
		{"rate 0", "", []string{"--rate", "0"}, "fetch.rate (--rate): 0 would fetch nothing"},
		{"concurrency 0", "fetch: {concurrency: 0}\n", nil, "fetch.concurrency (--concurrency): must be positive"},
		{"topic without brokers", "", []string{"--kafka-topic", "in"}, "needs brokers"},
		{"cert without key", "kafka: {tls: {cert_file: c.pem}}\n", nil, "cert_file and key_file go together"},
		{"missing rules", "", []string{"--rules", filepath.Join(dir, "nope.yaml")}, "rules:"},
		{"missing config", "", []string{"--config", filepath.Join(dir, "nope.yaml")}, "config:"},
		{"no password flag", "", []string{"--kafka-sasl-password", "x"}, "not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.yaml != "" {
				args = append([]string{"--config", writeFile(t, dir, "c.yaml", tc.yaml)}, args...)
			}
			_, err := load(t, Defaults(), args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if tc.name != "no password flag" && !IsUsage(err) {
				t.Fatalf("%v is not a usage error", err)
			}
		})
	}
}

func TestDeprecatedFlagNames(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := Bind(fs, Defaults(), nil)
	if err := fs.Parse([]string{"--brokers", "a:1", "--topic", "in", "--sticky-ttl", "1m", "--captcha-marker", "x", "--captcha-marker", "y"}); err != nil {
		t.Fatal(err)
	}
	c, err := f.Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.Kafka.Topic != "in" || c.Proxy.StickyTTL != time.Minute || !reflect.DeepEqual(c.Fetch.CaptchaMarkers, []string{"x", "y"}) {
		t.Fatalf("aliases: %+v", c)
	}
	if len(f.Warnings()) != 5 || !strings.Contains(f.Warnings()[0], "use --kafka-brokers") {
		t.Fatalf("warnings %v", f.Warnings())
	}
}

// TestREADMEStaggerMax: the docs' `stagger_max: -1` parses and means off.
func TestREADMEStaggerMax(t *testing.T) {
	file := writeFile(t, t.TempDir(), "c.yaml", "fetch:\n  stagger_max: -1\n  stagger_min: 0\n")
	c, err := load(t, Defaults(), "--config", file)
	if err != nil {
		t.Fatal(err)
	}
	if fc := c.FetchStage(); fc.StaggerMax >= 0 {
		t.Fatalf("stagger_max -1 gives %v", fc.StaggerMax)
	}
}

// TestDocsListEverySetting keeps docs/config.md's table whole.
func TestDocsListEverySetting(t *testing.T) {
	doc, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range Settings() {
		if !strings.Contains(string(doc), "| `"+s.Key+"` | `--"+s.Flag+"` |") {
			t.Errorf("docs/config.md has no row for %s (--%s)", s.Key, s.Flag)
		}
	}
}

func TestDurationSpellings(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		yaml string
		want time.Duration
		err  string
	}{
		{"stagger_max: -1", -1, ""},
		{`stagger_max: "-1"`, -1, ""},
		{"stagger_max: 0", 0, ""},
		{"stagger_max: 1m30s", 90 * time.Second, ""},
		{"stagger_max: 1.5", 0, "not a duration"},
		{"stagger_max: 30", 0, "needs a unit"},
	} {
		c, err := load(t, Defaults(), "--config", writeFile(t, dir, "c.yaml", "fetch:\n  "+tc.yaml+"\n"))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want %q", tc.yaml, err, tc.err)
			}
			continue
		}
		if err != nil || c.Fetch.StaggerMax != tc.want {
			t.Errorf("%s: %v %v, want %v", tc.yaml, c.Fetch.StaggerMax, err, tc.want)
		}
	}
}

// TestMemoryLimit: unset, memory_limit follows the concurrency and the
// read-ahead (in a file or a flag alike); 0 is off; negative is refused.
func TestMemoryLimit(t *testing.T) {
	c, err := load(t, Defaults(), "--concurrency=1000", "--read-ahead=4194304")
	if err != nil {
		t.Fatal(err)
	}
	if want := DefaultMemoryLimit(1000, 4<<20); c.MemoryLimit != want || want != 64<<20+1000*64<<10+8<<20 {
		t.Errorf("unset: memory_limit %d, want %d", c.MemoryLimit, want)
	}
	dir := t.TempDir()
	c, err = load(t, Defaults(), "--config", writeFile(t, dir, "c.yaml", "fetch:\n  concurrency: 200\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := DefaultMemoryLimit(200, 16<<20); c.MemoryLimit != want {
		t.Errorf("unset, concurrency from the file: memory_limit %d, want %d", c.MemoryLimit, want)
	}
	for arg, want := range map[string]int64{"--memory-limit=0": 0, "--memory-limit=134217728": 128 << 20} {
		if c, err := load(t, Defaults(), "--concurrency=1000", arg); err != nil || c.MemoryLimit != want {
			t.Errorf("%s: memory_limit %d, %v; want %d", arg, c.MemoryLimit, err, want)
		}
	}
	if _, err := load(t, Defaults(), "--memory-limit=-1"); err == nil || !strings.Contains(err.Error(), "memory_limit") {
		t.Errorf("--memory-limit=-1: %v, want a refusal", err)
	}
}
