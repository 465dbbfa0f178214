package pins

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Store is a gateway's view of a pin file: loaded at start, reloaded by [Store.Run], updated by
// [Store.Observe] when the gateway sees tool definitions. Safe for concurrent use.
type Store struct {
	path string
	mode Mode
	log  *slog.Logger
	now  func() time.Time

	// wmu serializes the writers of cur (Observe, Reload), which do file I/O under it; mu guards
	// cur itself, so that the per-call Blocked never waits for the disk.
	wmu        sync.Mutex
	mu         sync.RWMutex
	cur        *File
	hash       [32]byte // of the file content cur came from
	failedHash [32]byte // of the last content (or error) a reload refused, to log it once
}

// Open loads the pin file at path for a gateway in mode. A missing file starts empty (it is
// created on the first pin); an unreadable or corrupt one is an error: the gateway must not start
// with pins it cannot read (fail closed). log may be nil.
func Open(path string, mode Mode, log *slog.Logger) (*Store, error) {
	if path == "" {
		return nil, errors.New("pin file: path is required")
	}
	if _, err := ParseMode(string(mode)); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	f, src, err := Read(path, true)
	if err != nil {
		return nil, err
	}
	return &Store{path: path, mode: mode, log: log, now: time.Now, cur: f, hash: sha256.Sum256(src)}, nil
}

// Mode is the store's pinning mode.
func (s *Store) Mode() Mode { return s.mode }

// Path is the pin file's path.
func (s *Store) Path() string { return s.path }

// Snapshot returns a copy of the pins in force.
func (s *Store) Snapshot() *File {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cur.Clone()
}

// Reasons a tool is blocked.
const (
	ReasonChanged    = "tool definition changed"
	ReasonNotApprove = "tool definition not approved"
)

// Blocked reports whether calls to server's tool are refused, with its pin (zero when none) and
// why. Audit and off modes block nothing; tofu blocks tools whose announced definition differs
// from the approved one; strict blocks those and every tool without an approved pin.
func (s *Store) Blocked(server, tool string) (Pin, string, bool) {
	if s == nil || s.mode == Off || s.mode == Audit {
		return Pin{}, "", false
	}
	s.mu.RLock()
	p := s.cur.Get(server, tool)
	s.mu.RUnlock()
	switch {
	case p != nil && p.SHA256 == "" && s.mode == Strict:
		return *p, ReasonNotApprove, true
	case p != nil && p.Pending():
		return *p, ReasonChanged, true
	case p == nil && s.mode == Strict:
		return Pin{}, ReasonNotApprove, true
	case p != nil:
		return *p, "", false
	}
	return Pin{}, "", false
}

// Change is a tool whose announced definition is not the approved one, newly seen.
type Change struct {
	Tool   string
	Pinned string // the approved hash; empty for a tool never approved (strict)
	Seen   string
	// Blocked: calls to the tool are refused until it is approved (tofu, strict).
	Blocked bool
}

// Observe records the definitions server announced in a tools/list result (tool name → [Hash])
// and returns the changes not recorded before, to audit: each distinct new definition is
// reported once, by whichever gateway sees it first. In audit and tofu modes a tool without a
// pin is pinned as announced. The file is updated under its lock, merged with what others wrote
// since the last reload; if it cannot be written the change still applies in memory (and is
// logged), so a changed tool is blocked all the same.
func (s *Store) Observe(server string, seen map[string]string) []Change {
	if s == nil || s.mode == Off || len(seen) == 0 {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	// The common case, a listing that matches the pins, touches no file.
	if !s.needsUpdate(s.cur, server, seen) {
		return nil
	}
	now := s.now().UTC()
	var changes []Change
	f, src, err := Update(s.path, func(f *File) (bool, error) {
		var dirty bool
		changes, dirty = s.apply(f, server, seen, now)
		return dirty, nil
	})
	if err != nil {
		s.log.Error("tool pins not written; applied in memory only", "path", s.path, "err", err)
		f = s.cur.Clone()
		changes, _ = s.apply(f, server, seen, now)
		s.mu.Lock()
		s.cur = f
		s.mu.Unlock()
		return changes
	}
	s.mu.Lock()
	s.cur, s.hash = f, sha256.Sum256(src)
	s.mu.Unlock()
	return changes
}

// needsUpdate reports whether [Store.apply] would change f.
func (s *Store) needsUpdate(f *File, server string, seen map[string]string) bool {
	for tool, h := range seen {
		p := f.Get(server, tool)
		switch {
		case p != nil && p.SHA256 == h:
			if p.SeenSHA256 != "" {
				return true
			}
		case p == nil || p.SHA256 == "" && s.mode != Strict:
			return true
		case p.SeenSHA256 != h:
			return true
		}
	}
	return false
}

// apply updates f with what server announced and reports whether f changed.
func (s *Store) apply(f *File, server string, seen map[string]string, now time.Time) (changes []Change, dirty bool) {
	for tool, h := range seen {
		p := f.Get(server, tool)
		switch {
		case p != nil && p.SHA256 == h:
			if p.SeenSHA256 != "" { // back to the approved definition
				p.SeenSHA256, p.SeenAt = "", time.Time{}
				dirty = true
			}
		case (p == nil || p.SHA256 == "") && s.mode != Strict:
			p = f.Put(server, tool)
			p.SHA256, p.ApprovedAt, p.ApprovedBy, p.SeenSHA256, p.SeenAt = h, now, ApprovedByTOFU, "", time.Time{}
			dirty = true
			s.log.Info("tool pinned on first use", "server", server, "tool", tool, "sha256", h)
		case p == nil || p.SeenSHA256 != h:
			p = f.Put(server, tool)
			changes = append(changes, Change{Tool: tool, Pinned: p.SHA256, Seen: h, Blocked: s.mode != Audit})
			p.SeenSHA256, p.SeenAt = h, now
			dirty = true
		}
	}
	return changes, dirty
}

// Reload reads the file now. Identical content is a no-op; a missing, unreadable or corrupt file
// keeps the pins in force and returns the error (deleting the file must not reset the pins).
func (s *Store) Reload() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	f, src, err := Read(s.path, false)
	if err != nil {
		h := sha256.Sum256([]byte(err.Error()))
		if h != s.failedHash {
			s.failedHash = h
			s.log.Error("tool pins reload failed; keeping the pins in force", "path", s.path, "err", err)
		}
		return err
	}
	h := sha256.Sum256(src)
	s.failedHash = [32]byte{}
	if h == s.hash {
		return nil
	}
	s.mu.Lock()
	s.cur, s.hash = f, h
	s.mu.Unlock()
	s.log.Info("tool pins reloaded", "path", s.path)
	return nil
}

// Run reloads the file every interval until ctx ends, and returns nil then. The file is read and
// hashed on each poll (it is small); writers replace it atomically ([Write]), so a poll never sees
// half a file.
func (s *Store) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return errors.New("pins: Run needs a positive interval")
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		_ = s.Reload()
	}
}
