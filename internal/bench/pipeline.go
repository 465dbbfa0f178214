package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/app"
	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/normalize"
	"github.com/mcpwatch/mcpwatch/processors"
	"github.com/mcpwatch/mcpwatch/storage"
	"github.com/mcpwatch/mcpwatch/storage/sink"
)

// PipelinePasses are the throughput passes [PipelineOptions.Passes] may name: copy (a bare
// consumer inserting raw bytes, the machine's limit), sink (the storage stage alone) and
// pipeline (normalizer and sink).
var PipelinePasses = []string{"copy", "sink", "pipeline"}

// PipelineOptions configure [RunPipeline]. The benchmark settings have no defaults here: the
// command's flags supply them.
type PipelineOptions struct {
	Events      int           // events per throughput pass, at least 1000
	Rounds      int           // throughput rounds, each running Passes in order
	LagRate     int           // events per second for the lag measurement; 0 skips it
	LagDuration time.Duration // how long to produce at LagRate
	LagSample   int           // time every n-th event of the lag run
	Poll        time.Duration // how often to query ClickHouse for arrivals
	Keep        bool          // keep the benchmark database and topics
	Passes      []string      // throughput passes, from [PipelinePasses], in this order
	CPUProfile  string        // write a CPU profile of the process here; empty: none

	// Kafka is the cluster the stages and the producer use; its ClientID is replaced.
	Kafka kafkaio.Config
	// TopicPrefix starts the names of the fresh topics the benchmark creates (and deletes
	// unless Keep); "mcpwatch-bench" when empty.
	TopicPrefix string
	Partitions  int32
	Replication int16
	// ClickHouse is the server as its admin user, who creates (and unless Keep drops) a fresh
	// database mcpwatch_bench_<nanos>; Database is ignored.
	ClickHouse storage.Options
	Log        *slog.Logger // progress and warnings; nil: discard
	Out        io.Writer    // the report; nil: discard
}

// validate refuses settings the benchmark cannot run with, and fills in Log and Out.
func (o *PipelineOptions) validate() error {
	o.Log, o.Out = orDiscard(o.Log, o.Out)
	if o.Events < 1000 || o.Rounds < 1 || o.LagSample < 1 {
		return errors.New("bench pipeline: want --events >= 1000, --rounds >= 1, --lag-sample >= 1")
	}
	return nil
}

