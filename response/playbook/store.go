package playbook

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/mcpwatch/mcpwatch/internal/filewatch"
)

// Store holds the playbook set of one file in force and reloads it when the file changes. Readers
// call [Store.Set] from any goroutine; a reload swaps the set atomically, so one finding is
// decided wholly by the old or wholly by the new set. A file that fails to load never replaces a
// working set: the old one stays in force, and the error (file:line:column) is logged and passed
// to the hook once per distinct content.
type Store struct {
	file *filewatch.File[*Set]
}

// NewStore loads path. Unlike a reload, a first load that fails is an error: a responder must not
// start without its playbooks. onReload, if not nil, is called after every reload attempt of
// changed content (err nil: the new set is in force), from the reloading goroutine.
func NewStore(path string, log *slog.Logger, onReload func(err error, playbooks int)) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if onReload == nil {
		onReload = func(error, int) {}
	}
	f, err := filewatch.OpenFile(path, filewatch.FileConfig[*Set]{
		Name:     "playbook",
		Parse:    func(src []byte) (*Set, error) { return Load(path, src) },
		MaxSize:  MaxFileSize,
		TooLarge: func() error { return &Error{File: path, Msg: fmt.Sprintf("larger than %d bytes", MaxFileSize)} },
		OnLoad: func(old, cur *Set) {
			log.Info("playbooks reloaded", "path", path, "playbooks", len(cur.Playbooks), "previous_playbooks", len(old.Playbooks))
			onReload(nil, len(cur.Playbooks))
		},
		OnFail: func(err error, cur *Set) {
			log.Error("playbook reload failed; keeping the playbooks in force", "path", path, "playbooks", len(cur.Playbooks), "err", err)
			onReload(err, len(cur.Playbooks))
		},
	})
	if err != nil {
		return nil, err
	}
	return &Store{file: f}, nil
}

// Set returns the playbook set in force.
func (s *Store) Set() *Set { return s.file.Current() }

// LastError is the error of the latest reload attempt, nil if it succeeded.
func (s *Store) LastError() error { return s.file.LastError() }

// Reload reads and loads the file now; identical content is a no-op. On any error the set in
// force stays and the error is returned.
func (s *Store) Reload() error { return s.file.Reload() }

// Run polls the file every interval until ctx ends (see [filewatch.File.Run]: a changed file is
// loaded only once two consecutive polls read the same content, so a truncated file that still
// parses — one missing a playbook — is not loaded mid-write).
func (s *Store) Run(ctx context.Context, interval time.Duration) error {
	return s.file.Run(ctx, interval)
}
