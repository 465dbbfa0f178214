package stdio

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/ingest/mcpwire"
)

// recorder collects published events.
type recorder struct {
	mu  sync.Mutex
	evs []*event.Event
}

func (r *recorder) Publish(_ context.Context, e *event.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, e)
	r.mu.Unlock()
}

func (r *recorder) all() []*event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*event.Event(nil), r.evs...)
}

// last waits for the n-th event (1-based) and returns it.
func (r *recorder) nth(t *testing.T, n int) *event.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if evs := r.all(); len(evs) >= n {
			return evs[n-1]
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("no event #%d; have %d", n, len(r.all()))
	return nil
}

// harness runs a Relay between pipes: the test plays both the client and a fake server.
type harness struct {
	t        *testing.T
	client   *io.PipeWriter // what the client sends
	toClient *bufio.Reader  // what the client receives
	toServer *bufio.Reader  // what the server receives
	server   *io.PipeWriter // what the server sends
	rec      *recorder
	done     chan error
}

func startRelay(t *testing.T, cfg Config) *harness {
	t.Helper()
	cinR, cinW := io.Pipe()
	coutR, coutW := io.Pipe()
	sinR, sinW := io.Pipe()
	soutR, soutW := io.Pipe()
	h := &harness{t: t, client: cinW, toClient: bufio.NewReader(coutR), toServer: bufio.NewReader(sinR),
		server: soutW, rec: &recorder{}, done: make(chan error, 1)}
	if cfg.ServerName == "" {
		cfg.ServerName = "fake"
	}
	go func() {
		h.done <- Relay(context.Background(), cfg, cinR, coutW, sinW, soutR, h.rec, slog.New(slog.DiscardHandler))
		_ = coutW.Close()
	}()
	t.Cleanup(func() {
		_ = cinW.Close()
		_ = soutW.Close()
		_ = coutR.Close()
		_ = sinR.Close()
		if err := <-h.done; err != nil {
			t.Errorf("Relay: %v", err)
		}
	})
	return h
}

func (h *harness) clientSends(line string) {
	h.t.Helper()
	if _, err := io.WriteString(h.client, line); err != nil {
		h.t.Error(err)
	}
}

func (h *harness) serverSends(line string) {
	h.t.Helper()
	if _, err := io.WriteString(h.server, line); err != nil {
		h.t.Error(err)
	}
}

func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	s, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v (got %q)", err, s)
	}
	return s
}

