package main

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpwatch/mcpwatch/internal/pins"
)

// `tools list` shows the change a gateway saw and `tools approve` pins it with the approver's
// name: the operator's whole workflow for a changed tool. If this fails, a blocked tool cannot
// be unblocked from the command line.
func TestToolsListAndApprove(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pins.json")
	s, err := pins.Open(path, pins.TOFU, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h1, _ := pins.Hash([]byte(`{"name":"db_query","description":"v1"}`))
	h2, _ := pins.Hash([]byte(`{"name":"db_query","description":"v2"}`))
	s.Observe("acme-data", map[string]string{"db_query": h1})
	s.Observe("acme-data", map[string]string{"db_query": h2})

	out, err := runCLI(t, "tools", "list", "--pins", path, "--pending")
	if err != nil || !strings.Contains(out, "db_query") || !strings.Contains(out, "changed") || !strings.Contains(out, h2[:12]) {
		t.Fatalf("tools list: %v\n%s", err, out)
	}
	t.Setenv("USER", "carol")
	if out, err := runCLI(t, "tools", "approve", "--pins", path, "--server", "acme-data", "--tool", "db_query"); err != nil || !strings.Contains(out, h2) {
		t.Fatalf("tools approve: %v\n%s", err, out)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if p, _, blocked := s.Blocked("acme-data", "db_query"); blocked || p.SHA256 != h2 || p.ApprovedBy != "carol" {
		t.Fatalf("after approve: blocked=%v %+v", blocked, p)
	}
	if _, err := runCLI(t, "tools", "approve", "--pins", path, "--server", "acme-data", "--tool", "db_query"); err == nil {
		t.Fatal("approving with nothing pending succeeded")
	}
	if out, err := runCLI(t, "tools", "list", "--pins", path, "--pending"); err != nil || strings.Contains(out, "db_query") {
		t.Fatalf("approved tool still pending: %v\n%s", err, out)
	}
}
