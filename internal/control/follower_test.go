package control

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// kafka is a broker for one test: kfake, or the real one from testenv.
type kafka struct {
	brokers []string
	fake    *kfake.Cluster
	topic   string
}

func fakeKafka(t *testing.T, create bool) kafka {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	k := kafka{brokers: c.ListenAddrs(), fake: c, topic: event.TopicNames("fake").Control}
	if create {
		k.create(t)
	}
	return k
}

func realKafka(t *testing.T) kafka {
	t.Helper()
	k := kafka{brokers: testenv.Kafka(t), topic: testenv.Topics(t).Control}
	k.create(t)
	return k
}

func (k kafka) create(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	names := event.Topics{Control: k.topic}
	var specs []kafkaio.TopicSpec
	for _, s := range kafkaio.Topics(names, 1, 1, 24) {
		if s.Name == k.topic {
			specs = append(specs, s)
		}
	}
	if err := kafkaio.EnsureTopics(ctx, k.producer(t), specs); err != nil {
		t.Fatal(err)
	}
}

func (k kafka) producer(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kafkaio.NewClient(kafkaio.Config{Brokers: k.brokers, ClientID: "test-responder"},
		append([]kgo.Opt{kgo.MetadataMinAge(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// produce writes records synchronously: controls, tombstones (nil value) or raw garbage.
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

func rec(t testing.TB, c event.Control) *kgo.Record {
	key, value := encode(t, c)
	return &kgo.Record{Key: key, Value: value}
}

func tombstone(c event.Control) *kgo.Record { return &kgo.Record{Key: []byte(c.Key())} }

type running struct {
	f    *Follower
	reg  *prometheus.Registry
	stop func()
}

// follow starts a follower and stops it (checking Run's result) at cleanup.
func (k kafka) follow(t *testing.T, s *Store) running {
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
	var stopped bool
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return running{f: f, reg: reg, stop: stop}
}

func waitReady(t *testing.T, f *Follower) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it holds; the deadline only turns a hang into a failure.
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

var alice = event.Principal{Subject: "alice", TokenID: "tok_a"}

// A gateway must rebuild exactly the live controls from the topic before it serves: applied in
// order, tombstones honoured, garbage skipped. Ready must not close before the last record is in.
func testCatchUp(t *testing.T, k kafka) {
	p := k.producer(t)
	revokeAlice := ctl(event.ControlRevoke, event.ScopeSubject, "acme", "alice")
	revokeBob := ctl(event.ControlRevoke, event.ScopeSubject, "acme", "bob")
	quarantine := ctl(event.ControlQuarantine, event.ScopeTool, "acme", "db/drop_table")
	liftBob := tombstone(revokeBob)
	liftBob.Timestamp = time.Now().Add(-time.Hour).Truncate(time.Millisecond) // when the operator lifted it
	k.produce(t, p,
		rec(t, revokeAlice),
		rec(t, revokeBob),
		&kgo.Record{Key: []byte("revoke/subject/acme/mallory"), Value: []byte("not json")},
		liftBob,
		rec(t, quarantine), // last: readiness must wait for it
	)
	s := NewStore()
	r := k.follow(t, s)
	waitReady(t, r.f)
	if _, ok := s.Check("acme", alice, "db", "", time.Now()); !ok {
		t.Fatal("revocation of alice missing after catch-up")
	}
	if _, ok := s.Check("acme", event.Principal{Subject: "bob"}, "db", "", time.Now()); ok {
		t.Fatal("bob's revocation was lifted by a tombstone but is still in force")
	}
	if _, ok := s.Check("acme", event.Principal{Subject: "carol"}, "db", "drop_table", time.Now()); !ok {
		t.Fatal("the last record was not applied when Ready closed")
	}
	if s.Len() != 2 {
		t.Fatalf("store holds %d controls, want 2", s.Len())
	}
	// The lift is remembered with its time on the topic (the respond stage ends deduplication
	// by it); a key never lifted has none.
	if at, ok := s.LiftedAt(revokeBob.Key()); !ok || !at.Equal(liftBob.Timestamp) {
		t.Fatalf("LiftedAt(%s) = %v, %v; want the tombstone's time %v", revokeBob.Key(), at, ok, liftBob.Timestamp)
	}
	if _, ok := s.LiftedAt(revokeAlice.Key()); ok {
		t.Fatal("a lift reported for alice, whose revocation was never lifted")
	}
	if got := metric(t, r.reg, "mcpwatch_control_records_malformed_total"); got != 1 {
		t.Fatalf("malformed counter = %v, want 1", got)
	}
	if got := metric(t, r.reg, "mcpwatch_control_active"); got != 2 {
		t.Fatalf("active gauge = %v, want 2", got)
	}

	// Tailing: a revocation written after start takes effect without a restart.
	revokeCarol := ctl(event.ControlRevoke, event.ScopeToken, "acme", "tok_c")
	k.produce(t, p, rec(t, revokeCarol), tombstone(revokeAlice))
	eventually(t, "the tailed revocation", func() bool {
		_, carol := s.Check("acme", event.Principal{TokenID: "tok_c"}, "db", "", time.Now())
		_, alice := s.Check("acme", alice, "db", "", time.Now())
		return carol && !alice
	})
}

func TestCatchUpFake(t *testing.T)  { testCatchUp(t, fakeKafka(t, true)) }
func TestCatchUpKafka(t *testing.T) { testCatchUp(t, realKafka(t)) }

// With nothing on the topic the gateway must still start.
func TestEmptyTopicReady(t *testing.T) {
	k := fakeKafka(t, true)
	r := k.follow(t, NewStore())
	waitReady(t, r.f)
	if got := metric(t, r.reg, "mcpwatch_control_ready"); got != 1 {
		t.Fatalf("ready gauge = %v", got)
	}
}

// A restarted gateway rebuilds the same state from the compacted topic: compaction drops
// superseded records and lifted controls but must not resurrect or lose any live one.
func TestRestartAfterCompaction(t *testing.T) {
	k := fakeKafka(t, true)
	p := k.producer(t)
	a := ctl(event.ControlRevoke, event.ScopeSubject, "acme", "alice")
	b := ctl(event.ControlRevoke, event.ScopeSubject, "acme", "bob")
	c := ctl(event.ControlQuarantine, event.ScopeServer, "acme", "db")
	for _, r := range []*kgo.Record{rec(t, a), rec(t, b), tombstone(a), rec(t, c), rec(t, a), tombstone(c)} {
		k.produce(t, p, r) // one batch each, so compaction has something to drop
	}
	first := NewStore()
	r := k.follow(t, first)
	waitReady(t, r.f)
	r.stop()

	k.fake.Compact()
	second := NewStore()
	r2 := k.follow(t, second)
	waitReady(t, r2.f)
	keys := func(s *Store) map[string]bool {
		out := map[string]bool{}
		for _, c := range s.Controls() {
			out[c.Key()] = true
		}
		return out
	}
	if n := metric(t, r2.reg, "mcpwatch_control_records_applied_total"); n >= 6 {
		t.Fatalf("read %v records after compaction: nothing was compacted, the test proves nothing", n)
	}
	want := map[string]bool{a.Key(): true, b.Key(): true}
	for name, s := range map[string]*Store{"before compaction": first, "after compaction": second} {
		if got := keys(s); len(got) != len(want) || !got[a.Key()] || !got[b.Key()] {
			t.Fatalf("%s: store holds %v, want %v", name, got, want)
		}
	}
}

// A transaction marker is the last offset of a topic written transactionally; a follower that
// waited for a data record at that offset would never become ready.
func testReadyAfterTransactionMarker(t *testing.T, k kafka) {
	k.commitOne(t, "responder-"+testenv.Unique(t), rec(t, ctl(event.ControlRevoke, event.ScopeSubject, "acme", "alice")))
	s := NewStore()
	r := k.follow(t, s)
	waitReady(t, r.f)
	if _, ok := s.Check("acme", alice, "db", "", time.Now()); !ok {
		t.Fatal("committed transactional control missing")
	}
}

func TestReadyAfterTransactionMarkerFake(t *testing.T) {
	testReadyAfterTransactionMarker(t, fakeKafka(t, true))
}

func TestReadyAfterTransactionMarkerKafka(t *testing.T) {
	testReadyAfterTransactionMarker(t, realKafka(t))
}

// commitOne writes r in a transaction that ends committed, and returns once the commit marker is
// the last offset of the topic. franz-go v1.22.2 sometimes ends a transaction with an abort
// although TryCommit was asked and the produce succeeded (it logs "no produce succeeded in this
// transaction but produces were attempted") while EndTransaction returns nil, so the marker is
// read back and the transaction tried again, by a new client (the old one's sequence numbers no
// longer match the broker's), until it is a commit.
func (k kafka) commitOne(t *testing.T, txnID string, r *kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(k.producer(t))
	stable := func() int64 { // the last stable offset: the end for committed reads
		o, err := adm.ListCommittedOffsets(ctx, k.topic)
		if err != nil || o.Error() != nil {
			return -1
		}
		end, _ := o.Lookup(k.topic, 0)
		return end.Offset
	}
	for attempt := 1; ; attempt++ {
		before := stable()
		if before < 0 {
			t.Fatal("cannot list the topic's offsets")
		}
		p := k.producer(t, kgo.TransactionalID(txnID))
		if err := p.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		k.produce(t, p, &kgo.Record{Key: r.Key, Value: r.Value}) // a produced record is not reusable
		if err := p.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
		// The marker is written after EndTransaction returns; until then the record is not
		// committed for readers.
		eventually(t, "the transaction marker", func() bool { return stable() >= before+2 })
		committed := k.markerCommits(t, stable()-1)
		p.Close()
		if committed {
			return
		}
		if attempt == 5 {
			t.Fatalf("%d transactions in a row ended in an abort marker", attempt)
		}
		t.Logf("transaction %d ended in an abort marker although its commit was asked; trying again", attempt)
	}
}

// markerCommits reads the transaction marker at offset and reports whether it is a commit.
func (k kafka) markerCommits(t *testing.T, offset int64) bool {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.brokers...), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
			k.topic: {0: kgo.NewOffset().At(offset)}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading the marker at offset %d: %v", offset, ctx.Err())
		}
		for _, r := range fs.Records() {
			if r.Offset != offset {
				continue
			}
			// A marker's key is version (int16) then type (int16): 0 abort, 1 commit.
			if !r.Attrs.IsControl() || len(r.Key) < 4 {
				t.Fatalf("offset %d is not a transaction marker", offset)
			}
			return r.Key[3] == 1
		}
	}
}

// Kafka or the topic may come up after the gateway: the follower waits, unready, and catches up
// once the topic exists rather than exiting or declaring an empty store ready.
func TestTopicCreatedLater(t *testing.T) {
	k := fakeKafka(t, false)
	r := k.follow(t, NewStore())
	select {
	case <-r.f.Ready():
		t.Fatal("ready before the control topic exists")
	default:
	}
	k.create(t)
	waitReady(t, r.f)
}

// metric returns the summed value of a counter or gauge family in reg.
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
