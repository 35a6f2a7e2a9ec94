package app

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/stages/source"
	"github.com/sluicehq/sluice/testbed"
)

// resultsByURL reads a results JSONL file, by URL; a URL twice fails.
func resultsByURL(t *testing.T, path string) map[string]record.Result {
	t.Helper()
	out := map[string]record.Result{}
	for _, r := range readResults(t, path) {
		if _, dup := out[r.URL]; dup {
			t.Fatalf("%s: %s twice", path, r.URL)
		}
		out[r.URL] = r
	}
	return out
}

// withoutElapsed is r as JSON without elapsed_ms, which replay takes from
// the last attempt's timings (the run counts every attempt).
func withoutElapsed(r record.Result) string {
	r.ElapsedMS = 0
	b, _ := json.Marshal(r)
	return string(b)
}

// TestRunWARCThenReplay: a run against the local site writes results and
// a WARC archive; a replay of the archive gives the same results (timing
// fields aside) without one request to the site.
func TestRunWARCThenReplay(t *testing.T) {
	const n = 30
	site, err := testbed.StartSite(testbed.SiteConfig{Products: n, PageBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	dir := t.TempDir()
	var urls []string
	for id := 1; id <= n; id++ {
		urls = append(urls, site.ProductURL(id))
	}
	urls = append(urls, site.ProductURL(n+1)) // 404: an error result, no page
	urlsFile := filepath.Join(dir, "urls.txt")
	writeLines(t, urlsFile, urls)
	archive := filepath.Join(dir, "archive")

	c, err := load(t, Defaults(), "--urls", urlsFile, "--out", filepath.Join(dir, "results.jsonl"), "--warc", archive,
		"--warc-max-size", "32768", "--allow-loopback", "--direct", "--rate", "-1", "--concurrency", "4", "--log-level", "error", "--progress", "off")
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if err := Run(context.Background(), c, &bytes.Buffer{}, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	fetched := site.Stats().Requests
	if fetched < n+1 {
		t.Fatalf("the site saw %d requests, want at least %d", fetched, n+1)
	}
	files, err := filepath.Glob(filepath.Join(archive, "*.warc.gz"))
	if err != nil || len(files) < 2 {
		t.Fatalf("archive files %v (%v): want rotation at 32 KiB into several", files, err)
	}
	// The archive holds a page for every result without an error, and every result.
	pages, results := 0, 0
	for _, f := range files {
		if err := source.ReadWARCFile(context.Background(), f, 0, func(it source.WARCItem) error {
			switch {
			case it.Page != nil:
				pages++
			case it.Result != nil:
				results++
			case it.Bad != nil:
				t.Errorf("%s: %s", f, it.Bad.Error.Message)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if pages != n || results != n+1 {
		t.Fatalf("archive holds %d pages and %d results, want %d and %d", pages, results, n, n+1)
	}

	rc, err := load(t, Defaults(), "--out", filepath.Join(dir, "replayed.jsonl"), "--log-level", "error")
	if err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	if err := Replay(context.Background(), rc, ReplayOptions{WARC: []string{archive}, FromOffset: -1}, &bytes.Buffer{}, &stderr); err != nil {
		t.Fatalf("replay: %v\n%s", err, stderr.String())
	}
	if got := site.Stats().Requests; got != fetched {
		t.Fatalf("the site saw %d requests during the replay", got-fetched)
	}
	if !strings.Contains(stderr.String(), "replay: 30 pages read, 30 results, 0 not pages, 0 errors") {
		t.Fatalf("replay summary: %s", stderr.String())
	}
	orig := resultsByURL(t, filepath.Join(dir, "results.jsonl"))
	again := resultsByURL(t, filepath.Join(dir, "replayed.jsonl"))
	if len(orig) != n+1 || len(again) != n {
		t.Fatalf("%d results, %d replayed", len(orig), len(again))
	}
	var keys []string
	for u := range orig {
		keys = append(keys, u)
	}
	sort.Strings(keys)
	for _, u := range keys {
		o := orig[u]
		r, ok := again[u]
		if o.Error != nil {
			if ok {
				t.Errorf("%s: an error result (%s) was replayed", u, o.Error.Class)
			}
			continue
		}
		if !ok {
			t.Errorf("%s: not replayed", u)
			continue
		}
		if a, b := withoutElapsed(o), withoutElapsed(r); a != b {
			t.Errorf("%s differs:\nrun    %s\nreplay %s", u, a, b)
		}
		if name, _ := o.Fields["name"].(string); name == "" {
			t.Errorf("%s: no name extracted: %v", u, o.Fields)
		}
	}
}

// docBlocks returns the fenced blocks of a markdown file with the given
// info string, in order.
func docBlocks(t *testing.T, doc, lang string) []string {
	t.Helper()
	var blocks []string
	var cur []string
	in := false
	for _, line := range strings.Split(doc, "\n") {
		switch {
		case !in && line == "```"+lang:
			in, cur = true, nil
		case in && line == "```":
			in = false
			blocks = append(blocks, strings.Join(cur, "\n")+"\n")
		case in:
			cur = append(cur, line)
		}
	}
	return blocks
}

// TestWARCDocs runs every block of docs/warc.md in order, in a directory
// of its own, against the local site: the YAML blocks are written to the
// file their first line names, and every command of the sh blocks is run
// (`pipeline` is the built command, with --allow-loopback added to run;
// warcio commands need warcio and are skipped without it). Then the replay
// must have given the run's results without a request to the site.
func TestWARCDocs(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("../docs/warc.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	const n = 12
	site, err := testbed.StartSite(testbed.SiteConfig{Products: n})
	if err != nil {
		t.Fatal(err)
	}
	defer site.Close()
	dir := t.TempDir()
	var urls []string
	for id := 1; id <= n; id++ {
		urls = append(urls, site.ProductURL(id))
	}
	writeLines(t, filepath.Join(dir, "urls.txt"), urls)
	farm, err := testbed.StartFarm(testbed.FarmConfig{N: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	writeLines(t, filepath.Join(dir, "proxies.txt"), farm.URLs())

	yamls := docBlocks(t, doc, "yaml")
	if len(yamls) == 0 {
		t.Fatal("docs/warc.md has no yaml block")
	}
	for _, y := range yamls {
		name, ok := strings.CutPrefix(strings.SplitN(y, "\n", 2)[0], "# ")
		if !ok {
			t.Fatalf("yaml block does not name its file on its first line:\n%s", y)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadFile(path); err != nil {
			t.Fatalf("%s of docs/warc.md: %v", name, err)
		}
	}
	warcioBin := os.Getenv("SLUICE_WARCIO")
	if warcioBin == "" {
		warcioBin, _ = exec.LookPath("warcio")
	}
	var before int64 = -1
	ran := 0
	for _, block := range docBlocks(t, doc, "sh") {
		for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
			args := strings.Fields(line)
			var cmd *exec.Cmd
			switch {
			case len(args) > 1 && args[0] == "pipeline":
				args = args[1:]
				switch args[0] {
				case "run":
					args = append(args, "--allow-loopback", "--log-level", "error", "--progress", "off")
				case "replay":
					before = site.Stats().Requests
				}
				cmd = exec.Command(bin, args...)
			case len(args) > 1 && args[0] == "warcio":
				if warcioBin == "" {
					t.Logf("warcio is not installed (source .ci/setup-warcio.sh): not run: %s", line)
					continue
				}
				cmd = exec.Command("sh", "-c", strings.Replace(line, "warcio", warcioBin, 1))
			default:
				t.Fatalf("docs/warc.md: a command this test does not know how to run: %s", line)
			}
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", line, err, out)
			}
			if strings.HasPrefix(line, "warcio index") && !strings.Contains(string(out), `"warc-type": "response"`) {
				t.Fatalf("%s lists no response record:\n%s", line, out)
			}
			ran++
		}
	}
	if ran < 2 || before < 0 {
		t.Fatalf("docs/warc.md: %d commands ran, replay among them: %v", ran, before >= 0)
	}
	if got := site.Stats().Requests; got != before {
		t.Fatalf("the site saw %d requests during the replay", got-before)
	}
	orig := resultsByURL(t, filepath.Join(dir, "results.jsonl"))
	again := resultsByURL(t, filepath.Join(dir, "replayed.jsonl"))
	if len(orig) != n || len(again) != n {
		t.Fatalf("%d results, %d replayed; want %d", len(orig), len(again), n)
	}
	for u, o := range orig {
		if a, b := withoutElapsed(o), withoutElapsed(again[u]); a != b {
			t.Errorf("%s differs:\nrun    %s\nreplay %s", u, a, b)
		}
	}
}
