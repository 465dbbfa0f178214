package policy

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/mcpwatch/mcpwatch/internal/filewatch"
)

// Store holds the current policy of one file and reloads it. Readers call [Store.Evaluate] or
// [Store.Policy] from any goroutine; a reload swaps the pointer atomically, so a request is
// decided wholly by the old or wholly by the new policy. A file that fails to load never
// replaces a working policy: the old one stays in force and the error is returned and logged.
type Store struct {
	file *filewatch.File[*Policy]
}

// ReloadEvent is passed to the hook of [WithReloadHook] after every reload attempt that read a
// changed file: for metrics (reloads_total{result}) and alerts.
type ReloadEvent struct {
	Path    string
	Err     error // nil: the new policy is in force
	Rules   int   // rules of the policy in force afterwards
	Changed bool  // a new policy replaced the old one
}

type storeOptions struct {
	log      *slog.Logger
	onReload func(ReloadEvent)
}

// StoreOption configures a [Store].
type StoreOption func(*storeOptions)

// WithLogger logs reloads and reload errors to l (default: discard).
func WithLogger(l *slog.Logger) StoreOption { return func(o *storeOptions) { o.log = l } }

// WithReloadHook calls f after each reload attempt of changed content, from the reloading goroutine.
func WithReloadHook(f func(ReloadEvent)) StoreOption {
	return func(o *storeOptions) { o.onReload = f }
}

// NewStore loads path; unlike a reload, a first load that fails is an error (there is no old
// policy to keep, and a gateway must not start without one).
func NewStore(path string, opts ...StoreOption) (*Store, error) {
	o := storeOptions{log: slog.New(slog.DiscardHandler), onReload: func(ReloadEvent) {}}
	for _, opt := range opts {
		opt(&o)
	}
	f, err := filewatch.OpenFile(path, filewatch.FileConfig[*Policy]{
		Name:    "policy",
		Parse:   func(src []byte) (*Policy, error) { return parse(src, filepath.Base(path)) },
		MaxSize: MaxFileSize,
		TooLarge: func() error {
			return &Error{File: filepath.Base(path), Msg: fmt.Sprintf("larger than %d bytes", MaxFileSize)}
		},
		OnLoad: func(old, cur *Policy) {
			o.log.Info("policy reloaded", "path", path, "rules", cur.Len(), "previous_rules", old.Len())
			o.onReload(ReloadEvent{Path: path, Rules: cur.Len(), Changed: true})
		},
		OnFail: func(err error, cur *Policy) {
			o.log.Error("policy reload failed; keeping the policy in force", "path", path, "rules", cur.Len(), "err", err)
			o.onReload(ReloadEvent{Path: path, Err: err, Rules: cur.Len()})
		},
	})
	if err != nil {
		return nil, err
	}
	return &Store{file: f}, nil
}

// Policy returns the policy in force.
func (s *Store) Policy() *Policy { return s.file.Current() }

// Evaluate decides req with the policy in force.
func (s *Store) Evaluate(req Request) Decision { return s.file.Current().Evaluate(req) }

// LastError is the error of the latest reload attempt, nil if it succeeded.
func (s *Store) LastError() error { return s.file.LastError() }

// Reload reads and loads the file now. Identical content is a no-op. On any error the policy in
// force stays and the error is returned (and logged).
func (s *Store) Reload() error { return s.file.Reload() }

// Run polls the file every interval until ctx ends, and returns nil then (see
// [filewatch.File.Run]: a changed file is loaded only when two consecutive polls see the same
// content, so a truncated policy that still parses — one missing its deny rules — is not loaded
// mid-write). Reload errors are logged and reported to the hook once per distinct content.
func (s *Store) Run(ctx context.Context, interval time.Duration) error {
	return s.file.Run(ctx, interval)
}
