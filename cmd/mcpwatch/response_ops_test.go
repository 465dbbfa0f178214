package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/internal/control"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
	"github.com/mcpwatch/mcpwatch/response/ops"
)

const opsToken = "alice-token-0123456789abcdef"

// followingGateway is a gateway in front of a Go SDK server whose control store follows the real
// control topic, as a deployed replica does; it returns a connected SDK client session of alice.
func followingGateway(t *testing.T, brokers []string, topics event.Topics, observer string) (*sdk.ClientSession, *control.Store) {
	t.Helper()
	up := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return newEchoServer("files") }, nil))
	t.Cleanup(up.Close)
	store := control.NewStore()
	f, err := control.NewFollower(kafkaio.Config{Brokers: brokers}, topics.Control, store, nil, slog.New(slog.DiscardHandler),
		kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; f.Close() })
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := f.WaitReady(wctx); err != nil {
		t.Fatalf("control follower: %v", err)
	}
	auth, err := mcp.NewStaticTokens([]mcp.StaticToken{{Token: opsToken, Principal: event.Principal{Subject: "alice", ClientID: "desktop"}}})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := mcp.New(mcp.Config{Upstream: up.URL, ServerName: "files", Tenant: mcp.DefaultTenant, Observer: observer},
		auth, mcp.PublisherFunc(func(context.Context, *event.Event) {}), store, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() { srv.Close(); gw.Close() })
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c := sdk.NewClient(&sdk.Implementation{Name: "ops-test", Version: "1"}, nil)
	cs, err := c.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: srv.URL + "/mcp", MaxRetries: -1,
		HTTPClient: &http.Client{Transport: authTransport{opsToken, tr}}}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs, store
}

func callEcho(cs *sdk.ClientSession) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}})
	if err == nil && res.IsError {
		err = errors.New("tool error")
	}
	return err
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// actionsOn reads every action record on the actions topic.
func actionsOn(t *testing.T, brokers []string, topic string) []event.Action {
	t.Helper()
	var out []event.Action
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	cl.Close()
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	var parts []int32
	ends.Each(func(o kadm.ListedOffset) { parts = append(parts, o.Partition) })
	if err := kafkaio.ReadPartitions(ctx, kafkaio.Config{Brokers: brokers}, topic, parts, func(r *kgo.Record) {
		var a event.Action
		if err := event.Decode(r.Value, &a); err != nil {
			t.Errorf("action record: %v", err)
			return
		}
		out = append(out, a)
	}); err != nil {
		t.Fatalf("read actions: %v", err)
	}
	return out
}

