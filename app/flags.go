package app

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Setting is one leaf of the config tree: its YAML key, its flag and
// where it lives in Config.
type Setting struct {
	Key     string   // dotted YAML path: "fetch.max_redirects"
	Flag    string   // flag name: "max-redirects"
	Aliases []string // older flag names, accepted with a warning
	Help    string
	Type    reflect.Type
	index   []int
	repeat  bool // a list flag that appends per use (else comma-separated)
}

// field is one field of a struct of the tree, as its tags say.
type field struct {
	name    string // YAML key
	flag    string // flag name given by the tag, "" to derive, "-" none
	flat    bool   // a section whose keys take no flag prefix
	repeat  bool
	aliases []string
	help    string
	index   []int
	typ     reflect.Type
}

var durationType = reflect.TypeFor[time.Duration]()

// fieldsOf lists the YAML fields of struct type t, inline ones expanded.
func fieldsOf(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if opts == "inline" {
			for _, f := range fieldsOf(sf.Type) {
				f.index = append([]int{i}, f.index...)
				out = append(out, f)
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		f := field{name: name, index: []int{i}, typ: sf.Type, help: sf.Tag.Get("help")}
		fname, fopts, _ := strings.Cut(sf.Tag.Get("flag"), ",")
		f.flag = fname
		if fname == "flat" {
			f.flag, f.flat = "", true
		}
		for _, o := range strings.Split(fopts, ",") {
			switch {
			case o == "repeat":
				f.repeat = true
			case strings.HasPrefix(o, "alias="):
				f.aliases = append(f.aliases, strings.TrimPrefix(o, "alias="))
			}
		}
		out = append(out, f)
	}
	return out
}

// isSection reports whether t is a section of the tree rather than a value.
func isSection(t reflect.Type) bool { return t.Kind() == reflect.Struct }

// Settings lists every setting of the tree that has a flag, in tree order.
func Settings() []Setting {
	var out []Setting
	var walk func(t reflect.Type, key, flg string, index []int)
	walk = func(t reflect.Type, key, flg string, index []int) {
		for _, f := range fieldsOf(t) {
			if f.flag == "-" {
				continue
			}
			idx := append(append([]int(nil), index...), f.index...)
			if isSection(f.typ) {
				p := flg + f.name + "-"
				if f.flat {
					p = flg
				}
				walk(f.typ, key+f.name+".", strings.ReplaceAll(p, "_", "-"), idx)
				continue
			}
			name := f.flag
			if name == "" {
				name = flg + strings.ReplaceAll(f.name, "_", "-")
			}
			help := f.help
			if help == "" {
				help = foreignHelp[name]
			}
			out = append(out, Setting{Key: key + f.name, Flag: name, Aliases: f.aliases, Help: help, Type: f.typ, index: idx, repeat: f.repeat})
		}
	}
	walk(reflect.TypeFor[Config](), "", "", nil)
	return out
}

// foreignHelp is the help of settings whose types live in other packages.
var foreignHelp = map[string]string{
	"allow-loopback":          "allow destinations on loopback (127.0.0.0/8, ::1); refused by default",
	"allow-nets":              "comma-separated CIDRs to allow even inside refused ranges (e.g. 10.20.0.0/16)",
	"deny-nets":               "comma-separated CIDRs to refuse in addition to the default ranges",
	"allow-hosts":             "comma-separated host patterns (example.com, *.example.com); if set, only these hosts",
	"deny-hosts":              "comma-separated host patterns to refuse",
	"allow-ports":             "comma-separated ports or ranges (443,8000-8099); if set, only these ports",
	"deny-ports":              "comma-separated ports or ranges to refuse",
	"proxy-dns":               "who resolves target names behind http(s) proxies: remote (the proxy) or local (checked here, CONNECT to the checked IP)",
	"handshake-timeout":       "bound on a CONNECT or SOCKS5 handshake with a proxy",
	"max-proxy-header-bytes":  "largest answer of a proxy to CONNECT, in bytes",
	"adaptive-off":            "run every domain at its maximum from the start, without adaptive control",
	"adaptive-start":          "adaptive control: starting level, a fraction of the maximum",
	"adaptive-min":            "adaptive control: lowest level cuts go down to",
	"adaptive-window":         "adaptive control: outcomes over which the success rate is judged",
	"adaptive-min-samples":    "adaptive control: outcomes since the last change needed before a cut",
	"adaptive-raise-after":    "adaptive control: min-samples healthy outcomes spanning this long raise the level before a full window",
	"adaptive-latency-window": "adaptive control: responses whose median latency is compared with the baseline",
	"adaptive-latency-floor":  "adaptive control: least baseline latency",
	"dns-off":                 "no DNS cache: the system resolver on every new connection",
	"dns-servers":             "comma-separated DNS servers host:port (empty: those of --dns-resolv-conf)",
	"dns-resolv-conf":         "file read for DNS servers when --dns-servers is empty",
	"dns-timeout":             "bound on one DNS query to one server",
	"dns-min-ttl":             "least time a DNS answer is cached",
	"dns-max-ttl":             "longest time a DNS answer is cached",
	"dns-fallback-ttl":        "how long an answer of the system resolver (no TTL) is cached",
	"dns-negative-ttl":        "how long a failed lookup is remembered",
	"dns-max-entries":         "names the DNS cache holds at most",
}

// setValue parses s into v, the way both a flag and the YAML mean it.
// first says this is the first use of a repeatable flag (which replaces
// the list the file gave).
func setValue(v reflect.Value, s string, first, repeat bool) error {
	if fv, ok := v.Addr().Interface().(flag.Value); ok {
		return fv.Set(s)
	}
	switch {
	case v.Type() == durationType:
		d, err := parseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
		return nil
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		v.SetBool(b)
	case v.CanInt():
		n, err := strconv.ParseInt(s, 0, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not a whole number", s)
		}
		v.SetInt(n)
	case v.CanFloat():
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		v.SetFloat(n)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		if !repeat {
			v.Set(reflect.ValueOf(splitList(s)).Convert(v.Type()))
			return nil
		}
		if first {
			v.Set(reflect.MakeSlice(v.Type(), 0, 1))
		}
		v.Set(reflect.Append(v, reflect.ValueOf(s)))
	default:
		return fmt.Errorf("no flag for type %s", v.Type())
	}
	return nil
}

// parseDuration reads a Go duration ("1.5s", "2m"), or the numbers the
// docs write: 0, and a negative number (-1) for "off".
func parseDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
		if n > 0 {
			return 0, fmt.Errorf("duration %q needs a unit (e.g. %ds)", s, n)
		}
		return time.Duration(n), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (e.g. 500ms, 30s, 2m; 0 or -1 for off)", s)
	}
	return d, nil
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// Flags binds the config tree to a flag set: one flag per setting (and
// --config), with the help from the tree's tags and the defaults of the
// command. Load then builds the Config.
type Flags struct {
	defaults Config
	config   *string
	given    []givenFlag
	warnings []string
}

