package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/app"
	"github.com/sluicehq/sluice/proxy"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/stages/parse"
	"github.com/sluicehq/sluice/stages/source"
)

// docBlock is one fenced code block of a Markdown page.
type docBlock struct {
	page string // path relative to the repository root
	line int    // line of the opening fence
	lang string // the info string's first word
	body string
}

func (b docBlock) String() string { return fmt.Sprintf("%s:%d (```%s)", b.page, b.line, b.lang) }

// fencedBlocks returns every fenced code block of md, indented ones (in a
// list item) included, with the indentation of the fence removed.
func fencedBlocks(page, md string) ([]docBlock, error) {
	var out []docBlock
	var cur *docBlock
	var indent string
	n := 0
	for line := range strings.Lines(md) {
		n++
		line = strings.TrimRight(line, "\r\n")
		trimmed := strings.TrimLeft(line, " \t")
		if cur != nil {
			if strings.HasPrefix(trimmed, "```") && strings.TrimSpace(trimmed) == "```" {
				out = append(out, *cur)
				cur = nil
				continue
			}
			cur.body += strings.TrimPrefix(line, indent) + "\n"
			continue
		}
		if strings.HasPrefix(trimmed, "```") {
			indent = line[:len(line)-len(trimmed)]
			lang, _, _ := strings.Cut(strings.TrimSpace(strings.TrimPrefix(trimmed, "```")), " ")
			cur = &docBlock{page: page, line: n, lang: lang}
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: a code block that is never closed", page, cur.line)
	}
	return out, nil
}

// yamlFragment is the first-line comment of a YAML block that is neither a
// job config nor a rules file: "# fragment: what it is".
var yamlFragment = regexp.MustCompile(`^#\s*fragment:\s*\S`)

// otherCommands are the commands of sh blocks this test does not run,
// each with the reason or the test that runs it.
var otherCommands = map[string]string{
	"curl":   "reads a running pipeline's /metrics: metrics.TestServer serves it, and `pipeline demo` (TestDemoCommand) checks its own",
	"jq":     "reads results.jsonl; the Result shape it relies on is checked by decoding the README's Result block here",
	"warcio": "Python's WARC reader: TestWARCDocs (app) runs these lines and TestWARCReadByWarcio (stages/sink) checks archives with it, when .ci/setup-warcio.sh installed it",
	"kcat":   "a Kafka console consumer, not installed here; what it reads is checked by TestKafkaConformance (stages/sink)",
	"docker": "needs a Docker daemon, absent here; TestDockerCompose (app) checks the compose file and the job config it mounts",
	"source": "a .ci/setup-*.sh script; checked to exist, and CI (.ci/run) sources them",
	"bash":   "a .ci script; checked to exist, and CI (.ci/run) runs them",
	"cd":     "changes directory for the next lines; the directory is checked to exist",
	"grep":   "filters the output of the command before it in a pipe",
	"sort":   "filters the output of the command before it in a pipe",
	"uniq":   "filters the output of the command before it in a pipe",
}

// TestDocsCodeBlocks checks every fenced code block of README.md and
// docs/*.md by its kind, so that no example is left unchecked. A block of
// a kind it does not know fails the test.
//
//   - yaml: a job config is loaded by app.LoadFile, a rules file (a list)
//     by parse.LoadRules; anything else must start with "# fragment: ..."
//     and then only has to be valid YAML.
//   - sh: `pipeline CMD ...` and `go run ./cmd/pipeline CMD ...` have their
//     flags parsed by the command's own flag set (not run); `go test` names
//     packages that exist and -run/-bench patterns that match a test in
//     them; other commands must be in otherCommands.
//   - json: valid JSON values (one or several); an object with "schema"
//     decodes strictly into record.Result, Page, DeadLetter or Span; an
//     object with "url" and no "schema" is a URL message and decodes as the
//     source does.
//   - go: parses as Go (a file, or statements in a function).
//   - proxies / proxies-invalid: proxy.ParseList accepts / refuses it.
//   - urls: every line decodes as a URL message.
//   - html: a page of docs/extraction.md (TestDocsExtraction runs the
//     rules on it); text: output shown, not parsed.
func TestDocsCodeBlocks(t *testing.T) {
	const root = "../.."
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages = append([]string{filepath.Join(root, "README.md")}, pages...)
	counts := map[string]int{}
	for _, p := range pages {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		blocks, err := fencedBlocks(filepath.ToSlash(rel), string(b))
		if err != nil {
			t.Error(err)
			continue
		}
		for _, blk := range blocks {
			counts[blk.lang]++
			if err := checkBlock(t, root, blk); err != nil {
				t.Errorf("%s: %v", blk, err)
			}
		}
	}
	if counts["yaml"] == 0 || counts["sh"] == 0 || counts["json"] == 0 {
		t.Errorf("found too few blocks (%v): the block extraction is broken", counts)
	}
	t.Logf("checked blocks by kind: %v", counts)
}

func checkBlock(t *testing.T, root string, b docBlock) error {
	switch b.lang {
	case "yaml":
		return checkYAML(t, b)
	case "sh":
		return checkShell(root, b)
	case "json":
		return checkJSON(b)
	case "go":
		return checkGo(b)
	case "proxies":
		ps, err := proxy.ParseList(strings.NewReader(b.body))
		if err == nil && len(ps) == 0 {
			err = errors.New("lists no proxy")
		}
		return err
	case "proxies-invalid":
		if _, err := proxy.ParseList(strings.NewReader(b.body)); err == nil {
			return errors.New("a proxies file shown as refused is accepted")
		}
		return nil
	case "urls":
		for line := range strings.Lines(b.body) {
			if line = strings.TrimSpace(line); line == "" {
				continue
			}
			if _, _, err := source.Decode([]byte(line), 64<<10); err != nil {
				return fmt.Errorf("URL line %q: %v", line, err)
			}
		}
		return nil
	case "html":
		// The pages of docs/extraction.md, which TestDocsExtraction
		// (stages/parse) runs its rules on; nothing checks them elsewhere.
		if b.page != "docs/extraction.md" {
			return errors.New("an html block outside docs/extraction.md, where no test reads it")
		}
		if !strings.Contains(b.body, "<") {
			return errors.New("an html block without a tag")
		}
		return nil
	case "text":
		return nil // output shown, not input: nothing to parse
	case "":
		return errors.New("a code block without a language: say what it is (text for output, proxies, urls, sh, yaml, json, go, html)")
	default:
		return fmt.Errorf("a code block of kind %q this test does not know how to check", b.lang)
	}
}

func checkYAML(t *testing.T, b docBlock) error {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(b.body), &doc); err != nil {
		return fmt.Errorf("not YAML: %v", err)
	}
	first, _, _ := strings.Cut(strings.TrimSpace(b.body), "\n")
	if yamlFragment.MatchString(first) {
		return nil // valid YAML, and says what it is
	}
	if len(doc.Content) != 1 {
		return errors.New("an empty YAML block")
	}
	path := filepath.Join(t.TempDir(), "block.yaml")
	if err := os.WriteFile(path, []byte(b.body), 0o600); err != nil {
		t.Fatal(err)
	}
	switch doc.Content[0].Kind {
	case yaml.SequenceNode:
		_, err := parse.LoadRules(path)
		return err
	case yaml.MappingNode:
		_, err := app.LoadFile(path)
		return err
	}
	return errors.New("neither a job config (a mapping) nor a rules file (a list), and no \"# fragment: ...\" first line")
}

