package policy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpwatch/mcpwatch/internal/filewatch"
)

// Store holds the current policy of one file and reloads it. Readers call [Store.Evaluate] or
// [Store.Policy] from any goroutine; a reload swaps the pointer atomically, so a request is
// decided wholly by the old or wholly by the new policy. A file that fails to load never
// replaces a working policy: the old one stays in force and the error is returned and logged.
type Store struct {
	path     string
	log      *slog.Logger
	onReload func(ReloadEvent)

	cur atomic.Pointer[Policy]

	mu      sync.Mutex       // serializes reloads
	settle  filewatch.Settle // Run: when changed content is settled, and what failed
	lastErr error
}

// ReloadEvent is passed to the hook of [WithReloadHook] after every reload attempt that read a
// changed file: for metrics (reloads_total{result}) and alerts.
type ReloadEvent struct {
	Path    string
	Err     error // nil: the new policy is in force
	Rules   int   // rules of the policy in force afterwards
	Changed bool  // a new policy replaced the old one
}

// StoreOption configures a [Store].
type StoreOption func(*Store)

// WithLogger logs reloads and reload errors to l (default: discard).
func WithLogger(l *slog.Logger) StoreOption { return func(s *Store) { s.log = l } }

// WithReloadHook calls f after each reload attempt of changed content, from the reloading goroutine.
func WithReloadHook(f func(ReloadEvent)) StoreOption { return func(s *Store) { s.onReload = f } }

// NewStore loads path; unlike a reload, a first load that fails is an error (there is no old
// policy to keep, and a gateway must not start without one).
func NewStore(path string, opts ...StoreOption) (*Store, error) {
	s := &Store{path: path, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(s)
	}
	src, err := s.read()
	if err != nil {
		return nil, err
	}
	p, err := parse(src, filepath.Base(path))
	if err != nil {
		return nil, err
	}
	s.cur.Store(p)
	return s, nil
}

// Policy returns the policy in force.
func (s *Store) Policy() *Policy { return s.cur.Load() }

// Evaluate decides req with the policy in force.
func (s *Store) Evaluate(req Request) Decision { return s.cur.Load().Evaluate(req) }

// LastError is the error of the latest reload attempt, nil if it succeeded.
func (s *Store) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

func (s *Store) read() ([]byte, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("policy %s: read: %w", s.path, err)
	}
	if len(src) > MaxFileSize {
		return nil, &Error{File: filepath.Base(s.path), Msg: fmt.Sprintf("larger than %d bytes", MaxFileSize)}
	}
	return src, nil
}

// Reload reads and loads the file now. Identical content is a no-op. On any error the policy in
// force stays and the error is returned (and logged).
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	src, err := s.read()
	if err != nil {
		return s.failed(err)
	}
	return s.load(src)
}

// load must be called with mu held.
func (s *Store) load(src []byte) error {
	old := s.cur.Load()
	if sha256.Sum256(src) == old.hash {
		s.lastErr = nil
		return nil
	}
	p, err := parse(src, filepath.Base(s.path))
	if err != nil {
		return s.failed(err)
	}
	s.cur.Store(p)
	s.lastErr = nil
	s.log.Info("policy reloaded", "path", s.path, "rules", p.Len(), "previous_rules", old.Len())
	if s.onReload != nil {
		s.onReload(ReloadEvent{Path: s.path, Rules: p.Len(), Changed: true})
	}
	return nil
}

func (s *Store) failed(err error) error {
	s.lastErr = err
	p := s.cur.Load()
	s.log.Error("policy reload failed; keeping the policy in force", "path", s.path, "rules", p.Len(), "err", err)
	if s.onReload != nil {
		s.onReload(ReloadEvent{Path: s.path, Err: err, Rules: p.Len()})
	}
	return err
}

// Run polls the file every interval until ctx ends, and returns nil then. It reads and hashes the
// whole file on each poll rather than trusting mtime (coarse on some file systems, and preserved
// by some copy tools); a policy file is small. A changed file is loaded only when two consecutive
// polls see the same content, so a file caught mid-write is not loaded — a truncated policy that
// still parses could drop deny rules. Writers should still replace the file atomically (write a
// temporary file, rename it over); Kubernetes ConfigMap volumes do. Reload errors are logged and
// reported to the hook once per distinct content, not on every poll.
func (s *Store) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return errors.New("policy: Run needs a positive interval")
	}
	filewatch.Poll(ctx, interval, s.poll)
	return nil
}

// poll is one step of Run.
func (s *Store) poll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	src, err := s.read()
	if err != nil {
		if s.settle.Fail(sha256.Sum256([]byte(err.Error()))) {
			_ = s.failed(err)
		}
		return
	}
	h := sha256.Sum256(src)
	switch s.settle.Next(h, s.cur.Load().hash) {
	case filewatch.Unchanged:
		s.lastErr = nil
	case filewatch.Load:
		if s.load(src) != nil {
			s.settle.Fail(h)
		}
	}
}
