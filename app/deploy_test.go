package app

import (
	"encoding/base64"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// compose is the part of docker-compose.yml the test reads.
type compose struct {
	Services map[string]struct {
		Command     []string       `yaml:"command"`
		Entrypoint  []string       `yaml:"entrypoint"`
		Environment map[string]any `yaml:"environment"`
		Volumes     []string       `yaml:"volumes"`
		Ports       []string       `yaml:"ports"`
		Healthcheck map[string]any `yaml:"healthcheck"`
	} `yaml:"services"`
}

// TestDockerCompose checks docker-compose.yml without Docker, which cannot
// run here: every local file it mounts exists, the job config it mounts
// loads through the real loader (with the paths it names mounted too), the
// pipeline has a healthcheck on /readyz, Kafka has an explicit CLUSTER_ID,
// a host listener on a published port and no settings that do nothing, and
// the topics service creates every topic the config names.
func TestDockerCompose(t *testing.T) {
	raw, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	mounts := map[string]string{} // container path -> local path
	for name, s := range c.Services {
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if !strings.HasPrefix(parts[0], "./") {
				continue // a named volume
			}
			local := filepath.Join("..", parts[0])
			if _, err := os.Stat(local); err != nil {
				t.Errorf("%s mounts %s: %v", name, parts[0], err)
			}
			mounts[parts[1]] = local
		}
	}
	sl, ok := c.Services["sluice"]
	if !ok {
		t.Fatal("no sluice service")
	}
	var cfgPath string
	for _, a := range sl.Command {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			cfgPath = v
		}
	}
	local, ok := mounts[cfgPath]
	if cfgPath == "" || !ok {
		t.Fatalf("the sluice service's --config %q is not a mounted file", cfgPath)
	}
	cfg, err := LoadFile(local)
	if err != nil {
		t.Fatalf("%s does not load: %v", local, err)
	}
	for key, p := range map[string]string{"rules": cfg.Rules, "proxies": cfg.Proxies} {
		if p == "" {
			t.Errorf("the deployed config names no %s file", key)
			continue
		}
		rel, _ := filepath.Rel(filepath.Dir(local), p)
		if _, ok := mounts[path.Join(path.Dir(cfgPath), rel)]; !ok {
			t.Errorf("%s %s is not mounted next to the config in the container", key, rel)
		}
	}
	// The shipped proxies file lists none, so the service refuses to start
	// until the operator adds theirs; with one line added, it loads.
	if _, err := newJob(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), "no proxies") {
		t.Errorf("the deployed config with the shipped proxies file: %v, want a refusal naming the empty proxy list", err)
	}
	shipped, err := os.ReadFile(cfg.Proxies)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Proxies = filepath.Join(t.TempDir(), "proxies.txt")
	if err := os.WriteFile(cfg.Proxies, append(shipped, "proxy1.example:3128:user:secret\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newJob(cfg, nil, nil); err != nil {
		t.Errorf("the deployed rules or proxies do not load: %v", err)
	}
	hc := strings.Join(toStrings(sl.Healthcheck["test"]), " ")
	if !strings.Contains(hc, "/readyz") || !strings.Contains(hc, strings.TrimPrefix(cfg.Observe.MetricsAddr, ":")) {
		t.Errorf("sluice healthcheck %q does not probe /readyz on metrics_addr %q", hc, cfg.Observe.MetricsAddr)
	}
	k := c.Services["kafka"]
	id, _ := k.Environment["CLUSTER_ID"].(string)
	if b, err := base64.RawURLEncoding.DecodeString(id); err != nil || len(b) != 16 {
		t.Errorf("kafka CLUSTER_ID %q is not a base64url UUID", id)
	}
	if _, dead := k.Environment["KAFKA_NUM_PARTITIONS"]; dead {
		t.Error("KAFKA_NUM_PARTITIONS does nothing with auto-creation off: the topics service sets partitions")
	}
	adv, _ := k.Environment["KAFKA_ADVERTISED_LISTENERS"].(string)
	if !strings.Contains(adv, "localhost:29092") || len(k.Ports) == 0 || !strings.Contains(k.Ports[0], "29092:29092") {
		t.Errorf("kafka is not reachable from the host: advertised %q, ports %v", adv, k.Ports)
	}
	if cfg.Kafka.ParkAfter <= 0 || cfg.Kafka.DelayTopic == "" {
		t.Errorf("the deployment does not park (park_after %v, delay_topic %q): one paused domain would hold its partitions' commits", cfg.Kafka.ParkAfter, cfg.Kafka.DelayTopic)
	}
	script := strings.Join(c.Services["topics"].Command, "\n")
	for _, topic := range []string{cfg.Kafka.Topic, cfg.Kafka.ResultsTopic, cfg.Kafka.PagesTopic, cfg.Kafka.DeadTopic, cfg.Kafka.DelayTopic} {
		if !strings.Contains(script, "create "+topic+" ") {
			t.Errorf("the topics service does not create %q", topic)
		}
	}
}

func toStrings(v any) []string {
	list, _ := v.([]any)
	var out []string
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
