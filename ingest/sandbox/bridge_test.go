//lint:file-ignore SA1019 sampling is deprecated from protocol 2026-07-28 but part of 2025-06-18 and 2025-11-25, which the bridge must still relay

package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

type bridgeFixture struct {
	m    *Manager
	b    *Bridge
	srv  *httptest.Server
	mu   sync.Mutex
	ends []SessionEnd
}

func newBridge(t *testing.T, mutate ...func(*BridgeConfig)) *bridgeFixture {
	t.Helper()
	m := newManager(t)
	path, args, env := testBinary(t, "sdk")
	cfg := BridgeConfig{Spec: Spec{Server: "files", Path: path, Args: args, Env: env}, Log: slog.New(slog.DiscardHandler)}
	for _, f := range mutate {
		f(&cfg)
	}
	b, err := NewBridge(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := &bridgeFixture{m: m, b: b}
	b.OnSessionEnd(func(se SessionEnd) {
		f.mu.Lock()
		f.ends = append(f.ends, se)
		f.mu.Unlock()
	})
	f.srv = httptest.NewServer(b)
	t.Cleanup(func() {
		f.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("close bridge: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // the end hooks run on their own goroutines
	})
	return f
}

func (f *bridgeFixture) waitEnd(t *testing.T, reason string) SessionEnd {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		for _, se := range f.ends {
			if se.Reason == reason {
				f.mu.Unlock()
				return se
			}
		}
		f.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no session end %q; got %+v", reason, f.ends)
	return SessionEnd{}
}

type clientOpts struct {
	progress chan string
	sampling bool
}

func (f *bridgeFixture) connect(t *testing.T, o clientOpts) *sdk.ClientSession {
	t.Helper()
	opts := &sdk.ClientOptions{}
	if o.progress != nil {
		opts.ProgressNotificationHandler = func(_ context.Context, r *sdk.ProgressNotificationClientRequest) {
			o.progress <- r.Params.Message
		}
	}
	if o.sampling {
		opts.CreateMessageHandler = func(context.Context, *sdk.CreateMessageRequest) (*sdk.CreateMessageResult, error) {
			return &sdk.CreateMessageResult{Model: "test-model", Role: "assistant", Content: &sdk.TextContent{Text: "4"}}, nil
		}
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c := sdk.NewClient(&sdk.Implementation{Name: "test-client", Version: "1.0.0"}, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: f.srv.URL + "/mcp",
		HTTPClient: &http.Client{Transport: tr}, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("connect to the bridge: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func text(t *testing.T, res *sdk.CallToolResult, err error) string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if res.IsError || len(res.Content) != 1 {
		t.Fatalf("result %+v", res)
	}
	return res.Content[0].(*sdk.TextContent).Text
}

// The official Go SDK client against a Go SDK stdio server through the bridge: tools, structured
// results, progress on the POST stream before the result, and a server→client sampling request
// answered by the client. If it failed, the bridge would not be transparent — a message dropped,
// misrouted, or a stream shape the SDK does not accept. The server must run in its sandbox, one
// per session, and DELETE must take the sandbox with it.
func TestBridgeSDKSession(t *testing.T) {
	root := requireCgroup2(t)
	f := newBridge(t)
	progress := make(chan string, 4)
	cs := f.connect(t, clientOpts{progress: progress, sampling: true})
	ctx := callCtx(t)

	sbID := f.b.SandboxOf(cs.ID())
	if sbID == "" || cs.ID() == "" {
		t.Fatalf("session %q has no sandbox", cs.ID())
	}
	sbs := f.b.Sandboxes()
	if len(sbs) != 1 || sbs[0].ID() != sbID {
		t.Fatalf("sandboxes %v", sbs)
	}
	sb := sbs[0]
	rel, _ := filepath.Rel(root, sb.CgroupPath())
	if got := cgroupOf(t, sb.Pid()); got != "/"+rel {
		t.Fatalf("server in cgroup %q, want %q", got, "/"+rel)
	}

	tools, err := cs.ListTools(ctx, nil)
	if err != nil || len(tools.Tools) != 4 {
		t.Fatalf("tools/list: %v %+v", err, tools)
	}
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "héllo ✓"}})
	if got := text(t, res, err); got != `{"echo":"héllo ✓"}` {
		t.Fatalf("echo %q", got)
	}
	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "whoami"})
	who := text(t, res, err)
	if !strings.Contains(who, "MARKER=sandboxed") || strings.Contains(who, "PATH=") {
		t.Errorf("server environment %q: want only the configured one", who)
	}
	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "ask"})
	if got := text(t, res, err); got != "4" {
		t.Errorf("sampling round trip %q", got)
	}

	release := filepath.Join(t.TempDir(), "release")
	done := make(chan string, 1)
	go func() {
		p := &sdk.CallToolParams{Name: "slow", Arguments: map[string]any{"text": release}}
		p.SetProgressToken("p1")
		res, err := cs.CallTool(ctx, p)
		if err != nil {
			done <- err.Error()
			return
		}
		done <- res.Content[0].(*sdk.TextContent).Text
	}()
	select {
	case msg := <-progress:
		if msg != "halfway" {
			t.Fatalf("progress %q", msg)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no progress before the result: the bridge does not stream")
	}
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := <-done; got != "done" {
		t.Fatalf("slow: %q", got)
	}

	// A second session gets a second sandbox.
	cs2 := f.connect(t, clientOpts{})
	if sb2 := f.b.SandboxOf(cs2.ID()); sb2 == "" || sb2 == sbID {
		t.Fatalf("second session sandbox %q (first %q)", sb2, sbID)
	}

	if err := cs.Close(); err != nil { // DELETE
		t.Fatal(err)
	}
	se := f.waitEnd(t, "deleted")
	if se.Sandbox != sbID || se.Session != cs.ID() {
		t.Fatalf("end %+v", se)
	}
	if _, err := os.Stat(sb.CgroupPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup after DELETE: %v", err)
	}
	if alive(sb.Pid()) {
		t.Error("server alive after DELETE")
	}
	if len(f.b.Sandboxes()) != 1 {
		t.Errorf("sandboxes after DELETE: %v, want only the second session's", f.b.Sandboxes())
	}
	if f.b.SandboxOf(cs.ID()) != sbID { // its last events are still audited with it
		t.Error("ended session's sandbox forgotten at once")
	}
}

