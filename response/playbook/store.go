package playbook

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpwatch/mcpwatch/internal/filewatch"
)

// Store holds the playbook set of one file in force and reloads it when the file changes. Readers
// call [Store.Set] from any goroutine; a reload swaps the set atomically, so one finding is
// decided wholly by the old or wholly by the new set. A file that fails to load never replaces a
// working set: the old one stays in force, and the error (file:line:column) is logged and passed
// to the hook once per distinct content.
type Store struct {
	path     string
	log      *slog.Logger
	onReload func(err error, playbooks int)

	cur atomic.Pointer[Set]

	mu      sync.Mutex // serializes reloads
	settle  filewatch.Settle
	lastErr error
}

// NewStore loads path. Unlike a reload, a first load that fails is an error: a responder must not
// start without its playbooks. onReload, if not nil, is called after every reload attempt of
// changed content (err nil: the new set is in force), from the reloading goroutine.
func NewStore(path string, log *slog.Logger, onReload func(err error, playbooks int)) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{path: path, log: log, onReload: onReload}
	src, err := s.read()
	if err != nil {
		return nil, err
	}
	set, err := Load(path, src)
	if err != nil {
		return nil, err
	}
	s.cur.Store(set)
	return s, nil
}

// Set returns the playbook set in force.
func (s *Store) Set() *Set { return s.cur.Load() }

// LastError is the error of the latest reload attempt, nil if it succeeded.
func (s *Store) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

func (s *Store) read() ([]byte, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, fmt.Errorf("playbook: %w", err)
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("playbook %s: read: %w", s.path, err)
	}
	if len(src) > MaxFileSize {
		return nil, &Error{File: s.path, Msg: fmt.Sprintf("larger than %d bytes", MaxFileSize)}
	}
	return src, nil
}

// Reload reads and loads the file now; identical content is a no-op. On any error the set in
// force stays and the error is returned.
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
	set, err := Load(s.path, src)
	if err != nil {
		return s.failed(err)
	}
	s.cur.Store(set)
	s.lastErr = nil
	s.log.Info("playbooks reloaded", "path", s.path, "playbooks", len(set.Playbooks), "previous_playbooks", len(old.Playbooks))
	if s.onReload != nil {
		s.onReload(nil, len(set.Playbooks))
	}
	return nil
}

func (s *Store) failed(err error) error {
	s.lastErr = err
	n := len(s.cur.Load().Playbooks)
	s.log.Error("playbook reload failed; keeping the playbooks in force", "path", s.path, "playbooks", n, "err", err)
	if s.onReload != nil {
		s.onReload(err, n)
	}
	return err
}

// Run polls the file every interval until ctx ends. A changed file is loaded only once two
// consecutive polls read the same content, so a file caught mid-write is not loaded (a truncated
// file that still parses could drop a playbook).
func (s *Store) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return errors.New("playbook: Run needs a positive interval")
	}
	filewatch.Poll(ctx, interval, s.poll)
	return nil
}

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
