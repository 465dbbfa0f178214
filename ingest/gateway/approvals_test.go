package gateway_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/app"
	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/gateway"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/internal/approval"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

const (
	aliceToken       = "alice-token-0123456789abcdef"
	approvalsPolicy  = "version: 1\nrules:\n  - id: list\n    resource: \"tool:bank/*\"\n    actions: [list]\n  - id: wire-transfer\n    resource: \"tool:bank/transfer\"\n    actions: [call]\n    principals: [sub:alice]\n    approval: {approvers: [ann, ben, cat], required: 2, timeout: 5m}\n"
	transferArgsText = "pay 100 to bob"
)

type transferArgs struct {
	Text string `json:"text"`
}

type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// pendingOf returns the request id and state of an approval-pending answer, or "" if err is not one.
func pendingOf(err error) (id, state, statusURL string) {
	var we *jsonrpc.Error
	if !errors.As(err, &we) || we.Code != mcp.CodeApprovalPending {
		return "", "", ""
	}
	var d struct {
		RequestID string `json:"request_id"`
		State     string `json:"state"`
		StatusURL string `json:"status_url"`
	}
	_ = json.Unmarshal(we.Data, &d)
	return d.RequestID, d.State, d.StatusURL
}

// A gateway built from its config file section the way `mcpwatch gateway --config` builds it
// (app.Build, topics bootstrapped, gateway.approvals with a keyring and the API's status URL),
// the approvals API run by approvals-serve's code over TLS with a client CA (a client without an
// operator's certificate reads nothing), the official Go SDK client and the real Kafka:
// a call a 2-of-3 rule holds is answered pending with the status URL and never forwarded; after
// one signed vote it is still pending; after the second the identical retry goes through, once,
// and the next identical call is held anew. The gateway records its approval steps on the
// actions topic. If this failed, the command would not wire the gate its config describes, and
// every call a rule holds would be refused (or, worse, forwarded).
func TestGatewayApprovalsFromConfig(t *testing.T) {
	brokers := testenv.Kafka(t)
	prefix := testenv.TopicPrefix(t)
	dir := t.TempDir()

	var upstreamCalls atomic.Int32
	srv := sdk.NewServer(&sdk.Implementation{Name: "bank", Version: "1.0.0"}, nil)
	sdk.AddTool(srv, &sdk.Tool{Name: "transfer", Description: "moves money"},
		func(_ context.Context, _ *sdk.CallToolRequest, in transferArgs) (*sdk.CallToolResult, any, error) {
			upstreamCalls.Add(1)
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "done: " + in.Text}}}, nil, nil
		})
	up := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return srv }, nil))
	t.Cleanup(up.Close)

	priv := map[string]ed25519.PrivateKey{}
	keyring := "approvers:\n"
	for _, id := range []string{"ann", "ben", "cat"} {
		pub, p, _ := ed25519.GenerateKey(rand.Reader)
		priv[id] = p
		keyring += fmt.Sprintf("  - id: %s\n    public_key: %s\n", id, base64.StdEncoding.EncodeToString(pub))
	}
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	keyringPath := write("approvers.yaml", keyring)
	apiAddr := freeAddr(t)
	apiURL := "https://" + apiAddr
	ca := testenv.NewCA(t, dir, "ops")
	apiCert, apiKey := ca.Server(t, "approvals")
	opCert, opKey := ca.Client(t, "ann")
	cfgText := fmt.Sprintf(`kafka:
  brokers: [%s]
  topic_prefix: %s
  partitions: 1
gateway:
  listen: 127.0.0.1:0
  upstream: %s
  server_name: bank
  auth: {tokens_file: %s}
  policy: {file: %s}
  spool: {dir: %s}
  approvals:
    keyring: %s
    status_url: %s
    wait_timeout: 10s
`, strings.Join(brokers, ", "), prefix, up.URL, write("tokens.yaml", "- token: "+aliceToken+"\n  sub: alice\n"),
		write("policy.yaml", approvalsPolicy), filepath.Join(dir, "spool"), keyringPath, apiURL)
	cfg := app.NewConfig(app.Components())
	if err := cfg.Load("mcpwatch.yaml", []byte(cfgText)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.DiscardHandler)
	a, err := app.Build(ctx, cfg, []component.Type{gateway.Type}, app.Host{Logger: log})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	gw := a.Component(gateway.Type).(*gateway.Gateway)
	done := make(chan error, 2)
	go func() { done <- a.Run(ctx) }()
	keys, err := approval.LoadKeyring(keyringPath)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		done <- approval.Serve(ctx, approval.ServeConfig{Kafka: kafkaio.Config{Brokers: brokers}, Topics: event.TopicNames(prefix),
			Keys: keys, Listen: apiAddr, TLSCert: apiCert, TLSKey: apiKey, ClientCA: ca.CertFile, Log: log})
	}()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("stopping: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("gateway or approvals API did not stop")
			}
		}
	})

	tctx, tcancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer tcancel()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := sdk.NewClient(&sdk.Implementation{Name: "approvals-test", Version: "1"}, nil)
	var cs *sdk.ClientSession
	for { // the gateway serves once it has read the control, scores and approvals topics
		cs, err = client.Connect(tctx, &sdk.StreamableClientTransport{Endpoint: gw.URL(), MaxRetries: -1,
			HTTPClient: &http.Client{Transport: bearer{aliceToken, tr}}}, nil)
		if err == nil {
			break
		}
		if tctx.Err() != nil {
			t.Fatalf("connect: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(func() { _ = cs.Close() })
	call := func() (*sdk.CallToolResult, error) {
		return cs.CallTool(tctx, &sdk.CallToolParams{Name: "transfer", Arguments: map[string]any{"text": transferArgsText}})
	}

	_, err = call()
	id, state, statusURL := pendingOf(err)
	if id == "" || state != "pending" {
		t.Fatalf("held call: %v, want the approval-pending answer", err)
	}
	if statusURL != apiURL+"/approvals/"+id {
		t.Fatalf("status URL %q, want the configured API's %s/approvals/%s", statusURL, apiURL, id)
	}
	if upstreamCalls.Load() != 0 {
		t.Fatal("a held call reached the upstream")
	}

	// The API requires operators' certificates: a client without one reads nothing.
	noCert, err := approval.ClientTLSFiles{CA: ca.CertFile}.Config()
	if err != nil {
		t.Fatal(err)
	}
	anon := &approval.Client{BaseURL: apiURL, TLS: noCert}
	t.Cleanup(anon.CloseIdleConnections)
	for { // the API serves once it has read the approvals topic
		_, err := anon.Get(tctx, id)
		if err != nil && strings.Contains(err.Error(), "requires a client certificate") {
			break
		}
		if err == nil || tctx.Err() != nil || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("reading request %s without a client certificate: %v, want refused", id, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	opTLS, err := approval.ClientTLSFiles{CA: ca.CertFile, Cert: opCert, Key: opKey}.Config()
	if err != nil {
		t.Fatal(err)
	}
	api := &approval.Client{BaseURL: apiURL, TLS: opTLS}
	t.Cleanup(api.CloseIdleConnections)
	vote := func(who string) approval.RequestView {
		t.Helper()
		for { // the API follows the topic on its own, a moment behind the gateway
			v, err := api.Vote(tctx, id, who, priv[who], approval.Approve, "confirmed with the desk")
			if err == nil {
				return v
			}
			if !strings.Contains(err.Error(), "404") || tctx.Err() != nil {
				t.Fatalf("%s's vote: %v", who, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if v := vote("ann"); v.State != approval.Pending {
		t.Fatalf("after one of two votes: %s", v.State)
	}
	if _, err = call(); func() bool { again, _, _ := pendingOf(err); return again != id }() {
		t.Fatalf("after one vote: %v, want request %s still pending", err, id)
	}
	if v := vote("ben"); v.State != approval.Approved {
		t.Fatalf("after two of two votes: %s (%s)", v.State, v.Reason)
	}
	var res *sdk.CallToolResult
	for { // the gateway's store reads the votes a moment after the API wrote them
		res, err = call()
		if again, st, _ := pendingOf(err); again != id || st != "pending" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || res.IsError || len(res.Content) != 1 || res.Content[0].(*sdk.TextContent).Text != "done: "+transferArgsText {
		t.Fatalf("approved call: %v %+v", err, res)
	}
	if n := upstreamCalls.Load(); n != 1 {
		t.Fatalf("%d calls reached the upstream, want 1", n)
	}
	_, err = call()
	if again, st, _ := pendingOf(err); again == "" || again == id || st != "pending" {
		t.Fatalf("the identical call after the approval was used: %v, want a new pending request", err)
	}
	if n := upstreamCalls.Load(); n != 1 {
		t.Fatalf("%d calls reached the upstream after the approval was used, want 1", n)
	}

	// The gateway's approval steps are on the actions topic, for the signed audit trail.
	want := map[string]bool{"pending": false, "consumed": false}
	consumer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(event.TopicNames(prefix).Actions),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	for !want["pending"] || !want["consumed"] {
		fs := consumer.PollFetches(tctx)
		if tctx.Err() != nil {
			t.Fatalf("gateway approval actions of %s on the actions topic: %v", id, want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var act event.Action
			if event.Decode(r.Value, &act) == nil && act.Target == "approval:"+id && strings.HasPrefix(act.Actor, "gateway:") {
				want[act.Status] = true
			}
		})
	}
}
