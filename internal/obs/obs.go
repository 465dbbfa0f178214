// Package obs is the operability baseline shared by every stage: Prometheus metrics, health and
// readiness endpoints, and the structured logger.
package obs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewLogger returns a JSON or text slog logger at the given level ("debug", "info", "warn", "error").
func NewLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want json or text", format)
}

// NewRegistry returns a registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Health tracks readiness checks by name. Liveness is the process answering at all; readiness
// needs every registered check to pass.
type Health struct {
	mu     sync.Mutex
	checks map[string]error
}

// NewHealth returns a Health with no checks: ready until a check is registered as failing.
func NewHealth() *Health { return &Health{checks: map[string]error{}} }

// Set records the state of one readiness check; nil means ready.
func (h *Health) Set(name string, err error) {
	h.mu.Lock()
	h.checks[name] = err
	h.mu.Unlock()
}

// NotReady registers a check that is not ready yet.
func (h *Health) NotReady(name string) { h.Set(name, errors.New("starting")) }

// Ready returns nil when all checks pass, or the first failing one.
func (h *Health) Ready() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, err := range h.checks {
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// Handler serves /metrics, /healthz and /readyz.
func Handler(reg *prometheus.Registry, h *Health) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := h.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}

// Serve runs the operability endpoints on addr until ctx ends. An empty addr disables them.
// It returns the bound address (useful with ":0").
func Serve(ctx context.Context, addr string, reg *prometheus.Registry, h *Health, log *slog.Logger) (string, error) {
	if addr == "" {
		return "", nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("metrics listener: %w", err)
	}
	srv := &http.Server{Handler: Handler(reg, h), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	return ln.Addr().String(), nil
}

// Register registers c with reg and returns it, or returns the collector already registered
// under the same description, so that two instances of one component in a process (the
// responder's enforcing and notifying stages) share their metrics instead of panicking. A nil
// reg registers nothing.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(fmt.Sprintf("register metrics: %v", err))
	}
	return c
}
