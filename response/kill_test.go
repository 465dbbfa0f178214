package response

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/obs"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
	"github.com/mcpwatch/mcpwatch/response/notify"
	"github.com/mcpwatch/mcpwatch/response/playbook"
)

// childEnv, when set, makes the test binary run the respond stage as a child process (see
// TestMain) from the JSON-encoded childConfig it holds, until it is killed.
const childEnv = "MCPWATCH_RESPOND_CHILD"

type childConfig struct {
	Brokers   []string
	Topics    event.Topics
	Group     string
	Playbooks string
	// Stage is "respond" (default) or "notify"; Channels configure the notify stage.
	Stage    string
	Channels []notify.Channel
}

func runChild(spec string) int {
	var c childConfig
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	set := component.Settings{Type: TypeRespond, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Registerer: prometheus.NewRegistry(), Health: obs.NewHealth(), Topics: c.Topics,
		Kafka: kafkaio.Config{Brokers: c.Brokers}, GroupPrefix: c.Group}
	cfg := DefaultConfig()
	cfg.Playbooks, cfg.Channels = c.Playbooks, c.Channels
	var comp component.Component
	var err error
	if c.Stage == StageNotify {
		set.Type = TypeNotify
		comp, err = notifyPlaybookStage(set, &cfg, func(sc *kafkaio.StageConfig) { sc.InstanceID = "notify-0" })
	} else {
		comp, err = playbookStage(set, &cfg, func(sc *kafkaio.StageConfig) { sc.InstanceID = "respond-0" })
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	if err := comp.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

// The respond stage killed (SIGKILL) again and again while findings stream in, on the real
// broker: every decision the playbooks make on the findings is on the actions topic, under the
// id and with the status a stage that never crashed records, and nothing else is — no action is
// lost, none is doubled into a second id or a contradicting status, and no control appears that
// an uninterrupted run would not publish. If this failed, a crash between publishing a control
// and committing the finding would lose or double a response, or a restart would forget the
// dedup and escalation memory.
func TestRespondKilledKafka(t *testing.T) {
	brokers := testenv.Kafka(t)
	names := testenv.Topics(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// One findings partition, so the uninterrupted run to compare with is one sequence.
	if err := kafkaio.EnsureTopics(ctx, kafkaClient(t, brokers), kafkaio.Topics(names, 1, 1, 24)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "playbooks.yaml")
	const src = `
playbooks:
  - name: contain
    match: {min_score: 85}
    actions:
      - revoke: subject
        expire_after: 1h
        dedup_window: 2s
        escalate: {after: 4, within: 10s, to: {revoke: subject, permanent: true}}
      - quarantine: tool
        expire_after: 30m
        dedup_window: 5s
  - name: notice
    dry_run: true
    match: {min_score: 60}
    actions:
      - step_up: true
`
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}

	// The findings, and what a stage that never crashes decides on them.
	rng := rand.New(rand.NewPCG(7, 11))
	base := time.Now().Add(-time.Minute)
	const n = 400
	findings := make([]*event.Finding, n)
	for i := range findings {
		f := finding(60 + float64(rng.IntN(41)))
		f.Time = base.Add(time.Duration(i) * 100 * time.Millisecond)
		f.Principal.Subject = fmt.Sprintf("user-%02d", rng.IntN(12))
		f.Evidence = []event.Evidence{{Feature: "tool", ObservedText: fmt.Sprintf("tool-%d", rng.IntN(5))}}
		findings[i] = f
	}
	store, err := playbook.NewStore(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sim, err := New(names, DefaultConfig(), nil, nil, WithPlaybooks(store, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	want := map[string]string{} // action id → status
	wantControls := map[string]bool{}
	for _, f := range findings {
		ctls, acts := sim.Decide(0, f)
		for _, a := range acts {
			want[a.ID] = a.Status
		}
		for _, c := range ctls {
			wantControls[c.ID] = true
		}
	}

	// Findings stream in while the stage is killed and restarted.
	var wg sync.WaitGroup
	wg.Go(func() {
		pcl := kafkaClient(t, brokers)
		for i, f := range findings {
			rec, err := kafkaio.RecordOf(names.Findings, event.PrincipalKey(f.Tenant, f.Principal), f)
			if err == nil {
				err = pcl.ProduceSync(ctx, rec).FirstErr()
			}
			if err != nil {
				t.Errorf("produce finding %d: %v", i, err)
				return
			}
			time.Sleep(15 * time.Millisecond)
		}
	})
	spec, _ := json.Marshal(childConfig{Brokers: brokers, Topics: names, Group: "test-" + testenv.Unique(t), Playbooks: path})
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	kills := 0
	for range 8 {
		cmd := start()
		time.Sleep(time.Duration(400+rng.IntN(1200)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		kills++
	}
	wg.Wait()
	final := start()
	defer func() { _ = final.Process.Signal(syscall.SIGKILL); _ = final.Wait() }()

	got := map[string][]string{}
	actions := kafkaClient(t, brokers, kgo.ConsumeTopics(names.Actions), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	deadline := time.Now().Add(90 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fs := actions.PollFetches(pctx)
		pcancel()
		for _, r := range fs.Records() {
			var a event.Action
			if err := event.Decode(r.Value, &a); err != nil {
				t.Fatal(err)
			}
			got[a.ID] = append(got[a.ID], a.Status)
		}
	}
	dup := 0
	for id, sts := range got {
		st, ok := want[id]
		if !ok {
			t.Errorf("action %s (%v) is not a decision of the uninterrupted run", id, sts)
			continue
		}
		for _, s := range sts {
			if s != st {
				t.Errorf("action %s recorded as %v, the uninterrupted run says %s", id, sts, st)
				break
			}
		}
		dup += len(sts) - 1
	}
	for id, st := range want {
		if _, ok := got[id]; !ok {
			t.Errorf("action %s (%s) lost", id, st)
		}
	}
	controls := kafkaClient(t, brokers, kgo.ConsumeTopics(names.Control), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
	seen := 0
	for pctx.Err() == nil {
		for _, r := range controls.PollFetches(pctx).Records() {
			var c event.Control
			if len(r.Value) == 0 || event.Decode(r.Value, &c) != nil {
				continue
			}
			seen++
			if !wantControls[c.ID] {
				t.Errorf("control %s %s is not one the uninterrupted run publishes", c.ID, c.Key())
			}
		}
	}
	pcancel()
	t.Logf("%d findings, %d kills: %d actions as decided (%d redelivered copies under the same id), %d control records read",
		n, kills, len(want), dup, seen)
}
