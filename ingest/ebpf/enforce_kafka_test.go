package ebpf

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/internal/control"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// The gateway's action publishers are recorders and [Egress] is what the enforcer drives.
var (
	_ ActionRecorder = (*mcp.KafkaPublisher)(nil)
	_ ActionRecorder = (*mcp.DurablePublisher)(nil)
	_ EgressSetter   = (*Egress)(nil)
	_ SandboxWatcher = (*Agent)(nil)
)

type eventLog struct {
	mu  sync.Mutex
	got []*event.Event
}

func (l *eventLog) Publish(_ context.Context, e *event.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, e)
}

func (l *eventLog) find(match func(*event.Event) bool) *event.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.got {
		if match(e) {
			return e
		}
	}
	return nil
}

// Wired as in the gateway (agent and enforcer as the sandbox watcher, the enforcer following a
// control store that follows the real control topic on the real Kafka): the sandbox starts under
// its server's allow-list (port A allowed, port B refused); a block_egress control produced to
// the topic blocks it in the kernel within moments (connect to A refused with EPERM, recorded as a
// block_egress action with its latency); the refusal reaches the agent's publisher as a raw
// kernel event attributed to the sandbox, denied; the control's tombstone unblocks it (a lift
// action). If this fails, the responder's block_egress never reaches the kernel, or is never
// lifted, or its refusals are not reported.
func TestEgressFollowsControlTopic(t *testing.T) {
	env := newEgressEnv(t)
	brokers, names := testenv.Kafka(t), testenv.Topics(t)
	log := slog.New(slog.DiscardHandler)
	a, b := listen(t, "tcp4"), listen(t, "tcp4")
	sb, sbID := newCgroup(t, env.parent)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafkaio.EnsureTopics(ctx, cl, kafkaio.Topics(names, 1, 1, 24)); err != nil {
		t.Fatal(err)
	}
	store := control.NewStore()
	fol, err := control.NewFollower(kafkaio.Config{Brokers: brokers}, names.Control, store, nil, log,
		kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	actions, pub := &actionLog{}, &eventLog{}
	allowA, _ := ParseAllowRules([]string{"127.0.0.1:" + itoa(a.Port())})
	enf, err := NewEnforcer(env.eg, store, EnforcerConfig{Tenant: "acme", Observer: "gw-k", Recorder: actions, Log: log,
		Allow: map[string][]AllowRule{"files": allowA}})
	if err != nil {
		t.Fatal(err)
	}
	agent, err := NewAgent(env.p, pub, AgentConfig{Observer: "gw-k", Hold: time.Millisecond, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = fol.Run(runCtx) })
	wg.Go(func() { _ = enf.Run(runCtx) })
	wg.Go(func() { _ = agent.Run(runCtx) })
	defer func() { stop(); wg.Wait(); fol.Close() }()
	if err := fol.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}

	watcher := Watchers(agent, enf)
	if err := watcher.WatchSandbox(sbID, "sb-k", "files"); err != nil {
		t.Fatal(err)
	}
	defer watcher.UnwatchSandbox(sbID)
	expectDial(t, sb, "tcp4", a, dialOK)
	expectDial(t, sb, "tcp4", b, dialEPERM)

	c := event.Control{Schema: event.SchemaVersion, ID: event.NewID(), Time: time.Now(), Kind: event.ControlBlockEgress,
		Scope: event.ScopeSandbox, Tenant: "acme", Value: "sb-k", Reason: "exfiltration", FindingID: "f-egress", Actor: "playbook:contain"}
	rec, err := kafkaio.RecordOf(names.Control, c.Key(), &c)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "block applied", func() bool { return env.eg.Blocked(sbID) })
	t.Logf("block_egress produced → kernel map updated: %v", time.Since(start))
	expectDial(t, sb, "tcp4", a, dialEPERM)
	acts := actions.all()
	if len(acts) != 1 || acts[0].Kind != event.ActionBlockEgress || acts[0].ControlID != c.ID || acts[0].Status != "succeeded" ||
		acts[0].LatencyMS <= 0 || acts[0].Actor != "gateway:gw-k" || acts[0].FindingID != "f-egress" {
		t.Fatalf("actions after the block: %+v", acts)
	}

	// The agent publishes the refusal as a raw event, attributed to the sandbox.
	pid := expectDial(t, sb, "tcp4", b, dialEPERM)
	var raw *event.Event
	waitFor(t, "raw egress_denied event", func() bool {
		raw = pub.find(func(e *event.Event) bool {
			return e.Process != nil && e.Process.PID == pid && e.Outcome.Result == event.ResultDenied
		})
		return raw != nil
	})
	if raw.Source != event.SourceKernel || raw.Target.Sandbox != "sb-k" || raw.Target.Server != "files" ||
		raw.Outcome.Result != event.ResultDenied || raw.Outcome.PolicyRule != "egress:blocked" ||
		raw.Network.DstPort != int(b.Port()) || raw.Process.Syscall != "connect" {
		t.Errorf("raw event %+v outcome %+v network %+v", raw, raw.Outcome, raw.Network)
	}

	tomb := &kgo.Record{Topic: names.Control, Key: []byte(c.Key())}
	if err := cl.ProduceSync(ctx, tomb).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "block lifted", func() bool { return !env.eg.Blocked(sbID) })
	expectDial(t, sb, "tcp4", a, dialOK)
	expectDial(t, sb, "tcp4", b, dialEPERM) // the allow-list still holds
	acts = actions.all()
	if len(acts) != 2 || acts[1].Kind != event.ActionLift || acts[1].ControlID != c.ID {
		t.Errorf("actions after the tombstone: %+v", acts)
	}
}
