package mcp

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/internal/event"
)

// Publisher takes the gateway's audit events. Publish is called on the request path and must not
// block on I/O; it owns e after the call. This is the seam for the durable disk spool, which will
// wrap the Kafka publisher so that a broker outage delays audit records instead of losing them.
type Publisher interface {
	Publish(ctx context.Context, e *event.Event)
}

// PublisherFunc adapts a function to [Publisher].
type PublisherFunc func(ctx context.Context, e *event.Event)

// Publish calls f.
func (f PublisherFunc) Publish(ctx context.Context, e *event.Event) { f(ctx, e) }

// KafkaPublisher produces events to the raw topic asynchronously, keyed by tenant and principal so
// one principal's events stay ordered in one partition.
type KafkaPublisher struct {
	cl       *kgo.Client
	topic    string
	log      *slog.Logger
	produced prometheus.Counter
	failed   *prometheus.CounterVec
	// lastWarn rate-limits failure logs: during an outage every event fails, and a log line per
	// event would bury everything else.
	lastWarn atomic.Int64
}

// NewKafkaPublisher returns a publisher producing to topic on cl. The caller owns cl and flushes
// it at shutdown. reg may be nil.
func NewKafkaPublisher(cl *kgo.Client, topic string, log *slog.Logger, reg prometheus.Registerer) *KafkaPublisher {
	if log == nil {
		log = slog.Default()
	}
	p := &KafkaPublisher{
		cl: cl, topic: topic, log: log.With("component", "audit-publisher", "topic", topic),
		produced: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_gateway_audit_produced_total",
			Help: "Audit events acknowledged by Kafka."}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_gateway_audit_failed_total",
			Help: "Audit events lost, by reason (encode, buffer_full, produce)."}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(p.produced, p.failed)
	}
	return p
}

// Publish encodes e and hands it to the producer without waiting. When the producer's buffer is
// full (Kafka down for long) the event is dropped and counted rather than stalling MCP traffic.
func (p *KafkaPublisher) Publish(ctx context.Context, e *event.Event) {
	r, err := p.record(e)
	if err != nil {
		p.fail("encode", e, err)
		return
	}
	// The record outlives the request: keep the context's values, not its cancellation.
	p.cl.TryProduce(context.WithoutCancel(ctx), r, func(_ *kgo.Record, err error) {
		switch {
		case err == nil:
			p.produced.Inc()
		case errors.Is(err, kgo.ErrMaxBuffered):
			p.fail("buffer_full", e, err)
		default:
			p.fail("produce", e, err)
		}
	})
}

func (p *KafkaPublisher) record(e *event.Event) (*kgo.Record, error) {
	b, err := event.Encode(e)
	if err != nil {
		return nil, err
	}
	return &kgo.Record{Topic: p.topic, Key: []byte(event.PrincipalKey(e.Tenant, e.Principal)), Value: b}, nil
}

func (p *KafkaPublisher) fail(reason string, e *event.Event, err error) {
	p.failed.WithLabelValues(reason).Inc()
	now := time.Now().UnixNano()
	last := p.lastWarn.Load()
	if now-last < int64(10*time.Second) || !p.lastWarn.CompareAndSwap(last, now) {
		return
	}
	// Never the token: the event carries only its id.
	p.log.Warn("audit event lost (further losses logged at most every 10s; see mcpwatch_gateway_audit_failed_total)",
		"reason", reason, "event_id", e.ID, "err", err)
}
