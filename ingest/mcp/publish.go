package mcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/spool"
)

// Publisher takes the gateway's audit events. Publish is called on the request path and must not
// block on I/O; it owns e after the call. This is the seam for the durable disk spool, which will
// wrap the Kafka publisher so that a broker outage delays audit records instead of losing them.
type Publisher interface {
	Publish(ctx context.Context, e *event.Event)
}

// ActionPublisher takes the action records the gateway itself produces: the sandbox quarantines
// it applied or lifted, with their outcome and latency. Like Publish, PublishAction must not block
// on I/O and owns a after the call. [KafkaPublisher] and [DurablePublisher] made for the actions
// topic ([NewKafkaActionPublisher], [WithMetricPrefix]) are ActionPublishers.
type ActionPublisher interface {
	PublishAction(ctx context.Context, a *event.Action)
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
	return newKafkaPublisher(cl, topic, "mcpwatch_gateway_audit", log, reg)
}

// NewKafkaActionPublisher returns a publisher of the gateway's action records to the actions
// topic on cl, with the metrics mcpwatch_gateway_actions_produced_total and _failed_total. reg may
// be nil.
func NewKafkaActionPublisher(cl *kgo.Client, topic string, log *slog.Logger, reg prometheus.Registerer) *KafkaPublisher {
	return newKafkaPublisher(cl, topic, "mcpwatch_gateway_actions", log, reg)
}

func newKafkaPublisher(cl *kgo.Client, topic, prefix string, log *slog.Logger, reg prometheus.Registerer) *KafkaPublisher {
	if log == nil {
		log = slog.Default()
	}
	p := &KafkaPublisher{
		cl: cl, topic: topic, log: log.With("component", "audit-publisher", "topic", topic),
		produced: prometheus.NewCounter(prometheus.CounterOpts{Name: prefix + "_produced_total",
			Help: "Records acknowledged by Kafka."}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: prefix + "_failed_total",
			Help: "Records lost, by reason (encode, buffer_full, produce)."}, []string{"reason"}),
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
		p.fail("encode", e.ID, err)
		return
	}
	p.produce(ctx, r, e.ID)
}

// PublishAction implements [ActionPublisher] like Publish: it produces a to the publisher's topic
// (make it with [NewKafkaActionPublisher]) under [ActionKey].
func (p *KafkaPublisher) PublishAction(ctx context.Context, a *event.Action) {
	b, err := event.Encode(a)
	if err != nil {
		p.fail("encode", a.ID, err)
		return
	}
	p.produce(ctx, &kgo.Record{Topic: p.topic, Key: []byte(ActionKey(a)), Value: b}, a.ID)
}

