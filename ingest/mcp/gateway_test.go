//lint:file-ignore SA1019 sampling is deprecated from protocol 2026-07-28 but part of 2025-06-18 and 2025-11-25, which the gateway must still audit

package mcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/control"
)

func TestMain(m *testing.M) {
	// The embedded authorization server of the OAuth tests logs every request through the default
	// logger.
	slog.SetDefault(slog.New(slog.DiscardHandler))
	goleak.VerifyTestMain(m)
}

const (
	aliceToken = "alice-secret-token-0123456789"
	bobToken   = "bob-secret-token-0123456789ab"
)

var aliceTokenID = TokenID(HashToken(aliceToken))

// recorder is a Publisher that keeps events for assertions.
type recorder struct {
	mu     sync.Mutex
	events []*event.Event
}

func (r *recorder) Publish(_ context.Context, e *event.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) all() []*event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// waitFor returns the events once pred holds for them. Responses are audited as the proxy copies
// them, which can finish just after the client has its answer, hence the polling; the deadline
// only turns a missing event into a failure.
func (r *recorder) waitFor(t *testing.T, what string, pred func([]*event.Event) bool) []*event.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs := r.all()
		if pred(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; events:\n%s", what, dump(evs))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dump(evs []*event.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "  %s %-28s id=%-6s tool=%-6s result=%-7s code=%d reason=%q session=%q\n",
			e.MCP.Direction, e.MCP.Method, e.Correlation.RequestID, e.MCP.Tool, e.Outcome.Result,
			e.Outcome.ErrorCode, e.Outcome.Reason, e.Correlation.SessionID)
	}
	return b.String()
}

func find(evs []*event.Event, dir event.Direction, method string) []*event.Event {
	var out []*event.Event
	for _, e := range evs {
		if e.MCP.Direction == dir && e.MCP.Method == method {
			out = append(out, e)
		}
	}
	return out
}

func has(dir event.Direction, method string, n int) func([]*event.Event) bool {
	return func(evs []*event.Event) bool { return len(find(evs, dir, method)) >= n }
}

// upstream is a real MCP server from the official SDK, behind a counter of the requests that
// reached it and the credentials they carried.
type upstream struct {
	srv         *httptest.Server
	hits        atomic.Int64
	credentials atomic.Int64 // requests that carried Authorization or Cookie
	release     chan struct{}
}

type echoIn struct {
	Text string `json:"text"`
}

type echoOut struct {
	Echo string `json:"echo"`
}

