package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/internal/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// Table names.
const (
	TableEvents   = "events"
	TableFindings = "findings"
	TableActions  = "actions"
)

// SinkConfig configures a [Sink].
type SinkConfig struct {
	Database string       // where the tables are; validated with [ValidIdentifier]
	Topics   event.Topics // the sink reads Events, Findings and Actions
	// InsertTimeout bounds one INSERT; past it the batch fails and the stage retries it.
	// Default 60s.
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

// Sink is the storage stage: a [kafkaio.Handler] that writes each polled batch of events,
// findings and actions to their ClickHouse tables, one columnar INSERT per table and batch.
//
// Delivery: when ClickHouse is unreachable or refuses an INSERT, Handle returns the error and the
// stage retries the whole batch with backoff, committing no offsets meanwhile. Rows of a table
// already inserted in a failed attempt are inserted again on retry; the tables collapse such
// duplicates by record id (see migrations/0001_init.sql). A record that cannot be decoded, or
// holds a value its column cannot store faithfully (a time outside DateTime's range, a negative
// size), is dead-lettered with the reason and the rest of the batch is written.
type Sink struct {
	conn driver.Conn
	cfg  SinkConfig
	log  *slog.Logger
	m    sinkMetrics
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
	return &Sink{conn: conn, cfg: cfg, log: cfg.Logger, m: newSinkMetrics(cfg.Registerer)}, nil
}

// Topics returns the topics the sink's stage must consume.
func (s *Sink) Topics() []string {
	return []string{s.cfg.Topics.Events, s.cfg.Topics.Findings, s.cfg.Topics.Actions}
}

// Close closes the connection.
func (s *Sink) Close() error {
	if err := s.conn.Close(); err != nil {
		return fmt.Errorf("sink: close clickhouse connection: %w", err)
	}
	return nil
}

// Handle writes one batch. It implements [kafkaio.Handler]; it produces no records.
func (s *Sink) Handle(ctx context.Context, recs []*kgo.Record) (kafkaio.Result, error) {
	var (
		res      kafkaio.Result
		events   eventRows
		findings findingRows
		actions  actionRows
		now      = time.Now().UTC()
	)
	for _, r := range recs {
		if err := s.add(r, now, &events, &findings, &actions); err != nil {
			res.Dead = append(res.Dead, kafkaio.DeadLetter{Record: r, Reason: err})
		}
	}
	for _, t := range []struct {
		name string
		rows columns
	}{{TableEvents, &events}, {TableFindings, &findings}, {TableActions, &actions}} {
		if t.rows.len() == 0 {
			continue
		}
		if err := s.insert(ctx, t.name, t.rows); err != nil {
			s.m.errors.WithLabelValues(t.name).Inc()
			return kafkaio.Result{}, err
		}
	}
	s.m.dead.Add(float64(len(res.Dead)))
	return res, nil
}

func (s *Sink) add(r *kgo.Record, now time.Time, ev *eventRows, fi *findingRows, ac *actionRows) error {
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
			return where(err)
		}
		return where(ev.add(&e, r.Value, now))
	case s.cfg.Topics.Findings:
		var f event.Finding
		if err := event.Decode(r.Value, &f); err != nil {
			return where(err)
		}
		return where(fi.add(&f, r.Value, now))
	case s.cfg.Topics.Actions:
		var a event.Action
		if err := event.Decode(r.Value, &a); err != nil {
			return where(err)
		}
		return where(ac.add(&a, r.Value, now))
	}
	return where(kafkaio.Permanent(errors.New("no table for this topic")))
}

// insert sends rows as one columnar batch INSERT.
//
// Newer servers (19.x and later) refuse an INSERT block spanning more than
// max_partitions_per_insert_block (default 100) partitions, i.e. a batch whose events cover more
// than 100 days (a backfill); that error would repeat on every retry. 18.16 has no such limit.
// A later issue: split such batches by partition, or raise the setting on servers that have it
// (see [ServerVersion]).
func (s *Sink) insert(ctx context.Context, table string, rows columns) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.InsertTimeout)
	defer cancel()
	fail := func(step string, err error) error {
		return fmt.Errorf("sink: insert %d rows into %s.%s: %s: %w", rows.len(), s.cfg.Database, table, step, err)
	}
	b, err := s.conn.PrepareBatch(ctx, insertSQL(s.cfg.Database, table, rows))
	if err != nil {
		return fail("prepare", err)
	}
	defer func() { _ = b.Close() }()
	cols := rows.columns()
	if got := b.Columns(); len(got) != len(cols) {
		return fail("columns", fmt.Errorf("server expects %d columns, sink has %d", len(got), len(cols)))
	}
	for i, c := range cols {
		if name := b.Columns()[i].Name(); name != c.name {
			return fail("columns", fmt.Errorf("column %d is %s on the server, %s in the sink", i, name, c.name))
		}
		if err := b.Column(i).Append(c.data); err != nil {
			return fail("column "+c.name, err)
		}
	}
	if err := b.Send(); err != nil {
		return fail("send", err)
	}
	s.m.rows.WithLabelValues(table).Add(float64(rows.len()))
	s.m.seconds.WithLabelValues(table).Observe(time.Since(start).Seconds())
	s.log.Debug("inserted", "table", table, "rows", rows.len(), "took", time.Since(start))
	return nil
}

type sinkMetrics struct {
	rows    *prometheus.CounterVec
	errors  *prometheus.CounterVec
	seconds *prometheus.HistogramVec
	dead    prometheus.Counter
}

func newSinkMetrics(reg prometheus.Registerer) sinkMetrics {
	m := sinkMetrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_sink_rows_total",
			Help: "Rows inserted into ClickHouse, by table (duplicates from retries included)."}, []string{"table"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_sink_insert_errors_total",
			Help: "Failed INSERTs, by table; the batch is retried."}, []string{"table"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mcpwatch_sink_insert_seconds",
			Help: "Duration of one batch INSERT, by table.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}, []string{"table"}),
		dead: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_sink_rejected_records_total",
			Help: "Records the sink could not store (dead-lettered)."}),
	}
	if reg != nil {
		reg.MustRegister(m.rows, m.errors, m.seconds, m.dead)
	}
	return m
}