// TestRelayAuditsBothDirections: every message is forwarded byte for byte and audited with its
// direction, method, tool, sizes and pairing. If it failed, the wrapper would alter traffic or
// publish events that do not say what was called, by whom, and how it ended.
func TestRelayAuditsBothDirections(t *testing.T) {
	h := startRelay(t, Config{Principal: event.Principal{Subject: "alice"}})
	steps := []struct {
		fromClient bool
		line       string
	}{
		{true, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","clientInfo":{"name":"claude","version":"1.0"}}}` + "\n"},
		{false, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{}}}` + "\n"},
		{true, `{"jsonrpc":"2.0","method":"notifications/initialized"}` + "\r\n"},
		{true, `{ "jsonrpc" : "2.0", "id":"a",  "method":"tools/call","params":{"name":"lookup","arguments":{"email":"bob@example.com"}}}` + "\n"},
		{false, `{"jsonrpc":"2.0","id":"a","result":{"content":[],"isError":true}}` + "\n"},
		{true, `{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///etc/hosts"}}` + "\n"},
		{false, `{"jsonrpc":"2.0","id":2,"error":{"code":-32002,"message":"not found"}}` + "\n"},
		{false, `{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{}}` + "\n"},
		{true, `{"jsonrpc":"2.0","id":"s1","result":{"content":{"type":"text","text":"hi"}}}` + "\n"},
		{false, `{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}` + "\n"},
	}
	for _, s := range steps {
		if s.fromClient {
			h.clientSends(s.line)
			if got := readLine(t, h.toServer); got != s.line {
				t.Fatalf("server got %q, want %q", got, s.line)
			}
		} else {
			h.serverSends(s.line)
			if got := readLine(t, h.toClient); got != s.line {
				t.Fatalf("client got %q, want %q", got, s.line)
			}
		}
	}
	h.rec.nth(t, len(steps))
	evs := h.rec.all()
	want := []struct {
		dir    event.Direction
		method string
		tool   string
		result event.Result
		code   int
	}{
		{event.DirRequest, "initialize", "", event.ResultAllowed, 0},
		{event.DirResponse, "initialize", "", event.ResultAllowed, 0},
		{event.DirNotification, "notifications/initialized", "", event.ResultAllowed, 0},
		{event.DirRequest, "tools/call", "lookup", event.ResultAllowed, 0},
		{event.DirResponse, "tools/call", "lookup", event.ResultError, 0},
		{event.DirRequest, "resources/read", "", event.ResultAllowed, 0},
		{event.DirResponse, "resources/read", "", event.ResultError, -32002},
		{event.DirServerRequest, "sampling/createMessage", "", event.ResultAllowed, 0},
		{event.DirResponse, "sampling/createMessage", "", event.ResultAllowed, 0},
		{event.DirNotification, "notifications/tools/list_changed", "", event.ResultAllowed, 0},
	}
	for i, w := range want {
		e := evs[i]
		if e.MCP.Direction != w.dir || e.MCP.Method != w.method || e.MCP.Tool != w.tool ||
			e.Outcome.Result != w.result || e.Outcome.ErrorCode != w.code {
			t.Errorf("event %d: %s %s %q %s %d, want %+v", i, e.MCP.Direction, e.MCP.Method, e.MCP.Tool,
				e.Outcome.Result, e.Outcome.ErrorCode, w)
		}
		if e.MCP.Transport != Transport || e.Source != event.SourceMCP || e.Target.Server != "fake" || e.Tenant != mcp.DefaultTenant {
			t.Errorf("event %d: transport %q source %q server %q tenant %q", i, e.MCP.Transport, e.Source, e.Target.Server, e.Tenant)
		}
		if e.Principal.Subject != "alice" || e.Principal.ClientID != "claude" {
			t.Errorf("event %d: principal %+v, want alice/claude", i, e.Principal)
		}
		if e.MCP.ClientName != "claude" || e.MCP.ClientVersion != "1.0" || e.MCP.ProtocolVersion != "2025-06-18" {
			t.Errorf("event %d: client %q %q protocol %q", i, e.MCP.ClientName, e.MCP.ClientVersion, e.MCP.ProtocolVersion)
		}
	}
	call, res := evs[3], evs[4]
	if call.Correlation.RequestID != `"a"` || res.Correlation.RequestID != `"a"` {
		t.Errorf("request ids %q %q", call.Correlation.RequestID, res.Correlation.RequestID)
	}
	if call.Size.Request != len(strings.TrimSuffix(steps[3].line, "\n")) || res.Size.Response != len(strings.TrimSuffix(steps[4].line, "\n")) {
		t.Errorf("sizes %+v %+v", call.Size, res.Size)
	}
	if res.MCP.LatencyMS <= 0 || evs[8].MCP.LatencyMS <= 0 {
		t.Errorf("latencies %v %v, want > 0", res.MCP.LatencyMS, evs[8].MCP.LatencyMS)
	}
	if strings.Contains(call.MCP.ArgumentsMasked, "bob@example.com") || call.MCP.ArgumentsMasked == "" || call.PII["email"] != 1 {
		t.Errorf("arguments %q, pii %v: want the e-mail masked and counted", call.MCP.ArgumentsMasked, call.PII)
	}
	if evs[5].MCP.ResourceURI != "file:///etc/hosts" || evs[6].MCP.ResourceURI != "file:///etc/hosts" {
		t.Errorf("resource of request %q, of its response %q", evs[5].MCP.ResourceURI, evs[6].MCP.ResourceURI)
	}
	if evs[8].Size.Request == 0 || evs[8].Attributes[mcpwire.AttrSender] != "client" || evs[9].Attributes[mcpwire.AttrSender] != "server" {
		t.Errorf("client answer %+v %v, server notification %v", evs[8].Size, evs[8].Attributes, evs[9].Attributes)
	}
}

// TestRelayMalformedAndLarge: unreadable and oversized lines still pass through unchanged and are
// audited (error, uninspected), and the lines after them are read normally. If it failed, a bad
// line would crash the wrapper, break the session or go unaudited.
func TestRelayMalformedAndLarge(t *testing.T) {
	h := startRelay(t, Config{MaxLineBytes: 100})
	big := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"x","arguments":{"pad":"` +
		strings.Repeat("p", 200<<10) + `"}}}` + "\n"
	lines := []struct {
		fromClient bool
		line       string
		events     int // published once the line is through
	}{
		{true, "not json at all\n", 1},
		{false, `{"jsonrpc":"2.0","id":1,"result":{},"RESULT":{}}` + "\n", 2},
		{true, big, 3},
		{false, big, 4},
		{true, `{"jsonrpc":"2.0","id":3,"method":"ping"}` + "\n", 5},
		{true, "\n", 5}, // blank: forwarded, not audited
	}
	for _, l := range lines {
		if l.fromClient {
			go h.clientSends(l.line)
			if got := readLine(t, h.toServer); got != l.line {
				t.Fatalf("server got %d bytes, want %d", len(got), len(l.line))
			}
		} else {
			go h.serverSends(l.line)
			if got := readLine(t, h.toClient); got != l.line {
				t.Fatalf("client got %d bytes, want %d", len(got), len(l.line))
			}
		}
		// The event of a long line is published once it is through: wait, to keep the order.
		h.rec.nth(t, l.events)
	}
	evs := h.rec.all()
	if len(evs) != 5 {
		t.Fatalf("%d events, want 5", len(evs))
	}
	if e := evs[0]; e.Outcome.Result != event.ResultError || !strings.HasPrefix(e.Outcome.Reason, ReasonMalformed) ||
		e.Outcome.ErrorCode != mcp.CodeParseError || e.MCP.Direction != event.DirRequest || e.Size.Request != 15 {
		t.Errorf("malformed client line: %+v %+v", e.Outcome, e.Size)
	}
	if e := evs[1]; e.Outcome.Result != event.ResultError || !strings.HasPrefix(e.Outcome.Reason, ReasonMalformed) ||
		e.MCP.Direction != event.DirResponse {
		t.Errorf("malformed server line: %+v", e.Outcome)
	}
	for i, dir := range []event.Direction{event.DirRequest, event.DirResponse} {
		e := evs[2+i]
		if e.Attributes[mcpwire.AttrUninspected] != "true" || e.Outcome.Result != event.ResultAllowed || e.MCP.Direction != dir ||
			e.Size.Request+e.Size.Response != len(big) {
			t.Errorf("big line %d: %+v %+v %v", i, e.Outcome, e.Size, e.Attributes)
		}
	}
	if e := evs[4]; e.MCP.Method != "ping" || e.Outcome.Result != event.ResultAllowed {
		t.Errorf("line after the big one: %s %+v", e.MCP.Method, e.Outcome)
	}
}

var errRevoked = errors.New("principal revoked")

// TestRelayCheckRefuses: a request the check refuses never reaches the server; the client gets
// the gateway's denial code under its own id, and the event says denied. Under enforcement,
// unreadable and oversized lines are not forwarded either. If it failed, a revoked principal could
// keep calling tools through the wrapper.
func TestRelayCheckRefuses(t *testing.T) {
	var checked []string
	var mu sync.Mutex
	h := startRelay(t, Config{MaxLineBytes: 200, Check: func(p event.Principal, method, tool string) error {
		mu.Lock()
		checked = append(checked, method+"/"+tool)
		mu.Unlock()
		if tool == "rm" {
			return &Refusal{Rule: "control:revoke/tool/default/fake/rm", Reason: errRevoked.Error()}
		}
		return nil
	}})
	h.clientSends(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"rm","arguments":{}}}` + "\n")
	var answer struct {
		ID    int `json:"id"`
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(readLine(t, h.toClient)), &answer); err != nil {
		t.Fatal(err)
	}
	if answer.ID != 7 || answer.Error.Code != mcp.CodeDenied || !strings.Contains(answer.Error.Message, "revoked") {
		t.Errorf("answer %+v", answer)
	}
	// A batch with one refused request is refused whole, answered as a batch.
	h.clientSends(`[{"jsonrpc":"2.0","id":8,"method":"ping"},{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"rm"}}]` + "\n")
	var batch []json.RawMessage
	if err := json.Unmarshal([]byte(readLine(t, h.toClient)), &batch); err != nil || len(batch) != 2 {
		t.Fatalf("batch answer: %v %d", err, len(batch))
	}
	// Unreadable and oversized lines are refused rather than forwarded unchecked.
	h.clientSends(`{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"ok","Name":"rm"}}` + "\n")
	if got := readLine(t, h.toClient); !strings.Contains(got, `"code":-32600`) {
		t.Errorf("malformed answer %q", got)
	}
	h.clientSends(`{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"rm","arguments":{"pad":"` + strings.Repeat("p", 300) + `"}}}` + "\n")
	// An allowed call goes through: it is the first line the server sees.
	ok := `{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"ls"}}` + "\n"
	h.clientSends(ok)
	if got := readLine(t, h.toServer); got != ok {
		t.Fatalf("server got %q, want only the allowed call", got)
	}
	evs := h.rec.all()
	if len(evs) != 6 {
		t.Fatalf("%d events, want 6", len(evs))
	}
	for i, e := range evs[:5] {
		if e.Outcome.Result != event.ResultDenied {
			t.Errorf("event %d: %+v, want denied", i, e.Outcome)
		}
	}
	if e := evs[0]; e.Outcome.ErrorCode != mcp.CodeDenied || e.MCP.Tool != "rm" || e.Outcome.PolicyRule != "control:revoke/tool/default/fake/rm" {
		t.Errorf("denied call event %+v tool %q", e.Outcome, e.MCP.Tool)
	}
	if e := evs[4]; e.Attributes[mcpwire.AttrUninspected] != "true" {
		t.Errorf("oversized line event %+v", e.Attributes)
	}
	if e := evs[5]; e.Outcome.Result != event.ResultAllowed || e.MCP.Tool != "ls" {
		t.Errorf("allowed call %+v", e.Outcome)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(checked, ",") != "tools/call/rm,ping/,tools/call/rm,tools/call/ls" {
		t.Errorf("checked %v", checked)
	}
}

// TestRelayUnanswered: requests pending when the server goes away are audited as errors, so a
// crashed server leaves no call without an outcome.
func TestRelayUnanswered(t *testing.T) {
	h := startRelay(t, Config{})
	line := `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"slow"}}` + "\n"
	h.clientSends(line)
	readLine(t, h.toServer)
	_ = h.server.Close()
	e := h.rec.nth(t, 2)
	if e.MCP.Direction != event.DirResponse || e.MCP.Tool != "slow" || e.Outcome.Reason != ReasonUnanswered ||
		e.Correlation.RequestID != "5" {
		t.Errorf("unanswered event %+v %+v", e.MCP, e.Outcome)
	}
}

// TestRelayTransparentLastLine: a last line without a newline is forwarded as is and audited.
func TestRelayTransparentLastLine(t *testing.T) {
	h := startRelay(t, Config{})
	line := `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`
	go func() {
		h.clientSends(line)
		_ = h.client.Close()
	}()
	got, err := io.ReadAll(h.toServer)
	if err != nil || string(got) != line {
		t.Fatalf("server got %q (%v), want %q and EOF", got, err, line)
	}
	if e := h.rec.nth(t, 1); e.MCP.Method != "notifications/cancelled" {
		t.Errorf("event %+v", e.MCP)
	}
}

// bufCloser is a server stdin that records what it gets and runs onClose when closed.
type bufCloser struct {
	bytes.Buffer
	onClose func() error
}

func (b *bufCloser) Close() error { return b.onClose() }

// FuzzRelayTransparent: whatever the client sends — JSON-RPC or not, long lines or short, with or
// without a final newline — reaches the server byte for byte and the relay never fails. If it
// failed, wrapping would corrupt the sessions it audits.
func FuzzRelayTransparent(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":"b@c.de"}}}` + "\n"))
	f.Add([]byte("not json\r\n\n[1,2]\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}"))
	f.Add([]byte(`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"n"}]` + "\n" + strings.Repeat("x", 300)))
	f.Add([]byte("\xff\xfe\n{\"jsonrpc\":\"2.0\",\"id\":\"\\u0061\",\"method\":\"a\"}\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		soutR, soutW := io.Pipe()
		server := &bufCloser{onClose: soutW.Close}
		err := Relay(context.Background(), Config{MaxLineBytes: 64, Principal: event.Principal{Subject: "f"}},
			bytes.NewReader(in), io.Discard, server, soutR, &recorder{}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(server.Bytes(), in) {
			t.Fatalf("server got %q, want %q", server.Bytes(), in)
		}
	})
}