func newUpstream(t *testing.T, stateless bool) *upstream {
	t.Helper()
	u := &upstream{release: make(chan struct{})}
	s := sdk.NewServer(&sdk.Implementation{Name: "upstream", Version: "1.0.0"}, nil)
	sdk.AddTool(s, &sdk.Tool{Name: "echo", Description: "echoes"},
		func(_ context.Context, _ *sdk.CallToolRequest, in echoIn) (*sdk.CallToolResult, echoOut, error) {
			return nil, echoOut{Echo: in.Text}, nil
		})
	sdk.AddTool(s, &sdk.Tool{Name: "fail", Description: "always fails"},
		func(context.Context, *sdk.CallToolRequest, struct{}) (*sdk.CallToolResult, any, error) {
			return nil, nil, errors.New("disk on fire")
		})
	// slow reports progress, then waits until the test releases it: the client can only see the
	// progress before the result if the gateway streams.
	sdk.AddTool(s, &sdk.Tool{Name: "slow", Description: "reports progress, then waits"},
		func(ctx context.Context, req *sdk.CallToolRequest, _ struct{}) (*sdk.CallToolResult, any, error) {
			if err := req.Session.NotifyProgress(ctx, &sdk.ProgressNotificationParams{
				ProgressToken: req.Params.GetProgressToken(), Progress: 1, Total: 2, Message: "halfway",
			}); err != nil {
				return nil, nil, err
			}
			select {
			case <-u.release:
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "done"}}}, nil, nil
		})
	// ask turns the call around: the server asks the client's model (sampling) before answering.
	sdk.AddTool(s, &sdk.Tool{Name: "ask", Description: "asks the client's model"},
		func(ctx context.Context, req *sdk.CallToolRequest, _ struct{}) (*sdk.CallToolResult, any, error) {
			res, err := req.Session.CreateMessage(ctx, &sdk.CreateMessageParams{MaxTokens: 10,
				Messages: []*sdk.SamplingMessage{{Role: "user", Content: &sdk.TextContent{Text: "2+2?"}}}})
			if err != nil {
				return nil, nil, err
			}
			return &sdk.CallToolResult{Content: []sdk.Content{res.Content}}, nil, nil
		})
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, &sdk.StreamableHTTPOptions{Stateless: stateless})
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		if r.Header.Get("Authorization") != "" || r.Header.Get("Cookie") != "" {
			u.credentials.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

type fixture struct {
	up     *upstream
	gw     *Gateway
	srv    *httptest.Server
	store  *control.Store
	events *recorder
	reg    *prometheus.Registry
}

func newFixture(t *testing.T, up *upstream, mutate ...func(*Config)) *fixture {
	t.Helper()
	cfg := Config{Upstream: up.srv.URL, ServerName: "files", Tenant: "acme", Observer: "gw-test"}
	for _, m := range mutate {
		m(&cfg)
	}
	auth, err := NewStaticTokens([]StaticToken{
		{Token: aliceToken, Principal: event.Principal{Subject: "alice", ClientID: "desktop", Roles: []string{"analyst"}}},
		{SHA256: HashToken(bobToken), Principal: event.Principal{Subject: "bob"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{up: up, store: control.NewStore(), events: &recorder{}, reg: prometheus.NewRegistry()}
	f.gw, err = New(cfg, auth, f.events, f.store, f.reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(f.gw)
	t.Cleanup(func() {
		f.srv.Close()
		f.gw.Close()
	})
	return f
}

// bearer adds a token to every request, as an MCP host does, and a cookie when set (a browser-based
// host may send one).
type bearerTransport struct {
	token  string
	base   http.RoundTripper
	cookie string
	header http.Header // more headers, set on every request
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	if b.cookie != "" {
		r.Header.Set("Cookie", b.cookie)
	}
	for k, v := range b.header {
		r.Header[k] = v
	}
	return b.base.RoundTrip(r)
}

type clientOpts struct {
	token    string
	version  string // protocol version to ask for; "" is the SDK's latest
	progress chan string
	sampling bool   // answer sampling requests with "4"
	cookie   string // sent with every request besides the token
	header   http.Header
	// listChanged, when set, receives a value for every notifications/tools/list_changed.
	listChanged chan struct{}
}

// connect opens an MCP session through the gateway with the official SDK client.
func (f *fixture) connect(t testing.TB, o clientOpts) *sdk.ClientSession {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
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
	if o.listChanged != nil {
		opts.ToolListChangedHandler = func(context.Context, *sdk.ToolListChangedRequest) { o.listChanged <- struct{}{} }
	}
	c := sdk.NewClient(&sdk.Implementation{Name: "test-client", Version: "0.9.1"}, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &sdk.StreamableClientTransport{
		Endpoint:   f.srv.URL + "/mcp",
		HTTPClient: &http.Client{Transport: bearerTransport{token: o.token, base: tr, cookie: o.cookie, header: o.header}},
		MaxRetries: -1,
	}, &sdk.ClientSessionOptions{ProtocolVersion: o.version})
	if err != nil {
		t.Fatalf("connect through the gateway: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func echo(t *testing.T, cs *sdk.ClientSession, text string) (*sdk.CallToolResult, error) {
	return cs.CallTool(callCtx(t), &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"text": text}})
}

// checkCommon asserts what every audited message carries, whatever its kind.
func checkCommon(t *testing.T, evs []*event.Event, subject string) {
	t.Helper()
	seen := map[string]bool{}
	for _, e := range evs {
		if e.Source != event.SourceMCP || e.Tenant != "acme" || e.Observer != "gw-test" || e.Target.Server != "files" ||
			e.MCP.Transport != Transport || e.Network.SrcIP != "127.0.0.1" || e.Network.SrcPort == 0 || e.Time.IsZero() {
			t.Fatalf("event lacks common fields: %+v %+v", e, e.MCP)
		}
		if e.Principal.Subject != subject {
			t.Fatalf("event principal %q, want %q", e.Principal.Subject, subject)
		}
		if seen[e.ID] {
			t.Fatalf("duplicate event id %s", e.ID)
		}
		seen[e.ID] = true
		if _, err := event.Encode(e); err != nil {
			t.Fatalf("event does not encode: %v", err)
		}
	}
}

// checkPaired asserts every forwarded request got exactly one response event with its id, method
// and session: detectors join on these.
func checkPaired(t *testing.T, evs []*event.Event) {
	t.Helper()
	type key struct{ session, id string }
	responses := map[key][]*event.Event{}
	for _, e := range evs {
		if e.MCP.Direction == event.DirResponse && e.MCP.Method != "" {
			responses[key{e.Correlation.SessionID, e.Correlation.RequestID}] = append(responses[key{e.Correlation.SessionID, e.Correlation.RequestID}], e)
		}
	}
	for _, req := range evs {
		if req.MCP.Direction != event.DirRequest || req.MCP.Method == "" || req.Outcome.Result == event.ResultDenied {
			continue
		}
		// initialize gets its session in its response.
		sess := req.Correlation.SessionID
		if req.MCP.Method == "initialize" {
			for k, r := range responses {
				if k.id == req.Correlation.RequestID && r[0].MCP.Method == "initialize" {
					sess = k.session
				}
			}
		}
		rs := responses[key{sess, req.Correlation.RequestID}]
		if len(rs) != 1 || rs[0].MCP.Method != req.MCP.Method || rs[0].MCP.Tool != req.MCP.Tool || rs[0].MCP.LatencyMS <= 0 {
			t.Fatalf("request %s %s (session %q) has responses %v\n%s", req.MCP.Method, req.Correlation.RequestID, sess, rs, dump(evs))
		}
	}
}

// The full legacy flow (2025-11-25, stateful sessions, SSE responses) through the gateway with the
// official SDK on both sides: results intact, every message audited with the right principal,
// method, tool, direction and ids, and no credential reaching the upstream.
func TestProxyStatefulSession(t *testing.T) {
	up := newUpstream(t, false)
	f := newFixture(t, up)
	cs := f.connect(t, clientOpts{token: aliceToken}) // the SDK asks for 2026-07-28 and falls back

	tools, err := cs.ListTools(callCtx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(tools.Tools) != 4 {
		t.Fatalf("tools/list through the gateway: %d tools", len(tools.Tools))
	}
	res, err := echo(t, cs, "héllo ✓")
	if err != nil {
		t.Fatal(err)
	}
	if got := res.StructuredContent.(map[string]any)["echo"]; got != "héllo ✓" {
		t.Fatalf("tool result changed in transit: %v", res.StructuredContent)
	}
	res, err = cs.CallTool(callCtx(t), &sdk.CallToolParams{Name: "fail"})
	if err != nil || !res.IsError {
		t.Fatalf("failing tool: %v %+v", err, res)
	}
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}

	evs := f.events.waitFor(t, "the session's events", func(evs []*event.Event) bool {
		return len(find(evs, event.DirResponse, "tools/call")) == 2 && has(event.DirRequest, "", 2)(evs)
	})
	checkCommon(t, evs, "alice")
	checkPaired(t, evs)

	// The stateful upstream answers server/discover without 2026-07-28 among its versions, and the
	// client falls back to initialize: both exchanges are audited.
	if d := find(evs, event.DirResponse, "server/discover"); len(d) != 1 || d[0].Outcome.Result != event.ResultAllowed {
		t.Fatalf("server/discover response:\n%s", dump(evs))
	}
	init := find(evs, event.DirRequest, "initialize")
	initResp := find(evs, event.DirResponse, "initialize")
	if len(init) != 1 || init[0].MCP.ClientName != "test-client" || init[0].MCP.ClientVersion != "0.9.1" ||
		init[0].MCP.ProtocolVersion != "2025-11-25" || init[0].Principal.TokenID != aliceTokenID ||
		init[0].Principal.ClientID != "desktop" || init[0].Correlation.SessionID != "" {
		t.Fatalf("initialize request event: %+v %+v", init, init[0].MCP)
	}
	session := initResp[0].Correlation.SessionID
	if session == "" || initResp[0].MCP.ProtocolVersion != "2025-11-25" {
		t.Fatalf("initialize response: session %q version %q", session, initResp[0].MCP.ProtocolVersion)
	}
	if n := find(evs, event.DirNotification, "notifications/initialized"); len(n) != 1 || n[0].Correlation.SessionID != session {
		t.Fatalf("notifications/initialized: %+v", n)
	}
	list := find(evs, event.DirResponse, "tools/list")
	if len(list) != 1 || len(list[0].MCP.ToolsHash) != 64 {
		t.Fatalf("tools/list response without the tools hash: %+v", list)
	}
	calls := find(evs, event.DirRequest, "tools/call")
	if len(calls) != 2 || calls[0].MCP.Tool != "echo" || calls[1].MCP.Tool != "fail" ||
		calls[0].Attributes["mcp.tool.arguments_bytes"] != fmt.Sprint(len(`{"text":"héllo ✓"}`)) {
		t.Fatalf("tools/call requests: %s", dump(calls))
	}
	for _, c := range calls {
		// Later requests carry the session and the client named at initialize.
		if c.Correlation.SessionID != session || c.MCP.ClientName != "test-client" || c.MCP.ProtocolVersion != "2025-11-25" {
			t.Fatalf("tools/call lacks session context: session %q client %q version %q",
				c.Correlation.SessionID, c.MCP.ClientName, c.MCP.ProtocolVersion)
		}
	}
	for _, r := range find(evs, event.DirResponse, "tools/call") {
		want := event.ResultAllowed
		if r.MCP.Tool == "fail" {
			want = event.ResultError
		}
		if r.Outcome.Result != want || r.Size.Response == 0 || r.Outcome.HTTPStatus != http.StatusOK {
			t.Fatalf("tools/call %s response: %+v", r.MCP.Tool, r.Outcome)
		}
	}
	var methods []string
	for _, e := range find(evs, event.DirRequest, "") {
		methods = append(methods, e.Attributes["http.method"])
	}
	slices.Sort(methods)
	if !slices.Equal(methods, []string{"DELETE", "GET"}) {
		t.Fatalf("standalone stream and session end not audited: %v", methods)
	}
	if n := up.credentials.Load(); n != 0 {
		t.Fatalf("%d requests reached the upstream with client credentials", n)
	}
}

// The 2026-07-28 revision: no sessions, server/discover, _meta on every request and Mcp-Method /
// Mcp-Name headers that the upstream checks (so dropping them in the proxy would fail the calls).
func TestProxyStateless(t *testing.T) {
	up := newUpstream(t, true)
	f := newFixture(t, up)
	cs := f.connect(t, clientOpts{token: bobToken})
	res, err := echo(t, cs, "stateless")
	if err != nil {
		t.Fatal(err)
	}
	if got := res.StructuredContent.(map[string]any)["echo"]; got != "stateless" {
		t.Fatalf("result: %v", res.StructuredContent)
	}
	evs := f.events.waitFor(t, "the echo response", has(event.DirResponse, "tools/call", 1))
	checkCommon(t, evs, "bob")
	checkPaired(t, evs)
	if len(find(evs, event.DirRequest, "initialize")) != 0 {
		t.Fatalf("expected the stateless revision:\n%s", dump(evs))
	}
	for _, e := range find(evs, event.DirRequest, "tools/call") {
		if e.MCP.ProtocolVersion != "2026-07-28" || e.MCP.ClientName != "test-client" || e.Correlation.SessionID != "" {
			t.Fatalf("tools/call: version %q client %q session %q", e.MCP.ProtocolVersion, e.MCP.ClientName, e.Correlation.SessionID)
		}
	}
}

// Server-sent events must reach the client as they are sent: the tool blocks until the client has
// seen its progress notification, so a gateway that buffered the stream would deadlock here.
func TestSSEStreamsThrough(t *testing.T) {
	for _, stateless := range []bool{false, true} {
		t.Run(fmt.Sprintf("stateless=%v", stateless), func(t *testing.T) {
			up := newUpstream(t, stateless)
			f := newFixture(t, up)
			progress := make(chan string, 4)
			cs := f.connect(t, clientOpts{token: aliceToken, progress: progress})
			done := make(chan error, 1)
			var result *sdk.CallToolResult
			go func() {
				p := &sdk.CallToolParams{Name: "slow"}
				p.SetProgressToken("p-1")
				var err error
				result, err = cs.CallTool(callCtx(t), p)
				done <- err
			}()
			select {
			case msg := <-progress:
				if msg != "halfway" {
					t.Fatalf("progress message %q", msg)
				}
			case err := <-done:
				t.Fatalf("call finished before its progress arrived: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatal("progress notification held back by the gateway")
			}
			close(up.release)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if text := result.Content[0].(*sdk.TextContent).Text; text != "done" {
				t.Fatalf("result %q", text)
			}
			evs := f.events.waitFor(t, "the slow call's response", has(event.DirResponse, "tools/call", 1))
			n := find(evs, event.DirNotification, "notifications/progress")
			if len(n) != 1 || n[0].Attributes["mcp.sender"] != "server" || n[0].Size.Response == 0 {
				t.Fatalf("progress notification not audited as from the server:\n%s", dump(evs))
			}
			checkPaired(t, evs)
		})
	}
}

// Server→client requests (sampling here) are audited as server requests, and the client's answer,
// which arrives as a POST, as a response naming the method it answers.
func TestServerRequest(t *testing.T) {
	up := newUpstream(t, false)
	f := newFixture(t, up)
	cs := f.connect(t, clientOpts{token: aliceToken, sampling: true})
	res, err := cs.CallTool(callCtx(t), &sdk.CallToolParams{Name: "ask"})
	if err != nil {
		t.Fatal(err)
	}
	if text := res.Content[0].(*sdk.TextContent).Text; text != "4" {
		t.Fatalf("sampled answer %q", text)
	}
	evs := f.events.waitFor(t, "the ask response", has(event.DirResponse, "tools/call", 1))
	sr := find(evs, event.DirServerRequest, "sampling/createMessage")
	answer := find(evs, event.DirResponse, "sampling/createMessage")
	if len(sr) != 1 || len(answer) != 1 || answer[0].Correlation.RequestID != sr[0].Correlation.RequestID ||
		answer[0].Attributes["mcp.sender"] != "client" || answer[0].Size.Request == 0 || answer[0].MCP.LatencyMS <= 0 {
		t.Fatalf("sampling round trip:\n%s", dump(evs))
	}
	checkPaired(t, evs)
}

// A control applied to the store refuses the very next call, with a JSON-RPC error the SDK client
// surfaces and a denied audit event naming the control; lifting it restores access.
func TestRevocationAppliesToNextCall(t *testing.T) {
	up := newUpstream(t, false)
	f := newFixture(t, up)
	cs := f.connect(t, clientOpts{token: aliceToken})
	if _, err := echo(t, cs, "before"); err != nil {
		t.Fatal(err)
	}
	revoke := applyControl(t, f.store, event.ControlRevoke, event.ScopeSubject, "alice", "anomalous tool use")
	hitsBefore := up.hits.Load()
	_, err := echo(t, cs, "after")
	var werr *jsonrpc.Error
	if !errors.As(err, &werr) || werr.Code != CodeDenied || !strings.Contains(werr.Message, "access revoked by mcpwatch: anomalous tool use") {
		t.Fatalf("revoked call: %v", err)
	}
	if up.hits.Load() != hitsBefore {
		t.Fatal("a revoked call reached the upstream")
	}
	evs := f.events.all()
	denied := find(evs, event.DirRequest, "tools/call")
	last := denied[len(denied)-1]
	if last.Outcome.Result != event.ResultDenied || last.Outcome.PolicyRule != "control:"+revoke.Key() ||
		last.Outcome.ErrorCode != CodeDenied || last.Outcome.HTTPStatus != http.StatusForbidden || last.MCP.Tool != "echo" {
		t.Fatalf("denied event: %+v", last.Outcome)
	}
	if got := metricValue(t, f.reg, "mcpwatch_gateway_denied_total", "reason", denyControl); got != 1 {
		t.Fatalf("denied metric = %v", got)
	}

	if err := f.store.Apply([]byte(revoke.Key()), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := echo(t, cs, "lifted"); err != nil {
		t.Fatalf("call after the tombstone: %v", err)
	}
}

// A quarantined tool is refused while the server's other tools keep working.
func TestToolQuarantine(t *testing.T) {
	up := newUpstream(t, true)
	f := newFixture(t, up)
	cs := f.connect(t, clientOpts{token: bobToken})
	applyControl(t, f.store, event.ControlQuarantine, event.ScopeTool, "files/fail", "exfiltration pattern")
	if _, err := cs.CallTool(callCtx(t), &sdk.CallToolParams{Name: "fail"}); err == nil {
		t.Fatal("quarantined tool was called")
	}
	if _, err := echo(t, cs, "still fine"); err != nil {
		t.Fatalf("another tool of the server: %v", err)
	}
}

// A revocation also ends a stream opened before it: the tool's result is withheld, the client gets
// the gateway's JSON-RPC error in its place, and both are audited as denied.
func TestRevocationCutsOpenStream(t *testing.T) {
	up := newUpstream(t, false)
	f := newFixture(t, up)
	progress := make(chan string, 4)
	cs := f.connect(t, clientOpts{token: aliceToken, progress: progress})
	done := make(chan error, 1)
	go func() {
		p := &sdk.CallToolParams{Name: "slow"}
		p.SetProgressToken(7)
		_, err := cs.CallTool(callCtx(t), p)
		done <- err
	}()
	select {
	case <-progress:
	case <-time.After(10 * time.Second):
		t.Fatal("no progress")
	}
	revoke := applyControl(t, f.store, event.ControlRevoke, event.ScopeToken, aliceTokenID, "token leaked")
	close(up.release)
	var werr *jsonrpc.Error
	if err := <-done; !errors.As(err, &werr) || werr.Code != CodeDenied {
		t.Fatalf("call on a revoked stream: %v", err)
	}
	evs := f.events.waitFor(t, "the withheld result", has(event.DirResponse, "tools/call", 1))
	r := find(evs, event.DirResponse, "tools/call")
	if len(r) != 1 || r[0].Outcome.Result != event.ResultDenied || r[0].Outcome.PolicyRule != "control:"+revoke.Key() {
		t.Fatalf("withheld result audit:\n%s", dump(evs))
	}
}

func applyControl(t *testing.T, s *control.Store, kind event.ControlKind, scope event.ControlScope, value, reason string) event.Control {
	t.Helper()
	c := event.Control{ID: event.NewID(), Time: time.Now(), Kind: kind, Scope: scope, Tenant: "acme", Value: value, Reason: reason}
	b, err := event.Encode(&c)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply([]byte(c.Key()), b); err != nil {
		t.Fatal(err)
	}
	return c
}

type rawResp struct {
	status int
	header http.Header
	body   string
}

// post sends a raw request to the gateway, for the inputs no SDK would produce.
func (f *fixture) post(t *testing.T, token, body string, headers ...string) rawResp {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.srv.URL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return rawResp{resp.StatusCode, resp.Header, string(b)}
}

// Without a valid token nothing is forwarded: 401 with a Bearer challenge, and an audit record of
// the attempt (brute force and stolen-token probing show up here).
func TestUnauthenticated(t *testing.T) {
	up := newUpstream(t, true)
	f := newFixture(t, up)
	ping := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	cases := map[string]struct {
		token, challenge string
	}{
		"no token":      {"", `Bearer realm="mcpwatch"`},
		"unknown token": {"not-a-valid-token-at-all", `Bearer realm="mcpwatch", error="invalid_token"`},
		"hash as token": {HashToken(aliceToken), `Bearer realm="mcpwatch", error="invalid_token"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := f.post(t, tc.token, ping)
			if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != tc.challenge {
				t.Fatalf("status %d challenge %q", r.status, r.header.Get("WWW-Authenticate"))
			}
			if !strings.Contains(r.body, fmt.Sprint(CodeUnauthenticated)) {
				t.Fatalf("body %s", r.body)
			}
		})
	}
	if up.hits.Load() != 0 {
		t.Fatal("an unauthenticated request reached the upstream")
	}
	evs := f.events.all()
	if len(evs) != len(cases) {
		t.Fatalf("%d events for %d attempts", len(evs), len(cases))
	}
	for _, e := range evs {
		if e.Outcome.Result != event.ResultDenied || e.Outcome.HTTPStatus != http.StatusUnauthorized || e.Principal.Subject != "" {
			t.Fatalf("unauthenticated attempt audited as %+v", e.Outcome)
		}
	}

	// The SDK client fails cleanly too.
	c := sdk.NewClient(&sdk.Implementation{Name: "x", Version: "1"}, nil)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	if _, err := c.Connect(callCtx(t), &sdk.StreamableClientTransport{Endpoint: f.srv.URL,
		HTTPClient: &http.Client{Transport: bearerTransport{token: "wrong-token-0123456789", base: tr}}, MaxRetries: -1}, nil); err == nil {
		t.Fatal("connected with a wrong token")
	}
}

// What the gateway cannot parse it never forwards; it answers with the JSON-RPC error the spec
// names and audits the attempt.
func TestBadInput(t *testing.T) {
	up := newUpstream(t, true)
	f := newFixture(t, up, func(c *Config) { c.MaxBodyBytes = 1024 })
	cases := []struct {
		name    string
		body    string
		headers []string
		status  int
		code    int
		reason  string // metric label
	}{
		{"malformed JSON", `{"jsonrpc":"2.0","id":1,"method":`, nil, 400, CodeParseError, denyParse},
		{"not JSON-RPC 2.0", `{"jsonrpc":"1.0","id":1,"method":"ping"}`, nil, 400, CodeInvalidRequest, denyInvalid},
		{"ambiguous tool name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Name":"fail"}}`, nil, 400, CodeInvalidRequest, denyInvalid},
		{"oversized", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"` + strings.Repeat("x", 2000) + `"}}}`, nil, 413, CodeInvalidRequest, denyTooLarge},
		{"header mismatch", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fail"}}`,
			[]string{"Mcp-Protocol-Version", "2026-07-28", "Mcp-Method", "tools/call", "Mcp-Name", "echo"}, 400, CodeHeaderMismatch, denyHeaderMismatch},
	}
	perReason := map[string]float64{}
	for i, tc := range cases {
		perReason[tc.reason]++
		t.Run(tc.name, func(t *testing.T) {
			r := f.post(t, aliceToken, tc.body, tc.headers...)
			if r.status != tc.status || !strings.Contains(r.body, fmt.Sprintf(`"code":%d`, tc.code)) ||
				r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d body %s", r.status, r.body)
			}
			evs := f.events.all()
			if len(evs) != i+1 {
				t.Fatalf("%d events after %d bad requests", len(evs), i+1)
			}
			e := evs[i]
			if e.Outcome.Result != event.ResultDenied || e.Outcome.ErrorCode != tc.code || e.Outcome.Reason == "" ||
				e.Outcome.HTTPStatus != tc.status || e.Principal.Subject != "alice" || e.Size.Request == 0 {
				t.Fatalf("audit: %+v size %d", e.Outcome, e.Size.Request)
			}
			if got := metricValue(t, f.reg, "mcpwatch_gateway_denied_total", "reason", tc.reason); got != perReason[tc.reason] {
				t.Fatalf("denied{reason=%s} = %v", tc.reason, got)
			}
		})
	}
	if up.hits.Load() != 0 {
		t.Fatal("a bad request reached the upstream")
	}
}

// A batch (2025-03-26) is refused as a whole when one element is: the answer is an array of
// errors, one per request, with their ids.
func TestBatchRefused(t *testing.T) {
	up := newUpstream(t, true)
	f := newFixture(t, up)
	applyControl(t, f.store, event.ControlQuarantine, event.ScopeTool, "fail", "bad tool")
	r := f.post(t, aliceToken, `[{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"echo"}},
		{"jsonrpc":"2.0","method":"notifications/progress","params":{}},
		{"jsonrpc":"2.0","id":"b","method":"tools/call","params":{"name":"fail"}}]`)
	want := fmt.Sprintf(`[{"jsonrpc":"2.0","id":"a","error":{"code":%d,"message":"access revoked by mcpwatch: bad tool"}},{"jsonrpc":"2.0","id":"b","error":{"code":%[1]d,"message":"access revoked by mcpwatch: bad tool"}}]`, CodeDenied)
	if r.status != http.StatusForbidden || r.body != want {
		t.Fatalf("status %d body %s", r.status, r.body)
	}
	evs := f.events.all()
	if len(evs) != 3 || up.hits.Load() != 0 {
		t.Fatalf("%d events, %d upstream hits", len(evs), up.hits.Load())
	}
	for _, e := range evs {
		if e.Outcome.Result != event.ResultDenied {
			t.Fatalf("batch element not denied: %+v", e.Outcome)
		}
	}
}

// A batch is forwarded when allowed, and a batched answer is audited element by element and
// paired with its requests.
func TestBatchForwarded(t *testing.T) {
	up := &upstream{}
	up.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `[{"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"nope"}},{"jsonrpc":"2.0","id":1,"result":{}}]`)
	}))
	t.Cleanup(up.srv.Close)
	f := newFixture(t, up)
	r := f.post(t, aliceToken, `[{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}},{"jsonrpc":"2.0","id":2,"method":"bogus/method"}]`)
	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	evs := f.events.waitFor(t, "both responses", func(evs []*event.Event) bool {
		return len(find(evs, event.DirResponse, "ping"))+len(find(evs, event.DirResponse, "bogus/method")) == 2
	})
	checkPaired(t, evs)
	if e := find(evs, event.DirResponse, "bogus/method")[0]; e.Outcome.Result != event.ResultError || e.Outcome.ErrorCode != -32601 {
		t.Fatalf("error response: %+v", e.Outcome)
	}
	// The trace context of a request (in _meta since 2026-07-28) carries over to its response.
	for _, dir := range []event.Direction{event.DirRequest, event.DirResponse} {
		if e := find(evs, dir, "ping")[0]; e.Correlation.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || e.Correlation.SpanID != "00f067aa0ba902b7" {
			t.Fatalf("ping %s trace: %+v", dir, e.Correlation)
		}
	}
	if got := metricValue(t, f.reg, "mcpwatch_gateway_messages_total", "method", "other"); got != 2 {
		t.Fatalf("unknown methods must share the label \"other\", got %v", got)
	}
}

// With the upstream down the client gets a JSON-RPC error, and the request is audited as failed.
func TestUpstreamDown(t *testing.T) {
	up := newUpstream(t, true)
	f := newFixture(t, up)
	up.srv.Close()
	r := f.post(t, aliceToken, `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo"}}`)
	if r.status != http.StatusBadGateway || !strings.Contains(r.body, fmt.Sprintf(`"id":9,"error":{"code":%d`, CodeUpstreamUnavailable)) {
		t.Fatalf("status %d body %s", r.status, r.body)
	}
	evs := f.events.all()
	resp := find(evs, event.DirResponse, "tools/call")
	if len(resp) != 1 || resp[0].Outcome.Result != event.ResultError || resp[0].Correlation.RequestID != "9" ||
		resp[0].Outcome.HTTPStatus != http.StatusBadGateway {
		t.Fatalf("upstream failure audit:\n%s", dump(evs))
	}
}

// An upstream that answers with an HTTP error and no JSON-RPC body still closes the pair.
func TestUpstreamHTTPError(t *testing.T) {
	up := &upstream{}
	up.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "session not found", http.StatusNotFound)
	}))
	t.Cleanup(up.srv.Close)
	f := newFixture(t, up)
	r := f.post(t, aliceToken, `{"jsonrpc":"2.0","id":"q","method":"tools/list"}`, "Mcp-Session-Id", "gone")
	if r.status != http.StatusNotFound {
		t.Fatalf("status %d", r.status)
	}
	evs := f.events.waitFor(t, "the failed response", has(event.DirResponse, "tools/list", 1))
	e := find(evs, event.DirResponse, "tools/list")[0]
	if e.Outcome.Result != event.ResultError || e.Outcome.HTTPStatus != http.StatusNotFound || e.Correlation.SessionID != "gone" {
		t.Fatalf("audit: %+v", e.Outcome)
	}
}

