package mcp

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// The interop tests put the gateway between independent MCP implementations — the TypeScript SDK
// and its reference server from npm, the Python SDK from PyPI — and the official Go SDK.
// scripts/peers.sh installs them; outside CI a missing peer skips, under CI=true it fails.

// peersDir is test/peers, relative to this package.
const peersDir = "../../test/peers"

// peer returns the absolute path of an installed peer file (or program), or skips/fails the test
// when it is missing.
func peer(t *testing.T, what, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err == nil {
		_, err = os.Stat(abs)
	}
	if err != nil {
		msg := what + " not installed (" + err.Error() + "); run scripts/peers.sh"
		if testenv.InCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return abs
}

// nodeBin returns the node executable, or skips/fails the test.
func nodeBin(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("node")
	if err != nil {
		msg := "node not found (Node.js 20+ is needed for the TypeScript peers): " + err.Error()
		if testenv.InCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// lockedBuffer collects a child's output; the exec copier writes while the test may read.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServer runs a peer server in its own process group until the test ends, and returns once
// addr accepts connections. Its stderr goes to the test log when the test fails.
func startServer(t *testing.T, name, addr string, cmd *exec.Cmd) {
	t.Helper()
	stderr := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if t.Failed() {
			t.Logf("%s output:\n%s", name, stderr.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("%s exited before listening on %s: %v\n%s", name, addr, err, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening on %s after 20s: %v", name, addr, err)
		}
	}
}

// runClient runs a peer client to completion (bounded to 30 s, its whole process group killed on
// timeout) and returns its stdout; a failure reports its stderr.
func runClient(t *testing.T, name string, cmd *exec.Cmd) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	timer := time.AfterFunc(30*time.Second, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	err := cmd.Wait()
	timer.Stop()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // anything it left behind
	if err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", name, err, stdout.String(), stderr.String())
	}
	return stdout.Bytes()
}

// freeAddr returns a loopback address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// externalUpstream names an upstream the test did not start in-process, for newFixture.
func externalUpstream(url string) *upstream {
	return &upstream{srv: &httptest.Server{URL: url}}
}

// checkAudited asserts one allowed request event for method with its tool, resource or prompt,
// and one successful response event for method and tool with the same resource or prompt: a
// response event names what it answers, so an analyst sees which resource was read without a join.
func checkAudited(t *testing.T, evs []*event.Event, method, tool, uri, prompt string) {
	t.Helper()
	for _, dir := range []event.Direction{event.DirRequest, event.DirResponse} {
		var n int
		for _, e := range find(evs, dir, method) {
			if e.MCP.Tool == tool && e.MCP.ResourceURI == uri && e.MCP.Prompt == prompt {
				n++
				if e.Outcome.Result == event.ResultDenied || e.Outcome.ErrorCode != 0 {
					t.Errorf("%s %s %s%s%s: outcome %+v", dir, method, tool, uri, prompt, e.Outcome)
				}
			}
		}
		if n != 1 {
			t.Errorf("%d %s events for %s %s%s%s, want 1\n%s", n, dir, method, tool, uri, prompt, dump(evs))
		}
	}
}

// The TypeScript reference server (server-everything, Streamable HTTP) behind the gateway, driven
// by the official Go SDK client through tools, resources and prompts: if it fails, the gateway is
// not transparent to the most common MCP server implementation — a header, status or stream shape
// of the TypeScript SDK's server that the gateway drops or rewrites.
func TestInteropTypeScriptServer(t *testing.T) {
	node := nodeBin(t)
	entry := peer(t, "@modelcontextprotocol/server-everything",
		filepath.Join(peersDir, "node_modules/@modelcontextprotocol/server-everything/dist/index.js"))
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(node, entry, "streamableHttp")
	cmd.Env = append(os.Environ(), "PORT="+port)
	startServer(t, "server-everything", addr, cmd)

	f := newFixture(t, externalUpstream("http://"+addr+"/mcp"))
	cs := f.connect(t, clientOpts{token: aliceToken})
	if got := cs.InitializeResult().ServerInfo.Name; !strings.Contains(got, "everything") {
		t.Fatalf("server name %q", got)
	}
	ctx := callCtx(t)

	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, tl := range tools.Tools {
		names[tl.Name] = true
	}
	if !names["echo"] || !names["get-sum"] {
		t.Fatalf("tools %v lack echo and get-sum", names)
	}
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "héllo ✓"}})
	if err != nil || res.IsError || len(res.Content) != 1 || res.Content[0].(*sdk.TextContent).Text != "Echo: héllo ✓" {
		t.Fatalf("echo: %v %+v", err, res)
	}
	res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "get-sum", Arguments: map[string]any{"a": 2, "b": 40}})
	if err != nil || res.IsError || len(res.Content) != 1 || !strings.Contains(res.Content[0].(*sdk.TextContent).Text, "is 42") {
		t.Fatalf("get-sum: %v %+v", err, res)
	}

	resources, err := cs.ListResources(ctx, nil)
	if err != nil || len(resources.Resources) == 0 {
		t.Fatalf("resources/list: %v %+v", err, resources)
	}
	uri := resources.Resources[0].URI
	read, err := cs.ReadResource(ctx, &sdk.ReadResourceParams{URI: uri})
	if err != nil || len(read.Contents) != 1 || read.Contents[0].URI != uri || read.Contents[0].Text == "" {
		t.Fatalf("resources/read %s: %v %+v", uri, err, read)
	}

	prompts, err := cs.ListPrompts(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var hasArgs bool
	for _, p := range prompts.Prompts {
		hasArgs = hasArgs || p.Name == "args-prompt"
	}
	if !hasArgs {
		t.Fatalf("prompts %+v lack args-prompt", prompts.Prompts)
	}
	prompt, err := cs.GetPrompt(ctx, &sdk.GetPromptParams{Name: "args-prompt", Arguments: map[string]string{"city": "Seoul"}})
	if err != nil || len(prompt.Messages) == 0 || !strings.Contains(prompt.Messages[0].Content.(*sdk.TextContent).Text, "Seoul") {
		t.Fatalf("prompts/get: %v %+v", err, prompt)
	}

	evs := f.events.waitFor(t, "every response audited", has(event.DirResponse, "prompts/get", 1))
	checkCommon(t, evs, "alice")
	checkPaired(t, evs)
	checkAudited(t, evs, "initialize", "", "", "")
	checkAudited(t, evs, "tools/list", "", "", "")
	checkAudited(t, evs, "tools/call", "echo", "", "")
	checkAudited(t, evs, "tools/call", "get-sum", "", "")
	checkAudited(t, evs, "resources/list", "", "", "")
	checkAudited(t, evs, "resources/read", "", uri, "")
	checkAudited(t, evs, "prompts/list", "", "", "")
	checkAudited(t, evs, "prompts/get", "", "", "args-prompt")
	for _, e := range find(evs, event.DirRequest, "tools/call") {
		if e.MCP.Tool == "echo" && !strings.Contains(e.MCP.ArgumentsMasked, "héllo") {
			t.Errorf("echo arguments %q", e.MCP.ArgumentsMasked)
		}
	}
}

