package response

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mcpwatch/mcpwatch/component/componenttest"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/response/playbook"
)

// Kafka refuses every write of the control and actions topics for a few seconds while findings
// keep coming (kfake fault injection): when it recovers, every decision is on the topics once,
// under the id and with the status of a run without the outage, and every revocation is on the
// control topic. If this failed, a broker outage would lose responses (a finding committed
// without its control) or double them.
func TestRespondKafkaOutage(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers, names := c.ListenAddrs(), event.TopicNames("fake")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
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
        dedup_window: 3s
`
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	// Produce v13 names topics by id: learn the ids of the topics the outage refuses.
	td, err := kadm.NewClient(kafkaClient(t, brokers)).ListTopics(ctx, names.Control, names.Actions)
	if err != nil {
		t.Fatal(err)
	}
	outageIDs := map[[16]byte]bool{td[names.Control].ID: true, td[names.Actions].ID: true}
	var down atomic.Bool
	refused := atomic.Int64{}
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		if !down.Load() {
			return nil, nil, false
		}
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		hit := false
		for _, tp := range pr.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic, rt.TopicID = tp.Topic, tp.TopicID
			for _, p := range tp.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition = p.Partition
				if tp.Topic == names.Control || tp.Topic == names.Actions || outageIDs[tp.TopicID] {
					rp.ErrorCode, hit = kerr.NotEnoughReplicas.Code, true
				}
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		if !hit {
			return nil, nil, false // the findings producer is not part of the outage
		}
		refused.Add(1)
		return resp, nil, true
	})

	findings := make([]*event.Finding, 60)
	base := time.Now()
	for i := range findings {
		f := finding(80 + float64(i%20))
		f.Time = base.Add(time.Duration(i) * 200 * time.Millisecond)
		f.Principal.Subject = fmt.Sprintf("user-%d", i%6)
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
	want := map[string]string{}
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

	cfg := DefaultConfig()
	cfg.Playbooks = path
	comp, err := NewRespondFactory().Create(ctx, componenttest.Settings(t, TypeRespond, brokers, names), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- comp.Run(sctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
		_ = comp.Close()
	}()
	pcl := kafkaClient(t, brokers)
	actions := kafkaClient(t, brokers, kgo.ConsumeTopics(names.Actions), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := map[string][]string{}
	poll := func(d time.Duration) {
		pctx, pcancel := context.WithTimeout(ctx, d)
		defer pcancel()
		for _, r := range actions.PollFetches(pctx).Records() {
			var a event.Action
			if err := event.Decode(r.Value, &a); err != nil {
				t.Fatal(err)
			}
			got[a.ID] = append(got[a.ID], a.Status)
		}
	}
	for i, f := range findings {
		if i == 10 {
			// The stage is running (it has acted on the first findings); then Kafka goes down.
			for len(got) == 0 && ctx.Err() == nil {
				poll(time.Second)
			}
			down.Store(true)
		}
		if i == 40 {
			time.Sleep(2 * time.Second) // the outage lasts past the last findings' handling attempts
			down.Store(false)
		}
		rec, err := kafkaio.RecordOf(names.Findings, event.PrincipalKey(f.Tenant, f.Principal), f)
		if err != nil {
			t.Fatal(err)
		}
		if err := pcl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if refused.Load() == 0 {
		t.Fatal("the outage refused no write: the test did not exercise it")
	}
	deadline := time.Now().Add(45 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		poll(time.Second)
	}
	for id, st := range want {
		sts, ok := got[id]
		if !ok {
			t.Errorf("action %s (%s) lost in the outage", id, st)
			continue
		}
		for _, s := range sts {
			if s != st {
				t.Errorf("action %s recorded as %v, want %s", id, sts, st)
			}
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("action %s is not a decision of a run without the outage", id)
		}
	}
	ctls := kafkaClient(t, brokers, kgo.ConsumeTopics(names.Control), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	seen := map[string]bool{}
	pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
	for pctx.Err() == nil {
		for _, r := range ctls.PollFetches(pctx).Records() {
			var c event.Control
			if event.Decode(r.Value, &c) == nil {
				seen[c.ID] = true
			}
		}
	}
	pcancel()
	for id := range wantControls {
		if !seen[id] {
			t.Errorf("control %s lost in the outage", id)
		}
	}
	t.Logf("%d writes refused during the outage; %d actions, %d controls as decided", refused.Load(), len(want), len(wantControls))
}
