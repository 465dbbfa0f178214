// Package sink is the sink stage: events, findings, actions, scores and behaviour profiles from
// Kafka into ClickHouse, write-once, through [storage.Sink].
package sink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/storage"
)

// Type is the sink's component type.
const Type component.Type = "sink"

// Config configures the sink: events, findings, actions, scores and profiles → ClickHouse, write-once
// (see docs/storage.md). The connection is the shared clickhouse section's writer account.
type Config struct {
	// A batch is written when it holds BatchRows records or BatchBytes bytes of them, or
	// BatchDelay after its first record arrived: the server's cost is per INSERT, so few large
	// batches beat many small ones (BENCHMARKS.md).
	BatchRows  int           `yaml:"batch_rows"`
	BatchBytes int           `yaml:"batch_bytes"`
	BatchDelay time.Duration `yaml:"batch_delay"`
	// InsertTimeout bounds one INSERT; past it the batch is retried.
	InsertTimeout time.Duration `yaml:"insert_timeout"`
	// Retention, when set, is enforced by the sink every RetentionInterval: days per table
	// (events, findings, actions, scores, events_minute); a table not listed is kept.
	Retention         storage.Retention `yaml:"retention"`
	RetentionInterval time.Duration     `yaml:"retention_interval"`
}

// DefaultConfig returns the defaults: batches of 20,000 records, 16 MiB or 1s, INSERTs of at
// most a minute, no retention (enforced hourly once set).
func DefaultConfig() *Config {
	return &Config{BatchRows: 20_000, BatchBytes: 16 << 20, BatchDelay: time.Second, InsertTimeout: time.Minute,
		RetentionInterval: time.Hour}
}

// Validate reports a config the sink cannot work with.
func (c *Config) Validate() error {
	var errs []error
	if c.BatchRows < 1 {
		errs = append(errs, component.Fieldf("batch_rows", "must be at least 1, got %d", c.BatchRows))
	}
	if c.BatchBytes < 1 {
		errs = append(errs, component.Fieldf("batch_bytes", "must be at least 1, got %d", c.BatchBytes))
	}
	if c.BatchDelay < 0 {
		errs = append(errs, component.Fieldf("batch_delay", "must not be negative, got %s", c.BatchDelay))
	}
	if c.InsertTimeout < time.Second {
		errs = append(errs, component.Fieldf("insert_timeout", "must be at least 1s, got %s", c.InsertTimeout))
	}
	errs = append(errs, component.Under("retention", c.Retention.Validate()))
	if len(c.Retention) > 0 && c.RetentionInterval < time.Minute {
		errs = append(errs, component.Fieldf("retention_interval", "must be at least 1m, got %s", c.RetentionInterval))
	}
	return errors.Join(errs...)
}

// NewFactory returns the sink's factory.
func NewFactory() component.Factory { return component.NewFactory(Type, DefaultConfig, create) }

func create(ctx context.Context, set component.Settings, cfg *Config) (component.Component, error) {
	ch := set.ClickHouse
	conn, err := storage.Open(ctx, storage.Options{Addr: ch.Addr, Database: ch.Database, User: ch.User, Password: ch.Password})
	if err != nil {
		return nil, err
	}
	sink, err := storage.NewSink(ctx, conn, storage.SinkConfig{Database: ch.Database, Topics: set.Topics,
		InsertTimeout: cfg.InsertTimeout, Logger: set.Logger, Registerer: set.Registerer})
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	p := &component.Parts{}
	p.OnClose(sink.Close)
	st, err := kafkaio.NewStage(set.KafkaClient(""), kafkaio.StageConfig{Name: string(Type), Group: set.Group(string(Type)),
		Topics: sink.Topics(), DeadLetterTopic: set.Topics.DeadLetter, MaxPoll: cfg.BatchRows,
		MaxBatchBytes: cfg.BatchBytes, MaxBatchDelay: cfg.BatchDelay}, sink, set.Registerer, set.Logger)
	if err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("sink stage: %w", err)
	}
	p.Go(st.Run)
	p.OnClose(st.Close)
	if len(cfg.Retention) > 0 {
		p.Go(func(ctx context.Context) error {
			return sink.EnforceRetention(ctx, cfg.Retention, cfg.RetentionInterval)
		})
	}
	return p, nil
}
