package scores

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type kafka struct {
	brokers []string
	topic   string
}

func fakeKafka(t *testing.T) kafka {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	k := kafka{brokers: c.ListenAddrs(), topic: event.TopicNames("fake").Scores}
	k.create(t)
	return k
}

func realKafka(t *testing.T) kafka {
	t.Helper()
	k := kafka{brokers: testenv.Kafka(t), topic: testenv.Topics(t).Scores}
	k.create(t)
	return k
}

func (k kafka) create(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var specs []kafkaio.TopicSpec
	for _, s := range kafkaio.Topics(event.Topics{Scores: k.topic}, 2, 1, 24) {
		if s.Name == k.topic {
			specs = append(specs, s)
		}
	}
	if err := kafkaio.EnsureTopics(ctx, k.producer(t), specs); err != nil {
		t.Fatal(err)
	}
}

func (k kafka) producer(t *testing.T) *kgo.Client {
	t.Helper()
	cl, err := kafkaio.NewClient(kafkaio.Config{Brokers: k.brokers, ClientID: "test-detector"},
		kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func (k kafka) produce(t *testing.T, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, r := range recs {
		r.Topic = k.topic
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func score(t testing.TB, tenant, sub string, v float64) *kgo.Record {
	t.Helper()
	s := event.Score{Time: time.Now().UTC(), Tenant: tenant, Subject: sub, Score: v}
	b, err := event.Encode(&s)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Key: []byte(event.ScoreKey(tenant, sub)), Value: b}
}

func (k kafka) follow(t *testing.T, s *Store) (*Follower, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	f, err := NewFollower(kafkaio.Config{Brokers: k.brokers}, k.topic, s, reg, slog.New(slog.DiscardHandler),
		kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	if err := f.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	return f, reg
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A gateway must know every principal's latest score before it serves: otherwise a principal the
// detectors already rate as dangerous would be judged on an unknown risk (or, with a lax policy,
// let through). Later records win, tombstones forget, garbage is skipped, and tailing continues.
func testCatchUp(t *testing.T, k kafka) {
	p := k.producer(t)
	k.produce(t, p,
		score(t, "acme", "alice", 10),
		score(t, "acme", "mallory", 40),
		&kgo.Record{Key: []byte("acme/eve"), Value: []byte("not json")},
		score(t, "acme", "bob", 5),
		&kgo.Record{Key: []byte("acme/bob")}, // tombstone
		score(t, "acme", "mallory", 97),      // last: readiness waits for it
	)
	s := NewStore()
	_, reg := k.follow(t, s)
	if v, ok := s.Risk("acme", "mallory"); !ok || v != 97 {
		t.Fatalf("mallory's risk after catch-up = %v, %v; want the latest, 97", v, ok)
	}
	if v, ok := s.Risk("acme", "alice"); !ok || v != 10 {
		t.Fatalf("alice's risk = %v, %v", v, ok)
	}
	if _, ok := s.Risk("acme", "bob"); ok {
		t.Fatal("bob's score survived its tombstone")
	}
	if _, ok := s.Risk("other", "alice"); ok {
		t.Fatal("scores leak across tenants")
	}
	if got := metric(t, reg, "mcpwatch_scores_records_malformed_total"); got != 1 {
		t.Fatalf("malformed = %v, want 1", got)
	}
	if got := metric(t, reg, "mcpwatch_scores_ready"); got != 1 {
		t.Fatalf("ready gauge = %v", got)
	}
	k.produce(t, p, score(t, "acme", "alice", 88))
	eventually(t, "the tailed score", func() bool { v, _ := s.Risk("acme", "alice"); return v == 88 })
}

func TestCatchUpFake(t *testing.T)  { testCatchUp(t, fakeKafka(t)) }
func TestCatchUpKafka(t *testing.T) { testCatchUp(t, realKafka(t)) }

// An empty topic is caught up at once: a fresh deployment must start.
func TestEmptyTopicReady(t *testing.T) {
	k := fakeKafka(t)
	s := NewStore()
	k.follow(t, s)
	if s.Len() != 0 {
		t.Fatal("store not empty")
	}
}

// A record filed under another principal's key would never be lifted by that principal's
// tombstone, and would give one principal another's risk.
func TestApplyRefusesWrongKey(t *testing.T) {
	s := NewStore()
	r := score(t, "acme", "alice", 50)
	if err := s.Apply([]byte("acme/bob"), r.Value); err == nil {
		t.Fatal("a score under the wrong key was applied")
	}
	if err := s.Apply([]byte("no-slash"), nil); err == nil {
		t.Fatal("a tombstone without tenant/subject was accepted")
	}
	if err := s.Apply(r.Key, r.Value); err != nil {
		t.Fatal(err)
	}
	if e, ok := s.Lookup("acme", "alice"); !ok || e.Score != 50 || e.Time.IsZero() {
		t.Fatalf("lookup = %+v, %v", e, ok)
	}
}

// The gateway looks scores up on every request from many goroutines while the follower writes.
func TestConcurrentLookups(t *testing.T) {
	s := NewStore()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 1000 {
				if i == 0 {
					s.Set("acme", "alice", Entry{Score: float64(j % 100)})
				}
				s.Risk("acme", "alice")
			}
		})
	}
	wg.Wait()
}

func BenchmarkRisk(b *testing.B) {
	s := NewStore()
	s.Set("acme", "alice", Entry{Score: 42})
	b.ReportAllocs()
	for b.Loop() {
		s.Risk("acme", "alice")
	}
}

func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var v float64
		for _, m := range mf.GetMetric() {
			v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
		return v
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