// Only Streamable HTTP methods are served.
func TestMethodNotAllowed(t *testing.T) {
	up := newUpstream(t, true)
	f := newFixture(t, up)
	req, _ := http.NewRequest(http.MethodPut, f.srv.URL, strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+aliceToken)
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") == "" || up.hits.Load() != 0 {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
}

// metricValue returns the value of the series of name whose label has value, summed.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					v += m.GetCounter().GetValue()
				}
			}
		}
	}
	return v
}

// A session id is a bearer capability upstream. The gateway binds it to the principal that opened
// it, so a leaked id is useless with other credentials.
func TestSessionBoundToPrincipal(t *testing.T) {
	up := newUpstream(t, false)
	f := newFixture(t, up)
	cs := f.connect(t, clientOpts{token: aliceToken})
	hits := up.hits.Load()
	r := f.post(t, bobToken, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
		"Mcp-Session-Id", cs.ID(), "Mcp-Protocol-Version", "2025-11-25")
	if r.status != http.StatusNotFound || up.hits.Load() != hits {
		t.Fatalf("foreign session: status %d, upstream hits %d → %d", r.status, hits, up.hits.Load())
	}
	evs := f.events.all()
	e := evs[len(evs)-1]
	if e.Principal.Subject != "bob" || e.Outcome.Result != event.ResultDenied || e.Correlation.SessionID != cs.ID() ||
		e.Outcome.Reason != "session belongs to another principal" {
		t.Fatalf("hijack attempt audit: %+v %+v", e.Principal, e.Outcome)
	}
	if _, err := cs.ListTools(callCtx(t), nil); err != nil {
		t.Fatalf("the owner's session must keep working: %v", err)
	}
}

// A revoked principal gets no standalone stream (server messages would keep flowing), but may
// still end its session.
func TestRevokedStreamAndDelete(t *testing.T) {
	up := newUpstream(t, false)
	f := newFixture(t, up)
	cs := f.connect(t, clientOpts{token: aliceToken})
	applyControl(t, f.store, event.ControlRevoke, event.ScopeClient, "desktop", "client compromised")
	do := func(method string) int {
		req, _ := http.NewRequest(method, f.srv.URL, nil)
		req.Header.Set("Authorization", "Bearer "+aliceToken)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Mcp-Session-Id", cs.ID())
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := do(http.MethodGet); got != http.StatusForbidden {
		t.Fatalf("GET by a revoked client: %d", got)
	}
	if got := do(http.MethodDelete); got/100 != 2 {
		t.Fatalf("DELETE by a revoked client: %d", got)
	}
}
