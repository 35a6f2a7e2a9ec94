package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// childFlag, as the first argument, runs this binary as one peer (floor
// or Colly) instead of the harness: the parent re-executes itself so that
// each peer's CPU time and peak RSS are measured on a process of its own.
const childFlag = "-child"

// Peer names.
const (
	peerFloor  = "floor"
	peerColly  = "colly"
	peerSluice = "sluice"
)

// childOpts is what a child peer is told on its command line.
type childOpts struct {
	URLs      []string
	Proxies   []string
	Out       string
	C         int
	KeepAlive bool // Colly only
}

// childArgs renders the command line of a child peer (after the binary).
func childArgs(peer, urls, proxies, out string, c int, keepAlive bool) []string {
	return []string{childFlag, peer, "-urls", urls, "-proxies", proxies, "-out", out,
		"-c", fmt.Sprint(c), fmt.Sprintf("-keepalive=%t", keepAlive)}
}

// childMain runs one peer: childMain([peer, flags...]). It returns the
// process exit code. Fetch failures are records with an error, not a
// failed exit; a failed exit means the peer could not run at all.
func childMain(args []string, stderr io.Writer) int {
	if len(args) < 1 {
		fmt.Fprintln(stderr, "child: want a peer name")
		return 2
	}
	peer := args[0]
	fs := flag.NewFlagSet("child "+peer, flag.ContinueOnError)
	fs.SetOutput(stderr)
	urls := fs.String("urls", "", "file of URLs, one per line")
	proxies := fs.String("proxies", "", "file of proxy URLs, one per line")
	out := fs.String("out", "", "results JSONL file")
	c := fs.Int("c", 1, "concurrency")
	keep := fs.Bool("keepalive", false, "Colly: keep-alives on")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	o := childOpts{Out: *out, C: *c, KeepAlive: *keep}
	var err error
	if o.URLs, err = readLines(*urls); err == nil {
		o.Proxies, err = readLines(*proxies)
	}
	if err == nil && (len(o.Proxies) == 0 || o.C < 1) {
		err = fmt.Errorf("want at least one proxy and -c >= 1")
	}
	if err == nil {
		switch peer {
		case peerFloor:
			err = runFloor(context.Background(), o)
		case peerColly:
			err = runColly(o)
		default:
			err = fmt.Errorf("unknown peer %q", peer)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "child %s: %v\n", peer, err)
		return 1
	}
	return 0
}

func readLines(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out, nil
}

// outRecord is the part of a result record that the harness checks. The
// floor and Colly write exactly this; sluice writes its full result
// record, of which these are a subset with the same JSON names.
type outRecord struct {
	URL    string             `json:"url"`
	Status int                `json:"status"`
	Fields map[string]*string `json:"fields"`
	Error  *outError          `json:"error"`
}

type outError struct {
	Class   string `json:"class"`
	Message string `json:"message"`
}

// recordWriter appends JSON lines to a file; safe for concurrent use.
type recordWriter struct {
	mu sync.Mutex // guards w and err
	f  *os.File
	w  *bufio.Writer
	e  error
}

func newRecordWriter(path string) (*recordWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &recordWriter{f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

func (w *recordWriter) write(r outRecord) {
	line, err := json.Marshal(r)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.e != nil {
		return
	}
	if err != nil {
		w.e = err
		return
	}
	if _, err := w.w.Write(append(line, '\n')); err != nil {
		w.e = err
	}
}

// close flushes, syncs and closes the file.
func (w *recordWriter) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.e
	if ferr := w.w.Flush(); err == nil {
		err = ferr
	}
	if serr := w.f.Sync(); err == nil {
		err = serr
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}
