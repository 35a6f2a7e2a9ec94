package parse

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func mustParse(t testing.TB, yml string) *Rules {
	t.Helper()
	r, err := ParseRules("test.yaml", []byte(yml))
	if err != nil {
		t.Fatalf("ParseRules: %v", err)
	}
	return r
}

func TestParseRulesErrors(t *testing.T) {
	manyFields := func(n int) string {
		var b strings.Builder
		b.WriteString("- domain: \"*\"\n  fields:\n")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "    f%d: \"h1\"\n", i)
		}
		return b.String()
	}
	tests := []struct {
		name    string
		yml     string
		wantSub []string // all must appear in the error
	}{
		{"empty file", "", []string{"no rules"}},
		{"only comment", "# nothing\n", []string{"no rules"}},
		{"empty list", "[]\n", []string{"no rules"}},
		{"bad yaml", "- domain: \"*\"\n  fields: [unclosed\n", []string{"invalid YAML"}},
		{"not a list", "domain: \"*\"\n", []string{"invalid YAML"}},
		{"unknown key", "- domain: \"*\"\n  feilds:\n    a: h1\n", []string{"invalid YAML", "feilds"}},
		{"duplicate field", "- domain: \"*\"\n  fields:\n    a: h1\n    a: h2\n", []string{"invalid YAML"}},
		{"fields not a map", "- domain: \"*\"\n  fields: h1\n", []string{"invalid YAML"}},
		{"two documents", "- domain: \"*\"\n---\n- domain: \"x\"\n", []string{"more than one document"}},
		{"empty domain", "- domain: \"\"\n  fields:\n    a: h1\n", []string{"rule 0", "empty domain"}},
		{"missing domain", "- fields:\n    a: h1\n", []string{"rule 0", "empty domain"}},
		{"bad glob", "- domain: \"*\"\n- domain: \"[a-\"\n", []string{"rule 1", "invalid glob"}},
		{"url as domain", "- domain: \"example.com/shop\"\n", []string{"rule 0", "hostname glob"}},
		{"empty field name", "- domain: \"*\"\n  fields:\n    \"\": h1\n", []string{"rule 0", "empty field name"}},
		{"bad selector", "- domain: a.com\n- domain: \"*\"\n  fields:\n    ok: h1\n    price: \"div[\"\n", []string{"rule 1", `field "price"`, "bad selector"}},
		{"empty selector", "- domain: \"*\"\n  fields:\n    a: \"\"\n", []string{"rule 0", `field "a"`, "empty selector"}},
		{"attr only", "- domain: \"*\"\n  fields:\n    a: \"@content\"\n", []string{`field "a"`, "empty selector"}},
		{"empty attr", "- domain: \"*\"\n  fields:\n    a: \"meta @\"\n", []string{`field "a"`, "invalid attribute"}},
		{"bad attr", "- domain: \"*\"\n  fields:\n    a: \"meta @x=y\"\n", []string{`field "a"`, "invalid attribute"}},
		{"too many fields", manyFields(MaxFieldsPerRule + 1), []string{"rule 0", "257 fields"}},
		{"too large", "#" + strings.Repeat("x", MaxRulesFileBytes), []string{"larger than"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRules("rules.yaml", []byte(tc.yml))
			if err == nil {
				t.Fatalf("ParseRules succeeded (%d rules), want error", len(r.rules))
			}
			for _, sub := range tc.wantSub {
				if !strings.Contains(err.Error(), sub) {
					t.Errorf("error %q does not contain %q", err, sub)
				}
			}
			if !strings.Contains(err.Error(), "rules.yaml") {
				t.Errorf("error %q does not name the rules file", err)
			}
		})
	}
}

func TestParseRulesValid(t *testing.T) {
	manyFields := func(n int) string {
		var b strings.Builder
		b.WriteString("- domain: \"*\"\n  fields:\n")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "    f%d: \"h1\"\n", i)
		}
		return b.String()
	}
	tests := []struct {
		name      string
		yml       string
		wantRules int
	}{
		{"example", defaultRulesYAML, 1},
		{"no fields", "- domain: \"*\"\n", 1},
		{"max fields", manyFields(MaxFieldsPerRule), 1},
		{"group selector", "- domain: \"*\"\n  fields:\n    t: \"h1, h2\"\n", 1},
		{"attr with tab", "- domain: \"*\"\n  fields:\n    t: \"a\\t@href\"\n", 1},
		{"numeric selector scalar", "- domain: \"*\"\n  fields:\n    t: h1\n    \"2\": p\n", 1},
		{"several rules", "- domain: \"*.a.com\"\n- domain: \"b.com\"\n- domain: \"*\"\n", 3},
		{"vue attr", "- domain: \"*\"\n  fields:\n    t: \"button @@click\"\n", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mustParse(t, tc.yml)
			if len(r.rules) != tc.wantRules {
				t.Fatalf("got %d rules, want %d", len(r.rules), tc.wantRules)
			}
		})
	}
}

