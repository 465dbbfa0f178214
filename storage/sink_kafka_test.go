package storage

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// kafkaTopics creates this test's own topics on the real Kafka and returns a client for them.
func kafkaTopics(t *testing.T, ctx context.Context) ([]string, event.Topics, *kgo.Client) {
	t.Helper()
	brokers := testenv.Kafka(t)
	names := testenv.Topics(t)
	cl, err := kafkaio.NewClient(kafkaio.Config{Brokers: brokers, ClientID: "storage-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if err := kafkaio.EnsureTopics(ctx, cl, kafkaio.Topics(names, 3, 1, 24)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		all := names.All()
		_, _ = kadm.NewClient(cl).DeleteTopics(context.Background(), all...)
	})
	return brokers, names, cl
}

// startStage runs a sink stage on the real Kafka until the returned stop is called; stop returns
// what Run returned.
func startStage(t *testing.T, brokers []string, names event.Topics, group string, h kafkaio.Handler, topics []string,
	reg prometheus.Registerer, shutdown time.Duration) (stop func() error) {
	t.Helper()
	st, err := kafkaio.NewStage(kafkaio.Config{Brokers: brokers}, kafkaio.StageConfig{
		Name: "sink", Group: group, Topics: topics, DeadLetterTopic: names.DeadLetter, ShutdownTimeout: shutdown,
		MaxPoll: 10_000, MaxBatchBytes: 8 << 20, MaxBatchDelay: 300 * time.Millisecond,
	}, h, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// committed sums the group's committed offsets over its topics (0 when nothing is committed).
func committed(t *testing.T, ctx context.Context, cl *kgo.Client, group string) int64 {
	t.Helper()
	offs, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil && o.At > 0 {
			n += o.At
		}
	})
	return n
}

