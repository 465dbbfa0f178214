package gateway_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/app"
	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/detectors/sigma"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/gateway"
	"github.com/mcpwatch/mcpwatch/ingest/sandbox"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
	sigmarules "github.com/mcpwatch/mcpwatch/rules/sigma"
)

// Egress enforcement as `mcpwatch gateway` runs it from its config, on the real kernel and Kafka:
// two sandboxed servers (the same Go SDK server, whose tool connects to a local listener) — one
// with `egress: {allow: []}` is refused the connect by the kernel, one allowed the listener's
// address connects; then a block_egress control on the real control topic for the second server
// makes its next connect fail too. Both refusals reach the raw topic as kernel events of alice's
// session that the shipped Sigma rule for refused egress reports. If this failed, allow-lists in the config or block_egress
// controls from the respond stage would not stop a sandboxed server from reaching the network.
func TestGatewayEgressFromConfig(t *testing.T) {
	if _, err := sandbox.FindCgroup2(); err != nil || os.Geteuid() != 0 {
		testenv.Missing(t, "kernel eBPF and cgroup v2", fmt.Sprintf("needs a cgroup2 mount and root: %v", err))
	}
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	tokens := filepath.Join(dir, "tokens.yaml")
	for p, b := range map[string]string{secret: "s", tokens: "- token: " + aliceToken + "\n  sub: alice\n"} {
		if err := os.WriteFile(p, []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	prefix := testenv.TopicPrefix(t)
	env := fmt.Sprintf(`{%s: "1", %s: %s, %s: %s}`, kernelServerEnv, kernelSecretEnv, secret, kernelAddrEnv, ln.Addr().String())
	src := fmt.Sprintf(`kafka:
  brokers: [%s]
  topic_prefix: %s
  group_prefix: test-%s
  partitions: 1
gateway:
  listen: 127.0.0.1:0
  tenant: acme
  auth: {tokens_file: %s}
  policy: {none: true}
  spool: {dir: %s}
  sandbox: {cgroup_parent: mcpwatch-egress-test-%s, stop_grace: 1s}
  ebpf: {enabled: true}
  upstreams:
    - name: closed
      route: /closed/mcp
      command: %s
      args: ["-test.run=^$"]
      env: %s
      egress: {allow: []}
    - name: open
      route: /open/mcp
      command: %s
      args: ["-test.run=^$"]
      env: %s
      egress: {allow: ["127.0.0.1/32:%d"]}
`, strings.Join(brokers, ", "), prefix, testenv.Unique(t), tokens, filepath.Join(dir, "spool"), testenv.Unique(t),
		exe, env, exe, env, ln.Addr().(*net.TCPAddr).Port)
	cfg := app.NewConfig(app.Components())
	if err := cfg.Load("mcpwatch.yaml", []byte(src)); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	p, err := app.Build(ctx, cfg, []component.Type{gateway.Type}, app.Host{Logger: log, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	gw := p.Component(gateway.Type).(*gateway.Gateway)
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("gateway shutdown: %v", err)
		}
	}()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	call := func(route string) (string, bool) {
		t.Helper()
		client := sdk.NewClient(&sdk.Implementation{Name: "egress-test", Version: "1"}, nil)
		endpoint := strings.TrimSuffix(gw.URL(), "/mcp") + route
		var cs *sdk.ClientSession
		for { // the gateway serves once it has read the control and scores topics
			cs, err = client.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: endpoint, MaxRetries: -1,
				HTTPClient: &http.Client{Transport: bearer{aliceToken, tr}}}, nil)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("connect to %s: %v", route, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		defer cs.Close()
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "act", Arguments: map[string]any{}})
		if err != nil {
			t.Fatalf("call on %s: %v", route, err)
		}
		var text string
		for _, c := range res.Content {
			if tc, ok := c.(*sdk.TextContent); ok {
				text += tc.Text
			}
		}
		return text, !res.IsError
	}
	if text, ok := call("/closed/mcp"); ok || !strings.Contains(text, "operation not permitted") {
		t.Fatalf("server with no egress allowed: ok=%v %q, want the connect refused (EPERM)", ok, text)
	}
	if text, ok := call("/open/mcp"); !ok {
		t.Fatalf("server allowed the listener: %q", text)
	}
	// The respond stage blocks the server's egress: its next connect is refused.
	exp := time.Now().Add(time.Hour)
	c := event.Control{ID: event.NewID(), Time: time.Now(), Kind: event.ControlBlockEgress, Scope: event.ScopeServer,
		Tenant: "acme", Value: "open", Reason: "test", Actor: "playbook:test", Expires: &exp}
	rec, err := kafkaio.RecordOf(event.TopicNames(prefix).Control, c.Key(), &c)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kafkaio.NewClient(kafkaio.Config{Brokers: brokers, ClientID: "egress-test"}, kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for {
		text, ok := call("/open/mcp")
		if !ok && strings.Contains(text, "operation not permitted") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("block_egress control on server open never refused its connect: %q", text)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Each refusal is a kernel event on the raw topic, attributed to alice's session and server,
	// and the shipped Sigma rule for refused egress reports both kinds.
	rules, errs := sigma.Load(sigmarules.FS, ".")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	const title = "Egress of a Sandboxed MCP Server Refused in the Kernel"
	want := map[string]string{"closed": "egress:not_allowed", "open": "egress:blocked"}
	consumer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(event.TopicNames(prefix).Raw),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	for len(want) > 0 {
		fs := consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("refused egress never published as a kernel event matched by %q, still missing: %v", title, want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var e event.Event
			if event.Decode(r.Value, &e) != nil || e.Source != event.SourceKernel || e.Outcome.Result != event.ResultDenied {
				return
			}
			if e.Outcome.PolicyRule != want[e.Target.Server] || e.Principal.Subject != "alice" || e.Correlation.SessionID == "" ||
				e.Target.Sandbox == "" || e.Network.DstIP != "127.0.0.1" {
				return
			}
			for _, m := range rules.Match(&e) {
				if m.Title == title {
					delete(want, e.Target.Server)
				}
			}
		})
	}
}