func (p *KafkaPublisher) produce(ctx context.Context, r *kgo.Record, id string) {
	// The record outlives the request: keep the context's values, not its cancellation.
	p.cl.TryProduce(context.WithoutCancel(ctx), r, func(_ *kgo.Record, err error) {
		switch {
		case err == nil:
			p.produced.Inc()
		case errors.Is(err, kgo.ErrMaxBuffered):
			p.fail("buffer_full", id, err)
		default:
			p.fail("produce", id, err)
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

// ActionKey is the record key of a gateway action on the actions topic: the principal's
// [event.PrincipalKey] when the action names one, else the tenant and the action's target.
func ActionKey(a *event.Action) string {
	if a.Subject != "" {
		return event.PrincipalKey(a.Tenant, event.Principal{Subject: a.Subject})
	}
	return a.Tenant + "/" + a.Target
}

func (p *KafkaPublisher) fail(reason string, id string, err error) {
	p.failed.WithLabelValues(reason).Inc()
	now := time.Now().UnixNano()
	last := p.lastWarn.Load()
	if now-last < int64(10*time.Second) || !p.lastWarn.CompareAndSwap(last, now) {
		return
	}
	// Never the token: the event carries only its id.
	p.log.Warn("audit event lost (further losses logged at most every 10s; see mcpwatch_gateway_audit_failed_total)",
		"reason", reason, "record_id", id, "err", err)
}

// SpoolFullMode is what a [DurablePublisher] does with an event when Kafka is not taking records
// and the spool is full.
type SpoolFullMode string

const (
	// FailClosed refuses: [DurablePublisher.Send] returns [ErrAuditUnavailable] and
	// [DurablePublisher.Healthy] reports it, so the gateway refuses calls it cannot audit.
	FailClosed SpoolFullMode = "fail_closed"
	// FailOpen drops the event, counts it and logs its id; MCP traffic goes on unaudited.
	FailOpen SpoolFullMode = "fail_open"
)

// ErrAuditUnavailable means the audit trail cannot take another event: Kafka is not acknowledging
// and the spool is full (or failing). In [FailClosed] mode the gateway must refuse the call.
var ErrAuditUnavailable = errors.New("audit unavailable: kafka unreachable and spool full")

// DurableOption configures [NewDurablePublisher].
type DurableOption func(*durableOpts)

type durableOpts struct {
	mode        SpoolFullMode
	stall       time.Duration
	maxInFlight int
	batch       int
	log         *slog.Logger
	reg         prometheus.Registerer
	prefix      string
}

// WithSpoolFullMode sets the behaviour when the spool is full; the default is [FailClosed].
func WithSpoolFullMode(m SpoolFullMode) DurableOption { return func(o *durableOpts) { o.mode = m } }

// WithStallTimeout sets how long direct records may go unacknowledged before the publisher treats
// Kafka as unreachable and spools (default 2s). It bounds the events held only in memory during an
// outage, which a crash in that window would lose.
func WithStallTimeout(d time.Duration) DurableOption { return func(o *durableOpts) { o.stall = d } }

// WithMaxInFlight bounds the records handed to the Kafka client and not yet acknowledged (default
// 10,000); past it events are spooled. Keep it below the client's MaxBufferedRecords.
func WithMaxInFlight(n int) DurableOption { return func(o *durableOpts) { o.maxInFlight = n } }

// WithMetricPrefix sets the prefix of the publisher's metric names (default
// "mcpwatch_gateway_audit"), so that a second publisher — the gateway's actions, with a spool of
// their own — registers beside the first: "mcpwatch_gateway_actions".
func WithMetricPrefix(p string) DurableOption { return func(o *durableOpts) { o.prefix = p } }

// WithDurableLogger sets the logger.
func WithDurableLogger(l *slog.Logger) DurableOption { return func(o *durableOpts) { o.log = l } }

// WithDurableRegisterer registers the publisher's metrics.
func WithDurableRegisterer(r prometheus.Registerer) DurableOption {
	return func(o *durableOpts) { o.reg = r }
}

// DurablePublisher delivers audit events to Kafka without losing them to a broker outage.
//
// While Kafka acknowledges, events go straight to the client (non-blocking TryProduce). When it
// stops — a produce fails, more than MaxInFlight records wait, or nothing was acknowledged for the
// stall timeout — events go to the on-disk spool instead, and so does every later event while the
// spool is non-empty, so no event overtakes a spooled one. A replayer drains the spool to Kafka in
// order (synchronously, a batch at a time) and deletes records only after Kafka acknowledged them;
// when the spool is empty, publishing goes direct again. Delivery is at-least-once: consumers
// deduplicate on [event.Event.ID].
//
// Order: per-principal order holds across the switch to the spool and back, because records
// already in the client when spooling starts are ahead of the replayed ones in the same client's
// per-partition queue. The one exception is a direct record that the client fails rather than
// retries (a non-retriable broker error): it is spooled behind events published after it.
//
// A publisher started on a non-empty spool (after a restart) replays it before publishing direct.
type DurablePublisher struct {
	cl    *kgo.Client
	sp    *spool.Spool
	topic string
	o     durableOpts
	log   *slog.Logger

	mu           sync.Mutex
	spooling     bool
	full         bool
	closed       bool
	inflight     map[*kgo.Record]string // direct records not yet acknowledged → event id
	lastProgress time.Time

	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}

	produced, spooled, replayed, refused prometheus.Counter
	dropped                              *prometheus.CounterVec
	lastWarn                             atomic.Int64
}

// NewDurablePublisher returns a publisher producing to topic on cl and spooling to sp. The caller
// owns cl and sp: call [DurablePublisher.Close] first, then close sp and cl.
func NewDurablePublisher(cl *kgo.Client, sp *spool.Spool, topic string, opts ...DurableOption) (*DurablePublisher, error) {
	o := durableOpts{mode: FailClosed, stall: 2 * time.Second, maxInFlight: 10_000, batch: 500, prefix: "mcpwatch_gateway_audit"}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case o.mode != FailClosed && o.mode != FailOpen:
		return nil, fmt.Errorf("audit publisher: spool full mode %q (want %s or %s)", o.mode, FailClosed, FailOpen)
	case o.stall <= 0 || o.maxInFlight <= 0:
		return nil, errors.New("audit publisher: stall timeout and max in flight must be positive")
	case cl == nil || sp == nil || topic == "":
		return nil, errors.New("audit publisher: client, spool and topic are required")
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &DurablePublisher{
		cl: cl, sp: sp, topic: topic, o: o,
		log:      o.log.With("component", "audit-publisher", "topic", topic),
		inflight: make(map[*kgo.Record]string),
		wake:     make(chan struct{}, 1),
		cancel:   cancel,
		done:     make(chan struct{}),
		produced: prometheus.NewCounter(prometheus.CounterOpts{Name: o.prefix + "_produced_total",
			Help: "Audit events acknowledged by Kafka on the direct path."}),
		spooled: prometheus.NewCounter(prometheus.CounterOpts{Name: o.prefix + "_spooled_total",
			Help: "Audit events written to the disk spool because Kafka was not acknowledging."}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{Name: o.prefix + "_replayed_total",
			Help: "Spooled audit events acknowledged by Kafka on replay."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: o.prefix + "_refused_total",
			Help: "Audit events refused because the spool was full (fail_closed): their calls were refused."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: o.prefix + "_dropped_total",
			Help: "Audit events lost, by reason (fail_open, encode, permanent, spool_full, spool_error)."}, []string{"reason"}),
	}
	p.spooling = sp.Len() > 0
	if o.reg != nil {
		stat := func(name, help string, f func(spool.Stats) float64) prometheus.Collector {
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(sp.Stats()) })
		}
		o.reg.MustRegister(p.produced, p.spooled, p.replayed, p.refused, p.dropped,
			stat(o.prefix+"_spool_bytes", "Bytes the audit spool holds on disk.",
				func(s spool.Stats) float64 { return float64(s.Bytes) }),
			stat(o.prefix+"_spool_records", "Audit events waiting in the spool.",
				func(s spool.Stats) float64 { return float64(s.Records) }),
			stat(o.prefix+"_spool_oldest_age_seconds", "Age of the oldest spooled audit event; 0 when empty.",
				func(s spool.Stats) float64 {
					if s.Oldest.IsZero() {
						return 0
					}
					return time.Since(s.Oldest).Seconds()
				}))
	}
	go p.replay(ctx)
	if p.spooling {
		p.signal()
	}
	return p, nil
}

// Publish implements [Publisher]: it is [DurablePublisher.Send] with the error already counted
// and logged. Gateways check [DurablePublisher.Healthy] before forwarding a call.
func (p *DurablePublisher) Publish(ctx context.Context, e *event.Event) { _ = p.Send(ctx, e) }

// Healthy returns [ErrAuditUnavailable] while, in [FailClosed] mode, the publisher could not take
// an event: Kafka is not acknowledging and the spool was found full. It clears as soon as the
// replayer frees space. In [FailOpen] mode it returns nil.
func (p *DurablePublisher) Healthy() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.o.mode == FailClosed && (p.full || p.closed) {
		return ErrAuditUnavailable
	}
	return nil
}