func produceEvents(t *testing.T, ctx context.Context, cl *kgo.Client, topic string, from, n int) {
	t.Helper()
	recs := make([]*kgo.Record, 0, n)
	for i := from; i < from+n; i++ {
		e := sampleEvent(i)
		e.Principal.Subject = []string{"alice", "bob", "carol", "dave", "erin"}[i%5]
		r, err := kafkaio.RecordOf(topic, event.PrincipalKey(e.Tenant, e.Principal), &e)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// metric sums the counter name over its series in reg.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue()
			}
		}
	}
	return v
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A sink that dies after ClickHouse acknowledged its INSERT but before it committed the Kafka
// offsets (the at-least-once window) is restarted: Kafka redelivers the range, and the queries
// users run — the raw table, the dedup view, the dashboard aggregates — must show every event
// exactly once. If the replay were written again, the aggregates would double.
func TestSinkKillAndReplay(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	conn, db := migrated(t)
	brokers, names, cl := kafkaTopics(t, ctx)
	const n = 500
	produceEvents(t, ctx, cl, names.Events, 0, n)
	group := "storage-test-" + testenv.Unique(t)

	// First life: the INSERT succeeds, then the process "dies" before the commit.
	first, err := NewSink(ctx, conn, SinkConfig{Database: db, Topics: names, InsertTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	inserted := make(chan int, 1)
	var once sync.Once
	dying := kafkaio.HandlerFunc(func(hctx context.Context, recs []*kgo.Record) (kafkaio.Result, error) {
		res, err := first.Handle(hctx, recs)
		if err != nil || len(res.Dead) > 0 {
			return kafkaio.Result{}, fmt.Errorf("first sink: %d dead letters, err %v", len(res.Dead), err)
		}
		once.Do(func() { inserted <- len(recs) })
		<-hctx.Done() // hang until shutdown abandons the batch: nothing gets committed
		return kafkaio.Result{}, hctx.Err()
	})
	stop := startStage(t, brokers, names, group, dying, []string{names.Events}, nil, 200*time.Millisecond)
	var k int
	select {
	case k = <-inserted:
	case <-ctx.Done():
		t.Fatal("first sink never inserted")
	}
	if err := stop(); err == nil {
		t.Fatal("the dying stage reported a clean shutdown")
	}
	if c := committed(t, ctx, cl, group); c != 0 {
		t.Fatalf("offsets committed (%d) although the batch was abandoned", c)
	}
	if got := count(t, conn, "SELECT count() FROM "+db+".events"); got != uint64(k) {
		t.Fatalf("first life stored %d rows, its batch had %d", got, k)
	}

	// Second life: a fresh sink in the same group consumes from the last commit, i.e. again.
	reg := prometheus.NewRegistry()
	s, err := NewSink(ctx, conn, SinkConfig{Database: db, Topics: names, Registerer: reg, InsertTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stop = startStage(t, brokers, names, group, s, []string{names.Events}, nil, 5*time.Second)
	waitFor(t, 2*time.Minute, "all offsets committed", func() bool { return committed(t, ctx, cl, group) == n })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	redelivered := metric(t, reg, "mcpwatch_sink_already_stored_total")
	if redelivered < float64(k) {
		t.Fatalf("only %v records were left out as already stored; the replayed batch had %d", redelivered, k)
	}
	t.Logf("first life inserted %d of %d events and died uncommitted; the second left out %v as already stored", k, n, redelivered)
	for q, want := range map[string]uint64{
		"SELECT count() FROM " + db + ".events":                          n,
		"SELECT count() FROM " + db + ".events_dedup":                    n,
		"SELECT uniqExact(id) FROM " + db + ".events":                    n,
		"SELECT toUInt64(sum(calls)) FROM " + db + ".events_per_minute":  n,
		"SELECT toUInt64(sum(denied)) FROM " + db + ".events_per_minute": n, // every sample event is denied
	} {
		if got := count(t, conn, q); got != want {
			t.Errorf("%s = %d, want %d", q, got, want)
		}
	}
}

// ClickHouse unreachable for a full minute while events keep arriving: the sink waits and
// retries, commits nothing and stops fetching (bounded memory) meanwhile, dead-letters nothing,
// and afterwards every event is stored exactly once.
func TestSinkSurvivesClickHouseOutage(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("takes over a minute")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	conn, db := migrated(t)
	env := chEnv(t)
	brokers, names, cl := kafkaTopics(t, ctx)
	p := newProxy(t, env.Addr)
	viaProxy, err := Open(ctx, Options{Addr: p.addr, User: env.AdminUser, Password: env.AdminPassword, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSink(ctx, viaProxy, SinkConfig{Database: db, Topics: names, InsertTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	reg := prometheus.NewRegistry()
	group := "storage-test-" + testenv.Unique(t)
	stop := startStage(t, brokers, names, group, s, s.Topics(), reg, 10*time.Second)
	consumed := func() float64 { return metric(t, reg, "mcpwatch_stage_records_in_total") }

	// Events keep arriving, 50 every 100 ms, for the whole test.
	var produced atomic.Int64
	pctx, stopProducing := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; pctx.Err() == nil; i += 50 {
			produceEvents(t, ctx, cl, names.Events, i, 50)
			produced.Add(50)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	waitFor(t, time.Minute, "events flowing", func() bool { return count(t, conn, "SELECT count() FROM "+db+".events") > 0 })

	p.down()
	outage := time.Now()
	time.Sleep(10 * time.Second) // the batch in flight at the cut is now stuck retrying
	atCommit, atConsumed := committed(t, ctx, cl, group), consumed()
	time.Sleep(60*time.Second - time.Since(outage))
	if c := committed(t, ctx, cl, group); c != atCommit {
		t.Errorf("offsets moved from %d to %d while ClickHouse was unreachable", atCommit, c)
	}
	if c := consumed(); c != atConsumed {
		t.Errorf("the stage kept consuming during the outage (%v → %v records): no backpressure", atConsumed, c)
	}
	backlog := produced.Load() - atCommit
	t.Logf("outage of %s: %d events produced, %d committed before it, %v held in the stuck batch", time.Since(outage).Round(time.Second), produced.Load(), atCommit, atConsumed-float64(atCommit))
	p.restore()
	time.Sleep(2 * time.Second)
	stopProducing()
	wg.Wait()
	total := produced.Load()
	if backlog <= 0 {
		t.Fatalf("no backlog built up during the outage (%d produced, %d committed)", total, atCommit)
	}
	waitFor(t, 2*time.Minute, "the backlog stored", func() bool { return committed(t, ctx, cl, group) == total })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string]uint64{
		"SELECT count() FROM " + db + ".events":                         uint64(total),
		"SELECT uniqExact(id) FROM " + db + ".events":                   uint64(total),
		"SELECT toUInt64(sum(calls)) FROM " + db + ".events_per_minute": uint64(total),
	} {
		if got := count(t, conn, q); got != want {
			t.Errorf("%s = %d, want %d", q, got, want)
		}
	}
	offs, err := kadm.NewClient(cl).ListEndOffsets(ctx, names.DeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	offs.Each(func(o kadm.ListedOffset) {
		if o.Offset != 0 {
			t.Errorf("dead-letter partition %d holds %d records", o.Partition, o.Offset)
		}
	})
}
