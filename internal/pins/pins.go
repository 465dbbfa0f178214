// Package pins keeps the tool-definition pins of MCP servers: for each server and tool, the SHA-256
// of the tool definition an operator approved (or the gateway trusted on first use), and the hash
// last seen when the server started announcing something else. The gateway blocks a tool whose
// definition changed until `mcpwatch tools approve` pins the new hash.
//
// The pin file is JSON:
//
//	{"servers": {"acme-data": {"db_query": {"sha256": "…", "approved_at": "…", "approved_by": "alice",
//	  "seen_sha256": "…", "seen_at": "…"}}}}
//
// It is replaced atomically (temporary file, then rename) under an advisory lock on FILE.lock, so
// the gateway recording what it sees and the CLI approving never lose each other's updates.
package pins

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// Mode is how the gateway treats tool definitions.
type Mode string

const (
	// Off: no pinning.
	Off Mode = "off"
	// Audit pins tools on first use and audits changed definitions, but blocks nothing.
	Audit Mode = "audit"
	// TOFU pins tools on first use (trust on first use) and blocks a tool whose definition
	// changed until it is approved.
	TOFU Mode = "tofu"
	// Strict pins nothing by itself: a tool without an approved pin is blocked, like a changed one.
	Strict Mode = "strict"
)

// ParseMode parses off, audit, tofu or strict.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Off, Audit, TOFU, Strict:
		return m, nil
	}
	return "", fmt.Errorf("tool pinning mode %q: want off, audit, tofu or strict", s)
}

// ApprovedByTOFU is [Pin.ApprovedBy] of a pin the gateway set on first use.
const ApprovedByTOFU = "tofu"

// MaxFileSize bounds a pin file.
const MaxFileSize = 16 << 20

// Pin is one tool's pin.
type Pin struct {
	// SHA256 is the approved definition hash ([Hash]); empty when none was approved yet (strict).
	SHA256     string    `json:"sha256,omitempty"`
	ApprovedAt time.Time `json:"approved_at,omitzero"`
	ApprovedBy string    `json:"approved_by,omitempty"`
	// SeenSHA256 is the hash the server announced last when it differs from SHA256: a change
	// awaiting approval. Empty when the server announces the approved definition.
	SeenSHA256 string    `json:"seen_sha256,omitempty"`
	SeenAt     time.Time `json:"seen_at,omitzero"`
}

// Pending reports whether the tool announces a definition that was not approved.
func (p Pin) Pending() bool { return p.SeenSHA256 != "" && p.SeenSHA256 != p.SHA256 }

// File is the content of a pin file.
type File struct {
	Servers map[string]map[string]*Pin `json:"servers"`
}

// Get returns the pin of server's tool, nil if none.
func (f *File) Get(server, tool string) *Pin {
	if f == nil {
		return nil
	}
	return f.Servers[server][tool]
}

// Put returns the pin of server's tool, creating it.
func (f *File) Put(server, tool string) *Pin {
	if f.Servers == nil {
		f.Servers = map[string]map[string]*Pin{}
	}
	tools := f.Servers[server]
	if tools == nil {
		tools = map[string]*Pin{}
		f.Servers[server] = tools
	}
	p := tools[tool]
	if p == nil {
		p = &Pin{}
		tools[tool] = p
	}
	return p
}

// Clone returns a deep copy.
func (f *File) Clone() *File {
	c := &File{Servers: make(map[string]map[string]*Pin, len(f.Servers))}
	for s, tools := range f.Servers {
		ct := make(map[string]*Pin, len(tools))
		for t, p := range tools {
			cp := *p
			ct[t] = &cp
		}
		c.Servers[s] = ct
	}
	return c
}

// ServerNames returns the server names, sorted.
func (f *File) ServerNames() []string {
	var names []string
	for s := range f.Servers {
		names = append(names, s)
	}
	slices.Sort(names)
	return names
}

// Hash is the pin hash of one tool definition: SHA-256, hex, over its canonical JSON — the whole
// tool object as the server listed it (name, title, description, inputSchema, outputSchema,
// annotations, _meta, anything else), with object keys sorted, no insignificant whitespace,
// strings re-encoded without HTML escaping and numbers kept as written. Reordering keys or
// reformatting does not change it; any change of content does.
func Hash(def []byte) (string, error) {
	d := json.NewDecoder(bytes.NewReader(def))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return "", fmt.Errorf("tool definition: %w", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return "", errors.New("tool definition: trailing data")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("tool definition: %w", err)
	}
	sum := sha256.Sum256(bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}))
	return hex.EncodeToString(sum[:]), nil
}

func validHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Parse parses a pin file, refusing unknown fields and malformed hashes: a pin file that does
// not say exactly what it means must not be half-understood.
func Parse(src []byte) (*File, error) {
	d := json.NewDecoder(bytes.NewReader(src))
	d.DisallowUnknownFields()
	var f File
	if err := d.Decode(&f); err != nil {
		return nil, fmt.Errorf("pin file: %w", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("pin file: trailing data after the JSON object")
	}
	for s, tools := range f.Servers {
		for t, p := range tools {
			if p == nil {
				return nil, fmt.Errorf("pin file: %s/%s: null pin", s, t)
			}
			if p.SHA256 != "" && !validHash(p.SHA256) {
				return nil, fmt.Errorf("pin file: %s/%s: sha256 %q is not 64 lowercase hex digits", s, t, p.SHA256)
			}
			if p.SeenSHA256 != "" && !validHash(p.SeenSHA256) {
				return nil, fmt.Errorf("pin file: %s/%s: seen_sha256 %q is not 64 lowercase hex digits", s, t, p.SeenSHA256)
			}
		}
	}
	if f.Servers == nil {
		f.Servers = map[string]map[string]*Pin{}
	}
	return &f, nil
}

// Read reads and parses the pin file at path. A missing file is an empty one when missingOK.
func Read(path string, missingOK bool) (*File, []byte, error) {
	fh, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) && missingOK {
		return &File{Servers: map[string]map[string]*Pin{}}, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("pin file: %w", err)
	}
	defer fh.Close()
	src, err := io.ReadAll(io.LimitReader(fh, MaxFileSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("pin file %s: %w", path, err)
	}
	if len(src) > MaxFileSize {
		return nil, nil, fmt.Errorf("pin file %s: larger than %d bytes", path, MaxFileSize)
	}
	f, err := Parse(src)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, src, nil
}

// Encode is the file's JSON, indented, keys sorted.
func (f *File) Encode() []byte {
	b, _ := json.MarshalIndent(f, "", "  ") // maps of plain structs: cannot fail
	return append(b, '\n')
}

// Write replaces the file at path with f atomically: a temporary file in the same directory,
// synced, then renamed over it.
func Write(path string, f *File) ([]byte, error) {
	src := f.Encode()
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("pin file: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(src); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("pin file: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("pin file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("pin file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("pin file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, fmt.Errorf("pin file: %w", err)
	}
	return src, nil
}

// Update reads the file at path (missing: empty), applies fn and writes the result, holding an
// exclusive advisory lock on path+".lock" throughout. Nothing is written when fn fails or reports
// no change. It returns the file as it now is and its bytes.
func Update(path string, fn func(*File) (changed bool, err error)) (*File, []byte, error) {
	lf, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("pin file lock: %w", err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		return nil, nil, fmt.Errorf("pin file lock: %w", err)
	}
	defer syscall.Flock(int(lf.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing releases it too
	f, src, err := Read(path, true)
	if err != nil {
		return nil, nil, err
	}
	changed, err := fn(f)
	if err != nil || !changed {
		return f, src, err
	}
	src, err = Write(path, f)
	return f, src, err
}

// ErrNothingToApprove: the tool has no pending definition and no hash was given.
var ErrNothingToApprove = errors.New("nothing to approve: the gateway has seen no new definition of this tool")

// Approve pins server's tool to sha (default: the definition the gateway last saw) in the file
// at path, recording who approved it and when. A running gateway picks it up on its next reload.
func Approve(path, server, tool, sha, by string, now time.Time) (Pin, error) {
	if sha != "" && !validHash(sha) {
		return Pin{}, fmt.Errorf("--sha256 %q: want 64 lowercase hex digits", sha)
	}
	var out Pin
	_, _, err := Update(path, func(f *File) (bool, error) {
		p := f.Get(server, tool)
		h := sha
		if h == "" {
			if p == nil || p.SeenSHA256 == "" {
				return false, fmt.Errorf("%s/%s: %w", server, tool, ErrNothingToApprove)
			}
			h = p.SeenSHA256
		}
		p = f.Put(server, tool)
		p.SHA256, p.ApprovedAt, p.ApprovedBy = h, now.UTC(), by
		if p.SeenSHA256 == h {
			p.SeenSHA256, p.SeenAt = "", time.Time{}
		}
		out = *p
		return true, nil
	})
	return out, err
}
