package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// `policy check` is how operators vet a policy before the gateway hot-reloads it: a broken file
// must fail with its position, a good one pass.
func TestPolicyCheck(t *testing.T) {
	if out, err := runCLI(t, "policy", "check", "../../policy/testdata/example.yaml"); err != nil || !strings.Contains(out, "ok") {
		t.Fatalf("example policy: %v\n%s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(bad, []byte("version: 1\nrules:\n  - id: x\n    actions: [call]\n    resource: \"tool:a/*\"\n    conditions:\n      - ip_range: \"10.0.0.0/33\"\n"), 0o600)
	if _, err := runCLI(t, "policy", "check", bad); err == nil || !strings.Contains(err.Error(), "bad.yaml:7:") || !strings.Contains(err.Error(), "invalid CIDR") {
		t.Fatalf("broken policy not reported with its position: %v", err)
	}
}

// `policy explain` must name the deciding rule and the failed condition.
func TestPolicyExplain(t *testing.T) {
	base := []string{"policy", "explain", "../../policy/testdata/example.yaml", "--sub", "alice", "--roles", "analyst",
		"--time", "2026-11-23T10:00:00+09:00", "--method", "tools/call", "--server", "sales-db", "--tool", "db_query",
		"--amr", "mfa", "--device", "compliant", "--risk", "12"}
	out, err := runCLI(t, append(base, "--ip", "10.0.0.5")...)
	if err != nil || !strings.Contains(out, "decision: deny by default-deny") || !strings.Contains(out, "got 10.0.0.5") {
		t.Fatalf("outside the office: %v\n%s", err, out)
	}
	out, err = runCLI(t, append(base, "--ip", "192.168.1.7")...)
	if err != nil || !strings.Contains(out, "decision: allow by analyst-db-query") {
		t.Fatalf("from the office: %v\n%s", err, out)
	}
}
