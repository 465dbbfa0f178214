package playbook

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad: a playbook file is operator input that may be broken in any way; Load must return a
// set or an error, never panic or hang.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		s, err := Load("fuzz.yaml", src)
		if err == nil && s == nil {
			t.Fatal("nil set without an error")
		}
	})
}
