package warc

import (
	"regexp"
	"sync"
	"testing"

	gowarc "github.com/nlnwa/gowarc/v2"
	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRecordID: ids are version 4 UUID URNs, distinct.
func TestRecordID(t *testing.T) {
	re := regexp.MustCompile(`^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		id, err := RecordID()
		if err != nil || !re.MatchString(id) || seen[id] {
			t.Fatalf("id %q (%v), seen before: %v", id, err, seen[id])
		}
		seen[id] = true
	}
}

// TestConcurrentBuilders: records built on several goroutines at once
// (run with -race) get the ids RecordID makes.
func TestConcurrentBuilders(t *testing.T) {
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				b := NewRecordBuilder(gowarc.Metadata)
				b.AddWarcHeader(gowarc.ContentType, "application/json")
				b.AddWarcHeaderInt(Schema, 1)
				b.WriteString(`{}`)
				r, _, err := b.Build()
				if err != nil {
					t.Error(err)
					return
				}
				if id := r.WarcHeader().GetId(gowarc.WarcRecordID); len(id) != len("urn:uuid:")+36 {
					t.Errorf("record id %q", id)
				}
				r.Close()
				rd, err := NewReader(nil)
				if err != nil {
					t.Error(err)
					return
				}
				rd.Close()
			}
		})
	}
	wg.Wait()
}
