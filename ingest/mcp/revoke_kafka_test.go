package mcp

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth"
	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth/oauthtest"
	"github.com/mcpwatch/mcpwatch/internal/control"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// A revoke control for a subject, written twice to the real control topic, reaches the gateway
// through its follower: the gateway refuses the subject's calls, revokes the token it holds at
// zitadel's provider (whose introspection then calls it inactive), and records exactly one
// oauth_revoke action on the real actions topic. If it failed, the responder's revocation would
// not reach the authorization server, or a redelivered control would double the action.
func TestOAuthRevocationFromControlTopic(t *testing.T) {
	brokers, names := testenv.Kafka(t), testenv.Topics(t)
	cl := kafkaClient(t, brokers)
	ensureRaw(t, cl, names)
	f := newOAuthFixture(t, newUpstream(t, false), func(c *oauth.Config) {
		c.Introspection = oauth.Introspection{ClientID: oauthtest.GatewayClientID, ClientSecret: oauthtest.GatewaySecret}
		c.Revocation.Enabled = true
	})
	fol, err := control.NewFollower(kafkaio.Config{Brokers: brokers, ClientID: "test-control"}, names.Control, f.store,
		nil, nil, kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- fol.Run(ctx) }()
	go func() {
		done <- f.auth.Revoker().Run(ctx, oauth.RevokerDeps{Controls: f.store,
			Actions: NewKafkaActions(cl, names.Actions, nil), Tenant: "acme", Actor: "gateway:gw-test"})
	}()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Error(err)
			}
		}
		fol.Close()
	})
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := fol.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}

	tok := f.as.Login(t, f.resource, "mcp:read", "mcp:tools").AccessToken
	cs := f.connect(t, clientOpts{token: tok})
	if res, err := echo(t, cs, "before"); err != nil || res.IsError {
		t.Fatalf("before the control: %v %+v", err, res)
	}
	c := event.Control{Schema: event.SchemaVersion, ID: event.NewID(), Time: time.Now(), Kind: event.ControlRevoke,
		Scope: event.ScopeSubject, Tenant: "acme", Value: oauthtest.Subject, Reason: "exfiltration", FindingID: "f-9"}
	rec, err := kafkaio.RecordOf(names.Control, c.Key(), &c)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // delivered twice
		if err := cl.ProduceSync(wctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.as.Active(t, tok) {
		if time.Now().After(deadline) {
			t.Fatal("the token is still active at the provider")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var werr *jsonrpc.Error
	if _, err := echo(t, cs, "after"); !errors.As(err, &werr) || werr.Code != CodeDenied {
		t.Fatalf("after the control: %v, want denied", err)
	}

	// Read the actions topic until a poll after the first action finds nothing more.
	var got []event.Action
	consumer := kafkaClient(t, brokers, kgo.ConsumeTopics(names.Actions), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fetches := consumer.PollRecords(pctx, 100)
		pcancel()
		n := len(got)
		fetches.EachRecord(func(r *kgo.Record) {
			var a event.Action
			if err := event.Decode(r.Value, &a); err != nil {
				t.Fatalf("decode action: %v", err)
			}
			if string(r.Key) != "acme/"+oauthtest.Subject {
				t.Errorf("action key %q", r.Key)
			}
			got = append(got, a)
		})
		if len(got) > 0 && len(got) == n {
			break
		}
	}
	if len(got) != 1 {
		t.Fatalf("%d actions on the topic, want exactly 1: %+v", len(got), got)
	}
	a := got[0]
	if a.Kind != event.ActionOAuthRevoke || a.Status != "succeeded" || a.ControlID != c.ID || a.FindingID != "f-9" ||
		a.Actor != "gateway:gw-test" || a.Target != "token:"+jti(t, tok) {
		t.Fatalf("action %+v", a)
	}
	t.Logf("control → revoked at the provider: action latency %.1f ms", a.LatencyMS)
}
