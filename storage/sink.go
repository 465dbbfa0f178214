package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// Table names.
const (
	TableEvents   = "events"
	TableFindings = "findings"
	TableActions  = "actions"
	TableScores   = "scores"
	TableProfiles = "profiles"
)

// SinkConfig configures a [Sink].
type SinkConfig struct {
	Database string // where the tables are; validated with [ValidIdentifier]
	// Topics the sink reads: Events, Findings and Actions are required; Scores, Profiles and
	// Audit are stored when set.
	Topics event.Topics
	// InsertTimeout bounds one INSERT (and the lookup before it); past it the batch fails and
	// the stage retries it. Default 60s.
	InsertTimeout time.Duration
	Logger        *slog.Logger          // nil: discard
	Registerer    prometheus.Registerer // nil: metrics are not registered
}

// Validate reports a config that cannot work.
func (c SinkConfig) Validate() error {
	if err := ValidIdentifier(c.Database); err != nil {
		return fmt.Errorf("sink: database: %w", err)
	}
	if c.Topics.Events == "" || c.Topics.Findings == "" || c.Topics.Actions == "" {
		return errors.New("sink: events, findings and actions topic names are required")
	}
	if c.InsertTimeout < 0 {
		return errors.New("sink: negative insert timeout")
	}
	return nil
}

// Sink is the storage stage: a [kafkaio.Handler] that writes each batch of events, findings,
// actions, scores and profiles to their ClickHouse tables, one columnar INSERT per table and
// batch.
//
// Write-once. Kafka delivery is at-least-once: after a crash between INSERT and offset commit,
// or a retry after ClickHouse acknowledged too late, the same records come again. Before each
// INSERT the sink asks the table which of the batch's ids it already holds (one query, the ids
// sent as external data, narrowed by tenant and time so it reads a few granules) and leaves those
// rows out, together with repeats inside the batch. So a replayed range writes nothing new, and
// the materialized per-minute aggregates, which count INSERTs rather than rows, stay exact. The
// tables are also ReplacingMergeTrees keyed by id, and the *_dedup views read them with FINAL:
// the cases write-once cannot see (two sinks writing the same partition at once during a
// rebalance) still collapse there. See docs/storage.md.
//
// Failures. When ClickHouse is unreachable or fails for reasons of its own (timeouts, memory,
// too many parts, a missing table), Handle returns the error and the stage retries the whole
// batch with backoff, committing no offsets meanwhile; nothing is dead-lettered. When ClickHouse
// refuses the data itself (a parse or conversion error, a constraint or throwIf: see
// [rowDataCodes]), one bad row fails the whole INSERT, so the sink bisects the batch until it has
// the rows that fail alone, dead-letters just those with the server's reason, and writes the
// rest. Records that cannot be decoded, or hold a value a column cannot store faithfully (a time
// outside DateTime's range, a negative size), are dead-lettered before any INSERT.
type Sink struct {
	conn     driver.Conn
	cfg      SinkConfig
	log      *slog.Logger
	m        sinkMetrics
	settings clickhouse.Settings // sent with every INSERT
}

