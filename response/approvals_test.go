package response

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/component/componenttest"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/approval"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// A playbook action above the configured impact waits for M of N signed approvals: the respond
// stage records it as pending and writes the approval request; two valid votes on the approvals
// topic make it publish the control (who approved in its reason); a deny vote ends another with
// a denied record and no control. Lower-impact actions act at once. If this failed, a client
// revocation (shutting out every user of the client) would happen without the humans the
// playbook asks for, or approved actions would never take effect.
func testPlaybookApprovals(t *testing.T, brokers []string, names event.Topics) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := kafkaio.EnsureTopics(ctx, kafkaClient(t, brokers), kafkaio.Topics(names, 3, 1, 24)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	priv := map[string]ed25519.PrivateKey{}
	ring := "approvers:\n"
	for _, id := range []string{"alice", "bob", "carol"} {
		pub, p, _ := ed25519.GenerateKey(rand.Reader)
		der, _ := x509.MarshalPKIXPublicKey(pub)
		priv[id] = p
		ring += fmt.Sprintf("  - id: %s\n    public_key: %s\n", id, base64.StdEncoding.EncodeToString(der))
	}
	keyring := filepath.Join(dir, "approvers.yaml")
	path := filepath.Join(dir, "playbooks.yaml")
	const src = `
approval:
  approvers: [alice, bob, carol]
  required: 2
  timeout: 10m
  above_impact: high
playbooks:
  - name: contain
    match: {min_score: 80}
    actions:
      - revoke: subject
      - revoke: client
`
	for p, b := range map[string]string{keyring: ring, path: src} {
		if err := os.WriteFile(p, []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := DefaultConfig()
	cfg.Playbooks, cfg.Approvers = path, keyring
	c, err := NewRespondFactory().Create(ctx, componenttest.Settings(t, TypeRespond, brokers, names), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(sctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
		_ = c.Close()
	}()

	pcl := kafkaClient(t, brokers)
	produce := func(f *event.Finding) {
		f.Time = time.Now()
		rec, err := kafkaio.RecordOf(names.Findings, event.PrincipalKey(f.Tenant, f.Principal), f)
		if err != nil {
			t.Fatal(err)
		}
		if err := pcl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	actions := newReader(t, brokers, names.Actions)
	byKind := func(n int) map[string]event.Action {
		m := map[string]event.Action{}
		for _, r := range actions.next(n) {
			var a event.Action
			if err := event.Decode(r.Value, &a); err != nil {
				t.Fatal(err)
			}
			m[a.Target+" "+a.Status] = a
		}
		return m
	}
	requests := newReader(t, brokers, names.Approvals)
	request := func() (approval.Request, string) {
		for {
			r := requests.next(1)[0]
			e, err := approval.DecodeEntry(r.Key, r.Value)
			if err != nil {
				t.Fatal(err)
			}
			if e.Request != nil {
				return *e.Request, approval.HashOf(r.Value)
			}
		}
	}
	vote := func(q approval.Request, hash, who string, d approval.Decision) {
		v := &approval.Vote{Schema: approval.SchemaVersion, RequestID: q.ID, RequestHash: hash, Approver: who,
			Decision: d, Reason: "checked with the client's owner", Time: time.Now().UTC()}
		approval.Sign(v, priv[who])
		key, value, err := approval.EncodeVote(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := pcl.ProduceSync(ctx, &kgo.Record{Topic: names.Approvals, Key: []byte(key), Value: value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	produce(finding(90))
	got := byKind(2)
	if _, ok := got["revoke/subject/acme/mallory succeeded"]; !ok {
		t.Fatalf("the medium-impact revocation did not act at once: %v", got)
	}
	pending, ok := got["revoke/client/acme/claude-desktop pending"]
	if !ok || !strings.Contains(pending.Detail, "waiting for 2 of [alice bob carol]") {
		t.Fatalf("the client revocation is not pending approval: %v", got)
	}
	q, hash := request()
	if q.Action == nil || q.Action.Value != "claude-desktop" || q.Required != 2 || q.Requester != "playbook:contain" {
		t.Fatalf("approval request %+v", q)
	}
	vote(q, hash, "alice", approval.Approve)
	vote(q, hash, "bob", approval.Approve)
	got = byKind(1)
	a, ok := got["revoke/client/acme/claude-desktop succeeded"]
	if !ok || !strings.Contains(a.Detail, "alice") || a.ControlID != pending.ControlID {
		t.Fatalf("after two approvals: %v (pending had control %s)", got, pending.ControlID)
	}
	ctls := newReader(t, brokers, names.Control)
	seen := false
	for _, r := range ctls.next(2) {
		var c event.Control
		if err := event.Decode(r.Value, &c); err != nil {
			t.Fatal(err)
		}
		if c.Key() == "revoke/client/acme/claude-desktop" {
			seen = c.ID == pending.ControlID && strings.Contains(c.Reason, "approved")
		}
	}
	if !seen {
		t.Fatal("the approved client revocation is not on the control topic")
	}

	// Another client: carol denies.
	f := finding(95)
	f.Principal.Subject, f.Principal.ClientID = "trent", "cursor"
	produce(f)
	byKind(2)
	q2, hash2 := request()
	vote(q2, hash2, "carol", approval.Deny)
	got = byKind(1)
	if d, ok := got["revoke/client/acme/cursor denied"]; !ok || !strings.Contains(d.Detail, "carol") || d.ControlID != "" {
		t.Fatalf("after a deny: %v", got)
	}
}

func TestPlaybookApprovalsFake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testPlaybookApprovals(t, c.ListenAddrs(), event.TopicNames("fake"))
}

func TestPlaybookApprovalsKafka(t *testing.T) {
	testPlaybookApprovals(t, testenv.Kafka(t), testenv.Topics(t))
}
