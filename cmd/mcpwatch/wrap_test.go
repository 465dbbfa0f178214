package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// fakeKafka starts a fake Kafka with mcpwatch's topics under prefix.
func fakeKafka(t *testing.T, prefix string) (brokers []string) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kafkaio.NewClient(kafkaio.Config{Brokers: c.ListenAddrs(), ClientID: "test"}, kgo.MetadataMinAge(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkaio.EnsureTopics(ctx, cl, kafkaio.Topics(event.TopicNames(prefix), 1, 1, 24)); err != nil {
		t.Fatal(err)
	}
	return c.ListenAddrs()
}

func runWrapCommand(t *testing.T, brokers []string, prefix, stdin string, args ...string) (string, int) {
	t.Helper()
	code := 0
	osExit = func(c int) { code = c }
	t.Cleanup(func() { osExit = os.Exit })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	root := newRoot()
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"--kafka", strings.Join(brokers, ","), "--topic-prefix", prefix,
		"--log-level", "error", "wrap", "--bootstrap-timeout", "20s"}, args...))
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("wrap: %v\n%s", err, errOut.String())
	}
	return out.String(), code
}

// TestWrapCommand runs `mcpwatch wrap -- cat` against a fake Kafka: cat answers every line with
// itself, so the client must get back exactly what it sent (nothing of mcpwatch's on stdout), and
// the raw topic must hold an event per message each way (and one for the request left unanswered),
// flushed before wrap exits. If it failed,
// wrapping would corrupt the protocol channel or lose the audit trail on exit.
func TestWrapCommand(t *testing.T) {
	brokers := fakeKafka(t, "wraptest")
	in := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","clientInfo":{"name":"desk","version":"1"}}}` + "\n" +
		`{"jsonrpc":"2.0","method":"notifications/initialized"}` + "\n"
	out, code := runWrapCommand(t, brokers, "wraptest", in, "--server-name", "echo", "--subject", "alice", "--", "cat")
	if out != in || code != 0 {
		t.Fatalf("stdout %q (exit %d), want the input back", out, code)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(event.TopicNames("wraptest").Raw),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var evs []event.Event
	for len(evs) < 5 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var e event.Event
			if err := event.Decode(r.Value, &e); err != nil {
				t.Fatal(err)
			}
			if string(r.Key) != "default/alice" {
				t.Errorf("key %q", r.Key)
			}
			evs = append(evs, e)
		})
	}
	if len(evs) != 5 {
		t.Fatalf("%d events, want 5", len(evs))
	}
	dirs := map[event.Direction]int{}
	for _, e := range evs {
		dirs[e.MCP.Direction]++
		if e.MCP.Transport != "stdio" || e.Target.Server != "echo" || e.Principal.Subject != "alice" || e.Principal.ClientID != "desk" {
			t.Errorf("event %+v %+v %+v", e.MCP, e.Target, e.Principal)
		}
	}
	// cat's echo of the initialize request reads as a request from the server, and the client's
	// initialize, never answered, gets its outcome when cat exits.
	if dirs[event.DirRequest] != 1 || dirs[event.DirServerRequest] != 1 || dirs[event.DirNotification] != 2 ||
		dirs[event.DirResponse] != 1 {
		t.Errorf("directions %v", dirs)
	}
}

// TestWrapCommandExitStatus: wrap exits with the server's status, so the MCP client sees it.
func TestWrapCommandExitStatus(t *testing.T) {
	if _, code := runWrapCommand(t, fakeKafka(t, "wrapexit"), "wrapexit", "", "--", "sh", "-c", "exit 3"); code != 3 {
		t.Fatalf("exit %d, want 3", code)
	}
}

// TestWrapCommandEnforces: a quarantine on the control topic stops the tool call at the wrapper,
// which answers with the gateway's denial code, while the rest of the session goes through. If it
// failed, a quarantined tool would stay reachable by wrapping its server instead of gating it.
func TestWrapCommandEnforces(t *testing.T) {
	brokers := fakeKafka(t, "wrapctl")
	ctl := event.Control{Schema: event.SchemaVersion, ID: event.NewID(), Time: time.Now(), Kind: event.ControlQuarantine,
		Scope: event.ScopeTool, Tenant: "default", Value: "echo/rm", Reason: "exfiltration"}
	v, err := event.Encode(&ctl)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: event.TopicNames("wrapctl").Control,
		Key: []byte(ctl.Key()), Value: v}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	initLine := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"clientInfo":{"name":"desk","version":"1"}}}` + "\n"
	in := initLine + `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"rm","arguments":{}}}` + "\n"
	out, _ := runWrapCommand(t, brokers, "wrapctl", in, "--server-name", "echo", "--", "cat")
	// cat's echo and the wrapper's refusal race to stdout: either order is right.
	lines := strings.SplitAfter(out, "\n")
	if len(lines) != 3 || lines[2] != "" {
		t.Fatalf("stdout %q, want two lines", out)
	}
	refusal := lines[1]
	switch {
	case lines[0] == initLine:
	case lines[1] == initLine:
		refusal = lines[0]
	default:
		t.Errorf("stdout %q lacks the echoed initialize", out)
	}
	var answer struct {
		ID    int `json:"id"`
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(refusal), &answer); err != nil {
		t.Fatalf("refusal %q: %v", refusal, err)
	}
	if answer.ID != 2 || answer.Error.Code != mcp.CodeDenied || !strings.Contains(answer.Error.Message, "exfiltration") {
		t.Errorf("answer %+v", answer)
	}
}

// TestWrapCommandPolicy: --policy-file makes wrap decide the client's calls by the gateway's
// policy: the call no rule allows is answered by wrap with the denial code and never reaches the
// server (cat would echo it), the allowed one passes byte for byte. If it failed, the flag would
// be accepted and ignored.
func TestWrapCommandPolicy(t *testing.T) {
	brokers := fakeKafka(t, "wrappol")
	path := t.TempDir() + "/policy.yaml"
	if err := os.WriteFile(path, []byte("version: 1\nrules:\n  - id: ls\n    resource: \"tool:echo/ls\"\n    actions: [call]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rm := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm"}}` + "\n"
	ls := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"ls"}}` + "\n"
	out, code := runWrapCommand(t, brokers, "wrappol", rm+ls, "--server-name", "echo", "--subject", "alice",
		"--policy-file", path, "--", "cat")
	lines := strings.SplitAfter(out, "\n")
	if code != 0 || len(lines) != 3 || lines[2] != "" {
		t.Fatalf("stdout %q (exit %d)", out, code)
	}
	var answer struct {
		ID    int `json:"id"`
		Error struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &answer); err != nil || answer.ID != 1 || answer.Error.Code != mcp.CodeDenied {
		t.Fatalf("answer to the denied call %q: %v", lines[0], err)
	}
	if lines[1] != ls {
		t.Fatalf("allowed call echoed as %q, want %q", lines[1], ls)
	}
}
