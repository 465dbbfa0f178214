package enrich

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

// Enricher applies a catalog and a directory, each loaded from a file and reloaded when the file
// changes. [Enricher.Enrich] may be called from any goroutine; a reload swaps a pointer
// atomically, so an event is enriched wholly by the old or wholly by the new file. A file that
// fails to load never replaces working data: the old data stays in force and the error is
// returned, logged and reported to the hook.
type Enricher struct {
	log      *slog.Logger
	onReload func(ReloadEvent)

	mu      sync.Mutex // serializes reloads
	catalog *source[Catalog]
	dir     *source[Directory]
}

// ReloadEvent is passed to the hook of [WithReloadHook] after every reload attempt of changed
// content: for metrics and alerts.
type ReloadEvent struct {
	Path    string
	Kind    string // "catalog" or "directory"
	Err     error  // nil: the new content is in force
	Entries int    // rules or principals in force afterwards
}

// Option configures an [Enricher].
type Option func(*Enricher)

// WithLogger logs reloads and reload errors to l (default: discard).
func WithLogger(l *slog.Logger) Option { return func(e *Enricher) { e.log = l } }

// WithReloadHook calls f after each reload attempt of changed content, from the reloading
// goroutine.
func WithReloadHook(f func(ReloadEvent)) Option { return func(e *Enricher) { e.onReload = f } }

// Open loads the catalog and the directory; either path may be empty (that part is then not
// applied), not both. Unlike a reload, a first load that fails is an error: a stage must not
// start on a broken file.
func Open(catalogPath, directoryPath string, opts ...Option) (*Enricher, error) {
	if catalogPath == "" && directoryPath == "" {
		return nil, errors.New("enrich: neither a catalog nor a directory file given")
	}
	e := &Enricher{log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(e)
	}
	var err error
	if catalogPath != "" {
		if e.catalog, err = newSource(catalogPath, "catalog", MaxCatalogSize, ParseCatalog,
			func(c *Catalog) ([32]byte, int) { return c.hash, c.Len() }); err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
	}
	if directoryPath != "" {
		if e.dir, err = newSource(directoryPath, "directory", MaxDirectorySize, ParseDirectory,
			func(d *Directory) ([32]byte, int) { return d.hash, d.Len() }); err != nil {
			return nil, fmt.Errorf("directory: %w", err)
		}
	}
	return e, nil
}

// New returns an Enricher over fixed data, without files or reloads (for tests and embedding).
// Either may be nil.
func New(c *Catalog, d *Directory) *Enricher {
	e := &Enricher{log: slog.New(slog.DiscardHandler)}
	if c != nil {
		e.catalog = &source[Catalog]{}
		e.catalog.cur.Store(c)
	}
	if d != nil {
		e.dir = &source[Directory]{}
		e.dir.cur.Store(d)
	}
	return e
}

// Enrich labels e from the catalog and fills in its principal from the directory (see
// [Catalog.Apply] and [Directory.Apply]). It never fails: what the files do not know is left as
// it is or marked unknown. It modifies e in place. A nil Enricher does nothing.
func (e *Enricher) Enrich(ev *event.Event) {
	if e == nil {
		return
	}
	if e.dir != nil {
		e.dir.cur.Load().Apply(ev)
	}
	if e.catalog != nil {
		e.catalog.cur.Load().Apply(ev)
	}
}

// Catalog returns the catalog in force, nil without one.
func (e *Enricher) Catalog() *Catalog {
	if e.catalog == nil {
		return nil
	}
	return e.catalog.cur.Load()
}

// Directory returns the directory in force, nil without one.
func (e *Enricher) Directory() *Directory {
	if e.dir == nil {
		return nil
	}
	return e.dir.cur.Load()
}

// Reload reads both files now, whatever their modification times say, and loads what changed.
// On an error the data in force stays; the errors of both files are returned joined.
func (e *Enricher) Reload() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	if e.catalog != nil {
		errs = append(errs, e.catalog.reload(e))
	}
	if e.dir != nil {
		errs = append(errs, e.dir.reload(e))
	}
	return errors.Join(errs...)
}

// fullReadEvery makes Run read the files every so many polls even when their size and
// modification time look unchanged (copies that preserve mtimes).
const fullReadEvery = 30

