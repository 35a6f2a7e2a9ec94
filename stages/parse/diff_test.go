package parse

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/record"
)

func TestDiff(t *testing.T) {
	old := `{"schema":1,"url":"u1","fields":{"a":"x","n":1.5,"l":["p","q"]},"parser":{"rules":"r","version":"sha256:old"},"error":null}
{"schema":1,"url":"u2","fields":{"a":"y"},"error":null}

{"schema":1,"url":"gone","fields":{"a":"z"},"error":null}
`
	d, err := NewDiff("old.jsonl", strings.NewReader(old))
	if err != nil {
		t.Fatal(err)
	}
	p := &record.Parser{Rules: "r", Version: "sha256:new"}
	d.Add(&record.Result{URL: "u1", Fields: map[string]any{"a": "x", "n": 1.5, "l": []any{"p", "q"}}, Parser: p})
	d.Add(&record.Result{URL: "u2", Fields: map[string]any{"a": nil, "b": map[string]any{"k": 2.0}}, Parser: p})
	d.Add(&record.Result{URL: "new", Fields: map[string]any{"a": "w"}, Parser: p})
	d.Add(nil)
	rep := d.Report()
	if rep.Compared != 2 || rep.OnlyNew != 1 || rep.OnlyOld != 1 || rep.Changed() != 2 {
		t.Errorf("report %+v", rep)
	}
	var b bytes.Buffer
	if _, err := rep.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	for _, line := range []string{
		"diff: 2 records compared with old.jsonl (1 only in the replay, 1 only in old.jsonl); rules sha256:old -> sha256:new\n",
		"diff: field a: 1 of 2 changed\n  u2: \"y\" -> null\n",
		"diff: field b: 1 of 2 changed\n  u2: (absent) -> {\"k\":2}\n",
		"diff: field l: 0 of 2 changed\n", // u1's list is the same; u2 has none on either side
		"diff: field n: 0 of 2 changed\n",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("report lacks %q:\n%s", line, got)
		}
	}

	if _, err := NewDiff("bad.jsonl", strings.NewReader("{\"url\":\"a\"}\nnot json\n")); err == nil || !strings.Contains(err.Error(), "bad.jsonl line 2") {
		t.Errorf("bad file: %v", err)
	}
}
