package mcp

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

func kafkaClient(t *testing.T, brokers []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kafkaio.NewClient(kafkaio.Config{Brokers: brokers, ClientID: "test-gateway"},
		append([]kgo.Opt{kgo.MetadataMinAge(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func ensureRaw(t *testing.T, cl *kgo.Client, names event.Topics) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkaio.EnsureTopics(ctx, cl, kafkaio.Topics(names, 1, 1, 24)); err != nil {
		t.Fatal(err)
	}
}

// Audit events from real MCP traffic land on the raw topic keyed by tenant/principal and decode
// with the shared codec: the contract between the gateway and every stage downstream.
func testKafkaPublisher(t *testing.T, brokers []string, names event.Topics) {
	cl := kafkaClient(t, brokers)
	ensureRaw(t, cl, names)
	reg := prometheus.NewRegistry()
	pub := NewKafkaPublisher(cl, names.Raw, slog.New(slog.DiscardHandler), reg)

	up := newUpstream(t, true)
	f := newFixture(t, up)
	f.gw.pub = pub // the fixture's recorder is replaced: everything goes to Kafka
	cs := f.connect(t, clientOpts{token: aliceToken})
	if _, err := echo(t, cs, "to kafka"); err != nil {
		t.Fatal(err)
	}
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	consumer := kafkaClient(t, brokers, kgo.ConsumeTopics(names.Raw), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var got []*event.Event
	for len(find(got, event.DirResponse, "tools/call")) == 0 {
		fetches := consumer.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("tools/call response not on %s; have:\n%s", names.Raw, dump(got))
		}
		fetches.EachRecord(func(r *kgo.Record) {
			var e event.Event
			if err := event.Decode(r.Value, &e); err != nil {
				t.Fatalf("record at offset %d does not decode: %v", r.Offset, err)
			}
			if want := event.PrincipalKey(e.Tenant, e.Principal); string(r.Key) != want {
				t.Fatalf("record key %q, want %q", r.Key, want)
			}
			got = append(got, &e)
		})
	}
	checkCommon(t, got, "alice")
	checkPaired(t, got)
	if got[0].Schema != event.SchemaVersion {
		t.Fatalf("schema %d", got[0].Schema)
	}
	if n := metricValue(t, reg, "mcpwatch_gateway_audit_failed_total", "reason", "produce"); n != 0 {
		t.Fatalf("%v produce failures", n)
	}
}

func TestKafkaPublisherFake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	testKafkaPublisher(t, c.ListenAddrs(), event.TopicNames("fake"))
}

func TestKafkaPublisherKafka(t *testing.T) {
	testKafkaPublisher(t, testenv.Kafka(t), testenv.Topics(t))
}

// When Kafka stops taking records, Publish must not block the MCP call it audits: the event is
// dropped and counted (the disk spool will keep it instead).
func TestKafkaPublisherNeverBlocks(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	names := event.TopicNames("fake")
	ensureRaw(t, kafkaClient(t, c.ListenAddrs()), names)
	cl := kafkaClient(t, c.ListenAddrs(), kgo.MaxBufferedRecords(1))
	reg := prometheus.NewRegistry()
	pub := NewKafkaPublisher(cl, names.Raw, slog.New(slog.DiscardHandler), reg)
	e := func() *event.Event {
		return &event.Event{ID: event.NewID(), Time: time.Now(), Source: event.SourceMCP, Tenant: "acme",
			Principal: event.Principal{Subject: "alice"}}
	}
	// One acknowledged record first, so that the client knows the topic before Kafka stalls.
	warm, _ := pub.record(e())
	if err := cl.ProduceSync(context.Background(), warm).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for cl.BufferedProduceRecords() > 0 { // released just after its promise
		time.Sleep(time.Millisecond)
	}
	stuck := make(chan struct{})
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		<-stuck // the broker never answers a produce
		return nil, nil, false
	})
	t.Cleanup(func() { close(stuck) })

	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 3 {
			pub.Publish(context.Background(), e())
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked while Kafka was not acknowledging")
	}
	// franz-go delivers promises, refusals included, on its own goroutine.
	deadline := time.Now().Add(10 * time.Second)
	for metricValue(t, reg, "mcpwatch_gateway_audit_failed_total", "reason", "buffer_full") != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("buffer_full drops = %v, want 2",
				metricValue(t, reg, "mcpwatch_gateway_audit_failed_total", "reason", "buffer_full"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
