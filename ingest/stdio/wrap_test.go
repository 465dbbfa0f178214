package stdio

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/goleak"

	"github.com/mcpwatch/mcpwatch/event"
)

// serverModeEnv makes the test binary act as the wrapped server (see [runTestServer]): no separate
// build step, and the server is the official Go SDK's stdio server.
const serverModeEnv = "MCPWATCH_STDIO_TEST_SERVER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(serverModeEnv); mode != "" {
		os.Exit(runTestServer(mode))
	}
	goleak.VerifyTestMain(m)
}

type lookupIn struct {
	Email string `json:"email"`
}

type lookupOut struct {
	Found string `json:"found"`
}

func runTestServer(mode string) int {
	switch mode {
	case "sdk":
		s := sdk.NewServer(&sdk.Implementation{Name: "lookup-server", Version: "0.1.0"}, nil)
		sdk.AddTool(s, &sdk.Tool{Name: "lookup", Description: "Find a user by e-mail"},
			func(_ context.Context, _ *sdk.CallToolRequest, in lookupIn) (*sdk.CallToolResult, lookupOut, error) {
				return nil, lookupOut{Found: "user " + in.Email}, nil
			})
		fmt.Fprintln(os.Stderr, "lookup-server: started")
		if err := s.Run(context.Background(), &sdk.StdioTransport{}); err != nil && !errors.Is(err, io.EOF) {
			fmt.Fprintln(os.Stderr, "lookup-server:", err)
		}
		return 0
	case "policy": // tools, a resource and a prompt; says on stderr what it was asked to do
		s := sdk.NewServer(&sdk.Implementation{Name: "hr-server", Version: "0.1.0"}, nil)
		for _, name := range []string{"lookup", "delete_user"} {
			s.AddTool(&sdk.Tool{Name: name, InputSchema: json.RawMessage(`{"type":"object"}`)},
				func(context.Context, *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
					fmt.Fprintln(os.Stderr, "hr-server: called "+name)
					return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: name + " done"}}}, nil
				})
		}
		s.AddResource(&sdk.Resource{URI: "file:///notes", Name: "notes"},
			func(context.Context, *sdk.ReadResourceRequest) (*sdk.ReadResourceResult, error) {
				return &sdk.ReadResourceResult{Contents: []*sdk.ResourceContents{{URI: "file:///notes", Text: "notes"}}}, nil
			})
		s.AddPrompt(&sdk.Prompt{Name: "greet"}, func(context.Context, *sdk.GetPromptRequest) (*sdk.GetPromptResult, error) {
			fmt.Fprintln(os.Stderr, "hr-server: prompt greet")
			return &sdk.GetPromptResult{Messages: []*sdk.PromptMessage{{Role: "user", Content: &sdk.TextContent{Text: "hi"}}}}, nil
		})
		if err := s.Run(context.Background(), &sdk.StdioTransport{}); err != nil && !errors.Is(err, io.EOF) {
			fmt.Fprintln(os.Stderr, "hr-server:", err)
		}
		return 0
	case "exit3":
		return 3
	case "stubborn": // ignores the end of its input and SIGTERM
		signal.Ignore(syscall.SIGTERM)
		_, _ = io.Copy(io.Discard, os.Stdin)
		time.Sleep(time.Minute)
		return 0
	case "sigint": // exits 7 on SIGINT, after saying it is ready (a line that is not JSON-RPC)
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt)
		fmt.Println("ready")
		<-ch
		return 7
	}
	return 2
}

