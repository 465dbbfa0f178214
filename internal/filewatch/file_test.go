package filewatch

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// upper "parses" a file by upper-casing it, refusing content that says "broken".
func upper(src []byte) (string, error) {
	if strings.Contains(string(src), "broken") {
		return "", errors.New("broken content")
	}
	return strings.ToUpper(string(src)), nil
}

// A change is loaded only on the second poll that sees it, so a file caught mid-write (which may
// parse, minus its trailing lines) is not loaded; broken content keeps the value in force and is
// reported once. If this failed, a policy or playbook file half-written by an editor could be put
// in force, or a broken file would flood the logs on every poll.
func TestFilePollWaitsForStableContent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.txt")
	writeFile(t, path, "a")
	var loads, fails int
	f, err := OpenFile(path, FileConfig[string]{Name: "test", Parse: upper, MaxSize: 100,
		TooLarge: func() error { return errors.New("too large") },
		OnLoad:   func(_, _ string) { loads++ }, OnFail: func(error, string) { fails++ }})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, "b")
	f.poll()
	if f.Current() != "A" {
		t.Fatal("loaded on the first poll that saw the change")
	}
	writeFile(t, path, "b, still writing")
	f.poll()
	if f.Current() != "A" {
		t.Fatal("loaded content that changed between polls")
	}
	writeFile(t, path, "b")
	f.poll()
	f.poll()
	if f.Current() != "B" || loads != 1 {
		t.Fatalf("stable change: value %q after %d loads", f.Current(), loads)
	}
	writeFile(t, path, "broken")
	for range 4 {
		f.poll()
	}
	if f.Current() != "B" || fails != 1 || f.LastError() == nil {
		t.Fatalf("broken content: value %q, %d failures reported, last error %v", f.Current(), fails, f.LastError())
	}
	writeFile(t, path, strings.Repeat("x", 101))
	if err := f.Reload(); err == nil || err.Error() != "too large" || f.Current() != "B" {
		t.Fatalf("oversized file: %v, value %q", err, f.Current())
	}
	if _, err := OpenFile(filepath.Join(t.TempDir(), "missing"), FileConfig[string]{Name: "test", Parse: upper, MaxSize: 100}); err == nil || !strings.HasPrefix(err.Error(), "test: ") {
		t.Fatalf("missing file: %v", err)
	}
}
