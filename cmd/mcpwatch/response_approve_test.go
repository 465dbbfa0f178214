package main

import (
	"context"
	"crypto/tls"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/internal/approval"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// The operator's path: `response approver-key` makes a key and its keyring entry, `response
// approvals` lists the pending request, `response approve` and `deny` sign votes through the API,
// and a vote without --reason or with a key readable by others is refused. The API here writes to
// an in-memory store (the Kafka path is covered by the gateway's approval tests). If this failed,
// approvers could not vote from the command line, or could vote without saying why.
func TestResponseApproveCLI(t *testing.T) {
	dir := t.TempDir()
	ring := "approvers:\n"
	for _, id := range []string{"ann", "ben"} {
		out, err := runCLI(t, "response", "approver-key", "--approver", id, "--out", filepath.Join(dir, id+".pem"))
		if err != nil || !strings.Contains(out, "id: "+id) {
			t.Fatalf("approver-key %s: %v\n%s", id, err, out)
		}
		ring += out
	}
	if err := os.WriteFile(filepath.Join(dir, "ring.yaml"), []byte(ring), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := approval.LoadKeyring(filepath.Join(dir, "ring.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	store := approval.NewStore(keys)
	apply := approval.ProducerFunc(func(_ context.Context, key string, value []byte) error { return store.Apply([]byte(key), value) })
	srv := httptest.NewServer(approval.NewServer(store, keys, apply, nil, nil).Handler())
	defer srv.Close()
	now := time.Now()
	req := approval.NewActionRequest("acme", "playbook:exfil", "exfil-high", "revoke alice", approval.PlaybookAction{Kind: "revoke", Scope: "subject", Value: "alice"},
		[]string{"ann", "ben"}, 2, now, time.Hour, "")
	if err := approval.WriteRequest(context.Background(), apply, req); err != nil {
		t.Fatal(err)
	}

	out, err := runCLI(t, "response", "approvals", "--api", srv.URL)
	if err != nil || !strings.Contains(out, req.ID) || !strings.Contains(out, "revoke subject alice") {
		t.Fatalf("approvals: %v\n%s", err, out)
	}
	if _, err := runCLI(t, "response", "approve", req.ID, "--api", srv.URL, "--approver", "ann", "--key", filepath.Join(dir, "ann.pem")); err == nil ||
		!strings.Contains(err.Error(), "--reason is required") {
		t.Fatalf("vote without a reason: %v", err)
	}
	_ = os.Chmod(filepath.Join(dir, "ben.pem"), 0o644)
	if _, err := runCLI(t, "response", "approve", req.ID, "--api", srv.URL, "--approver", "ben", "--key", filepath.Join(dir, "ben.pem"), "--reason", "x"); err == nil ||
		!strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("vote with a world-readable key: %v", err)
	}
	_ = os.Chmod(filepath.Join(dir, "ben.pem"), 0o600)
	// Ben signs with ann's key: the API refuses it.
	if _, err := runCLI(t, "response", "approve", req.ID, "--api", srv.URL, "--approver", "ben", "--key", filepath.Join(dir, "ann.pem"), "--reason", "x"); err == nil ||
		!strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("vote with the wrong key: %v", err)
	}
	out, err = runCLI(t, "response", "approve", req.ID, "--api", srv.URL, "--approver", "ann", "--key", filepath.Join(dir, "ann.pem"), "--reason", "confirmed exfiltration")
	if err != nil || !strings.Contains(out, "1 of 2") {
		t.Fatalf("ann approves: %v\n%s", err, out)
	}
	out, err = runCLI(t, "response", "deny", req.ID, "--api", srv.URL, "--approver", "ben", "--key", filepath.Join(dir, "ben.pem"), "--reason", "false positive: backup job")
	if err != nil || !strings.Contains(out, "denied by ben: false positive: backup job") || store.Approved(req.ID) {
		t.Fatalf("ben denies: %v\n%s", err, out)
	}
}

// The operator's commands against an approvals API that requires client certificates: without
// one `response approvals` is refused with a hint naming the flags; with --server-ca,
// --client-cert and --client-key (or their MCPWATCH_APPROVALS_* variables) it lists and
// `response approve` votes; TLS files with a plain http:// URL are refused rather than ignored;
// `approvals-serve --client-ca` without a server certificate refuses to start. If this failed, operators could not reach an mTLS-protected API from the command line, or
// would believe they used a certificate that was never sent.
func TestResponseApproveCLIMTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testenv.NewCA(t, dir, "ops")
	srvCert, srvKey := ca.Server(t, "approvals")
	annCert, annKey := ca.Client(t, "ann")
	out, err := runCLI(t, "response", "approver-key", "--approver", "ann", "--out", filepath.Join(dir, "ann.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ring.yaml"), []byte("approvers:\n"+out), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := approval.LoadKeyring(filepath.Join(dir, "ring.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	store := approval.NewStore(keys)
	apply := approval.ProducerFunc(func(_ context.Context, key string, value []byte) error { return store.Apply([]byte(key), value) })
	srv := httptest.NewUnstartedServer(approval.NewServer(store, keys, apply, nil, nil).Handler())
	tc, err := approval.ServerTLSConfig(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	tc.Certificates = []tls.Certificate{pair}
	srv.TLS = tc
	srv.StartTLS()
	defer srv.Close()
	req := approval.NewActionRequest("acme", "playbook:exfil", "exfil-high", "revoke alice", approval.PlaybookAction{Kind: "revoke", Scope: "subject", Value: "alice"},
		[]string{"ann"}, 1, time.Now(), time.Hour, "")
	if err := approval.WriteRequest(context.Background(), apply, req); err != nil {
		t.Fatal(err)
	}

	if _, err := runCLI(t, "response", "approvals", "--api", srv.URL, "--server-ca", ca.CertFile); err == nil ||
		!strings.Contains(err.Error(), "requires a client certificate") {
		t.Fatalf("approvals without a client certificate: %v", err)
	}
	withCert := []string{"--api", srv.URL, "--server-ca", ca.CertFile, "--client-cert", annCert, "--client-key", annKey}
	out, err = runCLI(t, append([]string{"response", "approvals"}, withCert...)...)
	if err != nil || !strings.Contains(out, req.ID) {
		t.Fatalf("approvals with a client certificate: %v\n%s", err, out)
	}
	if _, err := runCLI(t, "response", "approvals", "--api", "http://127.0.0.1:1", "--client-cert", annCert, "--client-key", annKey); err == nil ||
		!strings.Contains(err.Error(), "need https://") {
		t.Fatalf("TLS files with an http URL: %v", err)
	}
	if _, err := runCLI(t, "response", "approvals-serve", "--keyring", filepath.Join(dir, "ring.yaml"), "--client-ca", ca.CertFile); err == nil ||
		!strings.Contains(err.Error(), "client CA needs a server certificate") {
		t.Fatalf("approvals-serve --client-ca without --tls-cert: %v", err)
	}
	t.Setenv("MCPWATCH_APPROVALS_SERVER_CA", ca.CertFile)
	t.Setenv("MCPWATCH_APPROVALS_CLIENT_CERT", annCert)
	t.Setenv("MCPWATCH_APPROVALS_CLIENT_KEY", annKey)
	out, err = runCLI(t, "response", "approve", req.ID, "--api", srv.URL, "--approver", "ann", "--key", filepath.Join(dir, "ann.pem"), "--reason", "confirmed exfiltration")
	if err != nil || !store.Approved(req.ID) {
		t.Fatalf("approve with the certificate from the environment: %v\n%s", err, out)
	}
}
