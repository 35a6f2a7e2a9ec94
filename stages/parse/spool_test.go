package parse

import (
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/record"
)

func TestProcessReadsASpooledBody(t *testing.T) {
	page := `<html><body><h1>Big Widget</h1><span class="price">$1.00</span></body></html>`
	path := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(path, []byte(page), 0o600); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("http://shop.test/p/1")
	s, err := NewStage(Config{})
	if err != nil {
		t.Fatal(err)
	}
	out := s.Process(record.Fetched{
		Task:   record.Task{Msg: record.Message{URL: u.String()}, URL: u},
		Status: 200, FinalURL: u.String(),
		Spool: &record.Spool{Path: path, Size: int64(len(page))},
	})
	if out.Result.Error != nil {
		t.Fatalf("error %+v", out.Result.Error)
	}
	if got := out.Result.Fields["name"]; got == nil || got != "Big Widget" {
		t.Errorf("name = %v, want the spooled page's h1", got)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("spool file still there after parsing: %v", err)
	}
	// A spool file that went missing is an internal error, not a silence.
	out = s.Process(record.Fetched{
		Task:   record.Task{Msg: record.Message{URL: u.String()}, URL: u},
		Status: 200, Spool: &record.Spool{Path: path, Size: 10},
	})
	if out.Result.Error == nil || out.Result.Error.Class != "internal" {
		t.Errorf("missing spool file: error %+v, want class internal", out.Result.Error)
	}
}
