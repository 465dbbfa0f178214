package mcp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/sandbox"
	"github.com/mcpwatch/mcpwatch/internal/control"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// stdioServerEnv makes the test binary act as a stdio MCP server (the official Go SDK's) that the
// router launches in a sandbox. init runs before TestMain, so the server starts without the test
// machinery.
const stdioServerEnv = "MCPWATCH_ROUTER_TEST_STDIO_SERVER"

func init() {
	if os.Getenv(stdioServerEnv) == "" {
		return
	}
	s := sdk.NewServer(&sdk.Implementation{Name: "sandboxed-files", Version: "1.0.0"}, nil)
	sdk.AddTool(s, &sdk.Tool{Name: "echo", Description: "echoes"},
		func(_ context.Context, _ *sdk.CallToolRequest, in echoIn) (*sdk.CallToolResult, echoOut, error) {
			return nil, echoOut{Echo: in.Text}, nil
		})
	sdk.AddTool(s, &sdk.Tool{Name: "hang", Description: "never answers"},
		func(ctx context.Context, _ *sdk.CallToolRequest, _ struct{}) (*sdk.CallToolResult, any, error) {
			<-ctx.Done()
			return nil, nil, ctx.Err()
		})
	err := s.Run(context.Background(), &sdk.StdioTransport{})
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintln(os.Stderr, "stdio server:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// requireSandboxes returns the cgroup v2 mount, or skips (fails under CI=true) when sandboxes
// cannot run here.
func requireSandboxes(t testing.TB) string {
	t.Helper()
	root, err := sandbox.FindCgroup2()
	if err == nil && os.Geteuid() != 0 {
		err = errors.New("managing cgroups needs root")
	}
	if err != nil {
		if testenv.InCI() {
			t.Fatalf("sandboxed upstreams cannot be tested: %v", err)
		}
		t.Skipf("sandboxed upstreams cannot be tested: %v", err)
	}
	return root
}

func newSandboxManager(t testing.TB) *sandbox.Manager {
	t.Helper()
	requireSandboxes(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	m, err := sandbox.NewManager(sandbox.Options{Parent: "mcpwatch-test-" + hex.EncodeToString(b[:]),
		StopGrace: time.Second, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("close sandbox manager: %v", err)
		}
	})
	return m
}

var testLimits = sandbox.Limits{MemoryMax: 512 << 20, PidsMax: 64, CPUMax: 1}

// goStdioBridge is a bridge running this test binary as the Go SDK stdio server.
func goStdioBridge(t testing.TB, m *sandbox.Manager, name string) *sandbox.Bridge {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := sandbox.NewBridge(m, sandbox.BridgeConfig{
		Spec: sandbox.Spec{Server: name, Path: exe, Args: []string{"-test.run=^$"},
			Env: []string{stdioServerEnv + "=1"}, Limits: testLimits},
		Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type routerFixture struct {
	r       *Router
	srv     *httptest.Server
	store   *control.Store
	events  *recorder
	actions *actionRecorder
	reg     *prometheus.Registry
}

func newRouterFixture(t testing.TB, routes []Route) *routerFixture {
	t.Helper()
	auth, err := NewStaticTokens([]StaticToken{
		{Token: aliceToken, Principal: event.Principal{Subject: "alice", ClientID: "desktop"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &routerFixture{store: control.NewStore(), events: &recorder{}, actions: &actionRecorder{}, reg: prometheus.NewRegistry()}
	f.r, err = NewRouter(Config{Tenant: "acme", Observer: "gw-test", Actions: f.actions}, routes, auth, f.events, f.store, f.reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(f.r)
	t.Cleanup(func() {
		f.srv.Close()
		f.r.Close()
	})
	return f
}

func (f *routerFixture) connect(t testing.TB, path string, o clientOpts) *sdk.ClientSession {
	t.Helper()
	ff := &fixture{srv: &httptest.Server{URL: f.srv.URL + strings.TrimSuffix(path, "/mcp")}}
	if !strings.HasSuffix(path, "/mcp") {
		t.Fatalf("route %q: the test client appends /mcp", path)
	}
	return ff.connect(t, o)
}

// sessionEvents returns the events of one MCP session, the initialize request (which has no
// session yet) aside.
func sessionEvents(evs []*event.Event, session string) []*event.Event {
	var out []*event.Event
	for _, e := range evs {
		if e.Correlation.SessionID == session {
			out = append(out, e)
		}
	}
	return out
}

func cgroupOfPid(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			return p
		}
	}
	return ""
}

func cgroupFrozen(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), "frozen 1")
}

func waitUntil(t *testing.T, what string, within time.Duration, cond func() bool) time.Duration {
	t.Helper()
	begin := time.Now()
	for !cond() {
		if time.Since(begin) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(begin)
}

// The gateway with two upstreams from one config: a remote Go SDK server over HTTP and a Go SDK
// stdio server the gateway launches in a sandbox, both driven by the official Go SDK client. If
// it failed, either routing would mix servers up (events naming the wrong server or route), the
// sandboxed server would not be transparent through the bridge, its events would lack the
// sandbox id the eBPF and quarantine paths key on, or the process would escape its cgroup.
func TestRouterTwoUpstreams(t *testing.T) {
	root := requireSandboxes(t)
	m := newSandboxManager(t)
	up := newUpstream(t, false)
	bridge := goStdioBridge(t, m, "local")
	f := newRouterFixture(t, []Route{
		{Name: "remote", Prefix: "/remote/mcp", URL: up.srv.URL},
		{Name: "local", Prefix: "/local/mcp", Bridge: bridge},
	})

	remote := f.connect(t, "/remote/mcp", clientOpts{token: aliceToken})
	local := f.connect(t, "/local/mcp", clientOpts{token: aliceToken})
	if got := local.InitializeResult().ServerInfo.Name; got != "sandboxed-files" {
		t.Fatalf("local server %q", got)
	}
	if got := remote.InitializeResult().ServerInfo.Name; got != "upstream" {
		t.Fatalf("remote server %q", got)
	}
	for _, cs := range []*sdk.ClientSession{remote, local} {
		res, err := echo(t, cs, "über ✓")
		if err != nil || res.IsError || res.StructuredContent == nil {
			t.Fatalf("echo: %v %+v", err, res)
		}
	}

	sbID := bridge.SandboxOf(local.ID())
	sbs := m.Sandboxes()
	if sbID == "" || len(sbs) != 1 || sbs[0].ID() != sbID {
		t.Fatalf("sandbox %q, manager has %v", sbID, sbs)
	}
	sb := sbs[0]
	rel, _ := filepath.Rel(root, sb.CgroupPath())
	if got := cgroupOfPid(t, sb.Pid()); got != "/"+rel {
		t.Fatalf("sandboxed server in cgroup %q, want %q", got, "/"+rel)
	}
	have := map[string]bool{}
	for _, c := range m.Controllers() {
		have[c] = true
	}
	for ctrl, fv := range map[string][2]string{
		sandbox.ControllerMemory: {"memory.max", fmt.Sprint(testLimits.MemoryMax)},
		sandbox.ControllerPids:   {"pids.max", fmt.Sprint(testLimits.PidsMax)},
	} {
		b, err := os.ReadFile(filepath.Join(sb.CgroupPath(), fv[0]))
		if have[ctrl] && (err != nil || strings.TrimSpace(string(b)) != fv[1]) {
			t.Errorf("%s = %q (%v), want %s", fv[0], b, err, fv[1])
		}
		if !have[ctrl] {
			t.Logf("%s controller not in the cgroup v2 hierarchy here: %s not applied (degraded with a warning)", ctrl, fv[0])
		}
	}

	evs := f.events.waitFor(t, "both echo responses", has(event.DirResponse, "tools/call", 2))
	for _, e := range evs {
		switch e.Target.Server {
		case "remote":
			if e.Target.Route != "/remote/mcp" || e.Target.Sandbox != "" {
				t.Errorf("remote event target %+v", e.Target)
			}
		case "local":
			if e.Target.Route != "/local/mcp" {
				t.Errorf("local event target %+v", e.Target)
			}
			// Every event of the session carries the sandbox; what comes before the session (and
			// its sandbox) exists — the SDK's stateless server/discover probe, the initialize
			// request — cannot.
			if e.Correlation.SessionID != "" && e.Target.Sandbox != sbID {
				t.Errorf("local %s %s event without its sandbox: %+v", e.MCP.Direction, e.MCP.Method, e.Target)
			}
		default:
			t.Errorf("event for server %q", e.Target.Server)
		}
	}
	localEvs := sessionEvents(evs, local.ID())
	if len(find(localEvs, event.DirResponse, "tools/call")) != 1 {
		t.Errorf("local session events:\n%s", dump(localEvs))
	}

	// No route: 404 and an audit record naming the principal and the path.
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/nothing/here", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	req.Header.Set("Authorization", "Bearer "+aliceToken)
	hr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	hr.Body.Close()
	if hr.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown route: %d", hr.StatusCode)
	}
	f.events.waitFor(t, "the unrouted request", func(evs []*event.Event) bool {
		for _, e := range evs {
			if e.Attributes["http.path"] == "/nothing/here" && e.Outcome.Result == event.ResultDenied &&
				e.Outcome.HTTPStatus == 404 && e.Principal.Subject == "alice" && e.Target.Server == "" {
				return true
			}
		}
		return false
	})

	// DELETE ends the session and its sandbox.
	if err := local.Close(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "sandbox cgroup removed after DELETE", 15*time.Second, func() bool {
		_, err := os.Stat(sb.CgroupPath())
		return errors.Is(err, os.ErrNotExist)
	})
	f.events.waitFor(t, "the sandbox end event", func(evs []*event.Event) bool {
		for _, e := range evs {
			if e.Attributes[attrSandboxEvent] == "ended" && e.Target.Sandbox == sbID &&
				e.Attributes[attrSandboxReason] == "deleted" && e.Principal.Subject == "alice" &&
				e.Process != nil && e.Process.CgroupID == sb.CgroupID() {
				return true
			}
		}
		return false
	})
}

// A quarantine of the sandbox (or of its server) from the control topic must freeze the sandbox
// and refuse its calls within a second, and lifting it must thaw it: this is how the responder
// contains a compromised server without losing its state for forensics.
func TestRouterSandboxQuarantine(t *testing.T) {
	m := newSandboxManager(t)
	bridge := goStdioBridge(t, m, "local")
	f := newRouterFixture(t, []Route{{Name: "local", Prefix: "/local/mcp", Bridge: bridge}})
	cs := f.connect(t, "/local/mcp", clientOpts{token: aliceToken})
	sb := m.Sandboxes()[0]

	for _, tc := range []struct {
		scope event.ControlScope
		value string
	}{{event.ScopeSandbox, sb.ID()}, {event.ScopeServer, "local"}} {
		ctl := applyControl(t, f.store, event.ControlQuarantine, tc.scope, tc.value, "suspicious egress")
		took := waitUntil(t, "sandbox frozen", 3*time.Second, func() bool { return cgroupFrozen(t, sb.CgroupPath()) })
		t.Logf("%s quarantine froze the sandbox in %v", tc.scope, took)
		if took > time.Second {
			t.Errorf("freeze took %v, more than a second", took)
		}
		if _, err := echo(t, cs, "x"); err == nil || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("call to a quarantined sandbox: %v", err)
		}
		evs := f.events.waitFor(t, "the frozen event", func(evs []*event.Event) bool {
			for _, e := range evs {
				if e.Attributes[attrSandboxEvent] == "frozen" && e.Target.Sandbox == sb.ID() && e.Outcome.PolicyRule == "control:"+ctl.Key() {
					return true
				}
			}
			return false
		})
		var denied bool
		for _, e := range find(evs, event.DirRequest, "tools/call") {
			denied = denied || (e.Outcome.Result == event.ResultDenied && e.Outcome.PolicyRule == "control:"+ctl.Key() && e.Target.Sandbox == sb.ID())
		}
		if !denied {
			t.Fatalf("no denied call under %s:\n%s", ctl.Key(), dump(evs))
		}

		if err := f.store.Apply([]byte(ctl.Key()), nil); err != nil { // tombstone: lifted
			t.Fatal(err)
		}
		// The kernel reports the cgroup thawed as soon as cgroup.freeze is written, a moment
		// before the sandbox lets traffic through again: wait for both.
		waitUntil(t, "sandbox thawed", 3*time.Second, func() bool { return !cgroupFrozen(t, sb.CgroupPath()) && !sb.Frozen() })
		if res, err := echo(t, cs, "back"); err != nil || res.IsError {
			t.Fatalf("after lifting: %v %+v", err, res)
		}
	}
}

// Killing the sandboxed server mid-call: the client gets a clear error naming the exit, the
// pending call is audited as failed, and an audit event records the end with the exit status.
func TestRouterSandboxKilled(t *testing.T) {
	m := newSandboxManager(t)
	bridge := goStdioBridge(t, m, "local")
	f := newRouterFixture(t, []Route{{Name: "local", Prefix: "/local/mcp", Bridge: bridge}})
	cs := f.connect(t, "/local/mcp", clientOpts{token: aliceToken})
	sb := m.Sandboxes()[0]
	errc := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(callCtx(t), &sdk.CallToolParams{Name: "hang"})
		errc <- err
	}()
	f.events.waitFor(t, "the hang call forwarded", has(event.DirRequest, "tools/call", 1))
	time.Sleep(100 * time.Millisecond)
	if err := syscall.Kill(sb.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "exited (signal: killed)") {
			t.Fatalf("client error %v: want the server's exit", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the pending call got no answer")
	}
	evs := f.events.waitFor(t, "the exit event and the call's response", func(evs []*event.Event) bool {
		for _, e := range evs {
			if e.Attributes[attrSandboxEvent] == "ended" && e.Attributes[attrSandboxReason] == "exited" {
				return len(find(evs, event.DirResponse, "tools/call")) > 0
			}
		}
		return false
	})
	for _, e := range evs {
		if e.Attributes[attrSandboxEvent] == "ended" {
			if e.Outcome.Result != event.ResultError || e.Attributes[attrSandboxExit] != "signal: killed" ||
				e.Target.Sandbox != sb.ID() || e.Principal.Subject != "alice" || e.Attributes[attrSandboxPending] != "1" {
				t.Errorf("exit event %+v %+v", e.Outcome, e.Attributes)
			}
		}
	}
	var failed bool
	for _, e := range find(evs, event.DirResponse, "tools/call") {
		failed = failed || (e.MCP.Tool == "hang" && e.Outcome.Result == event.ResultError && e.Target.Sandbox == sb.ID())
	}
	if !failed {
		t.Errorf("the killed call is not audited as failed:\n%s", dump(evs))
	}
	if _, err := os.Stat(sb.CgroupPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup after the server died: %v", err)
	}
}

// The TypeScript reference server (server-everything) in stdio mode, launched by the gateway in a
// sandbox and driven by the Go SDK client through the router: if it failed, the bridge would not
// be transparent to the most common stdio server implementation.
func TestRouterTypeScriptStdioServer(t *testing.T) {
	node := nodeBin(t)
	entry := peer(t, "@modelcontextprotocol/server-everything",
		filepath.Join(peersDir, "node_modules/@modelcontextprotocol/server-everything/dist/index.js"))
	m := newSandboxManager(t)
	b, err := sandbox.NewBridge(m, sandbox.BridgeConfig{
		Spec: sandbox.Spec{Server: "everything", Path: node, Args: []string{entry, "stdio"},
			Env: []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}},
		Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	f := newRouterFixture(t, []Route{{Name: "everything", Prefix: "/everything/mcp", Bridge: b}})
	cs := f.connect(t, "/everything/mcp", clientOpts{token: aliceToken})
	ctx := callCtx(t)
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "héllo ✓"}})
	if err != nil || res.IsError || res.Content[0].(*sdk.TextContent).Text != "Echo: héllo ✓" {
		t.Fatalf("echo: %v %+v", err, res)
	}
	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "get-sum", Arguments: map[string]any{"a": 2, "b": 40}})
	if err != nil || res.IsError || !strings.Contains(res.Content[0].(*sdk.TextContent).Text, "42") {
		t.Fatalf("get-sum: %v %+v", err, res)
	}
	prompts, err := cs.ListPrompts(ctx, nil)
	if err != nil || len(prompts.Prompts) == 0 {
		t.Fatalf("prompts/list: %v", err)
	}
	sbID := b.SandboxOf(cs.ID())
	sb := m.Sandboxes()[0]
	if sbID == "" || sb.ID() != sbID || !strings.HasSuffix(cgroupOfPid(t, sb.Pid()), "/"+sbID) {
		t.Fatalf("node server not in its sandbox %q", sbID)
	}
	evs := f.events.waitFor(t, "both calls audited", has(event.DirResponse, "tools/call", 2))
	checkPaired(t, evs)
	for _, e := range sessionEvents(evs, cs.ID()) {
		if e.Target.Sandbox != sbID || e.Target.Server != "everything" {
			t.Errorf("event %s %s target %+v", e.MCP.Direction, e.MCP.Method, e.Target)
		}
	}
}

func TestRouteValidation(t *testing.T) {
	b := &sandbox.Bridge{}
	for _, tc := range []struct {
		name   string
		routes []Route
		want   string
	}{
		{"no name", []Route{{Prefix: "/a", URL: "http://x"}}, "name is required"},
		{"twice", []Route{{Name: "a", Prefix: "/a", URL: "http://x"}, {Name: "a", Prefix: "/b", URL: "http://x"}}, "name used twice"},
		{"same prefix", []Route{{Name: "a", Prefix: "/a/", URL: "http://x"}, {Name: "b", Prefix: "/a", URL: "http://x"}}, "used twice"},
		{"relative", []Route{{Name: "a", Prefix: "a", URL: "http://x"}}, "must start with /"},
		{"dots", []Route{{Name: "a", Prefix: "/a/../b", URL: "http://x"}}, "not a clean path"},
		{"both", []Route{{Name: "a", Prefix: "/a", URL: "http://x", Bridge: b}}, "exactly one"},
		{"neither", []Route{{Name: "a", Prefix: "/a"}}, "exactly one"},
	} {
		err := validateRoutes(tc.routes)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if err := validateRoutes([]Route{{Name: "a", Prefix: "/a", URL: "http://x"}, {Name: "b", Prefix: "/", Bridge: b}}); err != nil {
		t.Errorf("valid routes: %v", err)
	}
}

// Longest prefix wins, and a prefix matches only whole path segments: /mcp/files must not serve
// /mcp/filesystem.
func TestRouterMatch(t *testing.T) {
	r := &Router{}
	for _, p := range []string{"/mcp/files", "/mcp", "/mcp/files/admin"} {
		r.routes = append(r.routes, &routed{Route: Route{Name: p, Prefix: p}})
	}
	r.routes = []*routed{r.routes[2], r.routes[0], r.routes[1]} // as NewRouter sorts them
	for path, want := range map[string]string{
		"/mcp/files": "/mcp/files", "/mcp/files/x": "/mcp/files", "/mcp/filesystem": "/mcp",
		"/mcp/files/admin/y": "/mcp/files/admin", "/mcp": "/mcp", "/other": "",
	} {
		got := ""
		if rt := r.match(path); rt != nil {
			got = rt.Name
		}
		if got != want {
			t.Errorf("match(%q) = %q, want %q", path, got, want)
		}
	}
}