// RunPipeline measures Kafka → ClickHouse throughput and end-to-end lag against the real
// servers, in a fresh database and fresh topics. Each round runs the throughput passes over
// Events pre-produced gateway-shaped tools/call events, counted from the first row visible in
// ClickHouse to the last. Then, unless LagRate is 0, the normalizer and the sink run while
// events are produced open-loop at LagRate for LagDuration, every LagSample-th timed from its
// production to the moment a SELECT sees it; every produced event must arrive, or the run
// fails.
func RunPipeline(ctx context.Context, o PipelineOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	log := o.Log
	stop, err := startCPUProfile(o.CPUProfile)
	if err != nil {
		return err
	}
	defer stop()
	stamp := time.Now().UnixNano()
	opts := o.ClickHouse
	opts.Database = fmt.Sprintf("mcpwatch_bench_%d", stamp)
	admin, err := storage.Open(ctx, storage.Options{Addr: opts.Addr, Database: "default", User: opts.User, Password: opts.Password})
	if err != nil {
		return fmt.Errorf("bench pipeline: clickhouse admin: %w", err)
	}
	defer admin.Close()
	if err := storage.CreateDatabase(ctx, admin, opts.Database); err != nil {
		return fmt.Errorf("bench pipeline: %w", err)
	}
	if !o.Keep {
		defer func() {
			dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := storage.DropDatabase(dctx, admin, opts.Database); err != nil {
				log.Warn("bench: drop database", "err", err)
			}
		}()
	}
	conn, err := storage.Open(ctx, opts)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := storage.Migrate(ctx, conn, opts.Database); err != nil {
		return fmt.Errorf("bench pipeline: migrate: %w", err)
	}
	if err := conn.Exec(ctx, "CREATE TABLE "+opts.Database+".raw_copy (v String) ENGINE = MergeTree ORDER BY tuple()"); err != nil {
		return fmt.Errorf("bench pipeline: create raw_copy: %w", err)
	}

	env := &pipeEnv{o: &o, conn: conn, opts: opts, log: log}
	cl, err := kafkaio.NewClient(env.kafka("mcpwatch-bench-pipeline"), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	env.cl = cl
	var created []event.Topics
	if !o.Keep {
		defer func() {
			dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var names []string
			for _, t := range created {
				names = append(names, t.All()...)
			}
			if _, err := kadm.NewClient(cl).DeleteTopics(dctx, names...); err != nil {
				log.Warn("bench: delete topics", "err", err)
			}
		}()
	}
	env.newTopics = func(name string) (event.Topics, error) {
		t := event.TopicNames(fmt.Sprintf("%s-%d-%s", topicPrefix(o.TopicPrefix), stamp, name))
		created = append(created, t)
		return t, kafkaio.EnsureTopics(ctx, cl, kafkaio.Topics(t, o.Partitions, o.Replication, 1))
	}

	var results []passResult
	for round := 1; round <= o.Rounds; round++ {
		for _, pass := range o.Passes {
			if !slices.Contains(PipelinePasses, pass) {
				return fmt.Errorf("bench pipeline: pass %q: want copy, sink or pipeline", pass)
			}
			r, err := env.throughput(ctx, pass, round)
			if err != nil {
				return fmt.Errorf("bench pipeline: %s round %d: %w", pass, round, err)
			}
			log.Info("bench pass", "pass", pass, "round", round, "rows", r.rows, "rows_per_s", int(r.rate()))
			results = append(results, r)
		}
	}
	var lag *lagResult
	if o.LagRate > 0 {
		if lag, err = env.lag(ctx); err != nil {
			return fmt.Errorf("bench pipeline: lag: %w", err)
		}
	}
	writePipelineReport(o.Out, &o, results, lag)
	if lag != nil && lag.missing > 0 {
		return fmt.Errorf("bench pipeline: %d of %d events produced in the lag run are not in ClickHouse", lag.missing, lag.produced)
	}
	return nil
}

type pipeEnv struct {
	o         *PipelineOptions
	cl        *kgo.Client
	conn      driver.Conn
	opts      storage.Options // the benchmark database, as the admin user
	log       *slog.Logger
	newTopics func(string) (event.Topics, error)
}

// kafka is the Kafka config of one client of the benchmark.
func (e *pipeEnv) kafka(clientID string) kafkaio.Config {
	c := e.o.Kafka
	c.ClientID = clientID
	return c
}

// buildStages builds the sink, and the normalizer before it when normalize is set, over topics
// t into the benchmark database, in consumer groups named after group. It is the one place the
// harness builds pipeline stages.
func (e *pipeEnv) buildStages(ctx context.Context, t event.Topics, group string, normalize bool) (run func(context.Context) error, err error) {
	cfg := app.NewConfig(app.Components())
	cfg.Kafka = app.Kafka{Brokers: e.o.Kafka.Brokers, TopicPrefix: strings.TrimSuffix(t.Raw, ".raw.v1"), GroupPrefix: group,
		Partitions: e.o.Partitions, Replication: e.o.Replication, RetentionHours: 1}
	if cfg.Topics() != t {
		return nil, fmt.Errorf("bench topics %+v do not follow one prefix", t)
	}
	cfg.ClickHouse.Addr, cfg.ClickHouse.Database = e.opts.Addr, e.opts.Database
	cfg.ClickHouse.User, cfg.ClickHouse.Password = e.opts.User, component.SecretValue(e.opts.Password)
	types := []component.Type{sink.Type}
	if normalize {
		types = []component.Type{processors.Type, sink.Type}
	}
	a, err := app.Build(ctx, cfg, types, app.Host{Logger: e.log})
	if err != nil {
		return nil, err
	}
	return a.Run, nil
}

// benchEvent is a gateway-shaped tools/call request event as the gateway publishes it.
func benchEvent(tenant string, i int, now time.Time) event.Event {
	return event.Event{
		Schema: event.SchemaVersion, ID: event.NewID(), Time: now, Source: event.SourceMCP,
		Observer: "bench-gateway", Tenant: tenant,
		Principal: event.Principal{Subject: fmt.Sprintf("user-%d", i%200), ClientID: "bench-agent",
			Issuer: "https://idp.example", Roles: []string{"analyst"}, TokenID: fmt.Sprintf("tok-%d", i%200),
			AuthMethods: []string{"pwd", "hwk"}, Scopes: []string{"mcp:tools"}},
		Correlation: event.Correlation{SessionID: "s-" + fmt.Sprint(i%500), RequestID: fmt.Sprint(i),
			TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7"},
		MCP: &event.MCP{Direction: event.DirRequest, Method: "tools/call", Tool: "db_query",
			ProtocolVersion: "2025-11-25", Transport: "streamable-http",
			ArgumentsMasked: `{"sql":"SELECT region, sum(amount) FROM sales WHERE owner = '[EMAIL]' GROUP BY region"}`,
			ClientName:      "bench-agent", ClientVersion: "1.0.0"},
		Target:      event.Target{Server: "acme-data", Route: "/mcp"},
		Network:     event.Network{SrcIP: "10.1.2.3", SrcPort: 40000 + i%20000, DstIP: "127.0.0.1", DstPort: 8080},
		Outcome:     event.Outcome{Result: event.ResultAllowed, PolicyRule: "analysts-read-sales"},
		Size:        event.Size{Request: 180},
		DataClasses: []string{"internal"},
		PII:         map[string]int{"email": 1},
		Severity:    1,
	}
}

// produce writes n events to topic, normalized when normalize is set, and waits for the acks.
func (e *pipeEnv) produce(ctx context.Context, topic, tenant string, n int, normalized bool) error {
	var wg sync.WaitGroup
	var perr atomic.Value
	now := time.Now().UTC()
	for i := range n {
		ev := benchEvent(tenant, i, now.Add(time.Duration(i)*time.Microsecond))
		if normalized {
			var err error
			if ev, err = normalize.Normalize(ev, now); err != nil {
				return err
			}
			ev.Normalized.OCSF = nil // as the normalizer stage publishes it: OCSF on its own topic
		}
		rec, err := kafkaio.RecordOf(topic, event.PrincipalKey(ev.Tenant, ev.Principal), &ev)
		if err != nil {
			return err
		}
		wg.Add(1)
		e.cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				perr.CompareAndSwap(nil, err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	if err, _ := perr.Load().(error); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	return nil
}

// throughput runs one pass over a fresh backlog of e.o.Events records.
func (e *pipeEnv) throughput(ctx context.Context, pass string, round int) (passResult, error) {
	name := fmt.Sprintf("%s-%d", pass, round)
	t, err := e.newTopics(name)
	if err != nil {
		return passResult{}, err
	}
	tenant := "bench-" + name
	n := e.o.Events
	src := t.Raw
	if pass == "sink" {
		src = t.Events
	}
	if err := e.produce(ctx, src, tenant, n, pass == "sink"); err != nil {
		return passResult{}, err
	}

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var runErr error
	done := make(chan struct{})
	// Rows are counted from the parts' metadata, which costs the server nothing: a count()
	// polled every few milliseconds would read a column each time and slow the very INSERTs it
	// times (on 18.16 a count() of raw_copy reads every raw value).
	table := "events"
	if pass == "copy" {
		table = "raw_copy"
	}
	countSQL := "SELECT sum(rows) FROM system.parts WHERE database = ? AND table = ? AND active"
	args := []any{e.opts.Database, table}
	before, err := e.count(ctx, countSQL, args...)
	if err != nil {
		return passResult{}, err
	}
	n += before
	switch pass {
	case "copy":
		go func() { defer close(done); runErr = e.rawCopy(rctx, src, e.o.Events) }()
	default:
		run, err := e.buildStages(rctx, t, "mcpwatch-bench-"+name, pass == "pipeline")
		if err != nil {
			return passResult{}, err
		}
		go func() { defer close(done); runErr = run(rctx) }()
	}
	first, last, err := e.waitRows(ctx, countSQL, args, n, done)
	cancel()
	<-done
	if err != nil {
		return passResult{}, err
	}
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return passResult{}, runErr
	}
	if pass != "copy" { // counted from metadata: every event must be there once
		q := "SELECT count(), uniqExact(id) FROM " + e.opts.Database + ".events WHERE tenant = ?"
		var rows, ids uint64
		if err := e.conn.QueryRow(ctx, q, tenant).Scan(&rows, &ids); err != nil {
			return passResult{}, fmt.Errorf("verify %s: %w", pass, err)
		}
		if rows != uint64(e.o.Events) || ids != uint64(e.o.Events) {
			return passResult{}, fmt.Errorf("%s pass stored %d rows with %d distinct ids, want %d", pass, rows, ids, e.o.Events)
		}
	}
	return passResult{name: pass, round: round, rows: n - first.rows, elapsed: last.Sub(first.at)}, nil
}

type firstSeen struct {
	rows int
	at   time.Time
}

// waitRows polls countSQL until it reaches want, returning when rows first appeared and when the
// last arrived.
func (e *pipeEnv) waitRows(ctx context.Context, countSQL string, args []any, want int, done <-chan struct{}) (firstSeen, time.Time, error) {
	var first firstSeen
	start, err := e.count(ctx, countSQL, args...)
	if err != nil {
		return first, time.Time{}, err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		c, err := e.count(ctx, countSQL, args...)
		if err != nil {
			return first, time.Time{}, err
		}
		now := time.Now()
		if first.at.IsZero() && c > start {
			first = firstSeen{rows: c, at: now}
		}
		if c >= want {
			if first.rows == want { // everything landed between two polls: no rate to tell
				return first, now, errors.New("all rows arrived in one poll; raise --events")
			}
			return first, now, nil
		}
		select {
		case <-done:
			// The stages stopped (a copy pass ends by itself): one more look decides.
			if c, err = e.count(ctx, countSQL, args...); err == nil && c >= want {
				return first, time.Now(), nil
			}
			return first, now, fmt.Errorf("stages stopped with %d of %d rows", c, want)
		case <-ctx.Done():
			return first, now, ctx.Err()
		case <-time.After(e.o.Poll):
		}
	}
	return first, time.Time{}, errors.New("timed out waiting for rows")
}

func (e *pipeEnv) count(ctx context.Context, q string, args ...any) (int, error) {
	var c uint64
	if err := e.conn.QueryRow(ctx, q, args...).Scan(&c); err != nil {
		return 0, fmt.Errorf("count: %w", err)
	}
	return int(c), nil
}

// rawCopy is the reference: consume records and insert their bytes, columnar, one INSERT per
// poll, committing nothing (it reads from the start of a fresh topic).
func (e *pipeEnv) rawCopy(ctx context.Context, topic string, n int) error {
	cl, err := kafkaio.NewClient(e.kafka("mcpwatch-bench-copy"), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return err
	}
	defer cl.Close()
	vals := make([]string, 0, 16384)
	for copied := 0; copied < n; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fs.Err(); err != nil {
			return err
		}
		vals = vals[:0]
		fs.EachRecord(func(r *kgo.Record) { vals = append(vals, string(r.Value)) })
		if len(vals) == 0 {
			continue
		}
		batch, err := e.conn.PrepareBatch(ctx, "INSERT INTO "+e.opts.Database+".raw_copy (v)")
		if err != nil {
			return err
		}
		if err := batch.Column(0).Append(vals); err != nil {
			return err
		}
		if err := batch.Send(); err != nil {
			return err
		}
		copied += len(vals)
	}
	return nil
}

// lag runs the normalizer and the sink while producing open-loop at LagRate.
func (e *pipeEnv) lag(ctx context.Context) (*lagResult, error) {
	t, err := e.newTopics("lag")
	if err != nil {
		return nil, err
	}
	tenant := "bench-lag"
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	run, err := e.buildStages(rctx, t, "mcpwatch-bench-lag", true)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	var runErr error
	go func() { defer close(done); runErr = run(rctx) }()

	// Warm up: the stages must have joined their groups before the clock runs.
	countSQL := "SELECT count() FROM " + e.opts.Database + ".events WHERE tenant = ?"
	if err := e.produce(ctx, t.Raw, tenant+"-warmup", 1, false); err != nil {
		return nil, err
	}
	if _, _, err := e.waitRowsAtLeast(ctx, countSQL, "bench-lag-warmup", 1, done); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}

	var mu sync.Mutex
	pending := map[string]time.Time{}
	var lats []time.Duration
	stopPoll := make(chan struct{})
	pollDone := make(chan error, 1)
	go func() { pollDone <- e.pollSamples(ctx, tenant, &mu, pending, &lats, stopPoll) }()

	res := &lagResult{rate: e.o.LagRate}
	var wg sync.WaitGroup
	var perr atomic.Value
	interval := time.Second / time.Duration(e.o.LagRate)
	start := time.Now()
	end := start.Add(e.o.LagDuration)
	for i := 0; ; i++ {
		due := start.Add(time.Duration(i) * interval)
		if !due.Before(end) {
			break
		}
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		now := time.Now().UTC()
		ev := benchEvent(tenant, i, now)
		rec, err := kafkaio.RecordOf(t.Raw, event.PrincipalKey(ev.Tenant, ev.Principal), &ev)
		if err != nil {
			return nil, err
		}
		if i%e.o.LagSample == 0 {
			mu.Lock()
			pending[ev.ID] = now
			mu.Unlock()
			res.sampled++
		}
		wg.Add(1)
		e.cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				perr.CompareAndSwap(nil, err)
			}
			wg.Done()
		})
		res.produced++
	}
	res.achieved = float64(res.produced) / time.Since(start).Seconds()
	wg.Wait()
	if err, _ := perr.Load().(error); err != nil {
		return nil, fmt.Errorf("produce: %w", err)
	}
	// Everything produced must arrive; then stop polling.
	if _, _, err := e.waitRowsAtLeast(ctx, countSQL, tenant, res.produced, done); err != nil {
		return nil, err
	}
	close(stopPoll)
	if err := <-pollDone; err != nil {
		return nil, err
	}
	c, err := e.count(ctx, "SELECT count() FROM (SELECT id FROM "+e.opts.Database+".events WHERE tenant = ? GROUP BY id)", tenant)
	if err != nil {
		return nil, err
	}
	res.missing = res.produced - c
	cancel()
	<-done
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return nil, runErr
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lats)
	res.seen = len(lats)
	if len(lats) > 0 {
		res.p50, res.p90, res.p99, res.max = percentile(lats, 50), percentile(lats, 90), percentile(lats, 99), lats[len(lats)-1]
	}
	return res, nil
}

