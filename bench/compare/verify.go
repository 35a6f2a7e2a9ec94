package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/testbed"
)

// verification is how a peer's records compare with what the site
// served: every URL 1..N once, status 200, no error, each field equal to
// testbed.ExpectedProduct.
type verification struct {
	N          int
	Records    int
	Correct    int
	Wrong      int
	Duplicates int
	Missing    int
	Examples   []string // the first few problems
}

// OK reports whether every URL has exactly one correct record.
func (v verification) OK() bool {
	return v.Correct == v.N && v.Records == v.N && v.Wrong == 0 && v.Duplicates == 0 && v.Missing == 0
}

func (v verification) String() string {
	if v.OK() {
		return fmt.Sprintf("%d/%d", v.Correct, v.N)
	}
	return fmt.Sprintf("%d/%d (%d wrong, %d missing, %d dup)", v.Correct, v.N, v.Wrong, v.Missing, v.Duplicates)
}

// verifier checks records against the site's catalog.
type verifier struct {
	prefix string // the site's product URL prefix, ".../product/"
	n      int
	seen   []bool
	v      verification
}

func newVerifier(siteURL string, n int) *verifier {
	return &verifier{prefix: siteURL + "/product/", n: n, seen: make([]bool, n+1), v: verification{N: n}}
}

func (vf *verifier) problem(format string, args ...any) {
	if len(vf.v.Examples) < 5 {
		vf.v.Examples = append(vf.v.Examples, fmt.Sprintf(format, args...))
	}
}

// add checks one record (a JSON line or Kafka value).
func (vf *verifier) add(line []byte) {
	vf.v.Records++
	var r outRecord
	if err := json.Unmarshal(line, &r); err != nil {
		vf.v.Wrong++
		vf.problem("record %d: %v", vf.v.Records, err)
		return
	}
	rest, ok := strings.CutPrefix(r.URL, vf.prefix)
	id, err := strconv.Atoi(rest)
	if !ok || err != nil || id < 1 || id > vf.n {
		vf.v.Wrong++
		vf.problem("unexpected URL %q", r.URL)
		return
	}
	if vf.seen[id] {
		vf.v.Duplicates++
		vf.problem("%s: more than one record", r.URL)
		return
	}
	vf.seen[id] = true
	if msg := checkRecord(r, testbed.ExpectedProduct(id)); msg != "" {
		vf.v.Wrong++
		vf.problem("%s: %s", r.URL, msg)
		return
	}
	vf.v.Correct++
}

func (vf *verifier) result() verification {
	v := vf.v
	v.Missing = 0
	for id := 1; id <= vf.n; id++ {
		if !vf.seen[id] {
			v.Missing++
		}
	}
	if v.Missing > 0 && len(v.Examples) < 5 {
		v.Examples = append(v.Examples, fmt.Sprintf("%d URLs have no record", v.Missing))
	}
	return v
}

func checkRecord(r outRecord, want testbed.Product) string {
	if r.Error != nil {
		return fmt.Sprintf("error %s: %s", r.Error.Class, r.Error.Message)
	}
	if r.Status != 200 {
		return fmt.Sprintf("status %d", r.Status)
	}
	for _, f := range []struct{ name, want string }{{"name", want.Name}, {"price", want.Price}, {"sku", want.SKU}} {
		got := r.Fields[f.name]
		if got == nil {
			return fmt.Sprintf("field %s missing, want %q", f.name, f.want)
		}
		if *got != f.want {
			return fmt.Sprintf("field %s = %q, want %q", f.name, *got, f.want)
		}
	}
	return ""
}

// verifyFile checks a JSONL results file.
func verifyFile(path, siteURL string, n int) (verification, error) {
	f, err := os.Open(path)
	if err != nil {
		return verification{N: n, Missing: n}, err
	}
	defer f.Close()
	return verifyReader(f, siteURL, n)
}

func verifyReader(r io.Reader, siteURL string, n int) (verification, error) {
	vf := newVerifier(siteURL, n)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			vf.add(line)
		}
	}
	return vf.result(), sc.Err()
}

// countLines counts the newlines in a file; 0 when it cannot be read.
func countLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte{'\n'})
}
