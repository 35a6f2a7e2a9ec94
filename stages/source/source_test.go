package source

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/record"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		url     string
		session string
		meta    string
		bad     bool
	}{
		{name: "bare", in: "https://shop.example/p/1", url: "https://shop.example/p/1"},
		{name: "bare with spaces around", in: "  http://a.example/x  ", url: "http://a.example/x"},
		{name: "fragment dropped", in: "http://a.example/x#top", url: "http://a.example/x"},
		{name: "json", in: `{"url":"https://a.example/","key":"k","session":"s1","meta":{"a":1}}`, url: "https://a.example/", session: "s1", meta: `{"a":1}`},
		{name: "json unknown field", in: `{"url":"https://a.example/","x":1}`, bad: true},
		{name: "json trailing", in: `{"url":"https://a.example/"} {}`, bad: true},
		{name: "json meta not object", in: `{"url":"https://a.example/","meta":[1]}`, bad: true},
		{name: "json broken", in: `{"url":`, bad: true},
		{name: "ftp", in: "ftp://a.example/f", bad: true},
		{name: "relative", in: "/just/a/path", bad: true},
		{name: "no host", in: "http:///path", bad: true},
		{name: "credentials", in: "http://user:secret@a.example/", bad: true},
		{name: "inner space", in: "http://a.example/a b", bad: true},
		{name: "not utf8", in: "http://a.example/\xff", bad: true},
		{name: "garbage", in: "%%%", bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg, u, err := Decode([]byte(tc.in), 0)
			if tc.bad {
				if err == nil {
					t.Fatalf("Decode(%q) accepted %v", tc.in, u)
				}
				if failure.ClassOf(err) != failure.BadInput {
					t.Fatalf("class %q, want bad_input", failure.ClassOf(err))
				}
				if strings.Contains(err.Error(), "secret") {
					t.Fatalf("error leaks credentials: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.String() != tc.url || msg.Session != tc.session || string(msg.Meta) != tc.meta {
				t.Fatalf("got url %q session %q meta %q", u, msg.Session, msg.Meta)
			}
		})
	}
}

func TestDecodeCap(t *testing.T) {
	long := "http://a.example/" + strings.Repeat("a", 100)
	if _, _, err := Decode([]byte(long), 50); failure.ClassOf(err) != failure.BadInput {
		t.Fatalf("oversized message: err %v", err)
	}
}

// collect runs a source into a slice.
func collect(t *testing.T, src *flow.Source[record.Task]) []record.Task {
	t.Helper()
	var mu sync.Mutex
	var got []record.Task
	sk := flow.NewSink("collect", 4, func(ctx context.Context, in flow.Inbox[record.Task]) error {
		for {
			v, ok := in.Recv(ctx)
			if !ok {
				return nil
			}
			mu.Lock()
			got = append(got, v)
			mu.Unlock()
		}
	})
	flow.Connect[record.Task](src, sk)
	if err := flow.Run(context.Background(), context.Background(), src, sk); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestLinesEveryLineBecomesATask(t *testing.T) {
	input := strings.Join([]string{
		"http://a.example/1",
		"",
		"   ",
		"not a url",
		`{"url":"http://a.example/2","meta":{"k":"v"}}`,
		"http://a.example/" + strings.Repeat("x", 200), // too long for the cap below
		"http://a.example/3\r",
		"http://a.example/4", // no final newline
	}, "\n")
	src, err := Lines(LinesConfig{Reader: strings.NewReader(input), MaxLineBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, src)
	want := []struct {
		line int64
		url  string
		bad  bool
	}{{1, "http://a.example/1", false}, {4, "", true}, {5, "http://a.example/2", false}, {6, "", true}, {7, "http://a.example/3", false}, {8, "http://a.example/4", false}}
	if len(got) != len(want) {
		t.Fatalf("got %d tasks, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Origin.Offset != w.line {
			t.Errorf("task %d: line %d, want %d", i, g.Origin.Offset, w.line)
		}
		if w.bad {
			if failure.ClassOf(g.Err) != failure.BadInput {
				t.Errorf("task %d: err %v, want bad_input", i, g.Err)
			}
			continue
		}
		if g.Err != nil || g.URL.String() != w.url {
			t.Errorf("task %d: url %v err %v, want %s", i, g.URL, g.Err, w.url)
		}
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestLinesReadErrorEndsTheSource(t *testing.T) {
	src, err := Lines(LinesConfig{Reader: errReader{}})
	if err != nil {
		t.Fatal(err)
	}
	sk := flow.NewSink("null", 1, func(ctx context.Context, in flow.Inbox[record.Task]) error {
		for {
			if _, ok := in.Recv(ctx); !ok {
				return nil
			}
		}
	})
	flow.Connect[record.Task](src, sk)
	err = flow.Run(context.Background(), context.Background(), src, sk)
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("err = %v, want the read error", err)
	}
}

func TestLinesMissingFile(t *testing.T) {
	if _, err := Lines(LinesConfig{Path: t.TempDir() + "/none.txt"}); err == nil {
		t.Fatal("want an error for a missing file")
	}
}