// The operator commands end to end against the real Kafka and a gateway following the real
// control topic: `revoke` refuses alice's next call, `list` shows the control with who and why,
// `lift` lets her through again, a revocation `--for` a moment ends by itself without a
// tombstone, and each command leaves an action record naming the operator, the reason and the
// finding. If it failed, an operator could not stop (or un-stop) a principal from the CLI, or
// the audit trail would not say who did it and why.
func TestResponseOperatorCommands(t *testing.T) {
	brokers := testenv.Kafka(t)
	prefix := testenv.TopicPrefix(t)
	topics := event.TopicNames(prefix)
	base := []string{"--kafka", strings.Join(brokers, ","), "--topic-prefix", prefix, "--log-level", "error"}
	run := func(args ...string) (string, error) {
		return runCLI(t, append(append([]string{}, base...), args...)...)
	}

	// The topics exist before the gateway follows them, as after `mcpwatch` bootstraps them.
	if out, err := run("response", "revoke", "--subject", "warmup", "--reason", "bootstrap", "--operator", "carol", "--for", "1ms"); err != nil {
		t.Fatalf("warm-up revoke: %v\n%s", err, out)
	}
	cs, store := followingGateway(t, brokers, topics, "gw-1")
	if err := callEcho(cs); err != nil {
		t.Fatalf("before any revocation: %v", err)
	}

	out, err := run("response", "revoke", "--subject", "alice", "--reason", "exfiltration to pastebin", "--operator", "carol",
		"--finding", "f-123", "--for", "30m")
	if err != nil || !strings.Contains(out, "key: revoke/subject/default/alice") {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	waitFor(t, "revocation refused at the gateway", func() bool {
		err := callEcho(cs)
		return err != nil && strings.Contains(err.Error(), "revoked by mcpwatch: exfiltration to pastebin")
	})

	out, err = run("response", "list", "--json")
	if err != nil {
		t.Fatalf("list: %v\n%s", err, out)
	}
	var rows []ops.Row
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	if len(rows) != 1 || rows[0].Key != "revoke/subject/default/alice" || rows[0].Actor != "operator:carol" ||
		rows[0].Reason != "exfiltration to pastebin" || rows[0].Finding != "f-123" || rows[0].Expires == nil ||
		time.Until(*rows[0].Expires) < 29*time.Minute {
		t.Fatalf("list shows %+v (the expired warm-up must not be listed)", rows)
	}
	if out, err = run("response", "list"); err != nil || !strings.Contains(out, "operator:carol") || !strings.Contains(out, "exfiltration to pastebin") {
		t.Fatalf("list table: %v\n%s", err, out)
	}

	// A lift without a reason is refused before anything is written.
	if _, err := run("response", "lift", "revoke/subject/default/alice", "--operator", "carol"); !errors.Is(err, ops.ErrNoReason) {
		t.Fatalf("lift without a reason: %v", err)
	}
	if err := callEcho(cs); err == nil {
		t.Fatal("a refused lift let alice through")
	}
	if out, err = run("response", "lift", "--subject", "alice", "--reason", "false positive: approved transfer", "--operator", "dave"); err != nil ||
		!strings.Contains(out, "lifted revoke/subject/default/alice") {
		t.Fatalf("lift: %v\n%s", err, out)
	}
	waitFor(t, "lift lets alice through", func() bool { return callEcho(cs) == nil })
	if _, err := run("response", "lift", "--subject", "alice", "--reason", "again", "--operator", "dave"); !errors.Is(err, ops.ErrNotFound) {
		t.Fatalf("lifting what is not there: %v", err)
	}

	// A short revocation expires by itself: refused while it lasts, allowed after, no tombstone.
	if out, err = run("response", "revoke", "--token", "tok_x", "--subject", "alice", "--reason", "r", "--operator", "carol"); err == nil {
		t.Fatalf("two targets accepted: %s", out)
	}
	if out, err = run("response", "revoke", "--subject", "alice", "--reason", "cool-off", "--operator", "carol", "--for", "2s"); err != nil {
		t.Fatalf("short revoke: %v\n%s", err, out)
	}
	waitFor(t, "short revocation in the store", func() bool {
		_, ok := store.MatchKind("default", event.ControlRevoke, event.ScopeSubject, "alice", time.Now())
		return ok
	})
	if err := callEcho(cs); err == nil {
		t.Fatal("short revocation not enforced")
	}
	time.Sleep(2100 * time.Millisecond)
	if err := callEcho(cs); err != nil {
		t.Fatalf("expired revocation still enforced: %v", err)
	}
	if store.Len() < 2 {
		t.Fatalf("the expired control was tombstoned (%d stored): expiry must need no tombstone", store.Len())
	}

	acts := actionsOn(t, brokers, topics.Actions)
	var revoke, lift bool
	for _, a := range acts {
		revoke = revoke || a.Kind == event.ActionRevoke && a.Actor == "operator:carol" && a.Reason == "exfiltration to pastebin" &&
			a.FindingID == "f-123" && a.Target == "revoke/subject/default/alice" && a.ControlID != "" && a.Expires != nil
		lift = lift || a.Kind == event.ActionLift && a.Actor == "operator:dave" && a.Reason == "false positive: approved transfer" &&
			a.FindingID == "f-123" && a.Target == "revoke/subject/default/alice"
	}
	if !revoke || !lift {
		t.Fatalf("action records (revoke %v, lift %v): %+v", revoke, lift, acts)
	}
}

// Every state-changing command refuses to run without a reason, and says how to give one,
// before it touches Kafka (no broker is reachable here). If it failed, controls could enter the
// audit trail unexplained.
func TestResponseCommandsNeedReason(t *testing.T) {
	for _, args := range [][]string{
		{"response", "revoke", "--subject", "alice", "--operator", "carol"},
		{"response", "quarantine", "--server", "files", "--operator", "carol"},
		{"response", "lift", "revoke/subject/default/alice", "--operator", "carol"},
	} {
		_, err := runCLI(t, append([]string{"--kafka", "127.0.0.1:1"}, args...)...)
		if !errors.Is(err, ops.ErrNoReason) || !strings.Contains(err.Error(), "--reason") {
			t.Errorf("%v: %v", args, err)
		}
	}
	if _, err := runCLI(t, "--kafka", "127.0.0.1:1", "response", "quarantine", "--subject", "alice", "--reason", "x"); err == nil {
		t.Error("quarantine of a subject accepted")
	}
	if _, err := runCLI(t, "--kafka", "127.0.0.1:1", "response", "revoke", "--subject", "alice", "--reason", "x", "--operator", "c",
		"--for", "1h", "--permanent"); err == nil || !strings.Contains(err.Error(), "exclusive") {
		t.Errorf("--for with --permanent: %v", err)
	}
}

// A server quarantine, and then a tool quarantine, from the CLI stops new calls at every gateway:
// two replicas follow the same real control topic and both refuse; lifting the server lets both
// through again. If it failed, a quarantine would hold at one replica and leak through the other.
func TestResponseQuarantineTwoGateways(t *testing.T) {
	brokers := testenv.Kafka(t)
	prefix := testenv.TopicPrefix(t)
	topics := event.TopicNames(prefix)
	base := []string{"--kafka", strings.Join(brokers, ","), "--topic-prefix", prefix, "--log-level", "error"}
	run := func(args ...string) (string, error) {
		return runCLI(t, append(append([]string{}, base...), args...)...)
	}
	if out, err := run("response", "list"); err != nil { // bootstraps the topics
		t.Fatalf("list: %v\n%s", err, out)
	}
	gw1, _ := followingGateway(t, brokers, topics, "gw-1")
	gw2, _ := followingGateway(t, brokers, topics, "gw-2")
	refusedBoth := func() bool {
		e1, e2 := callEcho(gw1), callEcho(gw2)
		return e1 != nil && strings.Contains(e1.Error(), "revoked by mcpwatch") && e2 != nil && strings.Contains(e2.Error(), "revoked by mcpwatch")
	}
	if out, err := run("response", "quarantine", "--server", "files", "--reason", "compromised package", "--operator", "carol"); err != nil {
		t.Fatalf("quarantine: %v\n%s", err, out)
	}
	waitFor(t, "server quarantine at both gateways", refusedBoth)
	if out, err := run("response", "lift", "quarantine/server/default/files", "--reason", "rolled back", "--operator", "carol"); err != nil {
		t.Fatalf("lift: %v\n%s", err, out)
	}
	waitFor(t, "both gateways serve again", func() bool { return callEcho(gw1) == nil && callEcho(gw2) == nil })
	if out, err := run("response", "quarantine", "--tool", "files/echo", "--reason", "tool poisoning", "--operator", "carol", "--for", "10m"); err != nil {
		t.Fatalf("tool quarantine: %v\n%s", err, out)
	}
	waitFor(t, "tool quarantine at both gateways", refusedBoth)
}
