package sluice_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/record"
	"github.com/sluicehq/sluice/testbed"
)

func site(t *testing.T) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<html><head><meta property="og:title" content="OG %s"></head><body><h1>Item %s</h1><p class="price">$%d.00</p></body></html>`,
			r.URL.Path, r.URL.Path, len(r.URL.Path))
	}))
	t.Cleanup(s.Close)
	return s
}

func loopback() sluice.Options {
	o := sluice.DefaultOptions()
	o.Policy.AllowLoopback = true
	o.Observe.Progress = "off"
	return o
}

// Through real proxies, with a rules file, into JSON lines.
func TestRunRulesThroughProxies(t *testing.T) {
	s := site(t)
	farm, err := testbed.StartFarm(testbed.FarmConfig{N: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Close()
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte("- domain: '*'\n  fields:\n    name: h1\n    price: {css: .price, process: [price]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := loopback()
	opts.Rules = rules
	var out bytes.Buffer
	urls := []string{s.URL + "/a", s.URL + "/bb", s.URL + "/missing", "not a url"}
	sum, err := sluice.Run(context.Background(), sluice.Config{URLs: urls, Proxies: farm.URLs(), Out: &out, Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Read != 4 || sum.Written != 4 || sum.OK != 2 {
		t.Errorf("summary %+v", sum)
	}
	results := map[string]record.Result{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var r record.Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%v: %s", err, sc.Text())
		}
		results[strings.TrimPrefix(r.URL, s.URL)] = r
	}
	if len(results) != 4 {
		t.Fatalf("%d results: %v", len(results), results)
	}
	a := results["/a"]
	if a.Fields["name"] != "Item /a" || fmt.Sprint(a.Fields["price"]) != "map[amount:2 currency:USD]" || a.Proxy == "" {
		t.Errorf("result /a: %+v", a)
	}
	if a.Structured == nil || a.Structured.OpenGraph["og:title"] != "OG /a" {
		t.Errorf("structured: %+v", a.Structured)
	}
	if a.Parser == nil || a.Parser.Rules != "rules.yaml" || !strings.HasPrefix(a.Parser.Version, "sha256:") {
		t.Errorf("parser %+v", a.Parser)
	}
	if r := results["/missing"]; r.Error == nil || r.Status != 404 {
		t.Errorf("missing page: %+v", r)
	}
	if r := results["not a url"]; r.Error == nil {
		t.Errorf("bad input: %+v", r)
	}
	if farm.Proxy(0).Requests()+farm.Proxy(1).Requests() < 3 {
		t.Errorf("proxies served %d and %d requests", farm.Proxy(0).Requests(), farm.Proxy(1).Requests())
	}
}

// An extraction error is the record's error, of class parse.
func TestRunExtractError(t *testing.T) {
	s := site(t)
	var got atomic.Value
	sum, err := sluice.Run(context.Background(), sluice.Config{
		URLs:    []string{s.URL + "/x"},
		Direct:  true,
		Options: loopback(),
		Name:    "mine", Version: "v2",
		Extract:  func(p *sluice.Page) (map[string]any, error) { return nil, errors.New("no product here") },
		OnResult: func(r *sluice.Result) { got.Store(r) },
	})
	if err != nil || sum.Errors["parse"] != 1 {
		t.Fatalf("%+v %v", sum, err)
	}
	r := got.Load().(*sluice.Result)
	if r.Error == nil || r.Error.Class != "parse" || !strings.Contains(r.Error.Message, "no product here") || r.Parser.Rules != "mine" || r.Parser.Version != "v2" {
		t.Errorf("result %+v parser %+v error %+v", r, r.Parser, r.Error)
	}
}

func TestRunRefusesBadSettings(t *testing.T) {
	opts := loopback()
	opts.Fetch.Concurrency = 0
	if _, err := sluice.Run(context.Background(), sluice.Config{URLs: []string{"http://127.0.0.1:1/"}, Direct: true, Options: opts}); err == nil || !strings.Contains(err.Error(), "concurrency") {
		t.Errorf("err = %v", err)
	}
	if _, err := sluice.Run(context.Background(), sluice.Config{URLs: []string{"http://a/\nhttp://b/"}}); err == nil {
		t.Error("a URL with a line break was accepted")
	}
	if _, err := sluice.Run(context.Background(), sluice.Config{URLs: []string{"http://127.0.0.1:1/"}, Options: loopback()}); err == nil || !strings.Contains(err.Error(), "Direct") {
		t.Errorf("no proxies and no Direct: %v, want a refusal naming Direct", err)
	}
	if _, err := sluice.Run(context.Background(), sluice.Config{Proxies: []string{"::bad"}, Options: loopback()}); err == nil {
		t.Error("a bad proxy was accepted")
	}
}

// The loopback site is refused unless the options allow it: the URL
// policy is on by default.
func TestRunPolicyByDefault(t *testing.T) {
	s := site(t)
	opts := sluice.DefaultOptions()
	opts.Observe.Progress = "off"
	sum, err := sluice.Run(context.Background(), sluice.Config{URLs: []string{s.URL + "/a"}, Direct: true, Options: opts})
	if err != nil || sum.Errors["policy"] != 1 {
		t.Errorf("summary %+v, err %v: want the input refused by the policy, as a result", sum, err)
	}
}
