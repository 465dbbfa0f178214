package sigma

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"sync"

	"github.com/mcpwatch/mcpwatch/internal/filewatch"
	sigmarules "github.com/mcpwatch/mcpwatch/rules/sigma"
)

// load reads the rules and compiles them; any error (an unreadable file, a broken or refused
// rule, a correlation beyond the limits) is returned, joined and sorted.
func (d *Detector) load() (*loaded, error) {
	files, errs := d.read()
	return d.compile(files, errs)
}

// read reads the shipped rules (when cfg.Shipped) and the files of cfg.Rules.
func (d *Detector) read() ([]ruleFile, []error) {
	files, errs := readPaths(d.cfg.Rules)
	if d.cfg.Shipped {
		files = append(shipped(), files...)
	}
	return files, errs
}

// shipped are the rule files of package rules/sigma, named "shipped/<file>" in errors.
var shipped = sync.OnceValue(func() []ruleFile {
	names, err := fs.Glob(sigmarules.FS, "*.yml")
	if err != nil {
		panic(err) // a constant pattern
	}
	files := make([]ruleFile, 0, len(names))
	for _, n := range names {
		data, err := sigmarules.FS.ReadFile(n)
		if err != nil {
			panic(err) // embedded at build time
		}
		files = append(files, ruleFile{"shipped/" + n, data})
	}
	return files
})

func (d *Detector) compile(files []ruleFile, errs []error) (*loaded, error) {
	b := newBuilder()
	b.errs = errs
	for _, f := range files {
		b.add(f.name, f.data)
	}
	rs := b.set()
	b.errs = append(b.errs, rs.CheckLimits(d.cfg.Limits())...)
	if err := joinSorted(b.errs); err != nil {
		return nil, err
	}
	return &loaded{rs: rs, hash: hashFiles(files)}, nil
}

// joinSorted joins errs sorted by file and position ([Errors]), or returns nil.
func joinSorted(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return errors.Join(Errors(errs)...)
}

// hashFiles hashes the names and contents of the rule files, in order.
func hashFiles(files []ruleFile) [32]byte {
	h := sha256.New()
	var n [8]byte
	for _, f := range files {
		binary.BigEndian.PutUint64(n[:], uint64(len(f.name)))
		h.Write(n[:])
		h.Write([]byte(f.name))
		binary.BigEndian.PutUint64(n[:], uint64(len(f.data)))
		h.Write(n[:])
		h.Write(f.data)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// hashRead hashes what reading the rule files yielded, errors included.
func hashRead(files []ruleFile, errs []error) [32]byte {
	h := hashFiles(files)
	if len(errs) == 0 {
		return h
	}
	s := sha256.New()
	s.Write(h[:])
	for _, e := range errs {
		s.Write([]byte(e.Error()))
	}
	var out [32]byte
	s.Sum(out[:0])
	return out
}

// Reload reads the rule files now and, when they changed and load without error, puts the new
// set in force; the next event is judged by it. Identical content is a no-op. On any error the
// set in force stays, and the error (each rule's "file:line:column: reason") is logged,
// counted as a failed reload and returned.
func (d *Detector) Reload() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	files, errs := d.read()
	if len(errs) == 0 && hashFiles(files) == d.next.Load().hash {
		d.lastErr = nil
		return nil
	}
	return d.reload(files, errs)
}

// reload must be called with mu held.
func (d *Detector) reload(files []ruleFile, errs []error) error {
	old := d.next.Load()
	l, err := d.compile(files, errs)
	if err != nil {
		d.lastErr = err
		d.reloads[1]++
		d.m.reloads.WithLabelValues("failed").Inc()
		d.log.Error("sigma rules not reloaded; keeping the rules in force", "paths", d.cfg.Rules,
			"rules", old.rs.Len(), "correlations", len(old.rs.corrs), "err", err)
		return err
	}
	d.install(l)
	d.lastErr = nil
	d.reloads[0]++
	d.m.reloads.WithLabelValues("ok").Inc()
	d.log.Info("sigma rules reloaded", "paths", d.cfg.Rules, "rules", l.rs.Len(), "correlations", len(l.rs.corrs),
		"previous_rules", old.rs.Len(), "previous_correlations", len(old.rs.corrs))
	return nil
}

// LastError is the error of the latest reload attempt, nil if it succeeded.
func (d *Detector) LastError() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastErr
}

// Reloads counts reload attempts of changed files: ok put a new set in force, failed kept the
// old one.
func (d *Detector) Reloads() (ok, failed uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reloads[0], d.reloads[1]
}

// Run polls the rule files every cfg.ReloadEvery until ctx ends, and returns nil then. Like the
// policy store it reads and hashes the files rather than trusting modification times, and loads
// changed content only once two consecutive polls see it unchanged, so a file caught mid-write
// is not loaded. A failing content is logged and counted once, not on every poll. Without rule
// paths there is nothing to watch and Run only waits.
func (d *Detector) Run(ctx context.Context) error {
	if len(d.cfg.Rules) == 0 {
		<-ctx.Done()
		return nil
	}
	filewatch.Poll(ctx, d.cfg.ReloadEvery, d.poll)
	return nil
}

// poll is one step of Run.
func (d *Detector) poll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	files, errs := d.read()
	h := hashRead(files, errs) // with errors, never the hash of the set in force
	switch d.settle.Next(h, d.next.Load().hash) {
	case filewatch.Unchanged:
		d.lastErr = nil
	case filewatch.Load:
		if d.reload(files, errs) != nil {
			d.settle.Fail(h)
		}
	}
}

// String describes the set in force, for logs.
func (d *Detector) String() string {
	rs := d.RuleSet()
	return fmt.Sprintf("sigma: %d rules, %d correlations", rs.Len(), len(rs.corrs))
}