// Send delivers e without blocking on the network: to Kafka while it acknowledges, otherwise to
// the spool. It returns [ErrAuditUnavailable] when e could be neither produced nor spooled in
// [FailClosed] mode; in [FailOpen] mode such an event is dropped, counted and logged by id, and
// Send returns nil. It owns e after the call.
func (p *DurablePublisher) Send(ctx context.Context, e *event.Event) error {
	v, err := event.Encode(e)
	if err != nil {
		p.lose("encode", e.ID, err)
		return err
	}
	return p.send(ctx, e.ID, event.PrincipalKey(e.Tenant, e.Principal), v)
}

// PublishAction implements [ActionPublisher] with the guarantees of Send: the action record goes
// to the publisher's topic (make the publisher for the actions topic, with a spool of its own)
// under [ActionKey], through the spool while Kafka is away.
func (p *DurablePublisher) PublishAction(ctx context.Context, a *event.Action) {
	v, err := event.Encode(a)
	if err != nil {
		p.lose("encode", a.ID, err)
		return
	}
	_ = p.send(ctx, a.ID, ActionKey(a), v)
}

func (p *DurablePublisher) send(ctx context.Context, id, key string, v []byte) error {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return p.unavailable(id, errors.New("publisher closed"))
	}
	if !p.spooling {
		stalled := len(p.inflight) > 0 && now.Sub(p.lastProgress) > p.o.stall
		if !stalled && len(p.inflight) < p.o.maxInFlight {
			r := &kgo.Record{Topic: p.topic, Key: []byte(key), Value: v}
			if len(p.inflight) == 0 {
				p.lastProgress = now
			}
			p.inflight[r] = id
			// The record outlives the request: keep the context's values, not its cancellation.
			p.cl.TryProduce(context.WithoutCancel(ctx), r, func(r *kgo.Record, err error) { p.acked(r, id, err) })
			return nil
		}
		p.spooling = true
		p.log.Warn("kafka not acknowledging audit events; spooling to disk",
			"in_flight", len(p.inflight), "stalled", stalled)
	}
	return p.spoolLocked(id, key, v)
}

