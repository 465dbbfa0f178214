package ebpf

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/ingest/sandbox"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// The full path on the real kernel and the real Kafka: a gateway's sandbox manager with the
// agent as its watcher starts a server that opens a secret, connects out and runs a shell; the
// gateway's audit event for the session passes the agent's tap; every kernel event of the
// sandbox lands on the raw topic attributed to the sandbox, server, session and principal. If
// this fails, kernel activity cannot be tied to the MCP session that caused it.
func TestAgentPublishesAttributedEvents(t *testing.T) {
	requireKernel(t)
	brokers := testenv.Kafka(t)
	topics := testenv.Topics(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafkaio.EnsureTopics(ctx, cl, kafkaio.Topics(topics, 1, 1, 24)); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	p := load(t, Config{})
	gatewayPub := mcp.NewKafkaPublisher(cl, topics.Raw, log, nil)
	agent, err := NewAgent(p, gatewayPub, AgentConfig{Observer: "node-1", Hold: 5 * time.Second, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := agent.Run(runCtx); err != context.Canceled {
			t.Errorf("agent run: %v", err)
		}
	})
	defer func() { stop(); wg.Wait() }()

	m, err := sandbox.NewManager(sandbox.Options{Parent: "mcpwatch-ebpf-test-" + testenv.Unique(t), Watcher: agent, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Close(context.Background()) }()
	w := newWorkload(t)
	exe, _ := os.Executable()
	sb, err := m.Start(sandbox.Spec{Server: "files", Path: exe, Args: []string{"-test.run=^$", w.secret, w.addr.String()},
		Env: []string{helperEnv + "=act"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Watching() != 1 {
		t.Fatalf("watching %d cgroups after the sandbox started", p.Watching())
	}
	// The gateway's audit event for the session's initialize, published a moment after the server
	// started (and acted).
	time.Sleep(200 * time.Millisecond)
	principal := event.Principal{Subject: "alice", ClientID: "cli"}
	tapped := agent.Tap(gatewayPub)
	tapped.Publish(ctx, &event.Event{
		Schema: event.SchemaVersion, ID: "audit-1", Time: time.Now(), Source: event.SourceMCP, Tenant: "acme",
		Principal: principal, Correlation: event.Correlation{SessionID: "sess-1"},
		Target:  event.Target{Server: "files", Sandbox: sb.ID()},
		Process: &event.Process{CgroupID: sb.CgroupID()}, Outcome: event.Outcome{Result: event.ResultAllowed},
	})
	<-sb.Done()
	if err := sb.ExitErr(); err != nil {
		t.Fatalf("workload: %v (%s)", err, sb.StderrTail())
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.Watching() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if p.Watching() != 0 {
		t.Errorf("sandbox cgroup still watched after the sandbox ended")
	}

	consumer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics.Raw),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var kernel []event.Event
	var sawExec, sawOpen, sawConnect, sawShell bool
	for !(sawExec && sawOpen && sawConnect && sawShell) {
		fetches := consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("timed out: exec %v open %v connect %v shell %v; %d kernel events", sawExec, sawOpen, sawConnect, sawShell, len(kernel))
		}
		fetches.EachRecord(func(r *kgo.Record) {
			var e event.Event
			if err := event.Decode(r.Value, &e); err != nil {
				t.Fatal(err)
			}
			if e.Source != event.SourceKernel {
				return
			}
			kernel = append(kernel, e)
			if e.Principal.Subject != "alice" || e.Correlation.SessionID != "sess-1" || e.Tenant != "acme" ||
				e.Target.Sandbox != sb.ID() || e.Target.Server != "files" || e.Observer != "node-1" ||
				e.Process == nil || e.Process.CgroupID != sb.CgroupID() {
				t.Errorf("kernel event not attributed: %+v %+v", e, e.Process)
				return
			}
			switch pr := e.Process; {
			case pr.Syscall == "execve" && pr.PID == sb.Pid():
				sawExec = true
			case pr.Syscall == "openat" && pr.Path == w.secret:
				sawOpen = true
			case pr.Syscall == "connect" && e.Network.DstIP == "127.0.0.1" && e.Network.DstPort == int(w.addr.Port()):
				sawConnect = true
			case pr.Syscall == "execve" && pr.Exe == "/bin/sh" && pr.PPID == sb.Pid():
				sawShell = slices.Equal(pr.Args, []string{"/bin/sh", "-c", "exit 3"})
			}
		})
	}
}
