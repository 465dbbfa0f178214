package detectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/detectors/detect"
	"github.com/mcpwatch/mcpwatch/detectors/score"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// counter is a stateful detector: it counts each principal's events and concludes a finding on
// the fifth, so a finding after a restart proves the count was resumed, not restarted.
type counter struct {
	n     map[[2]string]int
	dirty map[[2]string]bool
	ver   uint64
}

func newCounter() *counter { return &counter{n: map[[2]string]int{}, dirty: map[[2]string]bool{}} }

func (c *counter) Info() detect.Info {
	return detect.Info{Name: "counter", Checks: []detect.Check{{Name: "counter", Component: detect.Risk}}}
}

func (c *counter) Observe(e *event.Event, out *detect.Output) {
	k := [2]string{e.Tenant, event.PrincipalID(e.Principal)}
	c.n[k]++
	c.dirty[k] = true
	if c.n[k] == 5 {
		out.Findings = append(out.Findings, &event.Finding{ID: detect.FindingID("counter", e.ID), Time: e.Time,
			Tenant: e.Tenant, Principal: e.Principal, Detector: "counter", Severity: 5, Summary: "fifth event"})
	}
}

func (c *counter) Expire(time.Time, *detect.Output) {}
func (c *counter) Stats() detect.Stats              { return detect.Stats{Principals: len(c.n)} }

func (c *counter) Checkpoint(now time.Time, out []*event.Profile) []*event.Profile {
	for k := range c.dirty {
		c.ver++
		out = append(out, &event.Profile{Time: now, Tenant: k[0], Subject: k[1], Detector: "counter", Version: c.ver,
			Observations: uint64(c.n[k]), State: []byte(strconv.Itoa(c.n[k]))})
	}
	clear(c.dirty)
	return out
}

func (c *counter) Restore(p *event.Profile) error {
	n, err := strconv.Atoi(string(p.State))
	if err != nil {
		return errors.New("counter: bad state")
	}
	c.n[[2]string{p.Tenant, p.Subject}] = n
	return nil
}

func (c *counter) Forget(keep func(tenant, subject string) bool) {
	for k := range c.n {
		if !keep(k[0], k[1]) {
			delete(c.n, k)
		}
	}
}

// A stateful detector's profiles go to the profiles topic with the batch, and a stage started
// afresh on the same group resumes them from the partitions it is assigned: the fifth event of
// alice, two of them after the restart, concludes the finding.
func testStateResumes(t *testing.T, brokers []string, names event.Topics) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	opt := kgo.MetadataMinAge(100 * time.Millisecond)
	kcfg := kafkaio.Config{Brokers: brokers}
	cl, err := kafkaio.NewClient(kafkaio.Config{Brokers: brokers, ClientID: "test"}, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafkaio.EnsureTopics(ctx, cl, kafkaio.Topics(names, 3, 1, 24)); err != nil {
		t.Fatal(err)
	}
	produce := func(from, to int) {
		var recs []*kgo.Record
		for i := from; i < to; i++ {
			for _, sub := range []string{"alice", "bob", "carol"} {
				recs = append(recs, record(t, names.Events, req(sub, time.Duration(i)*time.Second)))
			}
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.DiscardHandler)
	run := func(want func() bool) *counter {
		c := newCounter()
		h, err := NewHandler(names, []Detector{c}, score.DefaultConfig(), nil, log)
		if err != nil {
			t.Fatal(err)
		}
		assigned, revoked := Hooks(h, names, kcfg, opt)
		st, err := kafkaio.NewStage(kcfg, kafkaio.StageConfig{Name: "detect", Group: "detect-" + names.Events,
			Topics: []string{names.Events}, DeadLetterTopic: names.DeadLetter, OnAssigned: assigned, OnRevoked: revoked}, h, nil, log)
		if err != nil {
			t.Fatal(err)
		}
		sctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- st.Run(sctx) }()
		for !want() {
			if ctx.Err() != nil {
				t.Fatal("timed out")
			}
			time.Sleep(50 * time.Millisecond)
		}
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return c
	}
	profiles := func() int { return count(t, ctx, brokers, names.Profiles) }
	findings := func() int { return count(t, ctx, brokers, names.Findings) }

	produce(0, 3)
	run(func() bool { return profiles() >= 3 })
	if n := findings(); n != 0 {
		t.Fatalf("%d findings after three events each", n)
	}
	produce(3, 5)
	// Only a count resumed at 3 reaches 5 with the two events after the restart.
	c := run(func() bool { return findings() >= 3 })
	if n := findings(); n != 3 {
		t.Fatalf("%d findings, want one per principal", n)
	}
	// Leaving the group revoked every partition, and the detector forgot their principals.
	if len(c.n) != 0 {
		t.Fatalf("principals left after the partitions were revoked: %v", c.n)
	}
}

// count reads topic from the start and counts its records.
func count(t *testing.T, ctx context.Context, brokers []string, topic string) int {
	t.Helper()
	n := 0
	err := kafkaio.ReadPartitions(ctx, kafkaio.Config{Brokers: brokers}, topic, []int32{0, 1, 2},
		func(*kgo.Record) { n++ }, kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(fmt.Errorf("count %s: %w", topic, err))
	}
	return n
}

func TestStateResumesFake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testStateResumes(t, c.ListenAddrs(), event.TopicNames("fake"))
}

func TestStateResumesKafka(t *testing.T) { testStateResumes(t, testenv.Kafka(t), testenv.Topics(t)) }
