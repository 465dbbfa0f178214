package processors

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/internal/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// Handler is the normalizer stage: it decodes each raw record, normalizes it and produces it to
// topics.Events under the same key (tenant/principal, so one principal stays in one partition)
// with the same headers (trace context travels on). A record that cannot be decoded or normalized
// is dead-lettered with the reason; nothing in this handler is worth a retry. log may be nil.
//
// Wire it with [kafkaio.NewStage] reading topics.Raw.
func Handler(topics event.Topics, log *slog.Logger) kafkaio.Handler {
	return handler(topics, log, time.Now)
}

func handler(topics event.Topics, log *slog.Logger, now func() time.Time) kafkaio.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return kafkaio.PerRecord(func(_ context.Context, r *kgo.Record) ([]*kgo.Record, error) {
		var raw event.Event
		if err := event.Decode(r.Value, &raw); err != nil {
			return nil, fmt.Errorf("decode raw event at %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
		}
		e, err := Normalize(raw, now())
		if err != nil {
			return nil, err
		}
		key := r.Key
		if len(key) == 0 {
			key = []byte(event.PrincipalKey(e.Tenant, e.Principal))
		}
		out, err := kafkaio.RecordOf(topics.Events, string(key), &e)
		if err != nil {
			// The event decoded, so it encodes; failing here is a bug, not a bad record.
			return nil, kafkaio.Permanent(fmt.Errorf("encode normalized event %s: %w", e.ID, err))
		}
		out.Headers = append(out.Headers, r.Headers...)
		log.Debug("normalized", "id", e.ID, "signature", e.Normalized.Signature)
		return []*kgo.Record{out}, nil
	})
}
