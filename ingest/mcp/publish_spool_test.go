package mcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/spool"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// seqEvent is an audit event of principal p carrying its publish sequence number.
func seqEvent(p string, seq int) *event.Event {
	return &event.Event{ID: event.NewID(), Time: time.Now(), Source: event.SourceMCP, Tenant: "acme",
		Principal: event.Principal{Subject: p}, Attributes: map[string]string{"seq": strconv.Itoa(seq)}}
}

func fakeKafka(t *testing.T) (*kfake.Cluster, event.Topics) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	names := event.TopicNames("fake")
	ensureRaw(t, kafkaClient(t, c.ListenAddrs()), names)
	return c, names
}

// warm produces one record synchronously so the client knows the topic before Kafka stalls.
func warm(t *testing.T, cl *kgo.Client, topic string) {
	t.Helper()
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Value: []byte("warm")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// stall makes the broker hold every produce request until release is called (idempotent).
func stall(t *testing.T, c *kfake.Cluster) (release func()) {
	t.Helper()
	stuck := make(chan struct{})
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		<-stuck
		return nil, nil, false
	})
	var once sync.Once
	release = func() { once.Do(func() { close(stuck) }) }
	t.Cleanup(release)
	return release
}

func openSpool(t *testing.T, dir string, opts ...spool.Option) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Close() })
	return sp
}

