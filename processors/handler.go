// Package processors is the process stage: raw events → normalized events (CEF, OCSF, enrichment)
// on Kafka, with the formats of package normalize.
package processors

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/normalize"
)

// Handler is the normalizer stage: it decodes each raw record, normalizes it and produces it to
// topics.Events under the same key (tenant/principal, so one principal stays in one partition)
// with the same headers (trace context travels on). A record that cannot be decoded or normalized
// is dead-lettered with the reason; nothing in this handler is worth a retry. log may be nil.
//
// Wire it with [kafkaio.NewStage] reading topics.Raw.
func Handler(topics event.Topics, log *slog.Logger, opts ...HandlerOption) kafkaio.Handler {
	return handler(topics, log, time.Now, opts...)
}

// HeaderEventID names the event an OCSF record renders (its metadata.uid says the same), so
// consumers can join the OCSF topic with the events topic without parsing.
const HeaderEventID = "mcpwatch-event-id"

// Enricher adds what sources cannot know to an event in place — data classes, sensitivity, the
// principal's department and peer group (package enrich implements it). It must be safe for
// concurrent use and must never fail an event.
type Enricher interface {
	Enrich(*event.Event)
}

// HandlerOption configures [Handler].
type HandlerOption func(*handlerConfig)

type handlerConfig struct {
	enricher Enricher
}

// WithEnricher enriches every decoded event just before it is normalized, so that the CEF and
// OCSF renderings carry the enrichment as well (Normalize keeps the classes, the principal and
// the sensitivity it is given). A nil en is no enrichment.
func WithEnricher(en Enricher) HandlerOption {
	return func(c *handlerConfig) { c.enricher = en }
}

func handler(topics event.Topics, log *slog.Logger, now func() time.Time, opts ...HandlerOption) kafkaio.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var cfg handlerConfig
	for _, o := range opts {
		o(&cfg)
	}
	return kafkaio.PerRecord(func(_ context.Context, r *kgo.Record) ([]*kgo.Record, error) {
		var raw event.Event
		if err := event.Decode(r.Value, &raw); err != nil {
			return nil, fmt.Errorf("decode raw event at %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
		}
		if cfg.enricher != nil {
			cfg.enricher.Enrich(&raw) // raw was decoded for this record alone: safe to change
		}
		e, err := normalize.Normalize(raw, now())
		if err != nil {
			return nil, err
		}
		key := r.Key
		if len(key) == 0 {
			key = []byte(event.PrincipalKey(e.Tenant, e.Principal))
		}
		// The OCSF object goes to its own topic, bare, for OCSF consumers; the event record that
		// detectors, the sink and forwarders decode stays lean.
		var ocsf *kgo.Record
		if topics.OCSF != "" && len(e.Normalized.OCSF) > 0 {
			ocsf = &kgo.Record{Topic: topics.OCSF, Key: key, Value: e.Normalized.OCSF,
				Headers: append([]kgo.RecordHeader{{Key: HeaderEventID, Value: []byte(e.ID)}}, r.Headers...)}
			n := *e.Normalized
			n.OCSF = nil
			e.Normalized = &n
		}
		out, err := kafkaio.RecordOf(topics.Events, string(key), &e)
		if err != nil {
			// The event decoded, so it encodes; failing here is a bug, not a bad record.
			return nil, kafkaio.Permanent(fmt.Errorf("encode normalized event %s: %w", e.ID, err))
		}
		out.Headers = append(out.Headers, r.Headers...)
		log.Debug("normalized", "id", e.ID, "signature", e.Normalized.Signature)
		if ocsf != nil {
			return []*kgo.Record{out, ocsf}, nil
		}
		return []*kgo.Record{out}, nil
	})
}
