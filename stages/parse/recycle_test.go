package parse

import (
	"bytes"
	"encoding/json"
	"net/url"
	"testing"

	"github.com/sluicehq/sluice/record"
)

// TestProcessRecyclesTheBody: without KeepPages, Process hands the body's
// buffer back exactly once, after extraction, on every path (a good
// page, an error page, a page that fails to parse); the result holds
// copies only, so scribbling over the buffer once it is recycled changes
// nothing in it. With KeepPages the Page holds the body: it is never
// recycled, and the Page still reads the page's bytes.
func TestProcessRecyclesTheBody(t *testing.T) {
	page := []byte(productPage(20))
	u, _ := url.Parse("https://shop.example.com/p/blue-widget-3000")
	cases := []struct {
		name   string
		status int
		err    error
	}{
		{name: "page", status: 200},
		{name: "fetch error", status: 503, err: errFetch},
	}
	for _, keep := range []bool{false, true} {
		s, err := NewStage(Config{KeepPages: keep})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range cases {
			body := bytes.Clone(page)
			calls := 0
			f := record.Fetched{
				Task:   record.Task{Msg: record.Message{URL: u.String()}, URL: u},
				Status: tc.status, FinalURL: u.String(), Body: body, Err: tc.err,
				Recycle: func() {
					calls++
					for i := range body {
						body[i] = 'X' // what the next body read into this buffer would do
					}
				},
			}
			out := s.Process(f)
			want := 1
			if keep {
				want = 0
			}
			if calls != want {
				t.Errorf("keep %v, %s: Recycle called %d times, want %d", keep, tc.name, calls, want)
			}
			if tc.err != nil {
				continue
			}
			got, err := json.Marshal(out.Result)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(got, []byte("XXXX")) || out.Result.Fields["name"] != "Blue Widget 3000" {
				t.Errorf("keep %v: the result reads the recycled buffer: %.300s", keep, got)
			}
			if keep && (out.Page == nil || !bytes.Equal(out.Page.Body, page)) {
				t.Errorf("keep: the Page does not hold the page's bytes")
			}
		}
	}
}

var errFetch = failureForTest{}

type failureForTest struct{}

func (failureForTest) Error() string { return "target answered 503" }