// Run checks the files every interval until ctx ends, and returns nil then. A poll reads a file
// only when its size or modification time changed (a directory export can be large), and loads
// changed content only once two consecutive reads agree, so a file caught mid-write is not
// loaded; writers should still replace files atomically (write a temporary file, rename it
// over), as Kubernetes ConfigMap volumes do. Errors are logged and reported to the hook once per
// distinct content, not on every poll.
func (e *Enricher) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return errors.New("enrich: Run needs a positive interval")
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		e.mu.Lock()
		if e.catalog != nil {
			e.catalog.poll(e, n%fullReadEvery == 0)
		}
		if e.dir != nil {
			e.dir.poll(e, n%fullReadEvery == 0)
		}
		e.mu.Unlock()
	}
}

// source is one watched file and the data loaded from it.
type source[T any] struct {
	path, kind string
	limit      int64
	parse      func([]byte, string) (*T, error)
	info       func(*T) ([32]byte, int) // content hash and entry count

	cur atomic.Pointer[T]

	// Poll state, under Enricher.mu.
	stamp      stamp    // of the file when its content was last settled (loaded, same or failed)
	pending    [32]byte // content seen once, not yet loaded
	failedHash [32]byte // content (or read error) already reported as failing
}

type stamp struct {
	size int64
	mod  time.Time
}

func newSource[T any](path, kind string, limit int64, parse func([]byte, string) (*T, error),
	info func(*T) ([32]byte, int)) (*source[T], error) {
	s := &source[T]{path: path, kind: kind, limit: limit, parse: parse, info: info}
	st, _ := s.stat()
	src, err := readFile(path, limit)
	if err != nil {
		return nil, err
	}
	v, err := parse(src, filepath.Base(path))
	if err != nil {
		return nil, err
	}
	s.cur.Store(v)
	s.stamp = st
	return s, nil
}

func (s *source[T]) stat() (stamp, error) {
	fi, err := os.Stat(s.path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{fi.Size(), fi.ModTime()}, nil
}

func (s *source[T]) entries() int {
	_, n := s.info(s.cur.Load())
	return n
}

// reload loads the file now; identical content is a no-op.
func (s *source[T]) reload(e *Enricher) error {
	if s.path == "" {
		return nil // fixed data (New)
	}
	st, _ := s.stat()
	src, err := readFile(s.path, s.limit)
	if err != nil {
		return s.failed(e, err)
	}
	s.stamp, s.pending = st, [32]byte{}
	if h, _ := s.info(s.cur.Load()); h == sha256.Sum256(src) {
		return nil
	}
	return s.load(e, src)
}

func (s *source[T]) load(e *Enricher, src []byte) error {
	v, err := s.parse(src, filepath.Base(s.path))
	if err != nil {
		return s.failed(e, err)
	}
	before := s.entries()
	s.cur.Store(v)
	after := s.entries()
	e.log.Info("enrichment file reloaded", "kind", s.kind, "path", s.path, "entries", after, "previous_entries", before)
	if e.onReload != nil {
		e.onReload(ReloadEvent{Path: s.path, Kind: s.kind, Entries: after})
	}
	return nil
}

func (s *source[T]) failed(e *Enricher, err error) error {
	err = fmt.Errorf("%s %s: %w", s.kind, s.path, err)
	n := s.entries()
	e.log.Error("enrichment file reload failed; keeping the data in force", "kind", s.kind, "path", s.path, "entries", n, "err", err)
	if e.onReload != nil {
		e.onReload(ReloadEvent{Path: s.path, Kind: s.kind, Err: err, Entries: n})
	}
	return err
}

// poll is one step of Run for this file.
func (s *source[T]) poll(e *Enricher, full bool) {
	if s.path == "" {
		return
	}
	st, err := s.stat()
	if err == nil && st == s.stamp && s.pending == ([32]byte{}) && !full {
		return
	}
	var src []byte
	if err == nil {
		src, err = readFile(s.path, s.limit)
	}
	if err != nil {
		if h := sha256.Sum256([]byte(err.Error())); h != s.failedHash {
			s.failedHash = h
			_ = s.failed(e, err)
		}
		s.stamp = stamp{} // read again once the file is back
		return
	}
	h := sha256.Sum256(src)
	cur, _ := s.info(s.cur.Load())
	switch {
	case h == cur:
		s.stamp, s.pending, s.failedHash = st, [32]byte{}, [32]byte{}
	case h != s.pending:
		s.pending = h // changed: wait one more poll for it to settle
	default:
		s.stamp, s.pending = st, [32]byte{}
		if h != s.failedHash && s.load(e, src) != nil {
			s.failedHash = h
		}
	}
}
