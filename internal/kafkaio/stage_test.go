package kafkaio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// broker is a Kafka the test can use: kfake for fault injection, or the real one.
type broker struct {
	brokers []string
	fake    *kfake.Cluster
	names   event.Topics
}

func fakeBroker(t *testing.T) broker {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	b := broker{brokers: c.ListenAddrs(), fake: c, names: event.TopicNames("fake")}
	b.ensure(t)
	return b
}

func realBroker(t *testing.T) broker {
	t.Helper()
	b := broker{brokers: testenv.Kafka(t), names: testenv.Topics(t)}
	b.ensure(t)
	return b
}

func (b broker) client(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := NewClient(Config{Brokers: b.brokers, ClientID: "test"}, append([]kgo.Opt{kgo.MetadataMinAge(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func (b broker) ensure(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := EnsureTopics(ctx, b.client(t), Topics(b.names, 3, 1, 24)); err != nil {
		t.Fatal(err)
	}
}

func (b broker) stage(t *testing.T, group string, h Handler, shutdown time.Duration) *Stage {
	t.Helper()
	s, err := NewStage(Config{Brokers: b.brokers}, StageConfig{
		Name: "test", Group: group, Topics: []string{b.names.Raw}, DeadLetterTopic: b.names.DeadLetter,
		ShutdownTimeout: shutdown,
	}, h, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// produce writes n raw events for principals p0..p4; every tenth record is garbage.
func (b broker) produce(t *testing.T, n int) (good, bad int) {
	t.Helper()
	cl := b.client(t)
	var recs []*kgo.Record
	for i := range n {
		if i%10 == 9 {
			recs = append(recs, &kgo.Record{Topic: b.names.Raw, Key: []byte("acme/bad"), Value: []byte(`{"schema":1,"id":`)})
			bad++
			continue
		}
		e := event.Event{ID: event.NewID(), Time: time.Now(), Source: event.SourceMCP, Tenant: "acme",
			Principal: event.Principal{Subject: fmt.Sprintf("p%d", i%5)}}
		r, err := RecordOf(b.names.Raw, event.PrincipalKey(e.Tenant, e.Principal), &e)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
		good++
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return good, bad
}

// copyHandler decodes raw events and forwards them to the events topic.
func copyHandler(names event.Topics, calls *atomic.Int64) Handler {
	return PerRecord(func(_ context.Context, r *kgo.Record) ([]*kgo.Record, error) {
		if calls != nil {
			calls.Add(1)
		}
		var e event.Event
		if err := event.Decode(r.Value, &e); err != nil {
			return nil, err
		}
		out, err := RecordOf(names.Events, string(r.Key), &e)
		return []*kgo.Record{out}, err
	})
}

// count reads topic from the start until it has want records or the deadline passes.
func (b broker) count(t *testing.T, topic string, want int) []*kgo.Record {
	t.Helper()
	cl := b.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []*kgo.Record
	for len(got) < want {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		got = append(got, f.Records()...)
	}
	return got
}

func (b broker) committed(t *testing.T, group string) (committed, end int64) {
	t.Helper()
	adm := kadm.NewClient(b.client(t))
	ctx := context.Background()
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, b.names.Raw)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		end += o.Offset
		if c, ok := offs.Lookup(o.Topic, o.Partition); ok {
			committed += c.At
		}
	})
	return committed, end
}

func runStage(s *Stage) (cancel func() error) {
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return func() error { stop(); return <-done }
}

// The stage's contract: every good record reaches the output, every bad one the dead-letter
// topic with its reason, offsets are committed, and a restarted group does not re-read.
func testStageDelivers(t *testing.T, b broker) {
	good, bad := b.produce(t, 100)
	stop := runStage(b.stage(t, "g1", copyHandler(b.names, nil), time.Second))
	out := b.count(t, b.names.Events, good)
	dead := b.count(t, b.names.DeadLetter, bad)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(out) != good || len(dead) != bad {
		t.Fatalf("got %d outputs, %d dead letters; want %d, %d", len(out), len(dead), good, bad)
	}
	d := dead[0]
	if Header(d, HeaderDLQStage) != "test" || Header(d, HeaderDLQTopic) != b.names.Raw || Header(d, HeaderDLQReason) == "" ||
		string(d.Value) != `{"schema":1,"id":` {
		t.Fatalf("dead letter lost its evidence: headers=%v value=%q", d.Headers, d.Value)
	}
	if c, e := b.committed(t, "g1"); c != e {
		t.Fatalf("committed %d of %d records", c, e)
	}

	var calls atomic.Int64
	stop = runStage(b.stage(t, "g1", copyHandler(b.names, &calls), time.Second))
	b.produce(t, 5)
	b.count(t, b.names.Events, good+5)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 5 {
		t.Fatalf("restarted group handled %d records, want the 5 new ones", n)
	}
}

func TestStageDeliversFake(t *testing.T)  { testStageDelivers(t, fakeBroker(t)) }
func TestStageDeliversKafka(t *testing.T) { testStageDelivers(t, realBroker(t)) }

// A transient handler error must retry the batch, not drop it or dead-letter it.
func TestStageRetriesTransientErrors(t *testing.T) {
	b := fakeBroker(t)
	good, _ := b.produce(t, 20)
	var fails atomic.Int64
	inner := copyHandler(b.names, nil)
	h := HandlerFunc(func(ctx context.Context, recs []*kgo.Record) (Result, error) {
		if fails.Add(1) <= 3 {
			return Result{}, errors.New("clickhouse unreachable")
		}
		return inner.Handle(ctx, recs)
	})
	stop := runStage(b.stage(t, "g", h, time.Second))
	out := b.count(t, b.names.Events, good)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(out) != good {
		t.Fatalf("got %d outputs after transient errors, want %d", len(out), good)
	}
}

// Offsets must not be committed while outputs are unacknowledged: otherwise a crash loses them.
func TestStageNoCommitBeforeAck(t *testing.T) {
	b := fakeBroker(t)
	b.produce(t, 9) // nine good records
	fault := b.fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: b.names.Events,
		Err: kerr.InvalidRecord, Count: -1})
	stop := runStage(b.stage(t, "g", copyHandler(b.names, nil), 200*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := fault.Wait(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err == nil {
		t.Fatal("stage reported a clean stop with an unacknowledged batch")
	}
	if c, _ := b.committed(t, "g"); c != 0 {
		t.Fatalf("committed %d offsets although no output was acknowledged", c)
	}
	fault.Remove()
	stop = runStage(b.stage(t, "g", copyHandler(b.names, nil), time.Second))
	out := b.count(t, b.names.Events, 9)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(out) != 9 {
		t.Fatalf("after recovery got %d outputs, want 9", len(out))
	}
}

// SIGTERM in the middle of a batch finishes the batch and commits it.
func TestStageShutdownFinishesBatch(t *testing.T) {
	b := fakeBroker(t)
	b.produce(t, 9)
	started := make(chan struct{})
	var once sync.Once
	release := make(chan struct{})
	inner := copyHandler(b.names, nil)
	h := HandlerFunc(func(ctx context.Context, recs []*kgo.Record) (Result, error) {
		once.Do(func() { close(started) })
		<-release
		return inner.Handle(ctx, recs)
	})
	stop := runStage(b.stage(t, "g", h, 10*time.Second))
	<-started
	done := make(chan error, 1)
	go func() { done <- stop() }()
	time.Sleep(100 * time.Millisecond) // shutdown has begun while the batch is in flight
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c, _ := b.committed(t, "g")
	out := b.count(t, b.names.Events, int(c))
	if c == 0 || len(out) != int(c) {
		t.Fatalf("in-flight batch: committed %d, produced %d", c, len(out))
	}
}