// Killing the server mid-call must answer the pending call with a clear error naming the exit,
// report the end (for the audit trail), and make the session unknown (404) afterwards.
func TestBridgeServerKilled(t *testing.T) {
	f := newBridge(t)
	cs := f.connect(t, clientOpts{progress: make(chan string, 4)})
	sb := f.b.Sandboxes()[0]
	ctx := callCtx(t)
	errc := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "slow", Arguments: map[string]any{"text": "/nonexistent/never"}})
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond) // the call is in flight
	if err := syscall.Kill(sb.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "exited") || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("pending call error %v: want the server's exit", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("pending call not answered after the server died")
	}
	se := f.waitEnd(t, "exited")
	if se.Exit != "signal: killed" || se.Sandbox != sb.ID() || se.Pending != 1 {
		t.Errorf("end %+v", se)
	}
	if _, err := cs.ListTools(ctx, nil); err == nil {
		t.Fatal("a call on the dead session succeeded")
	}
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":9,"method":"ping"}`))
	req.Header.Set(headerSessionID, cs.ID())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("dead session: %d, want 404", resp.StatusCode)
	}
}

// A frozen sandbox refuses traffic instead of queueing it; thawed, it serves again.
func TestBridgeFrozenRefuses(t *testing.T) {
	f := newBridge(t)
	cs := f.connect(t, clientOpts{})
	sb := f.b.Sandboxes()[0]
	ctx := callCtx(t)
	if err := sb.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := cs.ListTools(ctx, nil)
	if err == nil || !strings.Contains(err.Error(), "quarantined") {
		t.Fatalf("frozen sandbox: %v", err)
	}
	if err := sb.Thaw(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.ListTools(ctx, nil); err != nil {
		t.Fatalf("after thaw: %v", err)
	}
}

// An idle session must not keep its server process forever.
func TestBridgeIdleTimeout(t *testing.T) {
	f := newBridge(t, func(c *BridgeConfig) { c.IdleTimeout = 300 * time.Millisecond })
	cs := f.connect(t, clientOpts{})
	sb := f.b.Sandboxes()[0]
	se := f.waitEnd(t, "idle")
	if se.Session != cs.ID() {
		t.Fatalf("end %+v", se)
	}
	<-sb.Done()
	if _, err := os.Stat(sb.CgroupPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup after idle end: %v", err)
	}
}

// Raw HTTP edge cases: what a client gets without a session, with an unknown one, with a batch and
// with a JSON-only Accept header.
func TestBridgeHTTP(t *testing.T) {
	f := newBridge(t)
	do := func(method, session, accept, body string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, f.srv.URL+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		if session != "" {
			req.Header.Set(headerSessionID, session)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	resp, body := do(http.MethodPost, "", "application/json", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"id":1`) || !strings.Contains(body, "initialize") {
		t.Errorf("no session: %d %s", resp.StatusCode, body)
	}
	resp, _ = do(http.MethodPost, "nope", "application/json", `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown session: %d", resp.StatusCode)
	}
	resp, _ = do(http.MethodPut, "", "", "")
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %d", resp.StatusCode)
	}
	resp, body = do(http.MethodPost, "", "application/json", "{")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "-32700") {
		t.Errorf("unparseable: %d %s", resp.StatusCode, body)
	}

	// A pretty-printed initialize (newlines must not split it on the server's stdin).
	resp, body = do(http.MethodPost, "", "application/json", "{\n \"jsonrpc\": \"2.0\", \"id\": 1.0, \"method\": \"initialize\",\n"+
		` "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}`)
	sess := resp.Header.Get(headerSessionID)
	if resp.StatusCode != http.StatusOK || sess == "" || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(body, `"sandboxed"`) {
		t.Fatalf("initialize: %d %q %s", resp.StatusCode, sess, body)
	}
	resp, _ = do(http.MethodPost, sess, "application/json", `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("notification: %d", resp.StatusCode)
	}
	resp, body = do(http.MethodPost, sess, "application/json",
		`[{"jsonrpc":"2.0","id":"a","method":"ping"},{"jsonrpc":"2.0","id":"b","method":"no/such/method"}]`)
	var batch []map[string]any
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &batch) != nil || len(batch) != 2 {
		t.Fatalf("batch: %d %s", resp.StatusCode, body)
	}
	ids := map[any]bool{batch[0]["id"]: true, batch[1]["id"]: true}
	if !ids["a"] || !ids["b"] {
		t.Errorf("batch ids %s", body)
	}
	resp, _ = do(http.MethodDelete, sess, "", "")
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("DELETE: %d", resp.StatusCode)
	}
	resp, _ = do(http.MethodDelete, sess, "", "")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("second DELETE: %d", resp.StatusCode)
	}
}

// Sessions are bounded: the server processes they cost must not be unlimited.
func TestBridgeMaxSessions(t *testing.T) {
	f := newBridge(t, func(c *BridgeConfig) { c.MaxSessions = 1 })
	f.connect(t, clientOpts{})
	c := sdk.NewClient(&sdk.Implementation{Name: "second", Version: "1"}, nil)
	_, err := c.Connect(callCtx(t), &sdk.StreamableClientTransport{Endpoint: f.srv.URL, MaxRetries: -1}, nil)
	if err == nil || !strings.Contains(err.Error(), "Service Unavailable") {
		t.Fatalf("second session: %v", err)
	}
}

// failFreezeWrites makes the next n cgroup.freeze writes of value for sandbox id fail, as a
// kernel refusing them would.
func failFreezeWrites(t *testing.T, id, value string, n int) {
	t.Helper()
	var mu sync.Mutex
	h := func(sb, v string) error {
		mu.Lock()
		defer mu.Unlock()
		if sb != id || v != value || n == 0 {
			return nil
		}
		n--
		return &os.PathError{Op: "write", Path: "cgroup.freeze", Err: syscall.EBUSY}
	}
	freezeFault.Store(&h)
	t.Cleanup(func() { freezeFault.Store(nil) })
}

func kernelFrozen(t *testing.T, sb *Sandbox) bool {
	t.Helper()
	_, frozen, err := cgroup(sb.CgroupPath()).events()
	if err != nil {
		t.Fatal(err)
	}
	return frozen
}

// A quarantine whose cgroup.freeze write fails is retried by the next reconciliation until the
// kernel confirms it, the sandbox's traffic refused meanwhile; a failed thaw is retried the same
// way. If this failed, one refused write would leave a quarantined server running for good (the
// bridge believing it frozen), or a lifted one frozen.
func TestBridgeFreezeRetried(t *testing.T) {
	f := newBridge(t)
	cs := f.connect(t, clientOpts{})
	sb := f.b.Sandboxes()[0]
	ctx := callCtx(t)
	quarantined := true
	apply := func() []QuarantineChange {
		return f.b.ApplyQuarantine(ctx, func(id string) bool { return quarantined && id == sb.ID() })
	}

	failFreezeWrites(t, sb.ID(), "1", 1)
	ch := apply()
	if len(ch) != 1 || ch[0].Err == nil || !ch[0].Frozen || !errors.Is(ch[0].Err, syscall.EBUSY) {
		t.Fatalf("failed freeze reported as %+v", ch)
	}
	if kernelFrozen(t, sb) || sb.Settled() {
		t.Fatal("the kernel froze a sandbox whose write failed, or the failure counts as settled")
	}
	if _, err := cs.ListTools(ctx, nil); err == nil || !strings.Contains(err.Error(), "quarantined") {
		t.Fatalf("traffic of a sandbox whose freeze failed: %v, want refused", err)
	}
	ch = apply()
	if len(ch) != 1 || ch[0].Err != nil || !ch[0].Frozen {
		t.Fatalf("retried freeze: %+v", ch)
	}
	if !kernelFrozen(t, sb) || !sb.Settled() {
		t.Fatal("retried freeze not confirmed by cgroup.events")
	}
	if ch = apply(); len(ch) != 0 {
		t.Fatalf("a confirmed freeze was applied again: %+v", ch)
	}

	quarantined = false
	failFreezeWrites(t, sb.ID(), "0", 1)
	ch = apply()
	if len(ch) != 1 || ch[0].Err == nil || ch[0].Frozen {
		t.Fatalf("failed thaw reported as %+v", ch)
	}
	if !kernelFrozen(t, sb) || !sb.Frozen() {
		t.Fatal("a sandbox whose thaw failed is not frozen any more")
	}
	ch = apply()
	if len(ch) != 1 || ch[0].Err != nil || ch[0].Frozen || kernelFrozen(t, sb) {
		t.Fatalf("retried thaw: %+v", ch)
	}
	if _, err := cs.ListTools(ctx, nil); err != nil {
		t.Fatalf("after the thaw: %v", err)
	}
}