// NewSink returns a sink writing through conn, which it owns from then on ([Sink.Close] closes
// it). It checks that every migration this build needs has been applied ([CheckSchema]), so a
// sink never starts against a database it would fail to write.
func NewSink(ctx context.Context, conn driver.Conn, cfg SinkConfig) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.InsertTimeout == 0 {
		cfg.InsertTimeout = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := CheckSchema(ctx, conn, cfg.Database); err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	ver, err := ServerVersion(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	settings := clickhouse.Settings{"max_execution_time": int(cfg.InsertTimeout.Seconds()) + 1}
	if FeaturesFor(ver).TTL {
		// Newer servers refuse an INSERT spanning more than 100 partitions (days) by default, an
		// error that would repeat on every retry of a backfill batch; 18.16 has no such limit.
		settings["max_partitions_per_insert_block"] = 0
	}
	return &Sink{conn: conn, cfg: cfg, log: cfg.Logger, m: newSinkMetrics(cfg.Registerer), settings: settings}, nil
}

// Topics returns the topics the sink's stage must consume.
func (s *Sink) Topics() []string {
	t := []string{s.cfg.Topics.Events, s.cfg.Topics.Findings, s.cfg.Topics.Actions}
	if s.cfg.Topics.Scores != "" {
		t = append(t, s.cfg.Topics.Scores)
	}
	if s.cfg.Topics.Profiles != "" {
		t = append(t, s.cfg.Topics.Profiles)
	}
	if s.cfg.Topics.Audit != "" {
		t = append(t, s.cfg.Topics.Audit)
	}
	return t
}

// Close closes the connection.
func (s *Sink) Close() error {
	if err := s.conn.Close(); err != nil {
		return fmt.Errorf("sink: close clickhouse connection: %w", err)
	}
	return nil
}

// batch is one table's share of a polled batch: its rows column by column, and each row's record.
type batch struct {
	table string
	cols  []column
	recs  []*kgo.Record
}

func (b *batch) columns() []column { return b.cols }
func (b *batch) len() int          { return len(b.recs) }

func (b *batch) strings(name string) []string {
	for _, c := range b.cols {
		if c.name == name {
			return c.data.([]string)
		}
	}
	panic("storage: table " + b.table + " has no column " + name) // a build defect, caught by every sink test
}

func (b *batch) times() []time.Time {
	for _, c := range b.cols {
		if c.name == "time" {
			return c.data.([]time.Time)
		}
	}
	panic("storage: table " + b.table + " has no time column")
}

// pick returns the rows at idx, in that order.
func (b *batch) pick(idx []int) *batch {
	out := &batch{table: b.table, cols: make([]column, len(b.cols)), recs: make([]*kgo.Record, len(idx))}
	for i, c := range b.cols {
		v := reflect.ValueOf(c.data)
		n := reflect.MakeSlice(v.Type(), len(idx), len(idx))
		for j, k := range idx {
			n.Index(j).Set(v.Index(k))
		}
		out.cols[i] = column{c.name, n.Interface()}
	}
	for j, k := range idx {
		out.recs[j] = b.recs[k]
	}
	return out
}

func span(from, to int) []int {
	idx := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		idx = append(idx, i)
	}
	return idx
}

// Handle writes one batch, one columnar INSERT per table. It implements [kafkaio.Handler]; it
// produces no records.
//
// One INSERT per table and batch, never concurrent shards: ClickHouse pays a fixed cost for
// every part an INSERT creates (a file pair per column, then merges), and splitting a batch of
// 20,000 events into two concurrent INSERTs doubled the server's CPU per row for no throughput
// gain on a machine the server shares (BENCHMARKS.md).
func (s *Sink) Handle(ctx context.Context, recs []*kgo.Record) (kafkaio.Result, error) {
	var (
		res      kafkaio.Result
		events   eventRows
		findings findingRows
		actions  actionRows
		scores   scoreRows
		profiles profileRows
		audit    auditRows
		now      = time.Now().UTC()
		byTable  = map[string][]*kgo.Record{}
	)
	for _, r := range recs {
		table, err := s.add(r, now, &events, &findings, &actions, &scores, &profiles, &audit)
		switch {
		case err != nil:
			res.Dead = append(res.Dead, kafkaio.DeadLetter{Record: r, Reason: err})
		case table != "":
			byTable[table] = append(byTable[table], r)
		}
	}
	for _, t := range []struct {
		name string
		rows columns
	}{{TableEvents, &events}, {TableFindings, &findings}, {TableActions, &actions}, {TableScores, &scores}, {TableProfiles, &profiles}, {TableAudit, &audit}} {
		if t.rows.len() == 0 {
			continue
		}
		dead, err := s.write(ctx, &batch{table: t.name, cols: t.rows.columns(), recs: byTable[t.name]})
		if err != nil {
			s.m.errors.WithLabelValues(t.name).Inc()
			return kafkaio.Result{}, err
		}
		res.Dead = append(res.Dead, dead...)
	}
	s.m.dead.Add(float64(len(res.Dead)))
	return res, nil
}

