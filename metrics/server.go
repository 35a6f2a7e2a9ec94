package metrics

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// ServerConfig configures Listen.
type ServerConfig struct {
	// Addr is the listen address, e.g. "127.0.0.1:9090"; a port of 0 picks
	// a free one (see Server.Addr). Required.
	Addr string
	// Gatherer is what /metrics serves. Required.
	Gatherer prometheus.Gatherer
	// Pprof mounts Go's profiling handlers under /debug/pprof/. Off by
	// default: profiles reveal a lot and cost CPU.
	Pprof bool
	// CheckTimeout bounds each readiness check. 0 means 2 s.
	CheckTimeout time.Duration
	// Logger receives serving errors. The zero value logs nothing.
	Logger zerolog.Logger
}

// Server is the operations listener: /metrics, /healthz, /readyz and,
// when enabled, /debug/pprof/. Create it with Listen, run it with Serve.
type Server struct {
	cfg ServerConfig
	ln  net.Listener
	srv *http.Server

	mu     sync.Mutex // guards checks
	checks map[string]func(context.Context) error
}

// Listen opens the listener at once (so a bad address fails early and Addr
// is known) but serves nothing until Serve.
func Listen(cfg ServerConfig) (*Server, error) {
	if cfg.Addr == "" || cfg.Gatherer == nil {
		return nil, errors.New("metrics server: an address and a gatherer are required")
	}
	if cfg.CheckTimeout == 0 {
		cfg.CheckTimeout = 2 * time.Second
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("metrics server: %w", err)
	}
	s := &Server{cfg: cfg, ln: ln, checks: map[string]func(context.Context) error{}}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.ready)
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "sluice: /metrics /healthz /readyz")
		if cfg.Pprof {
			fmt.Fprintln(w, "profiling: /debug/pprof/")
		}
	})
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          log.New(cfg.Logger, "metrics server: ", 0),
	}
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// SetCheck adds (or, with a nil check, removes) a named readiness check.
// /readyz answers 200 only while at least one check is set and all pass.
// Safe for concurrent use.
func (s *Server) SetCheck(name string, check func(context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if check == nil {
		delete(s.checks, name)
		return
	}
	s.checks[name] = check
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	names := make([]string, 0, len(s.checks))
	for n := range s.checks {
		names = append(names, n)
	}
	checks := make([]func(context.Context) error, len(names))
	sort.Strings(names)
	for i, n := range names {
		checks[i] = s.checks[n]
	}
	s.mu.Unlock()

	var b strings.Builder
	ok := len(names) > 0
	if !ok {
		b.WriteString("not ready: no pipeline running\n")
	}
	for i, n := range names {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.CheckTimeout)
		err := checks[i](ctx)
		cancel()
		if err != nil {
			ok = false
			fmt.Fprintf(&b, "%s: %v\n", n, err)
		} else {
			fmt.Fprintf(&b, "%s: ok\n", n)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = w.Write([]byte(b.String()))
}

// Serve serves until ctx ends, then shuts down, giving open requests up to
// five seconds. It returns nil after a shutdown caused by ctx.
func (s *Server) Serve(ctx context.Context) error {
	errCh := make(chan error, 1)
	go func() { errCh <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errCh:
		return fmt.Errorf("metrics server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		s.cfg.Logger.Warn().Err(err).Msg("metrics server shutdown")
		_ = s.srv.Close()
	}
	if err := <-errCh; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics server: %w", err)
	}
	return nil
}

// Close releases the listener of a server that was never served.
func (s *Server) Close() error {
	err := s.srv.Close()
	if cerr := s.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
		err = cerr
	}
	return err
}