func durable(t *testing.T, cl *kgo.Client, sp *spool.Spool, topic string, reg *prometheus.Registry, opts ...DurableOption) *DurablePublisher {
	t.Helper()
	p, err := NewDurablePublisher(cl, sp, topic, append([]DurableOption{
		WithDurableLogger(slog.New(slog.DiscardHandler)), WithDurableRegisterer(reg)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func closePub(t *testing.T, p *DurablePublisher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
				}
				if !found {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// waitFor polls cond until it holds; the deadline only bounds a hung test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readAll consumes topic until want distinct audit event ids arrived, and checks that each
// principal's events arrived in publish order (first delivery of each id; at-least-once allows
// repeats).
func readAll(t *testing.T, brokers []string, topic string, want int) map[string]bool {
	t.Helper()
	consumer := kafkaClient(t, brokers, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ids := map[string]bool{}
	last := map[string]int{}
	for len(ids) < want {
		fetches := consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d distinct events on %s, want %d", len(ids), topic, want)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if string(r.Value) == "warm" {
				return
			}
			var e event.Event
			if err := event.Decode(r.Value, &e); err != nil {
				t.Fatalf("offset %d: %v", r.Offset, err)
			}
			if want := event.PrincipalKey(e.Tenant, e.Principal); string(r.Key) != want {
				t.Fatalf("key %q, want %q", r.Key, want)
			}
			if ids[e.ID] {
				return
			}
			ids[e.ID] = true
			seq, _ := strconv.Atoi(e.Attributes["seq"])
			if prev, ok := last[e.Principal.Subject]; ok && seq <= prev {
				t.Fatalf("%s: event %d arrived after %d", e.Principal.Subject, seq, prev)
			}
			last[e.Principal.Subject] = seq
		})
	}
	return ids
}

// Kafka stops acknowledging: events go to the spool, none is lost; Kafka comes back: the spool
// is replayed in order, later events go direct again and never overtake spooled ones.
func TestDurableOutageSpoolsAndReplays(t *testing.T) {
	c, names := fakeKafka(t)
	cl := kafkaClient(t, c.ListenAddrs())
	warm(t, cl, names.Raw)
	reg := prometheus.NewRegistry()
	sp := openSpool(t, t.TempDir())
	// One record in flight is the whole budget: the second event already finds Kafka "full".
	pub := durable(t, cl, sp, names.Raw, reg, WithMaxInFlight(1))
	release := stall(t, c)

	principals := []string{"alice", "bob", "carol"}
	seq := map[string]int{}
	send := func(n int) {
		for i := range n {
			p := principals[i%len(principals)]
			seq[p]++
			if err := pub.Send(context.Background(), seqEvent(p, seq[p])); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(200)
	if got := counter(t, reg, "mcpwatch_gateway_audit_spooled_total"); got != 199 {
		t.Fatalf("spooled %v, want 199 (one event in flight)", got)
	}
	if got := counter(t, reg, "mcpwatch_gateway_audit_spool_records"); got != 199 {
		t.Fatalf("spool holds %v records, want 199 while Kafka is down", got)
	}
	if err := pub.Healthy(); err != nil {
		t.Fatalf("healthy while the spool has room: %v", err)
	}

	release()
	waitFor(t, "spool drained", func() bool { return sp.Len() == 0 && !pubSpooling(pub) })
	if got := counter(t, reg, "mcpwatch_gateway_audit_replayed_total"); got != 199 {
		t.Fatalf("replayed %v, want 199", got)
	}
	// Back to direct; with one record in flight allowed, bursts spill into the spool again and
	// must still come out in order.
	send(60)
	acked := func() float64 {
		return counter(t, reg, "mcpwatch_gateway_audit_produced_total") + counter(t, reg, "mcpwatch_gateway_audit_replayed_total")
	}
	waitFor(t, "all events acknowledged", func() bool { return acked() == 260 })
	if got := counter(t, reg, "mcpwatch_gateway_audit_produced_total"); got < 2 {
		t.Fatalf("%v events produced directly: publishing never went direct again", got)
	}
	closePub(t, pub)
	readAll(t, c.ListenAddrs(), names.Raw, 260)
}

func pubSpooling(p *DurablePublisher) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.spooling
}

// A full spool: fail_closed refuses the event with ErrAuditUnavailable and Healthy reports it, so
// the gateway refuses calls; every event Send accepted still reaches Kafka once it returns.
func TestDurableSpoolFullFailClosed(t *testing.T) {
	c, names := fakeKafka(t)
	cl := kafkaClient(t, c.ListenAddrs())
	warm(t, cl, names.Raw)
	reg := prometheus.NewRegistry()
	sp := openSpool(t, t.TempDir(), spool.WithSegmentBytes(4096), spool.WithMaxBytes(8192))
	pub := durable(t, cl, sp, names.Raw, reg, WithMaxInFlight(1))
	release := stall(t, c)

	accepted, refused := 0, 0
	for i := range 200 {
		err := pub.Send(context.Background(), seqEvent("alice", i+1))
		switch {
		case err == nil:
			accepted++
		case errors.Is(err, ErrAuditUnavailable):
			refused++
		default:
			t.Fatal(err)
		}
	}
	if refused == 0 || accepted == 0 {
		t.Fatalf("accepted %d, refused %d: the spool never filled", accepted, refused)
	}
	if err := pub.Healthy(); !errors.Is(err, ErrAuditUnavailable) {
		t.Fatalf("Healthy with a full spool = %v, want ErrAuditUnavailable", err)
	}
	if got := counter(t, reg, "mcpwatch_gateway_audit_refused_total"); got != float64(refused) {
		t.Fatalf("refused metric %v, want %d", got, refused)
	}
	release()
	waitFor(t, "healthy again", func() bool { return pub.Healthy() == nil })
	waitFor(t, "spool drained", func() bool { return sp.Len() == 0 })
	closePub(t, pub)
	ids := readAll(t, c.ListenAddrs(), names.Raw, accepted)
	if len(ids) != accepted {
		t.Fatalf("%d events on Kafka, want the %d accepted", len(ids), accepted)
	}
}

// fail_open: a full spool drops the event, counts it and lets the call through.
func TestDurableSpoolFullFailOpen(t *testing.T) {
	c, names := fakeKafka(t)
	cl := kafkaClient(t, c.ListenAddrs())
	warm(t, cl, names.Raw)
	reg := prometheus.NewRegistry()
	sp := openSpool(t, t.TempDir(), spool.WithSegmentBytes(4096), spool.WithMaxBytes(8192))
	pub := durable(t, cl, sp, names.Raw, reg, WithMaxInFlight(1), WithSpoolFullMode(FailOpen))
	release := stall(t, c)
	for i := range 200 {
		if err := pub.Send(context.Background(), seqEvent("alice", i+1)); err != nil {
			t.Fatalf("fail_open Send: %v", err)
		}
	}
	if err := pub.Healthy(); err != nil {
		t.Fatalf("fail_open Healthy: %v", err)
	}
	dropped := counter(t, reg, "mcpwatch_gateway_audit_dropped_total", "reason", "fail_open")
	spooled := counter(t, reg, "mcpwatch_gateway_audit_spooled_total")
	if dropped == 0 || dropped+spooled != 199 {
		t.Fatalf("dropped %v + spooled %v, want 199 with some dropped", dropped, spooled)
	}
	release()
	closePub(t, pub)
}

// A publisher started on a spool left non-empty by an earlier process replays it, in order, before
// anything else.
func TestDurableRestartReplaysSpool(t *testing.T) {
	dir := t.TempDir()
	sp := openSpool(t, dir)
	for i := range 30 {
		e := seqEvent("alice", i+1)
		v, err := event.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		if err := sp.Append(spoolRecord(event.PrincipalKey(e.Tenant, e.Principal), v)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}

	c, names := fakeKafka(t)
	cl := kafkaClient(t, c.ListenAddrs())
	reg := prometheus.NewRegistry()
	sp = openSpool(t, dir)
	pub := durable(t, cl, sp, names.Raw, reg)
	if err := pub.Send(context.Background(), seqEvent("alice", 31)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "spool drained", func() bool { return sp.Len() == 0 && !pubSpooling(pub) })
	closePub(t, pub)
	readAll(t, c.ListenAddrs(), names.Raw, 31)
}

// Close during an outage keeps the records still in flight: they are spooled, not lost.
func TestDurableCloseSpoolsInFlight(t *testing.T) {
	c, names := fakeKafka(t)
	cl := kafkaClient(t, c.ListenAddrs())
	warm(t, cl, names.Raw)
	sp := openSpool(t, t.TempDir())
	pub := durable(t, cl, sp, names.Raw, prometheus.NewRegistry(), WithMaxInFlight(5))
	release := stall(t, c)
	for i := range 3 {
		if err := pub.Send(context.Background(), seqEvent("alice", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // do not wait for Kafka
	if err := pub.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := sp.Len(); n != 3 {
		t.Fatalf("spool holds %d records after Close, want the 3 in flight", n)
	}
	if err := pub.Send(context.Background(), seqEvent("alice", 4)); !errors.Is(err, ErrAuditUnavailable) {
		t.Fatalf("Send after Close: %v", err)
	}
	release()
}

// Against the real Kafka: events published through the durable publisher all come back, keyed
// and in order per principal.
func TestDurablePublisherKafka(t *testing.T) {
	brokers := testenv.Kafka(t)
	names := testenv.Topics(t)
	cl := kafkaClient(t, brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkaio.EnsureTopics(ctx, cl, kafkaio.Topics(names, 3, 1, 24)); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	pub := durable(t, cl, openSpool(t, t.TempDir()), names.Raw, reg)
	const n = 500
	for i := range n {
		if err := pub.Send(ctx, seqEvent(fmt.Sprintf("user-%d", i%7), i)); err != nil {
			t.Fatal(err)
		}
	}
	closePub(t, pub)
	readAll(t, brokers, names.Raw, n)
	if got := counter(t, reg, "mcpwatch_gateway_audit_produced_total") + counter(t, reg, "mcpwatch_gateway_audit_replayed_total"); got < n {
		t.Fatalf("%v acknowledged, want %d", got, n)
	}
}

// BenchmarkPublish measures Send on the healthy path: encode + hand-off to the franz-go client
// (direct to kfake). Compare BenchmarkSpoolAppend in internal/spool for the spooled path.
func BenchmarkPublish(b *testing.B) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "bench.raw"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cl, err := kafkaio.NewClient(kafkaio.Config{Brokers: c.ListenAddrs(), ClientID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	sp, err := spool.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	pub, err := NewDurablePublisher(cl, sp, "bench.raw", WithDurableLogger(slog.New(slog.DiscardHandler)),
		WithMaxInFlight(50_000), WithStallTimeout(time.Minute))
	if err != nil {
		b.Fatal(err)
	}
	e := seqEvent("alice", 1)
	e.MCP = &event.MCP{Direction: event.DirRequest, Method: "tools/call", Tool: "db_query", ArgumentsMasked: `{"q":"select 1"}`}
	ctx := context.Background()
	for b.Loop() {
		if err := pub.Send(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	_ = cl.Flush(ctx)
	if err := pub.Close(ctx); err != nil {
		b.Fatal(err)
	}
	if st := sp.Stats(); st.Records != 0 {
		b.Logf("%d events spooled during the benchmark (kafka slower than the loop)", st.Records)
	}
}

// The gateway's action records take the audit events' path: while Kafka stalls they wait in a
// spool of their own, and once it is back they arrive on the actions topic under [ActionKey],
// beside an events publisher on the same registry (its own metric names). If it failed, a
// quarantine applied during a broker outage would vanish from the audit trail, or the two
// publishers could not run in one gateway.
func TestDurableActionsSpoolAndReplay(t *testing.T) {
	c, names := fakeKafka(t)
	cl := kafkaClient(t, c.ListenAddrs())
	warm(t, cl, names.Actions)
	reg := prometheus.NewRegistry()
	events := durable(t, cl, openSpool(t, t.TempDir()), names.Raw, reg)
	defer closePub(t, events)
	sp := openSpool(t, t.TempDir())
	pub := durable(t, cl, sp, names.Actions, reg, WithMaxInFlight(1), WithMetricPrefix("mcpwatch_gateway_actions"))
	release := stall(t, c)
	sent := map[string]*event.Action{}
	for i := range 5 {
		a := &event.Action{ID: event.NewID(), Time: time.Now(), Tenant: "acme", Kind: event.ActionQuarantine,
			Target: "sb-" + strconv.Itoa(i), Status: "succeeded", Actor: "gateway:gw"}
		if i%2 == 0 {
			a.Subject = "alice"
		}
		sent[a.ID] = a
		pub.PublishAction(context.Background(), a)
	}
	if got := counter(t, reg, "mcpwatch_gateway_actions_spooled_total"); got != 4 {
		t.Fatalf("spooled %v actions, want 4 (one in flight)", got)
	}
	release()
	waitFor(t, "actions spool drained", func() bool { return sp.Len() == 0 && !pubSpooling(pub) })
	closePub(t, pub)

	consumer := kafkaClient(t, c.ListenAddrs(), kgo.ConsumeTopics(names.Actions), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[string]bool{}
	for len(got) < len(sent) && ctx.Err() == nil {
		consumer.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if string(r.Value) == "warm" {
				return
			}
			var a event.Action
			if err := event.Decode(r.Value, &a); err != nil {
				t.Fatalf("offset %d: %v", r.Offset, err)
			}
			want, ok := sent[a.ID]
			if !ok || string(r.Key) != ActionKey(want) || a.Target != want.Target {
				t.Fatalf("unexpected action %+v under key %q", a, r.Key)
			}
			got[a.ID] = true
		})
	}
	if len(got) != len(sent) {
		t.Fatalf("%d of %d actions arrived", len(got), len(sent))
	}
	if ActionKey(&event.Action{Tenant: "acme", Subject: "alice"}) != "acme/alice" || ActionKey(&event.Action{Tenant: "acme", Target: "sb-1"}) != "acme/sb-1" {
		t.Fatal("action keys: principal's key when named, else tenant/target")
	}
}
