package pins

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var quiet = slog.New(slog.DiscardHandler)

func hashOf(t *testing.T, def string) string {
	t.Helper()
	h, err := Hash([]byte(def))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// The hash is over the definition's content, not its formatting: if key order or whitespace
// changed it, servers that re-serialize (TypeScript, Python) would trip pins on every restart.
func TestHashCanonical(t *testing.T) {
	a := hashOf(t, `{"name":"q","description":"a <b> & c","inputSchema":{"type":"object","properties":{"n":{"type":"number","maximum":1.50}}}}`)
	b := hashOf(t, "{ \"inputSchema\": {\"properties\":{\"n\":{\"maximum\":1.50,\"type\":\"number\"}},\"type\":\"object\"},\n \"description\":\"a \\u003cb> & c\", \"name\":\"q\"}")
	if a != b {
		t.Fatal("same definition, different hash")
	}
	if c := hashOf(t, `{"name":"q","description":"a <b> & c!","inputSchema":{"type":"object","properties":{"n":{"type":"number","maximum":1.50}}}}`); c == a {
		t.Fatal("changed description, same hash")
	}
	if _, err := Hash([]byte(`{"name":"q"} {}`)); err == nil {
		t.Fatal("trailing data hashed")
	}
}

func TestObserveModes(t *testing.T) {
	h1, h2 := hashOf(t, `{"name":"t","description":"1"}`), hashOf(t, `{"name":"t","description":"2"}`)
	for _, tc := range []struct {
		mode                  Mode
		blockedFirst, blocked bool // after the first listing; after the change
	}{
		{Audit, false, false},
		{TOFU, false, true},
		{Strict, true, true},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pins.json")
			s, err := Open(path, tc.mode, quiet)
			if err != nil {
				t.Fatal(err)
			}
			ch := s.Observe("srv", map[string]string{"t": h1})
			if _, _, b := s.Blocked("srv", "t"); b != tc.blockedFirst {
				t.Fatalf("after first listing: blocked=%v, changes %+v", b, ch)
			}
			if tc.mode == Strict {
				if len(ch) != 1 || ch[0].Pinned != "" || ch[0].Seen != h1 {
					t.Fatalf("strict first listing: %+v", ch)
				}
				if _, err := Approve(path, "srv", "t", "", "op", time.Now()); err != nil {
					t.Fatal(err)
				}
				if err := s.Reload(); err != nil {
					t.Fatal(err)
				}
			} else if len(ch) != 0 {
				t.Fatalf("first use reported as change: %+v", ch)
			}
			ch = s.Observe("srv", map[string]string{"t": h2})
			if len(ch) != 1 || ch[0].Pinned != h1 || ch[0].Seen != h2 || ch[0].Blocked != tc.blocked {
				t.Fatalf("change: %+v", ch)
			}
			if again := s.Observe("srv", map[string]string{"t": h2}); len(again) != 0 {
				t.Fatalf("same change reported twice: %+v", again)
			}
			if _, _, b := s.Blocked("srv", "t"); b != tc.blocked {
				t.Fatalf("after change: blocked=%v", b)
			}
			// Reverting to the approved definition clears the pending change.
			s.Observe("srv", map[string]string{"t": h1})
			if p, _, b := s.Blocked("srv", "t"); b || p.Pending() {
				t.Fatalf("after revert: blocked=%v pin %+v", b, p)
			}
		})
	}
}

// A gateway that restarts must still block what it blocked: the pending change lives in the file.
func TestPinsSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pins.json")
	s, err := Open(path, TOFU, quiet)
	if err != nil {
		t.Fatal(err)
	}
	s.Observe("srv", map[string]string{"t": hashOf(t, `{"name":"t"}`)})
	s.Observe("srv", map[string]string{"t": hashOf(t, `{"name":"t","description":"evil"}`)})
	s2, err := Open(path, TOFU, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if _, reason, b := s2.Blocked("srv", "t"); !b || reason != ReasonChanged {
		t.Fatalf("after restart: blocked=%v %q", b, reason)
	}
	if ch := s2.Observe("srv", map[string]string{"t": hashOf(t, `{"name":"t","description":"evil"}`)}); len(ch) != 0 {
		t.Fatalf("change reported again after restart: %+v", ch)
	}
}

// A pin file the gateway cannot read stops it at start (fail closed), and a reload never drops the
// pins in force for a broken or deleted file: otherwise breaking the file would unblock tools or,
// in tofu mode, re-pin a poisoned definition as trusted.
func TestCorruptPinFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pins.json")
	for name, src := range map[string]string{
		"not json":      `{"servers":`,
		"unknown field": `{"servers":{},"extra":1}`,
		"bad hash":      `{"servers":{"s":{"t":{"sha256":"XYZ"}}}}`,
		"null pin":      `{"servers":{"s":{"t":null}}}`,
	} {
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(path, TOFU, quiet); err == nil {
			t.Errorf("%s: opened", name)
		}
	}

	os.Remove(path)
	s, err := Open(path, TOFU, quiet)
	if err != nil {
		t.Fatalf("missing file at start: %v", err)
	}
	s.Observe("srv", map[string]string{"t": hashOf(t, `{"name":"t"}`)})
	s.Observe("srv", map[string]string{"t": hashOf(t, `{"name":"t","description":"2"}`)})
	if err := os.WriteFile(path, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Fatal("corrupt file reloaded")
	}
	if _, _, b := s.Blocked("srv", "t"); !b {
		t.Fatal("corrupt reload unblocked the tool")
	}
	os.Remove(path)
	if err := s.Reload(); err == nil {
		t.Fatal("deleted file reloaded")
	}
	if _, _, b := s.Blocked("srv", "t"); !b {
		t.Fatal("deleting the file unblocked the tool")
	}
}

func TestApprove(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pins.json")
	if _, err := Approve(path, "s", "t", "", "op", time.Now()); !errors.Is(err, ErrNothingToApprove) {
		t.Fatalf("approve with nothing seen: %v", err)
	}
	if _, err := Approve(path, "s", "t", "nothex", "op", time.Now()); err == nil {
		t.Fatal("malformed hash approved")
	}
	h := hashOf(t, `{"name":"t"}`)
	p, err := Approve(path, "s", "t", h, "op", time.Now())
	if err != nil || p.SHA256 != h || p.ApprovedBy != "op" {
		t.Fatalf("pre-approval: %+v %v", p, err)
	}
	// Nothing but the pin file is left in the directory: writes go through a renamed temp file.
	ents, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Fatalf("temporary file left: %s", e.Name())
		}
	}
}

// Concurrent writers (the gateway recording, the CLI approving) never lose each other's updates.
func TestUpdateIsSerialized(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pins.json")
	var wg sync.WaitGroup
	for i := range 20 {
		h := hashOf(t, fmt.Sprintf(`{"n":%d}`, i))
		wg.Go(func() {
			if _, err := Approve(path, "s", fmt.Sprintf("t%d", i), h, "op", time.Now()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	f, _, err := Read(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.Servers["s"]); n != 20 {
		t.Fatalf("%d of 20 pins kept", n)
	}
}