// add decodes r into the rows of its table and returns the table, or "" for a record that is
// skipped on purpose (a tombstone on a compacted topic: scores, profiles).
func (s *Sink) add(r *kgo.Record, now time.Time, ev *eventRows, fi *findingRows, ac *actionRows, sc *scoreRows, pr *profileRows, au *auditRows) (string, error) {
	where := func(err error) error {
		if err == nil {
			return nil
		}
		return fmt.Errorf("sink: %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
	}
	switch r.Topic {
	case s.cfg.Topics.Events:
		var e event.Event
		if err := event.Decode(r.Value, &e); err != nil {
			return "", where(err)
		}
		return TableEvents, where(ev.add(&e, r.Value, now))
	case s.cfg.Topics.Findings:
		var f event.Finding
		if err := event.Decode(r.Value, &f); err != nil {
			return "", where(err)
		}
		return TableFindings, where(fi.add(&f, r.Value, now))
	case s.cfg.Topics.Actions:
		var a event.Action
		if err := event.Decode(r.Value, &a); err != nil {
			return "", where(err)
		}
		return TableActions, where(ac.add(&a, r.Value, now))
	}
	if r.Topic == s.cfg.Topics.Scores && s.cfg.Topics.Scores != "" {
		if r.Value == nil {
			return "", nil
		}
		var v event.Score
		if err := event.Decode(r.Value, &v); err != nil {
			return "", where(err)
		}
		return TableScores, where(sc.add(&v, r.Value, now))
	}
	if r.Topic == s.cfg.Topics.Profiles && s.cfg.Topics.Profiles != "" {
		if r.Value == nil {
			return "", nil
		}
		var p event.Profile
		if err := event.Decode(r.Value, &p); err != nil {
			return "", where(err)
		}
		return TableProfiles, where(pr.add(&p))
	}
	if r.Topic == s.cfg.Topics.Audit && s.cfg.Topics.Audit != "" {
		var e event.AuditEntry
		if err := event.DecodeAudit(r.Value, &e); err != nil {
			return "", where(err)
		}
		return TableAudit, where(au.add(&e, r.Value, now))
	}
	return "", where(kafkaio.Permanent(errors.New("no table for this topic")))
}

// write stores b write-once: rows whose id the table already holds are left out, and a batch the
// server refuses for its data is bisected down to the rows that fail alone, which are returned
// as dead letters. Any other error is returned for the stage to retry the whole batch; rows
// written before it are left out of the retry by the same lookup.
//
// Profiles are not looked up: their rows have no id, no materialized view counts them, and
// ReplacingMergeTree(version) collapses a replayed record (same key, same version) with its
// first copy, which profiles_latest (FINAL) reads. Audit entries neither: a replayed entry has
// the seq and time of its first copy, and [ReadAudit] reads one of the two.
func (s *Sink) write(ctx context.Context, b *batch) ([]kafkaio.DeadLetter, error) {
	if _, writeOnce := keyColumn[b.table]; writeOnce {
		var err error
		if b, err = s.unwritten(ctx, b); err != nil || b.len() == 0 {
			return nil, err
		}
	}
	err := s.insert(ctx, b)
	if err == nil || !isRowData(err) {
		return nil, err
	}
	if b.len() == 1 {
		r := b.recs[0]
		s.log.Warn("clickhouse refused a row", "table", b.table, "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		return []kafkaio.DeadLetter{{Record: r, Reason: kafkaio.Permanent(
			fmt.Errorf("sink: %s/%d@%d: clickhouse refused the row: %w", r.Topic, r.Partition, r.Offset, err))}}, nil
	}
	s.m.bisects.WithLabelValues(b.table).Inc()
	half := b.len() / 2
	dead, err := s.write(ctx, b.pick(span(0, half)))
	if err != nil {
		return nil, err
	}
	more, err := s.write(ctx, b.pick(span(half, b.len())))
	if err != nil {
		return nil, err
	}
	return append(dead, more...), nil
}

// unwritten returns b without the rows the table already holds and without repeats of an id
// within b.
func (s *Sink) unwritten(ctx context.Context, b *batch) (*batch, error) {
	ids := b.strings("id")
	stored, err := s.stored(ctx, b)
	if err != nil {
		return nil, err
	}
	keep := make([]int, 0, len(ids))
	seen := make(map[string]bool, len(ids))
	for i, id := range ids {
		if stored[id] || seen[id] {
			continue
		}
		seen[id] = true
		keep = append(keep, i)
	}
	if skipped := len(ids) - len(keep); skipped > 0 {
		s.m.skipped.WithLabelValues(b.table).Add(float64(skipped))
		s.log.Info("left out records already stored", "table", b.table, "rows", skipped)
		return b.pick(keep), nil
	}
	return b, nil
}

// keyColumn is the second column of each table's sorting key, after tenant.
var keyColumn = map[string]string{TableEvents: "principal", TableFindings: "principal", TableActions: "subject", TableScores: "subject"}

