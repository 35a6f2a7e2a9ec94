package parse

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/sluicehq/sluice/record"
)

// DiffExamples is how many changed records a Diff keeps per field.
const DiffExamples = 3

// maxExampleBytes bounds one value shown in a Diff example.
const maxExampleBytes = 200

// Diff compares, field by field, the results of a re-parse with older
// results of the same pages (matched by URL): it answers "what would this
// rule change do to yesterday's pages?". The old results are held in
// memory (one canonical JSON string per field per URL). A Diff is safe for
// concurrent use.
type Diff struct {
	name string

	mu       sync.Mutex
	old      map[string]oldResult // by URL
	seen     map[string]bool
	fields   map[string]*FieldDiff
	compared int
	onlyNew  int
	versions map[string]bool // rules versions of the new results
}

type oldResult struct {
	fields  map[string]string // canonical JSON of each value
	version string
}

// FieldDiff is what changed in one field.
type FieldDiff struct {
	Field    string
	Changed  int
	Examples []DiffExample // at most DiffExamples: those with the smallest URLs
}

// DiffExample is one record whose field changed; Old or New is "(absent)"
// when the field is not in that record.
type DiffExample struct {
	URL, Old, New string
}

// DiffReport is the outcome of a Diff.
type DiffReport struct {
	Name        string // what the old results were called (their file)
	Compared    int    // records in both
	OnlyNew     int    // re-parsed records with no old result
	OnlyOld     int    // old results no re-parsed record matched
	OldVersions []string
	NewVersions []string
	Fields      []FieldDiff // every field of either side, by name
}

// NewDiff reads old results (JSON lines, as the sink writes them) from r;
// name is what the report calls them. Lines that are not results are
// errors; a URL seen twice keeps its last result.
func NewDiff(name string, r io.Reader) (*Diff, error) {
	d := &Diff{name: name, old: map[string]oldResult{}, seen: map[string]bool{}, fields: map[string]*FieldDiff{}, versions: map[string]bool{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var res record.Result
		if err := json.Unmarshal(sc.Bytes(), &res); err != nil || res.URL == "" {
			return nil, fmt.Errorf("%s line %d: not a result: %v", name, line, err)
		}
		o := oldResult{fields: make(map[string]string, len(res.Fields))}
		if res.Parser != nil {
			o.version = res.Parser.Version
		}
		for k, v := range res.Fields {
			o.fields[k] = canonicalJSON(v)
			d.field(k)
		}
		d.old[res.URL] = o
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return d, nil
}

func (d *Diff) field(name string) *FieldDiff {
	f := d.fields[name]
	if f == nil {
		f = &FieldDiff{Field: name}
		d.fields[name] = f
	}
	return f
}

// canonicalJSON renders a field value the same way whether it was decoded
// from an old file or produced by a parse (map keys sorted).
func canonicalJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("(unencodable: %v)", err)
	}
	return string(b)
}

// Add compares one re-parsed result with the old result of its URL.
func (d *Diff) Add(r *record.Result) {
	if r == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if r.Parser != nil {
		d.versions[r.Parser.Version] = true
	}
	o, ok := d.old[r.URL]
	if !ok {
		d.onlyNew++
		return
	}
	d.seen[r.URL] = true
	d.compared++
	names := map[string]bool{}
	for k := range o.fields {
		names[k] = true
	}
	for k := range r.Fields {
		names[k] = true
	}
	for k := range names {
		f := d.field(k)
		ov, okOld := o.fields[k]
		nv, okNew := "(absent)", false
		if v, in := r.Fields[k]; in {
			nv, okNew = canonicalJSON(v), true
		}
		if !okOld {
			ov = "(absent)"
		}
		if okOld && okNew && ov == nv {
			continue
		}
		f.Changed++
		// Keep the examples with the smallest URLs, so that a report does
		// not depend on the order the parse workers finish in.
		i := sort.Search(len(f.Examples), func(i int) bool { return f.Examples[i].URL > r.URL })
		if i < DiffExamples {
			f.Examples = slices.Insert(f.Examples, i, DiffExample{URL: r.URL, Old: shorten(ov), New: shorten(nv)})
			f.Examples = f.Examples[:min(len(f.Examples), DiffExamples)]
		}
	}
}

func shorten(s string) string {
	if len(s) <= maxExampleBytes {
		return s
	}
	cut := maxExampleBytes
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}

// Report returns what was found so far.
func (d *Diff) Report() DiffReport {
	d.mu.Lock()
	defer d.mu.Unlock()
	rep := DiffReport{Name: d.name, Compared: d.compared, OnlyNew: d.onlyNew, OnlyOld: len(d.old) - len(d.seen)}
	oldV := map[string]bool{}
	for _, o := range d.old {
		if o.version != "" {
			oldV[o.version] = true
		}
	}
	rep.OldVersions, rep.NewVersions = sortedSet(oldV), sortedSet(d.versions)
	for _, f := range d.fields {
		c := *f
		c.Examples = append([]DiffExample(nil), f.Examples...)
		rep.Fields = append(rep.Fields, c)
	}
	sort.Slice(rep.Fields, func(i, j int) bool { return rep.Fields[i].Field < rep.Fields[j].Field })
	return rep
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Changed is the number of (record, field) pairs that changed.
func (r DiffReport) Changed() int {
	n := 0
	for _, f := range r.Fields {
		n += f.Changed
	}
	return n
}

// WriteTo prints the report as text: one line per field with its count of
// changed records, then its examples.
func (r DiffReport) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "diff: %d records compared with %s (%d only in the replay, %d only in %s); rules %s -> %s\n",
		r.Compared, r.Name, r.OnlyNew, r.OnlyOld, r.Name, orNone(r.OldVersions), orNone(r.NewVersions))
	for _, f := range r.Fields {
		fmt.Fprintf(&b, "diff: field %s: %d of %d changed\n", f.Field, f.Changed, r.Compared)
		for _, e := range f.Examples {
			fmt.Fprintf(&b, "  %s: %s -> %s\n", e.URL, e.Old, e.New)
		}
	}
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

func orNone(v []string) string {
	if len(v) == 0 {
		return "(none)"
	}
	return strings.Join(v, ",")
}
