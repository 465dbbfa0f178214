package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A gateway without tokens must refuse to start (default deny), and a typo in the tokens file
// must be an error, not a silently ignored field.
func TestLoadTokens(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := loadTokens(""); err == nil || !strings.Contains(err.Error(), "default deny") {
		t.Fatalf("no tokens file: %v", err)
	}
	if _, err := loadTokens(write("typo.yaml", "- sha256: abc\n  subject: alice\n")); err == nil || !strings.Contains(err.Error(), "subject") {
		t.Fatalf("unknown field accepted: %v", err)
	}
	good := write("good.yaml", "- sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n  sub: alice\n  client_id: desk\n  roles: [analyst]\n")
	toks, err := loadTokens(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != 1 || toks[0].Principal.Subject != "alice" || toks[0].Principal.ClientID != "desk" || toks[0].Principal.Roles[0] != "analyst" {
		t.Fatalf("parsed %+v", toks)
	}
}