// stored returns which of b's ids its table already holds. The ids travel as external data (any
// number of them, no query-size limit). The batch's (tenant, principal) pairs — the start of the
// sorting key — and its time range let the primary key narrow the read to the granules of those
// principals in that window, so a lookup costs the same in a table of a billion rows as in a
// new one; the tenant alone would read a granule of every principal of the tenant.
func (s *Sink) stored(ctx context.Context, b *batch) (map[string]bool, error) {
	ids, times, tenants, keys := b.strings("id"), b.times(), b.strings("tenant"), b.strings(keyColumn[b.table])
	fail := func(err error) error {
		return fmt.Errorf("sink: look up %d ids in %s.%s: %w", len(ids), s.cfg.Database, b.table, err)
	}
	idExt, err := stringTable("mcpwatch_batch_ids", "id", ids)
	if err != nil {
		return nil, fail(err)
	}
	keyExt, err := ext.NewTable("mcpwatch_batch_keys", ext.Column("tenant", "String"), ext.Column("key", "String"))
	if err != nil {
		return nil, fail(err)
	}
	type pair struct{ tenant, key string }
	seen := make(map[pair]bool)
	for i := range ids {
		if p := (pair{tenants[i], keys[i]}); !seen[p] {
			seen[p] = true
			if err := keyExt.Append(p.tenant, p.key); err != nil {
				return nil, fail(err)
			}
		}
	}
	lo, hi := times[0].Unix(), times[0].Unix()
	for _, t := range times {
		lo, hi = min(lo, t.Unix()), max(hi, t.Unix())
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.InsertTimeout)
	defer cancel()
	ctx = clickhouse.Context(ctx, clickhouse.WithExternalTable(idExt, keyExt), clickhouse.WithSettings(clickhouse.Settings{
		"max_execution_time": int(s.cfg.InsertTimeout.Seconds()) + 1,
	}))
	rows, err := s.conn.Query(ctx, "SELECT id FROM "+s.cfg.Database+"."+b.table+
		" WHERE (tenant, "+keyColumn[b.table]+") IN mcpwatch_batch_keys"+
		" AND time >= toDateTime(?, 'UTC') AND time < toDateTime(?, 'UTC')"+
		" AND id IN mcpwatch_batch_ids", uint32(lo), uint32(hi+1))
	if err != nil {
		return nil, fail(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fail(err)
		}
		out[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fail(err)
	}
	return out, nil
}

// stringTable is external data for a query: a one-column table of strings.
func stringTable(name, column string, values []string) (*ext.Table, error) {
	t, err := ext.NewTable(name, ext.Column(column, "String"))
	if err != nil {
		return nil, err
	}
	for _, v := range values {
		if err := t.Append(v); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// insert sends rows as one columnar batch INSERT. A column the driver cannot convert is a data
// error ([errRowData]): the rows are bisected like a refusal by the server.
func (s *Sink) insert(ctx context.Context, b *batch) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.InsertTimeout)
	defer cancel()
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(s.settings))
	fail := func(step string, err error) error {
		return fmt.Errorf("sink: insert %d rows into %s.%s: %s: %w", b.len(), s.cfg.Database, b.table, step, err)
	}
	pb, err := s.conn.PrepareBatch(ctx, insertSQL(s.cfg.Database, b.table, b))
	if err != nil {
		return fail("prepare", err)
	}
	defer func() { _ = pb.Close() }()
	if got := pb.Columns(); len(got) != len(b.cols) {
		return fail("columns", fmt.Errorf("server expects %d columns, sink has %d", len(got), len(b.cols)))
	}
	for i, c := range b.cols {
		if name := pb.Columns()[i].Name(); name != c.name {
			return fail("columns", fmt.Errorf("column %d is %s on the server, %s in the sink", i, name, c.name))
		}
		if err := pb.Column(i).Append(c.data); err != nil {
			return fail("column "+c.name, fmt.Errorf("%w: %w", errRowData, err))
		}
	}
	if err := pb.Send(); err != nil {
		return fail("send", err)
	}
	s.m.rows.WithLabelValues(b.table).Add(float64(b.len()))
	s.m.seconds.WithLabelValues(b.table).Observe(time.Since(start).Seconds())
	s.log.Debug("inserted", "table", b.table, "rows", b.len(), "took", time.Since(start))
	return nil
}

type sinkMetrics struct {
	skipped *prometheus.CounterVec
	bisects *prometheus.CounterVec
	rows    *prometheus.CounterVec
	errors  *prometheus.CounterVec
	seconds *prometheus.HistogramVec
	dead    prometheus.Counter
}

func newSinkMetrics(reg prometheus.Registerer) sinkMetrics {
	m := sinkMetrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_sink_rows_total",
			Help: "Rows inserted into ClickHouse, by table."}, []string{"table"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_sink_already_stored_total",
			Help: "Records left out because the table already held their id (replays, retries), by table."}, []string{"table"}),
		bisects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_sink_bisections_total",
			Help: "Batches split in two to find rows ClickHouse refuses, by table."}, []string{"table"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_sink_insert_errors_total",
			Help: "Failed INSERTs, by table; the batch is retried."}, []string{"table"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mcpwatch_sink_insert_seconds",
			Help: "Duration of one batch INSERT, by table.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}, []string{"table"}),
		dead: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_sink_rejected_records_total",
			Help: "Records the sink could not store (dead-lettered)."}),
	}
	if reg != nil {
		reg.MustRegister(m.rows, m.skipped, m.bisects, m.errors, m.seconds, m.dead)
	}
	return m
}