func (e *pipeEnv) waitRowsAtLeast(ctx context.Context, countSQL, tenant string, want int, done <-chan struct{}) (int, time.Time, error) {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		c, err := e.count(ctx, countSQL, tenant)
		if err != nil {
			return 0, time.Time{}, err
		}
		if c >= want {
			return c, time.Now(), nil
		}
		select {
		case <-done:
			return c, time.Time{}, fmt.Errorf("stages stopped with %d of %d rows", c, want)
		case <-ctx.Done():
			return c, time.Time{}, ctx.Err()
		case <-time.After(e.o.Poll):
		}
	}
	return 0, time.Time{}, fmt.Errorf("timed out waiting for %d rows", want)
}

// pollSamples queries ClickHouse for the pending sampled ids every poll interval and records
// each one's lag when it first shows up.
func (e *pipeEnv) pollSamples(ctx context.Context, tenant string, mu *sync.Mutex, pending map[string]time.Time, lats *[]time.Duration, stop <-chan struct{}) error {
	// A set (IN) rather than has(array, id), and the oldest pending event time, which lets the
	// primary key skip the granules of every principal before it: the poll runs every few
	// milliseconds on the server whose latency it measures.
	q := "SELECT id FROM " + e.opts.Database + ".events WHERE tenant = ? AND time >= toDateTime(?, 'UTC') AND id IN pending_ids"
	for last := false; ; {
		mu.Lock()
		ids := make([]string, 0, len(pending))
		var oldest time.Time
		for id, sent := range pending {
			ids = append(ids, id)
			if oldest.IsZero() || sent.Before(oldest) {
				oldest = sent
			}
		}
		mu.Unlock()
		if len(ids) > 0 {
			set, err := ext.NewTable("pending_ids", ext.Column("id", "String"))
			for _, id := range ids {
				if err == nil {
					err = set.Append(id)
				}
			}
			if err != nil {
				return fmt.Errorf("poll samples: %w", err)
			}
			rows, err := e.conn.Query(clickhouse.Context(ctx, clickhouse.WithExternalTable(set)), q, tenant, uint32(oldest.Add(-time.Second).Unix()))
			if err != nil {
				return fmt.Errorf("poll samples: %w", err)
			}
			seenAt := time.Now()
			mu.Lock()
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					mu.Unlock()
					rows.Close()
					return err
				}
				if sent, ok := pending[id]; ok {
					*lats = append(*lats, seenAt.Sub(sent))
					delete(pending, id)
				}
			}
			mu.Unlock()
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		if last {
			return nil
		}
		select {
		case <-stop: // every row is in: one more look times the last samples
			last = true
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(e.o.Poll):
		}
	}
}
