package approval

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// Follower keeps a [Store] in step with the approvals topic; see [kafkaio.Follower].
type Follower = kafkaio.Follower

// NewFollower returns a follower of the approvals topic into store, with the metrics
// mcpwatch_approvals_* and the gauge mcpwatch_approvals_pending. reg may be nil.
func NewFollower(kcfg kafkaio.Config, topic string, store *Store, reg prometheus.Registerer, log *slog.Logger, opts ...kgo.Opt) (*Follower, error) {
	f, err := kafkaio.NewFollower(kcfg, "approvals", topic, store, reg, log, opts...)
	if err != nil {
		return nil, err
	}
	if reg != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mcpwatch_approvals_pending",
			Help: "Approval requests waiting for votes."},
			func() float64 { return float64(len(store.List(Pending))) }))
	}
	return f, nil
}

// KafkaProducer writes entries to topic with cl, synchronously: an entry is written when Produce
// returns nil. The client should require acks from all in-sync replicas (the kafkaio default).
func KafkaProducer(cl *kgo.Client, topic string) Producer {
	return ProducerFunc(func(ctx context.Context, key string, value []byte) error {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: value}).FirstErr(); err != nil {
			return fmt.Errorf("write %s to %s: %w", key, topic, err)
		}
		return nil
	})
}
