package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/sandbox"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// stdioServerEnv makes the test binary a Go SDK stdio MCP server, for the gateway to launch in a
// sandbox. init runs before the tests' machinery.
const stdioServerEnv = "MCPWATCH_CMD_TEST_STDIO_SERVER"

type echoArgs struct {
	Text string `json:"text"`
}

func newEchoServer(name string) *sdk.Server {
	s := sdk.NewServer(&sdk.Implementation{Name: name, Version: "1.0.0"}, nil)
	sdk.AddTool(s, &sdk.Tool{Name: "echo", Description: "echoes"},
		func(_ context.Context, _ *sdk.CallToolRequest, in echoArgs) (*sdk.CallToolResult, any, error) {
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: name + ": " + in.Text}}}, nil, nil
		})
	return s
}

func init() {
	if os.Getenv(stdioServerEnv) == "" {
		return
	}
	if err := newEchoServer("local").Run(context.Background(), &sdk.StdioTransport{}); err != nil && !errors.Is(err, io.EOF) {
		os.Exit(1)
	}
	os.Exit(0)
}

// Config errors must say where: the file, the line of the upstream, and what to do.
func TestGatewayConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown field", "upstreams:\n  - name: a\n    route: /a\n    url: http://x\n    urls: http://y\n", "line 5: field urls not found"},
		{"no upstreams", "sandbox:\n  cgroup_parent: x\n", "no upstreams"},
		{"neither", "upstreams:\n  - name: a\n    route: /a\n  - name: b\n    route: /b\n", `g.yaml:4: upstream "b": give url`},
		{"both", "upstreams:\n  - name: a\n    route: /a\n    url: http://x\n    command: sh\n", `g.yaml:2: upstream "a": give url or command, not both`},
		{"no name", "upstreams:\n  - route: /a\n    url: http://x\n", "g.yaml:2: upstream: name is required"},
		{"route", "upstreams:\n  - name: a\n    route: a\n    url: http://x\n", `route "a"`},
		{"missing command", "upstreams:\n  - name: a\n    route: /a\n    command: /no/such/server\n", "command: "},
		{"memory", "upstreams:\n  - name: a\n    route: /a\n    command: sh\n    sandbox: {memory: 12 parsecs}\n", "sandbox.memory"},
		{"url with limits", "upstreams:\n  - name: a\n    route: /a\n    url: http://x\n    sandbox: {pids: 3}\n", "command upstreams only"},
		{"user", "upstreams:\n  - name: a\n    route: /a\n    command: sh\n    sandbox: {user: no-such-user-here}\n", `sandbox.user: user: unknown user no-such-user-here`},
		{"uid:gid", "upstreams:\n  - name: a\n    route: /a\n    command: sh\n    sandbox: {user: \"1000:staff\"}\n", `sandbox.user: "staff" is not a numeric id`},
		{"network", "upstreams:\n  - name: a\n    route: /a\n    command: sh\n    sandbox: {network: bridge}\n", `g.yaml:2: upstream "a": sandbox.network: "bridge": want none`},
		{"duration", "upstreams:\n  - name: a\n    route: /a\n    command: sh\n    sandbox: {idle_timeout: soon}\n", "line 5"},
	} {
		_, err := parseGatewayFile("g.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestParseUser(t *testing.T) {
	for in, want := range map[string]*sandbox.User{"": nil, "nobody": {UID: 65534, GID: 65534}, "65534": {UID: 65534, GID: 65534},
		"0": {UID: 0, GID: 0}, "1000:1001": {UID: 1000, GID: 1001}} {
		got, err := parseUser(in)
		if err != nil || (got == nil) != (want == nil) || (got != nil && *got != *want) {
			t.Errorf("parseUser(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"1000:", ":1", "-1:0", "4294967296:0", "424242", "no-such-user-here"} {
		if u, err := parseUser(in); err == nil {
			t.Errorf("parseUser(%q) = %+v, accepted", in, u)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "1048576": 1 << 20, "512MiB": 512 << 20, "1G": 1e9, "1.5Gi": 3 << 29, "64k": 64000, "2 MB": 2e6} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"-1", "1X", "lots", "1e30"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) accepted", in)
		}
	}
}

// The example in deploy/local is what people copy; it must load as documented.
func TestDeployGatewayConfig(t *testing.T) {
	b, err := os.ReadFile("../../deploy/local/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Its sandboxed example runs node; where node is missing only that check may fail.
	f, err := parseGatewayFile("gateway.yaml", b)
	if err != nil && !strings.Contains(err.Error(), `exec: "node"`) {
		t.Fatal(err)
	}
	if err == nil && (len(f.Upstreams) < 2 || f.Upstreams[1].Command == "" || f.Upstreams[0].URL == "") {
		t.Fatalf("example config %+v: want a url upstream and a command upstream", f)
	}
}

// The environment of a sandboxed server is only what the config gives: the gateway's secrets
// (OAuth introspection secret, webhook secret) must never leak into it.
func TestUpstreamEnv(t *testing.T) {
	t.Setenv("MCPWATCH_OAUTH_INTROSPECTION_SECRET", "s3cret")
	t.Setenv("LANG", "C.UTF-8")
	u := upstreamFile{Env: map[string]string{"API_BASE": "https://x"}, InheritEnv: []string{"LANG", "UNSET_VAR"}}
	got := strings.Join(u.env(), " ")
	if got != "API_BASE=https://x LANG=C.UTF-8 PATH="+defaultServerPath {
		t.Fatalf("env %q", got)
	}
}

// `mcpwatch gateway --config` end to end against the real Kafka: two upstreams from one file — a
// remote Go SDK server over HTTP and a Go SDK stdio server the gateway launches in a sandbox —
// reached through their routes by the official Go SDK client, with the audit events on the raw
// topic naming server, route and sandbox. If it failed, the command would not wire the config
// into the gateway, or the events would not say which server and sandbox a call reached.
func TestGatewayCommandWithConfig(t *testing.T) {
	brokers := testenv.Kafka(t)
	if _, err := sandbox.FindCgroup2(); err != nil || os.Geteuid() != 0 {
		testenv.Missing(t, "cgroup v2 sandboxes", fmt.Sprintf("need a cgroup2 mount and root: %v", err))
	}
	prefix := testenv.TopicPrefix(t)
	remote := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return newEchoServer("remote") }, nil))
	t.Cleanup(remote.Close)
	exe := testenv.WorldExecutable(t) // the sandboxed server runs as nobody
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	parent := "mcpwatch-test-" + hex.EncodeToString(rb[:])
	dir := t.TempDir()
	cfg := fmt.Sprintf(`sandbox:
  cgroup_parent: %s
  stop_grace: 1s
upstreams:
  - name: remote
    route: /remote/mcp
    url: %s
  - name: local
    route: /local/mcp
    command: %s
    args: ["-test.run=^$"]
    env: {%s: "1"}
    sandbox: {memory: 256MiB, pids: 64, cpus: 1, idle_timeout: 5m, user: "65534:65534", network: none}
`, parent, remote.URL, exe, stdioServerEnv)
	cfgPath := filepath.Join(dir, "gateway.yaml")
	tokPath := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokPath, []byte("- token: alice-token-0123456789abcdef\n  sub: alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"--kafka", strings.Join(brokers, ","), "--topic-prefix", prefix, "--metrics-addr", "",
		"--log-level", "error", "gateway", "--config", cfgPath, "--tokens-file", tokPath, "--no-policy",
		"--listen", addr, "--spool-dir", ""})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gateway: %v\n%s", err, out.String())
			}
		case <-time.After(time.Minute):
			t.Error("gateway did not stop")
		}
	}
	t.Cleanup(stop)

	connect := func(route string) *sdk.ClientSession {
		t.Helper()
		tr := &http.Transport{}
		t.Cleanup(tr.CloseIdleConnections)
		c := sdk.NewClient(&sdk.Implementation{Name: "cmd-test", Version: "1"}, nil)
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		var cs *sdk.ClientSession
		var err error
		for cctx.Err() == nil { // the gateway serves once it has read the control topic
			cs, err = c.Connect(cctx, &sdk.StreamableClientTransport{Endpoint: "http://" + addr + route, MaxRetries: -1,
				HTTPClient: &http.Client{Transport: authTransport{"alice-token-0123456789abcdef", tr}}}, nil)
			if err == nil {
				t.Cleanup(func() { _ = cs.Close() })
				return cs
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("connect %s: %v\n%s", route, err, out.String())
		return nil
	}
	sessions := map[string]*sdk.ClientSession{}
	for _, name := range []string{"remote", "local"} {
		cs := connect("/" + name + "/mcp")
		sessions[name] = cs
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}})
		if err != nil || res.IsError || res.Content[0].(*sdk.TextContent).Text != name+": hi" {
			t.Fatalf("%s echo: %v %+v", name, err, res)
		}
	}
	cgroupRoot, _ := sandbox.FindCgroup2()
	entries, _ := os.ReadDir(filepath.Join(cgroupRoot, parent))
	var sandboxes []string
	for _, e := range entries {
		if e.IsDir() {
			sandboxes = append(sandboxes, e.Name())
		}
	}
	if len(sandboxes) != 1 || !strings.HasPrefix(sandboxes[0], "local-") {
		t.Fatalf("sandboxes under %s: %v", parent, sandboxes)
	}
	sbID := sandboxes[0]
	procs, err := os.ReadFile(filepath.Join(cgroupRoot, parent, sbID, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.Fields(string(procs))[0]
	status, _ := os.ReadFile("/proc/" + pid + "/status")
	if !strings.Contains(string(status), "\nUid:\t65534\t65534\t65534\t65534\n") || !strings.Contains(string(status), "\nGid:\t65534\t65534\t65534\t65534\n") {
		t.Errorf("sandboxed server does not run as 65534:65534:\n%s", status)
	}
	if own, _ := os.Readlink("/proc/self/ns/net"); own == "" || func() bool { theirs, _ := os.Readlink("/proc/" + pid + "/ns/net"); return theirs == own }() {
		t.Errorf("sandboxed server with network none shares the gateway's network namespace %s", own)
	}
	for _, cs := range sessions {
		_ = cs.Close()
	}
	stop() // flushes the audit events

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(event.TopicNames(prefix).Raw),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen := map[string]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && !(seen["remote"] && seen["local"] && seen["ended"]) {
		fctx, fcancel := context.WithTimeout(context.Background(), 2*time.Second)
		fs := cl.PollFetches(fctx)
		fcancel()
		fs.EachRecord(func(r *kgo.Record) {
			var e event.Event
			if event.Decode(r.Value, &e) != nil || e.MCP == nil {
				return
			}
			switch {
			case e.Target.Server == "remote" && e.Target.Route == "/remote/mcp" && e.MCP.Method == "tools/call" && e.Target.Sandbox == "":
				seen["remote"] = true
			case e.Target.Server == "local" && e.Target.Route == "/local/mcp" && e.MCP.Method == "tools/call" && e.Target.Sandbox == sbID:
				seen["local"] = true
			case e.Attributes["sandbox.event"] == "ended" && e.Target.Sandbox == sbID:
				seen["ended"] = true
			}
		})
	}
	if !seen["remote"] || !seen["local"] || !seen["ended"] {
		t.Fatalf("raw topic lacks events: %v", seen)
	}
	if _, err := os.Stat(filepath.Join(cgroupRoot, parent)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sandbox parent cgroup left after the gateway stopped: %v", err)
	}
}

type authTransport struct {
	token string
	base  http.RoundTripper
}

func (a authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+a.token)
	return a.base.RoundTrip(r)
}