type givenFlag struct {
	s   *Setting
	val string
}

type flagValue struct {
	f      *Flags
	s      *Setting
	def    string
	isBool bool
	alias  string // the deprecated name used, if any
}

func (v *flagValue) String() string { return v.def }

// Type names the flag's argument in the help.
func (v *flagValue) Type() string {
	switch t := v.s.Type; {
	case t == durationType:
		return "duration"
	case t.Kind() == reflect.Bool:
		return ""
	case t.Kind() == reflect.Slice && v.s.repeat:
		return "string (repeatable)"
	case t.Kind() == reflect.Slice:
		return "list"
	case t.Kind() == reflect.Float64:
		return "number"
	case t.Kind() == reflect.Int, t.Kind() == reflect.Int64:
		return "int"
	}
	return "string"
}
func (v *flagValue) IsBoolFlag() bool { return v.isBool }
func (v *flagValue) Set(s string) error {
	scratch := reflect.New(reflect.TypeFor[Config]()).Elem()
	if err := setValue(scratch.FieldByIndex(v.s.index), s, true, v.s.repeat); err != nil {
		return err
	}
	if v.alias != "" {
		v.f.warnings = append(v.f.warnings, fmt.Sprintf("--%s is deprecated: use --%s", v.alias, v.s.Flag))
	}
	v.f.given = append(v.f.given, givenFlag{v.s, s})
	return nil
}

// Bind declares --config and a flag for every setting that keep accepts
// (nil: all) into fs, with defaults shown from defaults.
func Bind(fs *flag.FlagSet, defaults Config, keep func(Setting) bool) *Flags {
	f := &Flags{defaults: defaults}
	f.config = fs.String("config", "", "job config file (YAML); its keys are these flags' names with _ (see docs/config.md); flags given override it")
	dv := reflect.ValueOf(defaults)
	for _, s := range Settings() {
		if keep != nil && !keep(s) {
			continue
		}
		s := s
		def := dv.FieldByIndex(s.index)
		text := fmt.Sprint(def.Interface())
		if def.Kind() == reflect.Slice {
			parts := make([]string, def.Len())
			for i := range parts {
				parts[i] = def.Index(i).String()
			}
			text = strings.Join(parts, ",")
		}
		if def.IsZero() {
			text = ""
		}
		isBool := s.Type.Kind() == reflect.Bool
		fs.Var(&flagValue{f: f, s: &s, def: text, isBool: isBool}, s.Flag, s.Help)
		for _, a := range s.Aliases {
			fs.Var(&flagValue{f: f, s: &s, def: text, isBool: isBool, alias: a}, a, "deprecated: use --"+s.Flag)
		}
	}
	return f
}