// spoolLocked appends one event to the spool. Called with mu held.
func (p *DurablePublisher) spoolLocked(id, key string, v []byte) error {
	err := p.sp.Append(spoolRecord(key, v))
	if err == nil {
		p.spooled.Inc()
		p.signal()
		return nil
	}
	if errors.Is(err, spool.ErrFull) {
		p.full = true
	}
	return p.unavailable(id, err)
}

// unavailable applies the spool-full mode to an event that could not be kept. Called with mu held.
func (p *DurablePublisher) unavailable(id string, err error) error {
	if p.o.mode == FailOpen {
		p.lose("fail_open", id, err)
		return nil
	}
	p.refused.Inc()
	p.warn("audit event refused (fail_closed); the call is refused", id, err)
	return fmt.Errorf("%w: %v", ErrAuditUnavailable, err)
}

// acked is the promise of a direct record. Promises run serially on the client's goroutine.
func (p *DurablePublisher) acked(r *kgo.Record, id string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.inflight[r]; !ok {
		return // spooled by Close already
	}
	delete(p.inflight, r)
	if err == nil {
		p.produced.Inc()
		p.lastProgress = time.Now()
		return
	}
	if permanent(err) {
		p.lose("permanent", id, err)
		return
	}
	// ErrMaxBuffered, a closed client or a non-retriable broker error: keep it on disk. Later
	// events go to the spool too, behind it.
	if !p.spooling {
		p.spooling = true
		p.log.Warn("audit produce failed; spooling to disk", "event_id", id, "err", err)
	}
	if aerr := p.sp.Append(spoolRecord(string(r.Key), r.Value)); aerr != nil {
		if errors.Is(aerr, spool.ErrFull) {
			p.full = true
			p.lose("spool_full", id, aerr)
		} else {
			p.lose("spool_error", id, aerr)
		}
		return
	}
	p.spooled.Inc()
	p.signal()
}

// permanent reports errors that no retry can fix, for which spooling would wedge the replay.
func permanent(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) ||
		errors.Is(err, kerr.InvalidRecord)
}