// shellWords splits a command line into words, removing quotes.
func shellWords(line string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '#' && !inWord:
			return out, nil // a comment, to the end of the line
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unclosed quote in %q", line)
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

// shellCommands splits a block into commands: continuation lines joined,
// comments dropped, and lines split at |, && and ;.
func shellCommands(body string) ([][]string, error) {
	body = strings.ReplaceAll(body, "\\\n", " ")
	var out [][]string
	for line := range strings.Lines(body) {
		words, err := shellWords(strings.TrimSpace(line))
		if err != nil {
			return nil, err
		}
		var cmd []string
		for _, w := range words {
			if w == "|" || w == "&&" || w == ";" {
				if len(cmd) > 0 {
					out = append(out, cmd)
				}
				cmd = nil
				continue
			}
			cmd = append(cmd, w)
		}
		if len(cmd) > 0 {
			out = append(out, cmd)
		}
	}
	return out, nil
}

func checkShell(root string, b docBlock) error {
	cmds, err := shellCommands(b.body)
	if err != nil {
		return err
	}
	if len(cmds) == 0 {
		return errors.New("an sh block with no command")
	}
	dir := root
	var errs []error
	for _, cmd := range cmds {
		// Leading VAR=value assignments are the environment of the command.
		for len(cmd) > 1 && regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`).MatchString(cmd[0]) {
			cmd = cmd[1:]
		}
		var err error
		switch cmd[0] {
		case "pipeline":
			err = checkPipeline(cmd[1:])
		case "go":
			err = checkGo1(root, dir, cmd[1:])
		case "cd":
			if len(cmd) != 2 {
				err = errors.New("cd takes one directory")
				break
			}
			dir = filepath.Join(dir, cmd[1])
			if fi, e := os.Stat(dir); e != nil || !fi.IsDir() {
				err = fmt.Errorf("cd %s: no such directory", cmd[1])
			}
		case "source", "bash":
			if len(cmd) < 2 {
				err = fmt.Errorf("%s with no file", cmd[0])
			} else if _, e := os.Stat(filepath.Join(dir, cmd[1])); e != nil && !strings.HasPrefix(cmd[1], "/work/") {
				err = fmt.Errorf("%s %s: no such file", cmd[0], cmd[1])
			}
		default:
			if _, ok := otherCommands[cmd[0]]; !ok {
				err = fmt.Errorf("command %q is neither checked here nor in the allow-list otherCommands", cmd[0])
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("`%s`: %w", strings.Join(cmd, " "), err))
		}
	}
	return errors.Join(errs...)
}

// checkPipeline parses the flags of a pipeline command line with the
// command's own flag set, without running it.
func checkPipeline(args []string) error {
	if len(args) == 0 {
		return errors.New("pipeline with no command")
	}
	name := args[0]
	if name == "-h" || name == "--help" || name == "help" {
		return nil
	}
	cmd, ok := commands[name]
	if !ok {
		return fmt.Errorf("no command %q", name)
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cmd.setup(fs, io.Discard, io.Discard)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var old []string
	fs.Visit(func(f *flag.Flag) {
		if strings.HasPrefix(f.Usage, "deprecated:") {
			old = append(old, "--"+f.Name)
		}
	})
	if len(old) > 0 {
		return fmt.Errorf("deprecated flag names %v: show the new ones (docs/cli.md)", old)
	}
	if name == "version" {
		return nil // version takes no flags, and no arguments here
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if name == "run" {
		// A run needs proxies, --direct, Kafka input or a config that says.
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		if !given["proxies"] && !given["direct"] && !given["config"] {
			return errors.New("a run with neither --proxies nor --direct (nor --config) is refused (exit 2)")
		}
	}
	return nil
}

var testFuncs = regexp.MustCompile(`(?m)^func ((?:Test|Benchmark|Fuzz|Example)\w*)\(`)

// checkGo1 checks a go command: run ./cmd/pipeline parses like pipeline;
// test names existing packages and patterns that match their tests.
func checkGo1(root, dir string, args []string) error {
	if len(args) == 0 {
		return errors.New("go with no command")
	}
	switch args[0] {
	case "install":
		if len(args) != 2 || !strings.HasPrefix(args[1], "github.com/sluicehq/sluice/cmd/pipeline@") {
			return errors.New("go install of something other than the pipeline command")
		}
		return nil // TestGoInstallAndVersion runs it
	case "run":
		if len(args) > 1 && args[1] == "./cmd/pipeline" {
			return checkPipeline(args[2:])
		}
		if len(args) > 1 && args[1] == "." {
			if m, _ := filepath.Glob(filepath.Join(dir, "*.go")); len(m) == 0 {
				return fmt.Errorf("go run . in %s, which has no Go files", dir)
			}
			return nil // a program of its own (bench/compare): run by .ci/check-compare.sh
		}
		return fmt.Errorf("go run of %v: neither ./cmd/pipeline nor a checked program", args[1:])
	case "test":
	default:
		return fmt.Errorf("go %s: not a go command this test knows", args[0])
	}
	var patterns []string
	var pkgs []string
	valued := map[string]bool{"-run": true, "-bench": true, "-benchtime": true, "-count": true,
		"-fuzz": true, "-fuzztime": true, "-timeout": true, "-p": true, "-cpu": true, "-tags": true}
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-run" || a == "-bench" || a == "-fuzz":
			if i+1 >= len(args) {
				return fmt.Errorf("%s with no pattern", a)
			}
			patterns = append(patterns, args[i+1])
			i++
		case valued[a]:
			i++
		case strings.HasPrefix(a, "-"):
		default:
			pkgs = append(pkgs, a)
		}
	}
	if len(pkgs) == 0 {
		return errors.New("go test names no package")
	}
	var names []string
	for _, p := range pkgs {
		recursive := strings.HasSuffix(p, "/...")
		p = strings.TrimSuffix(strings.TrimSuffix(p, "/..."), "/")
		if !strings.HasPrefix(p, ".") {
			return fmt.Errorf("package %s: not a path in the module", p)
		}
		d := filepath.Join(dir, p)
		files, _ := filepath.Glob(filepath.Join(d, "*.go"))
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() || (!recursive && len(files) == 0) {
			return fmt.Errorf("package %s does not exist", p)
		}
		if recursive {
			_ = filepath.WalkDir(d, func(path string, _ os.DirEntry, _ error) error {
				if strings.HasSuffix(path, "_test.go") {
					names = append(names, testNames(path)...)
				}
				return nil
			})
			continue
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				names = append(names, testNames(f)...)
			}
		}
	}
	for _, pat := range patterns {
		if pat == "XXX" || pat == "^$" {
			continue // runs no test, on purpose (with -bench)
		}
		re, err := regexp.Compile(strings.Split(pat, "/")[0])
		if err != nil {
			return fmt.Errorf("pattern %q: %v", pat, err)
		}
		if !slices.ContainsFunc(names, re.MatchString) {
			return fmt.Errorf("pattern %q matches no test, benchmark or fuzz target in %v", pat, pkgs)
		}
	}
	return nil
}

func testNames(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range testFuncs.FindAllStringSubmatch(string(b), -1) {
		out = append(out, m[1])
	}
	return out
}

func checkJSON(b docBlock) error {
	dec := json.NewDecoder(strings.NewReader(b.body))
	n := 0
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("value %d is not JSON: %v", n+1, err)
		}
		n++
		var keys map[string]json.RawMessage
		if json.Unmarshal(raw, &keys) != nil {
			continue // not an object
		}
		_, schema := keys["schema"]
		_, hasURL := keys["url"]
		switch {
		case schema:
			if err := decodeRecord(raw); err != nil {
				return fmt.Errorf("value %d: %v", n, err)
			}
		case hasURL:
			if _, _, err := source.Decode(bytes.TrimSpace(raw), 64<<10); err != nil {
				return fmt.Errorf("value %d, a URL message: %v", n, err)
			}
		}
	}
	if n == 0 {
		return errors.New("an empty json block")
	}
	return nil
}

// decodeRecord decodes a record with a schema strictly into the record
// type whose fields it has.
func decodeRecord(raw []byte) error {
	var errs []error
	for _, v := range []any{&record.Result{}, &record.Page{}, &record.DeadLetter{}, &record.Span{}, &record.Delayed{}} {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		err := dec.Decode(v)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("as %T: %v", v, err))
	}
	return fmt.Errorf("a record with a schema that is no record type: %w", errors.Join(errs...))
}

func checkGo(b docBlock) error {
	fset := token.NewFileSet()
	if strings.HasPrefix(strings.TrimSpace(b.body), "package ") {
		_, err := parser.ParseFile(fset, "block.go", b.body, 0)
		return err
	}
	if _, err := parser.ParseFile(fset, "block.go", "package p\nfunc _() {\n"+b.body+"\n}\n", 0); err != nil {
		return fmt.Errorf("not Go statements: %v", err)
	}
	return nil
}

// TestDocsCodeBlocksCatches: the checks of TestDocsCodeBlocks fail on
// the mistakes they are there to catch.
func TestDocsCodeBlocksCatches(t *testing.T) {
	bad := []docBlock{
		{lang: "", body: "anything\n"},
		{lang: "toml", body: "a = 1\n"},
		{lang: "sh", body: "pipeline run --proxies p.txt --no-such-flag\n"},
		{lang: "sh", body: "pipeline run --proxies p.txt --concurrency abc\n"},
		{lang: "sh", body: "pipeline run --proxies p.txt --brokers k:9092\n"},
		{lang: "sh", body: "pipeline run --urls u.txt --out r.jsonl\n"},
		{lang: "sh", body: "pipeline crawl --urls u.txt\n"},
		{lang: "sh", body: "go run ./cmd/pipeline demo --proxies 3\n"},
		{lang: "sh", body: "go test ./no/such/package/\n"},
		{lang: "sh", body: "go test -run TestNoSuchTestAnywhere ./proxy/\n"},
		{lang: "sh", body: "go test -run XXX -bench BenchmarkTracker ./stages/sink/\n"},
		{lang: "sh", body: "rm -rf state\n"},
		{lang: "yaml", body: "fetch:\n  concurency: 3\n"},
		{lang: "yaml", body: "- domain: \"*\"\n  fields:\n    name: \"h1[\"\n"},
		{lang: "yaml", body: "just a string\n"},
		{lang: "json", body: `{"schema":1,"url":"https://a.example/","status":200,"fieldz":{}}`},
		{lang: "json", body: `{"url": "ftp://a.example/"}`},
		{lang: "json", body: `{"a": }`},
		{lang: "go", body: "x := \n"},
		{lang: "proxies", body: "ftp://10.0.0.1:21\n"},
		{lang: "proxies-invalid", body: "10.0.0.1:3128\n"},
		{lang: "urls", body: "not a url\n"},
	}
	for _, b := range bad {
		if err := checkBlock(t, "../..", b); err == nil {
			t.Errorf("```%s block %q passed", b.lang, b.body)
		}
	}
	good := []docBlock{
		{lang: "sh", body: "go test -race ./proxy/ ./app/ -run 'TestDocs|Example'\n"},
		{lang: "sh", body: "pipeline run --urls u.txt --direct --out r.jsonl | jq .url # comment's quote\n"},
		{lang: "yaml", body: "# fragment: a docker-compose service\nservices: {}\n"},
	}
	for _, b := range good {
		if err := checkBlock(t, "../..", b); err != nil {
			t.Errorf("```%s block %q: %v", b.lang, b.body, err)
		}
	}
}