// peerOutput is what test/peers/client.mjs and client.py print.
type peerOutput struct {
	Protocol string   `json:"protocol"`
	Tools    []string `json:"tools"`
	Echo     struct {
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
		StructuredContent map[string]any `json:"structuredContent"`
		IsError           bool           `json:"isError"`
	} `json:"echo"`
}

// checkPeerClient asserts a peer client's output and the gateway's audit of its session against
// the Go SDK upstream.
func checkPeerClient(t *testing.T, f *fixture, out []byte, text string) {
	t.Helper()
	var got peerOutput
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("client output %q: %v", out, err)
	}
	t.Logf("negotiated protocol %s", got.Protocol)
	if strings.Join(got.Tools, ",") != "ask,echo,fail,slow" {
		t.Errorf("tools %v", got.Tools)
	}
	if got.Echo.IsError || got.Echo.StructuredContent["echo"] != text || len(got.Echo.Content) != 1 ||
		got.Echo.Content[0].Text != `{"echo":"`+text+`"}` {
		t.Errorf("echo result %+v", got.Echo)
	}
	if f.up.credentials.Load() != 0 {
		t.Errorf("%d requests reached the upstream with credentials", f.up.credentials.Load())
	}
	evs := f.events.waitFor(t, "the echo response", func(evs []*event.Event) bool {
		for _, e := range find(evs, event.DirResponse, "tools/call") {
			if e.MCP.Tool == "echo" {
				return true
			}
		}
		return false
	})
	checkCommon(t, evs, "alice")
	checkPaired(t, evs)
	checkAudited(t, evs, "initialize", "", "", "")
	checkAudited(t, evs, "tools/list", "", "", "")
	checkAudited(t, evs, "tools/call", "echo", "", "")
	init := find(evs, event.DirRequest, "initialize")[0]
	if init.MCP.ProtocolVersion != got.Protocol || init.MCP.ClientName == "" {
		t.Errorf("initialize event: protocol %q (client negotiated %q), client %q", init.MCP.ProtocolVersion, got.Protocol, init.MCP.ClientName)
	}
}

// The official TypeScript SDK client (StreamableHTTPClientTransport with a bearer token) through
// the gateway to the Go SDK upstream: if it fails, TypeScript hosts cannot use the gateway — the
// client's headers, session handling or response parsing disagree with what the gateway passes.
func TestInteropTypeScriptClient(t *testing.T) {
	node := nodeBin(t)
	script := peer(t, "test/peers/client.mjs", filepath.Join(peersDir, "client.mjs"))
	peer(t, "@modelcontextprotocol/sdk", filepath.Join(peersDir, "node_modules/@modelcontextprotocol/sdk/package.json"))
	f := newFixture(t, newUpstream(t, false))
	const text = "from typescript ✓"
	cmd := exec.Command(node, script)
	cmd.Env = append(os.Environ(), "MCP_URL="+f.srv.URL+"/mcp", "MCP_TOKEN="+aliceToken, "MCP_TEXT="+text)
	out := runClient(t, "client.mjs", cmd)
	checkPeerClient(t, f, out, text)
}

// The official Python SDK client (mcp.client.streamable_http) through the gateway to the Go SDK
// upstream: if it fails, Python hosts cannot use the gateway.
func TestInteropPythonClient(t *testing.T) {
	python := peer(t, "the Python MCP SDK venv", "../../.local/peers-venv/bin/python")
	script := peer(t, "test/peers/client.py", filepath.Join(peersDir, "client.py"))
	f := newFixture(t, newUpstream(t, false))
	const text = "from python ✓"
	cmd := exec.Command(python, script)
	cmd.Env = append(os.Environ(), "MCP_URL="+f.srv.URL+"/mcp", "MCP_TOKEN="+aliceToken, "MCP_TEXT="+text)
	out := runClient(t, "client.py", cmd)
	checkPeerClient(t, f, out, text)
}