var versionRE = regexp.MustCompile(`^sha256:[0-9a-f]{12}$`)

func TestVersionAndName(t *testing.T) {
	a := mustParse(t, defaultRulesYAML)
	b := mustParse(t, defaultRulesYAML)
	if a.Version() != b.Version() {
		t.Errorf("same bytes, different versions: %s vs %s", a.Version(), b.Version())
	}
	if !versionRE.MatchString(a.Version()) {
		t.Errorf("version %q does not look like sha256:<12 hex>", a.Version())
	}
	// Known value: sha256 of the example YAML, pinned so that the version
	// does not silently change meaning.
	if got, want := a.Version(), versionOf([]byte(defaultRulesYAML)); got != want {
		t.Errorf("version %s, want %s", got, want)
	}
	if got, want := versionOf([]byte("abc")), "sha256:ba7816bf8f01"; got != want {
		t.Errorf("versionOf(abc) = %s, want %s", got, want)
	}
	c := mustParse(t, defaultRulesYAML+"# comment changes the bytes\n")
	if c.Version() == a.Version() {
		t.Errorf("different bytes, same version %s", c.Version())
	}
	if a.Name() != "test.yaml" {
		t.Errorf("Name = %q", a.Name())
	}
	d := DefaultRules()
	if d.Name() != "default" || d.Version() != a.Version() {
		t.Errorf("DefaultRules: name %q version %q, want default %q", d.Name(), d.Version(), a.Version())
	}
	if DefaultRules() != d {
		t.Errorf("DefaultRules is not a shared immutable value")
	}
	var nilRules *Rules
	if nilRules.Name() != "" || nilRules.Version() != "" {
		t.Errorf("nil Rules should report empty name and version")
	}
}

func TestLoadRules(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("ok", func(t *testing.T) {
		p := write("shop.yaml", []byte(defaultRulesYAML))
		r, err := LoadRules(p)
		if err != nil {
			t.Fatal(err)
		}
		if r.Name() != "shop.yaml" {
			t.Errorf("Name = %q, want shop.yaml", r.Name())
		}
		if r.Version() != DefaultRules().Version() {
			t.Errorf("Version = %q, want %q", r.Version(), DefaultRules().Version())
		}
	})
	t.Run("missing", func(t *testing.T) {
		if _, err := LoadRules(filepath.Join(dir, "nope.yaml")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("err = %v, want not-exist", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		p := write("big.yaml", append([]byte(defaultRulesYAML), make([]byte, MaxRulesFileBytes)...))
		_, err := LoadRules(p)
		if err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Errorf("err = %v, want size error", err)
		}
	})
	t.Run("exactly max size", func(t *testing.T) {
		data := []byte(defaultRulesYAML)
		data = append(data, '#')
		data = append(data, []byte(strings.Repeat("x", MaxRulesFileBytes-len(data)))...)
		p := write("max.yaml", data)
		if _, err := LoadRules(p); err != nil {
			t.Errorf("err = %v, want success at exactly %d bytes", err, MaxRulesFileBytes)
		}
	})
	t.Run("bad selector names file rule and field", func(t *testing.T) {
		p := write("bad.yaml", []byte("- domain: \"*\"\n  fields:\n    price: \".price >\"\n"))
		_, err := LoadRules(p)
		if err == nil {
			t.Fatal("want error")
		}
		for _, sub := range []string{"bad.yaml", "rule 0", `field "price"`} {
			if !strings.Contains(err.Error(), sub) {
				t.Errorf("error %q does not contain %q", err, sub)
			}
		}
	})
}

func TestCompileField(t *testing.T) {
	tests := []struct {
		spec, attr string
	}{
		{"h1", ""},
		{"  h1  ", ""},
		{"meta[itemprop=sku] @content", "content"},
		{"meta[itemprop=sku]   @CONTENT  ", "content"},
		{"a > img @data-src", "data-src"},
		{"svg a @xlink:href", "xlink:href"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			f, err := compileField("x", fieldYAML{sels: []string{tc.spec}}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(f.sels) != 1 || f.sels[0].attr != tc.attr {
				t.Errorf("attr = %q, want %q", f.sels[0].attr, tc.attr)
			}
		})
	}
}