// Warnings are the deprecation warnings of the flags parsed.
func (f *Flags) Warnings() []string { return f.warnings }

// Load builds the Config: the defaults, then the --config file, then the
// flags given, in the order given; then validates it. Every error is a
// usage error.
func (f *Flags) Load() (Config, error) {
	cfg := f.defaults
	cfg.Fetch.CaptchaMarkers = append([]string(nil), cfg.Fetch.CaptchaMarkers...)
	given := map[string]bool{}
	if *f.config != "" {
		if err := loadFile(*f.config, &cfg, given); err != nil {
			return cfg, usageError{err}
		}
	}
	root := reflect.ValueOf(&cfg).Elem()
	for _, g := range f.given {
		if err := setValue(root.FieldByIndex(g.s.index), g.val, !given["flag:"+g.s.Flag], g.s.repeat); err != nil {
			return cfg, usagef("--%s: %v", g.s.Flag, err)
		}
		given["flag:"+g.s.Flag] = true
		given[g.s.Flag] = true
	}
	cfg.derive(given)
	if err := cfg.validate(given); err != nil {
		return cfg, usageError{err}
	}
	if err := cfg.checkFiles(); err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

// LoadFile reads a job config file over Defaults and validates it.
func LoadFile(path string) (Config, error) {
	cfg := Defaults()
	given := map[string]bool{}
	if err := loadFile(path, &cfg, given); err != nil {
		return cfg, usageError{err}
	}
	cfg.derive(given)
	if err := cfg.validate(given); err != nil {
		return cfg, usageError{fmt.Errorf("config %s: %w", path, err)}
	}
	return cfg, nil
}

// loadFile decodes the YAML file at path over cfg: unknown keys are
// errors, durations take the numbers the docs write, relative paths are
// relative to the file's directory. given receives the flag names of the
// keys the file sets.
func loadFile(path string, cfg *Config, given map[string]bool) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(raw)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("config %s: %w", path, err)
	}
	root := &doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		root = doc.Content[0]
	}
	if err := checkNode(root, reflect.TypeFor[Config](), "", "", given); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if err := root.Decode(cfg); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	cfg.resolvePaths(filepath.Dir(path), given)
	return nil
}

// checkNode walks a YAML node against the tree's type t: a key the type
// does not have is an error; an integer where a duration goes is read as
// parseDuration reads it. It records the flag names of the settings set.
func checkNode(n *yaml.Node, t reflect.Type, key, flg string, given map[string]bool) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch {
	case t == durationType:
		if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
			d, err := parseDuration(n.Value)
			if err != nil {
				return fmt.Errorf("line %d: %s: %w", n.Line, key, err)
			}
			n.Value, n.Tag = d.String(), "!!str"
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct && n.Kind == yaml.SequenceNode:
		for _, e := range n.Content {
			if err := checkNode(e, t.Elem(), strings.TrimSuffix(key, ".")+"[].", "", map[string]bool{}); err != nil { // entries have no flags
				return err
			}
		}
	case isSection(t) && n.Kind == yaml.MappingNode:
		fields := map[string]field{}
		for _, f := range fieldsOf(t) {
			fields[f.name] = f
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			if !ok {
				where := strings.TrimSuffix(key, ".")
				if where == "" {
					where = "the config"
				}
				return fmt.Errorf("line %d: unknown key %q in %s", k.Line, k.Value, where)
			}
			name := f.flag
			sub := flg + f.name + "-"
			if f.flat {
				sub = flg
			}
			if name == "" {
				name = flg + f.name
			}
			name = strings.ReplaceAll(name, "_", "-")
			given[name] = true
			if isSection(f.typ) && v.Kind == yaml.ScalarNode {
				given[strings.ReplaceAll(sub, "_", "-")+"enabled"] = true // tls: true
			}
			if err := checkNode(v, f.typ, key+f.name+".", sub, given); err != nil {
				return err
			}
		}
	}
	return nil
}
