package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `playbook check` is how operators vet a playbook file: a broken one must fail (non-zero exit)
// with its position, a good one pass.
func TestPlaybookCheck(t *testing.T) {
	if out, err := runCLI(t, "playbook", "check", "../../response/playbook/testdata/example.yaml"); err != nil || !strings.Contains(out, "ok, 2 playbooks") {
		t.Fatalf("example: %v\n%s", err, out)
	}
	if _, err := runCLI(t, "playbook", "check", "../../response/playbook/testdata/unknown_key.yaml"); err == nil || !strings.Contains(err.Error(), "unknown_key.yaml:4:7:") {
		t.Fatalf("broken file not reported with its position: %v", err)
	}
}

// `playbook explain` must name matching playbooks and the failed condition of the others.
func TestPlaybookExplain(t *testing.T) {
	f := filepath.Join(t.TempDir(), "finding.json")
	_ = os.WriteFile(f, []byte(`{"detector":"rate","score":91,"principal":{"sub":"alice","department":"finance"},
		"evidence":[{"detector":"rate","feature":"tool","observed_text":"db_query","value":0,"observed":0,"baseline":0,"window_start":"2026-01-01T00:00:00Z","window_end":"2026-01-01T00:00:00Z"}]}`), 0o600)
	out, err := runCLI(t, "playbook", "explain", "../../response/playbook/testdata/example.yaml", "--finding", f)
	if err != nil || !strings.Contains(out, "playbook exfil-high: match") || !strings.Contains(out, `ueba-watch: no match: detector "rate" does not match "ueba"`) {
		t.Fatalf("%v\n%s", err, out)
	}
}
