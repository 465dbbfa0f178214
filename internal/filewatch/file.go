package filewatch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// File is a small file loaded into a T and reloaded when its content changes. Readers call
// [File.Current] from any goroutine; a reload swaps the value atomically, so a reader sees wholly
// the old or wholly the new one. Content that fails to load never replaces a working value: the
// old one stays in force and the error is handed to OnFail, once per distinct content when
// polling.
type File[T any] struct {
	path string
	cfg  FileConfig[T]

	cur atomic.Pointer[loaded[T]]

	mu      sync.Mutex // serializes reloads
	settle  Settle
	lastErr error
}

// FileConfig says how a [File] parses its content and whom it tells.
type FileConfig[T any] struct {
	// Name says what the file is ("policy", "playbook"), to begin its read errors.
	Name string
	// Parse turns the file's content into a value; its errors carry their positions.
	Parse func(src []byte) (T, error)
	// MaxSize bounds the file; TooLarge is the error for a larger one.
	MaxSize  int
	TooLarge func() error
	// OnLoad, if set, is called after changed content was loaded (old is the value replaced);
	// OnFail after a reload failed (cur is the value still in force). Both run on the
	// reloading goroutine.
	OnLoad func(old, cur T)
	OnFail func(err error, cur T)
}

type loaded[T any] struct {
	v    T
	hash Hash
}

// OpenFile loads path. Unlike a reload, a first load that fails is an error: there is no old
// value to keep.
func OpenFile[T any](path string, cfg FileConfig[T]) (*File[T], error) {
	f := &File[T]{path: path, cfg: cfg}
	src, err := f.read()
	if err != nil {
		return nil, err
	}
	v, err := cfg.Parse(src)
	if err != nil {
		return nil, err
	}
	f.cur.Store(&loaded[T]{v: v, hash: sha256.Sum256(src)})
	return f, nil
}

// Current returns the value in force.
func (f *File[T]) Current() T { return f.cur.Load().v }

// LastError is the error of the latest reload attempt, nil if it succeeded.
func (f *File[T]) LastError() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastErr
}

func (f *File[T]) read() ([]byte, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.cfg.Name, err)
	}
	defer fh.Close()
	src, err := io.ReadAll(io.LimitReader(fh, int64(f.cfg.MaxSize)+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read: %w", f.cfg.Name, f.path, err)
	}
	if len(src) > f.cfg.MaxSize {
		return nil, f.cfg.TooLarge()
	}
	return src, nil
}

// Reload reads and loads the file now; identical content is a no-op. On any error the value in
// force stays and the error is returned.
func (f *File[T]) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	src, err := f.read()
	if err != nil {
		return f.failed(err)
	}
	return f.load(src)
}

// load must be called with mu held.
func (f *File[T]) load(src []byte) error {
	old := f.cur.Load()
	h := sha256.Sum256(src)
	if h == old.hash {
		f.lastErr = nil
		return nil
	}
	v, err := f.cfg.Parse(src)
	if err != nil {
		return f.failed(err)
	}
	f.cur.Store(&loaded[T]{v: v, hash: h})
	f.lastErr = nil
	if f.cfg.OnLoad != nil {
		f.cfg.OnLoad(old.v, v)
	}
	return nil
}

func (f *File[T]) failed(err error) error {
	f.lastErr = err
	if f.cfg.OnFail != nil {
		f.cfg.OnFail(err, f.cur.Load().v)
	}
	return err
}

// Run polls the file every interval until ctx ends, and returns nil then. It reads and hashes
// the whole file on each poll rather than trusting mtime (coarse on some file systems, and
// preserved by some copy tools). Changed content is loaded only when two consecutive polls see
// it ([Settle]), so a file caught mid-write is not loaded; writers should still replace the file
// atomically (write a temporary file, rename it over). Errors are reported once per distinct
// content, not on every poll.
func (f *File[T]) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return errors.New("filewatch: Run needs a positive interval")
	}
	Poll(ctx, interval, f.poll)
	return nil
}

func (f *File[T]) poll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	src, err := f.read()
	if err != nil {
		if f.settle.Fail(sha256.Sum256([]byte(err.Error()))) {
			_ = f.failed(err)
		}
		return
	}
	h := sha256.Sum256(src)
	switch f.settle.Next(h, f.cur.Load().hash) {
	case Unchanged:
		f.lastErr = nil
	case Load:
		if f.load(src) != nil {
			f.settle.Fail(h)
		}
	}
}
