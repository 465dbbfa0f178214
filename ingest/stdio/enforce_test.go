package stdio

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/internal/pins"
	"github.com/mcpwatch/mcpwatch/internal/spool"
	"github.com/mcpwatch/mcpwatch/policy"
)

const wrapPolicy = `version: 1
rules:
  - id: list
    resource: "**"
    actions: [list]
  - id: lookup
    resource: "tool:hr/lookup"
    actions: [call]
  - id: notes
    resource: "file:///notes"
    actions: [read]
`

// wrapped runs Wrap around the test binary in the given server mode with cfg and connects the
// official SDK client through it.
type wrapped struct {
	cs     *sdk.ClientSession
	stderr *syncBuffer
	rec    *recorder
	done   chan error
}

func startWrapped(t *testing.T, mode string, cfg Config, pub mcp.Publisher) *wrapped {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	w := &wrapped{stderr: &syncBuffer{}, rec: &recorder{}, done: make(chan error, 1)}
	if pub == nil {
		pub = w.rec
	}
	cfg.Stderr, cfg.ServerName = w.stderr, "hr"
	cfg.Principal = event.Principal{Subject: "alice"}
	cinR, cinW := io.Pipe()
	coutR, coutW := io.Pipe()
	go func() {
		w.done <- Wrap(ctx, cfg, cinR, coutW, testServer(t, mode), pub, slog.New(slog.DiscardHandler))
		_ = coutW.Close()
		_ = cinR.Close()
	}()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "test-client", Version: "1"}, nil).
		Connect(ctx, &sdk.IOTransport{Reader: coutR, Writer: cinW}, nil)
	if err != nil {
		t.Fatalf("connect through the wrapper: %v", err)
	}
	w.cs = cs
	t.Cleanup(func() {
		_ = cs.Close()
		if err := <-w.done; err != nil {
			t.Errorf("Wrap: %v", err)
		}
	})
	return w
}

func code(err error) int64 {
	var we *jsonrpc.Error
	if errors.As(err, &we) {
		return we.Code
	}
	return 0
}

func requestEvent(evs []*event.Event, method, name string) *event.Event {
	for _, e := range evs {
		if e.MCP.Direction == event.DirRequest && e.MCP.Method == method && (e.MCP.Tool == name || e.MCP.Prompt == name || e.MCP.ResourceURI == name) {
			return e
		}
	}
	return nil
}

