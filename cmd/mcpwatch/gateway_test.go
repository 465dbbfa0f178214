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

// `mcpwatch --config mcpwatch.yaml gateway` end to end against the real Kafka: two upstreams from the file's gateway section — a
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
	cfg := fmt.Sprintf(`gateway:
  sandbox:
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
	cfgPath := filepath.Join(dir, "mcpwatch.yaml")
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
		"--log-level", "error", "--config", cfgPath, "gateway", "--tokens-file", tokPath, "--no-policy",
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
