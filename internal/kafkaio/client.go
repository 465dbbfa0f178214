// Package kafkaio is mcpwatch's Kafka layer on franz-go: client construction, topic bootstrap, the
// consumer-group stage loop that commits only after its outputs are acknowledged, and dead letters.
package kafkaio

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Config is what every mcpwatch Kafka client needs.
type Config struct {
	Brokers  []string
	ClientID string
	Logger   *slog.Logger
}

// Validate reports a config that cannot work.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka: no brokers configured (set --kafka or MCPWATCH_KAFKA_BROKERS)")
	}
	for _, b := range c.Brokers {
		if strings.TrimSpace(b) == "" {
			return errors.New("kafka: empty broker address")
		}
	}
	return nil
}

// NewClient returns a franz-go client with mcpwatch's producer defaults: idempotent writes
// acknowledged by all in-sync replicas, no linger (audit latency matters more than batch size),
// lz4 compression (zstd compresses JSON better but cost about half of the producer's CPU in the
// gateway benchmark, on the cores the gateway serves from) and a bounded buffer so a long broker outage blocks producers (backpressure)
// instead of growing without limit. Extra options (consumer group, topics) come after.
func NewClient(cfg Config, opts ...kgo.Opt) (*kgo.Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.Lz4Compression(), kgo.NoCompression()),
		kgo.ProducerLinger(0),
		kgo.MaxBufferedRecords(100_000),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.FetchMaxWait(500 * time.Millisecond),
	}
	if cfg.Logger != nil {
		base = append(base, kgo.WithLogger(slogger{cfg.Logger}))
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return cl, nil
}

// ParseBrokers splits a comma-separated broker list.
func ParseBrokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// slogger adapts slog to franz-go's logger; only warnings and errors pass, franz-go's info level
// is too chatty for a stage's log.
type slogger struct{ l *slog.Logger }

func (s slogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (s slogger) Log(level kgo.LogLevel, msg string, kv ...any) {
	switch level {
	case kgo.LogLevelError:
		s.l.Error(msg, kv...)
	default:
		s.l.Warn(msg, kv...)
	}
}
