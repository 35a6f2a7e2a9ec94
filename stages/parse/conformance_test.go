package parse

import (
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/failure"
	"github.com/sluicehq/sluice/flow"
	"github.com/sluicehq/sluice/flow/flowtest"
	"github.com/sluicehq/sluice/record"
)

// conformanceInput is page i of a shop; every tenth input is one the
// source could not understand, which comes out as a dead letter.
func conformanceInput(i int) record.Fetched {
	raw := fmt.Sprintf("http://shop.test/product/%d", i)
	t := record.Task{Msg: record.Message{URL: raw}, Origin: record.Origin{Offset: int64(i), Raw: []byte(raw)}}
	if i%10 == 9 {
		t.Dead = true
		t.Err = failure.Errorf(failure.BadInput, "not a URL message")
		return record.Fetched{Task: t, Err: t.Err}
	}
	t.URL, _ = url.Parse(raw)
	body := fmt.Sprintf(`<html><head><title>Product %d</title></head><body><h1>Product %d</h1><a href="/product/%d">next</a></body></html>`, i, i, i+1)
	return record.Fetched{Task: t, FinalURL: raw, Status: 200, Header: http.Header{"Content-Type": {"text/html"}},
		Body: []byte(body), Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Attempts: 1}
}

func conformanceIndex(o record.Output) int {
	if o.Dead != nil {
		return int(o.Dead.Offset)
	}
	if o.Result == nil {
		return -1
	}
	i, err := strconv.Atoi(strings.TrimPrefix(o.Result.URL, "http://shop.test/product/"))
	if err != nil {
		return -1
	}
	return i
}

func TestStageConforms(t *testing.T) {
	build := func(t *testing.T, cfg Config) flowtest.Built[flow.Processor[record.Fetched, record.Output]] {
		s, err := NewStage(cfg)
		if err != nil {
			t.Fatal(err)
		}
		// The Map's feeder and forwarder hold one each, every worker one.
		return flowtest.Built[flow.Processor[record.Fetched, record.Output]]{Component: s.Flow(), Holds: s.Workers() + 2}
	}
	flowtest.CheckStage(t, flowtest.Stage[record.Fetched, record.Output]{
		New: func(t *testing.T) flowtest.Built[flow.Processor[record.Fetched, record.Output]] {
			return build(t, Config{Workers: 2, QueueSize: 4})
		},
		// A broken clock panics outside extraction (extraction's own panics
		// become error results): the Map's guard turns it into an error.
		Panicking: func(t *testing.T) flowtest.Built[flow.Processor[record.Fetched, record.Output]] {
			return build(t, Config{Workers: 2, QueueSize: 4, Now: func() time.Time { panic("clock broke") }})
		},
		Input: conformanceInput,
		Index: conformanceIndex,
		Err: func(o record.Output) error {
			if o.Result != nil && o.Result.Error != nil {
				return fmt.Errorf("%s: %s", o.Result.Error.Class, o.Result.Error.Message)
			}
			return nil
		},
	})
}

// TestStageSizedToGOMAXPROCS: the zero Config parses on GOMAXPROCS workers
// with a queue of twice that.
func TestStageSizedToGOMAXPROCS(t *testing.T) {
	s, err := NewStage(Config{})
	if err != nil {
		t.Fatal(err)
	}
	n := runtime.GOMAXPROCS(0)
	if s.Workers() != n || s.Flow().Workers() != n || s.Flow().Stats().Capacity != 2*n {
		t.Fatalf("workers %d (map %d), queue %d; want %d workers and a queue of %d",
			s.Workers(), s.Flow().Workers(), s.Flow().Stats().Capacity, n, 2*n)
	}
}
