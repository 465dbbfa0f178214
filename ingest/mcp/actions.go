package mcp

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// KafkaActions records the gateway's own response actions (RFC 7009 revocations at the
// authorization server) on the actions topic. It implements [oauth.ActionSink].
type KafkaActions struct {
	cl    *kgo.Client
	topic string
	log   *slog.Logger
}

// NewKafkaActions returns a sink producing to topic on cl; the caller owns cl. log nil discards.
func NewKafkaActions(cl *kgo.Client, topic string, log *slog.Logger) *KafkaActions {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &KafkaActions{cl: cl, topic: topic, log: log}
}

// PublishAction produces a under key and waits for Kafka's acknowledgement, retrying with backoff
// until it has one or ctx ends. The action's id is deterministic, so a record produced twice
// (an acknowledgement lost, a redelivered control) is one action downstream.
func (k *KafkaActions) PublishAction(ctx context.Context, key string, a *event.Action) error {
	rec, err := kafkaio.RecordOf(k.topic, key, a)
	if err != nil {
		return fmt.Errorf("encode action %s: %w", a.ID, err)
	}
	b := backoff.NewExponentialBackOff()
	b.MaxInterval = 10 * time.Second
	_, err = backoff.Retry(ctx, func() (struct{}, error) {
		return struct{}{}, k.cl.ProduceSync(ctx, rec).FirstErr()
	}, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(0), backoff.WithNotify(func(err error, next time.Duration) {
		k.log.Warn("action not yet recorded: retrying", "action", a.ID, "kind", a.Kind, "next", next, "err", err)
	}))
	if err != nil {
		return fmt.Errorf("produce action %s to %s: %w", a.ID, k.topic, err)
	}
	return nil
}