// testServer is the test binary, run as the wrapped server in the given mode.
func testServer(t *testing.T, mode string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), serverModeEnv+"="+mode)
	return cmd
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWrapSDKEndToEnd puts the wrapper between the official Go SDK's client and its stdio server,
// in a real child process. If it failed, either wrapping would break a real MCP session (tools
// listed and called through it must come back intact) or the audit trail would miss what a real
// session does: request/response pairs with tool names, latency and sizes, the client's identity,
// and masked arguments.
func TestWrapSDKEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := testServer(t, "sdk")
	var stderr syncBuffer
	cinR, cinW := io.Pipe()
	coutR, coutW := io.Pipe()
	rec := &recorder{}
	done := make(chan error, 1)
	go func() {
		done <- Wrap(ctx, Config{Stderr: &stderr, Principal: event.Principal{Subject: "alice"}},
			cinR, coutW, cmd, rec, slog.New(slog.DiscardHandler))
		_ = coutW.Close()
		_ = cinR.Close()
	}()

	client := sdk.NewClient(&sdk.Implementation{Name: "test-client", Version: "1.2.3"}, nil)
	cs, err := client.Connect(ctx, &sdk.IOTransport{Reader: coutR, Writer: cinW}, nil)
	if err != nil {
		t.Fatalf("connect through the wrapper: %v", err)
	}
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(tools.Tools) != 1 || tools.Tools[0].Name != "lookup" || tools.Tools[0].Description != "Find a user by e-mail" {
		t.Fatalf("tools %+v", tools.Tools)
	}
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "lookup", Arguments: map[string]any{"email": "bob@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.IsError || len(res.Content) != 1 || !strings.Contains(res.Content[0].(*sdk.TextContent).Text, "user bob@example.com") {
		t.Fatalf("call result %+v", res)
	}
	if err := cs.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Wrap: %v (stderr %q)", err, stderr.String())
		}
	case <-ctx.Done():
		t.Fatal("Wrap did not return after the client closed")
	}
	if !strings.Contains(stderr.String(), "lookup-server: started") {
		t.Errorf("server stderr not passed through: %q", stderr.String())
	}

	var listReq, listRes, callReq, callRes *event.Event
	for _, e := range rec.all() {
		if e.MCP.Transport != Transport || e.Principal.Subject != "alice" || e.Principal.ClientID != "test-client" ||
			e.Target.Server != filepath.Base(cmd.Path) {
			t.Errorf("event %s %s: transport %q principal %+v server %q", e.MCP.Direction, e.MCP.Method,
				e.MCP.Transport, e.Principal, e.Target.Server)
		}
		if e.Outcome.Result != event.ResultAllowed {
			t.Errorf("event %s %s: %+v", e.MCP.Direction, e.MCP.Method, e.Outcome)
		}
		switch {
		case e.MCP.Method == "tools/list" && e.MCP.Direction == event.DirRequest:
			listReq = e
		case e.MCP.Method == "tools/list" && e.MCP.Direction == event.DirResponse:
			listRes = e
		case e.MCP.Method == "tools/call" && e.MCP.Direction == event.DirRequest:
			callReq = e
		case e.MCP.Method == "tools/call" && e.MCP.Direction == event.DirResponse:
			callRes = e
		}
	}
	if listReq == nil || listRes == nil || callReq == nil || callRes == nil {
		t.Fatalf("missing events: list %v/%v call %v/%v", listReq, listRes, callReq, callRes)
	}
	if listRes.MCP.ToolsHash == "" || listRes.Size.Response == 0 || listRes.Correlation.RequestID != listReq.Correlation.RequestID {
		t.Errorf("tools/list response %+v %+v", listRes.MCP, listRes.Size)
	}
	if callReq.MCP.Tool != "lookup" || callRes.MCP.Tool != "lookup" || callRes.MCP.LatencyMS <= 0 ||
		callReq.Size.Request == 0 || callRes.Size.Response == 0 || callRes.Correlation.RequestID != callReq.Correlation.RequestID {
		t.Errorf("tools/call pair: %+v %+v / %+v %+v", callReq.MCP, callReq.Size, callRes.MCP, callRes.Size)
	}
	if callReq.MCP.ArgumentsMasked == "" || strings.Contains(callReq.MCP.ArgumentsMasked, "bob@example.com") || callReq.PII["email"] != 1 {
		t.Errorf("arguments %q pii %v: want the e-mail masked", callReq.MCP.ArgumentsMasked, callReq.PII)
	}
	if callReq.MCP.ClientName != "test-client" || callReq.MCP.ClientVersion != "1.2.3" || callReq.MCP.ProtocolVersion == "" {
		t.Errorf("client %q %q protocol %q", callReq.MCP.ClientName, callReq.MCP.ClientVersion, callReq.MCP.ProtocolVersion)
	}
}

// TestWrapExitStatus: the server's exit status is Wrap's result, even while the client is still
// connected, so `mcpwatch wrap` can exit with it.
func TestWrapExitStatus(t *testing.T) {
	cinR, cinW := io.Pipe()
	defer cinW.Close()
	err := Wrap(context.Background(), Config{}, cinR, io.Discard, testServer(t, "exit3"), &recorder{}, slog.New(slog.DiscardHandler))
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("Wrap = %v, want exit status 3", err)
	}
}

// TestWrapEscalates: a server that outlives the end of its input and ignores SIGTERM is killed
// after the grace periods, so the wrapper never hangs on it.
func TestWrapEscalates(t *testing.T) {
	start := time.Now()
	err := Wrap(context.Background(), Config{Grace: 100 * time.Millisecond}, strings.NewReader(""), io.Discard,
		testServer(t, "stubborn"), &recorder{}, slog.New(slog.DiscardHandler))
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("Wrap = %v, want killed", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
}

// TestWrapForwardsSignals: a signal given to the wrapper reaches the server, whose exit status
// comes back; its non-JSON-RPC output is still passed through and audited as malformed.
func TestWrapForwardsSignals(t *testing.T) {
	cinR, cinW := io.Pipe()
	defer cinW.Close()
	coutR, coutW := io.Pipe()
	sigs := make(chan os.Signal, 1)
	rec := &recorder{}
	done := make(chan error, 1)
	go func() {
		done <- Wrap(context.Background(), Config{Signals: sigs}, cinR, coutW, testServer(t, "sigint"), rec, slog.New(slog.DiscardHandler))
		_ = coutW.Close()
	}()
	line, err := bufio.NewReader(coutR).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("read %q: %v", line, err)
	}
	sigs <- os.Interrupt
	go func() { _, _ = io.Copy(io.Discard, coutR) }()
	err = <-done
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Fatalf("Wrap = %v, want exit status 7", err)
	}
	if e := rec.nth(t, 1); !strings.HasPrefix(e.Outcome.Reason, ReasonMalformed) || e.MCP.Direction != event.DirResponse {
		t.Errorf("event %+v", e.Outcome)
	}
}
