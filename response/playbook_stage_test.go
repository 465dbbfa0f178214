package response

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mcpwatch/mcpwatch/component/componenttest"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// The enforcing stage under playbooks, as deployed: findings in, controls and action records out;
// then the consumer is replaced (a restart or a rebalance) and the new one remembers the dedup
// window from the findings it replays; then the playbook file is edited and the running stage
// follows it. If this failed, playbooks would not act through Kafka, a restart would repeat
// actions inside their dedup window, or a playbook change would need a restart.
func testPlaybookStage(t *testing.T, brokers []string, names event.Topics) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := kafkaio.EnsureTopics(ctx, kafkaClient(t, brokers), kafkaio.Topics(names, 3, 1, 24)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "playbooks.yaml")
	const src = `
playbooks:
  - name: contain
    match: {min_score: 80}
    actions:
      - revoke: subject
        expire_after: 1h
        dedup_window: 10m
  - name: risky
    match: {source: score, min_score: 95}
    actions:
      - step_up: true
`
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Playbooks, cfg.PlaybookReload = path, 50*time.Millisecond
	produce := func(f *event.Finding) {
		t.Helper()
		f.Time = time.Now()
		rec, err := kafkaio.RecordOf(names.Findings, event.PrincipalKey(f.Tenant, f.Principal), f)
		if err != nil {
			t.Fatal(err)
		}
		if err := kafkaClient(t, brokers).ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	group := componenttest.Settings(t, TypeRespond, brokers, names).GroupPrefix
	run := func() (stop func()) {
		// The same consumer group, with a fresh registry each time as a restarted process has.
		set := componenttest.Settings(t, TypeRespond, brokers, names)
		set.GroupPrefix = group
		c, err := NewRespondFactory().Create(ctx, set, &cfg)
		if err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Run(sctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
			if err := c.Close(); err != nil {
				t.Error(err)
			}
		}
	}
	actions := newReader(t, brokers, names.Actions)
	nextAction := func() event.Action {
		t.Helper()
		var a event.Action
		if err := event.Decode(actions.next(1)[0].Value, &a); err != nil {
			t.Fatal(err)
		}
		return a
	}

	stop := run()
	produce(finding(90))
	ctl := newReader(t, brokers, names.Control).next(1)[0]
	var c event.Control
	if err := event.Decode(ctl.Value, &c); err != nil {
		t.Fatal(err)
	}
	if c.Key() != "revoke/subject/acme/mallory" || c.Actor != "playbook:contain" || c.Expires == nil {
		t.Fatalf("control %+v", c)
	}
	if a := nextAction(); a.Status != StatusSucceeded || a.ControlID != c.ID || a.Playbook != "contain" {
		t.Fatalf("first action %+v", a)
	}
	// A threat score on the scores topic, read by the same stage.
	sc := &event.Score{Time: time.Now(), Tenant: "acme", Subject: "mallory", Score: 97, Explanation: "threat score 97"}
	srec, err := kafkaio.RecordOf(names.Scores, sc.Key(), sc)
	if err != nil {
		t.Fatal(err)
	}
	if err := kafkaClient(t, brokers).ProduceSync(ctx, srec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if a := nextAction(); a.Kind != event.ActionStepUp || a.Status != StatusSucceeded || a.Playbook != "risky" {
		t.Fatalf("score action %+v", a)
	}
	stop()

	// A new consumer of the same group: the second finding falls in the dedup window it rebuilt.
	stop = run()
	produce(finding(91))
	if a := nextAction(); a.Status != StatusSuppressed {
		t.Fatalf("after the restart, a finding inside the dedup window gave %+v", a)
	}
	// The file changes under the running stage: quarantining is now part of the playbook.
	edited := strings.Replace(src, "        dedup_window: 10m\n", "        dedup_window: 10m\n      - quarantine: tool\n", 1)
	if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		f := finding(92)
		f.Evidence = []event.Evidence{{Feature: "tool", ObservedText: "db_export"}}
		produce(f)
		a := nextAction() // the revocation (suppressed)
		if a.Kind == event.ActionRevoke {
			var q event.Action
			if a.Status == StatusSuppressed {
				// With the new file, the quarantine follows in the same batch.
				ctx2, cancel2 := context.WithTimeout(ctx, 2*time.Second)
				fs := actions.cl.PollRecords(ctx2, 1)
				cancel2()
				if recs := fs.Records(); len(recs) == 1 {
					if err := event.Decode(recs[0].Value, &q); err != nil {
						t.Fatal(err)
					}
				}
			}
			if q.Kind == event.ActionQuarantine && q.Target == "quarantine/tool/acme/db_export" && q.Status == StatusSucceeded {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the edited playbook was not taken up by the running stage")
		}
		time.Sleep(200 * time.Millisecond)
	}
	stop()
}

func TestPlaybookStageFake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testPlaybookStage(t, c.ListenAddrs(), event.TopicNames("fake"))
}

func TestPlaybookStageKafka(t *testing.T) { testPlaybookStage(t, testenv.Kafka(t), testenv.Topics(t)) }