// mcpwatch wrap enforces the gateway's policy on a real stdio server driven by the official SDK
// client: allowed calls, reads and lists pass byte for byte and their events name the rule; a
// tool call or prompt the policy does not allow is answered by the wrapper with the gateway's
// error, never reaches the server, and is audited as denied with the full reason. If it failed, a
// local MCP server would be an unguarded side door around the zero-trust policy.
func TestWrapPolicy(t *testing.T) {
	ctx := context.Background()
	p, err := policy.Load(strings.NewReader(wrapPolicy), "wrap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	w := startWrapped(t, "policy", Config{Policy: p, DataClasses: map[string][]string{"tool:lookup": {"hr"}}}, nil)
	tools, err := w.cs.ListTools(ctx, nil)
	if err != nil || len(tools.Tools) != 2 {
		t.Fatalf("tools/list: %v %+v (wrap lists every tool)", err, tools)
	}
	if res, err := w.cs.CallTool(ctx, &sdk.CallToolParams{Name: "lookup"}); err != nil || res.Content[0].(*sdk.TextContent).Text != "lookup done" {
		t.Fatalf("allowed call: %v %+v", err, res)
	}
	if _, err := w.cs.CallTool(ctx, &sdk.CallToolParams{Name: "delete_user"}); code(err) != mcp.CodeDenied {
		t.Fatalf("denied call: %v, want code %d", err, mcp.CodeDenied)
	}
	if res, err := w.cs.ReadResource(ctx, &sdk.ReadResourceParams{URI: "file:///notes"}); err != nil || res.Contents[0].Text != "notes" {
		t.Fatalf("allowed read: %v %+v", err, res)
	}
	if _, err := w.cs.GetPrompt(ctx, &sdk.GetPromptParams{Name: "greet"}); code(err) != mcp.CodeDenied {
		t.Fatalf("denied prompt: %v", err)
	}
	if err := w.cs.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	if err := <-w.done; err != nil {
		t.Fatal(err)
	}
	w.done <- nil // for the cleanup
	if s := w.stderr.String(); strings.Contains(s, "called delete_user") || strings.Contains(s, "prompt greet") || !strings.Contains(s, "called lookup") {
		t.Fatalf("server stderr %q: the denied requests reached it, or the allowed one did not", s)
	}
	evs := w.rec.all()
	lookup, del, read, greet := requestEvent(evs, "tools/call", "lookup"), requestEvent(evs, "tools/call", "delete_user"),
		requestEvent(evs, "resources/read", "file:///notes"), requestEvent(evs, "prompts/get", "greet")
	if lookup.Outcome.Result != event.ResultAllowed || lookup.Outcome.PolicyRule != "lookup" ||
		lookup.Attributes[mcp.AttrPolicyEffect] != "allow" || len(lookup.DataClasses) != 1 || lookup.DataClasses[0] != "hr" {
		t.Errorf("allowed call event %+v %v %v", lookup.Outcome, lookup.Attributes, lookup.DataClasses)
	}
	if del.Outcome.Result != event.ResultDenied || del.Outcome.PolicyRule != policy.DefaultDenyRule ||
		!strings.Contains(del.Outcome.Reason, "no rule allows call on tool:hr/delete_user") || del.Outcome.ErrorCode != mcp.CodeDenied {
		t.Errorf("denied call event %+v", del.Outcome)
	}
	if read.Outcome.PolicyRule != "notes" || greet.Outcome.Result != event.ResultDenied {
		t.Errorf("read %+v, prompt %+v", read.Outcome, greet.Outcome)
	}
	// The SDK opens with server/discover (2026-07-28), a method the policy does not govern.
	if disc := requestEvent(evs, "server/discover", ""); disc == nil || disc.Attributes[mcp.AttrPolicyEffect] != "ungoverned" {
		t.Errorf("server/discover event %+v", disc)
	}
}

// Tool pins in wrap: a tool whose definition differs from its pin is audited when the server
// lists it and, in tofu mode, its calls are refused until approved. If it failed, a local server
// could swap a tool's definition under the client unnoticed.
func TestWrapPins(t *testing.T) {
	st, err := pins.Open(filepath.Join(t.TempDir(), "pins.json"), pins.TOFU, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// Pinned earlier with another definition.
	st.Observe("hr", map[string]string{"lookup": strings.Repeat("0", 64)})
	w := startWrapped(t, "policy", Config{ToolPins: st}, nil)
	ctx := context.Background()
	if _, err := w.cs.ListTools(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := w.cs.CallTool(ctx, &sdk.CallToolParams{Name: "lookup"}); code(err) != mcp.CodeDenied {
		t.Fatalf("call of a changed tool: %v", err)
	}
	if res, err := w.cs.CallTool(ctx, &sdk.CallToolParams{Name: "delete_user"}); err != nil || res.IsError {
		t.Fatalf("call of a tool pinned on first use: %v", err)
	}
	evs := w.rec.all()
	var changed *event.Event
	for _, e := range evs {
		if e.Attributes["mcp.tool.changed"] == "lookup" {
			changed = e
		}
	}
	if changed == nil || changed.Severity != mcp.SeverityToolChanged || changed.Outcome.PolicyRule != mcp.PinRule("hr", "lookup") ||
		changed.MCP.Transport != Transport {
		t.Fatalf("pin change event %+v", changed)
	}
	if e := requestEvent(evs, "tools/call", "lookup"); e.Outcome.Result != event.ResultDenied || e.Outcome.PolicyRule != "pin:hr/lookup" {
		t.Fatalf("refused call event %+v", e.Outcome)
	}
	if strings.Contains(w.stderr.String(), "called lookup") {
		t.Fatal("the blocked call reached the server")
	}
}

// With a durable publisher in fail-closed mode, a full spool (Kafka not acknowledging) makes wrap
// refuse requests with CodeAuditUnavailable instead of serving them unaudited, and serve again
// once Kafka takes records. The broker is franz-go's in-process one, the only kind that can be
// made to stall on cue. If it failed, a local server would be used without an audit trail.
func TestWrapFailsClosedOnFullSpool(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "raw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("raw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("warm")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(t.TempDir(), spool.WithSegmentBytes(4096), spool.WithMaxBytes(8192))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Close() })
	pub, err := mcp.NewDurablePublisher(cl, sp, "raw", mcp.WithMaxInFlight(1), mcp.WithDurableRegisterer(prometheus.NewRegistry()),
		mcp.WithDurableLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	stuck := make(chan struct{})
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		<-stuck
		return nil, nil, false
	})
	released := false
	release := func() {
		if !released {
			released = true
			close(stuck)
		}
	}
	t.Cleanup(release)

	w := startWrapped(t, "policy", Config{}, pub)
	ctx := context.Background()
	for i := 0; pub.Healthy() == nil; i++ {
		if i > 10000 {
			t.Fatal("the spool never filled")
		}
		pub.Publish(ctx, &event.Event{ID: event.NewID(), Time: time.Now(), Source: event.SourceMCP, Tenant: "t",
			Principal: event.Principal{Subject: "filler"}, Attributes: map[string]string{"pad": strings.Repeat("x", 200)}})
	}
	if _, err := w.cs.CallTool(ctx, &sdk.CallToolParams{Name: "lookup"}); code(err) != mcp.CodeAuditUnavailable {
		t.Fatalf("call with the audit trail down: %v, want code %d", err, mcp.CodeAuditUnavailable)
	}
	if strings.Contains(w.stderr.String(), "called lookup") {
		t.Fatal("a call that could not be audited reached the server")
	}
	release()
	deadline := time.Now().Add(20 * time.Second)
	for pub.Healthy() != nil {
		if time.Now().After(deadline) {
			t.Fatal("never healthy again")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if res, err := w.cs.CallTool(ctx, &sdk.CallToolParams{Name: "lookup"}); err != nil || res.IsError {
		t.Fatalf("call once Kafka is back: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_ = w.cs.Close()
	if err := pub.Close(cctx); err != nil {
		t.Fatal(err)
	}
}