func (p *DurablePublisher) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// replay drains the spool to Kafka in order until ctx ends.
func (p *DurablePublisher) replay(ctx context.Context) {
	defer close(p.done)
	const minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		}
		for {
			n, err := p.replayBatch(ctx)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				p.log.Warn("audit spool replay failed; retrying", "err", err, "backoff", backoff)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, maxBackoff)
				continue
			}
			backoff = minBackoff
			if n == 0 {
				break
			}
		}
	}
}

// replayBatch produces the next batch of spooled records and acknowledges the prefix Kafka took.
// When the spool is empty it switches publishing back to direct and returns 0.
func (p *DurablePublisher) replayBatch(ctx context.Context) (int, error) {
	recs, err := p.sp.Peek(p.o.batch)
	if err != nil {
		return 0, err
	}
	if len(recs) == 0 {
		p.mu.Lock()
		// Appends happen under mu, so an empty spool here stays empty until publishing is direct.
		if p.sp.Len() == 0 && p.spooling {
			p.spooling, p.full = false, false
			p.log.Info("audit spool drained; publishing directly to kafka")
		}
		p.mu.Unlock()
		return 0, nil
	}
	krs := make([]*kgo.Record, len(recs))
	for i, b := range recs {
		key, v, err := parseSpoolRecord(b)
		if err != nil {
			// Unreachable for records this package wrote (the spool checks CRCs); deliver the raw
			// bytes rather than lose them.
			key, v = nil, b
		}
		krs[i] = &kgo.Record{Topic: p.topic, Key: key, Value: v}
	}
	// Blocks while Kafka is unreachable (the client retries); the records stay on disk until the
	// broker acknowledged them.
	res := p.cl.ProduceSync(ctx, krs...)
	n := 0
	var firstErr error
	for _, r := range res {
		if r.Err != nil {
			if !permanent(r.Err) {
				firstErr = r.Err
				break
			}
			p.lose("permanent", "", r.Err)
		} else {
			p.replayed.Inc()
		}
		n++
	}
	if n > 0 {
		if err := p.sp.Ack(n); err != nil {
			return n, err
		}
		p.mu.Lock()
		p.full = false
		p.mu.Unlock()
	}
	return n, firstErr
}

// Close stops the replayer, waits up to ctx for direct records in flight and spools those still
// unacknowledged, so a shutdown during an outage keeps them (at-least-once: a record acknowledged
// after it was spooled is delivered twice). Send fails after Close.
func (p *DurablePublisher) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	<-p.done
	for {
		p.mu.Lock()
		n := len(p.inflight)
		p.mu.Unlock()
		if n == 0 || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for r, id := range p.inflight {
		delete(p.inflight, r)
		if err := p.sp.Append(spoolRecord(string(r.Key), r.Value)); err != nil {
			p.lose("spool_error", id, err)
			errs = append(errs, err)
			continue
		}
		p.spooled.Inc()
	}
	return errors.Join(errs...)
}

// lose counts an event that will never reach Kafka and logs its id (rate-limited). Only ids are
// logged: event contents may carry masked arguments and identities.
func (p *DurablePublisher) lose(reason, id string, err error) {
	p.dropped.WithLabelValues(reason).Inc()
	p.warn("audit event lost ("+reason+")", id, err)
}

func (p *DurablePublisher) warn(msg, id string, err error) {
	now := time.Now().UnixNano()
	last := p.lastWarn.Load()
	if now-last < int64(10*time.Second) || !p.lastWarn.CompareAndSwap(last, now) {
		return
	}
	p.log.Warn(msg+" (further ones logged at most every 10s; see mcpwatch_gateway_audit_dropped_total and _refused_total)",
		"event_id", id, "err", err)
}

// A spool record is the Kafka key and value: uvarint key length, key, value.
func spoolRecord(key string, v []byte) []byte {
	b := make([]byte, 0, binary.MaxVarintLen32+len(key)+len(v))
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	return append(b, v...)
}

func parseSpoolRecord(b []byte) (key, v []byte, err error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, nil, errors.New("malformed spool record")
	}
	return b[w : w+int(n)], b[w+int(n):], nil
}
