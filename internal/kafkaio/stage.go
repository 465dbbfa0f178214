package kafkaio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
)

// Handler turns one polled batch of records into outputs. A returned error is transient: the
// whole batch is retried with backoff. Records that can never be processed belong in
// [Result.Dead], not in the error. A handler that keeps state or acts on the world (counts
// events, sends webhooks) must not return an error after it has acted, or the retry acts twice.
type Handler interface {
	Handle(ctx context.Context, recs []*kgo.Record) (Result, error)
}

// HandlerFunc adapts a function to [Handler].
type HandlerFunc func(ctx context.Context, recs []*kgo.Record) (Result, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, recs []*kgo.Record) (Result, error) {
	return f(ctx, recs)
}

// Result is what a batch produced.
type Result struct {
	Out  []*kgo.Record // produced, and acknowledged, before the batch's offsets are committed
	Dead []DeadLetter  // records to park on the dead-letter topic with their reason
}

// DeadLetter is a record a stage gave up on, and why.
type DeadLetter struct {
	Record *kgo.Record
	Reason error
}

// permanent marks an error that retrying cannot fix.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as not worth retrying: [PerRecord] dead-letters the record instead.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err was marked [Permanent] or is a malformed or unknown-schema record.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p) || errors.Is(err, event.ErrMalformed) || errors.Is(err, event.ErrSchema)
}

// PerRecord builds a [Handler] from a function of one record. Permanent errors dead-letter that
// record; any other error retries the batch.
func PerRecord(fn func(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error)) Handler {
	return HandlerFunc(func(ctx context.Context, recs []*kgo.Record) (Result, error) {
		var res Result
		for _, r := range recs {
			out, err := fn(ctx, r)
			switch {
			case err == nil:
				res.Out = append(res.Out, out...)
			case IsPermanent(err):
				res.Dead = append(res.Dead, DeadLetter{Record: r, Reason: err})
			default:
				return Result{}, err
			}
		}
		return res, nil
	})
}

// RecordOf encodes v as a record for topic under key.
func RecordOf[T event.Record](topic, key string, v *T) (*kgo.Record, error) {
	b, err := event.Encode(v)
	if err != nil {
		return nil, err
	}
	return &kgo.Record{Topic: topic, Key: []byte(key), Value: b}, nil
}

// Dead-letter record headers.
const (
	HeaderDLQStage     = "mcpwatch-dlq-stage"
	HeaderDLQTopic     = "mcpwatch-dlq-topic"
	HeaderDLQPartition = "mcpwatch-dlq-partition"
	HeaderDLQOffset    = "mcpwatch-dlq-offset"
	HeaderDLQReason    = "mcpwatch-dlq-reason"
	HeaderDLQTime      = "mcpwatch-dlq-time"
)

// DeadLetterRecord wraps a failed record for the dead-letter topic: its key, value and headers
// unchanged, plus headers naming the stage, where it came from and why it failed.
func DeadLetterRecord(topic, stage string, r *kgo.Record, reason error, now time.Time) *kgo.Record {
	h := append([]kgo.RecordHeader(nil), r.Headers...)
	h = append(h,
		kgo.RecordHeader{Key: HeaderDLQStage, Value: []byte(stage)},
		kgo.RecordHeader{Key: HeaderDLQTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: HeaderDLQPartition, Value: []byte(strconv.Itoa(int(r.Partition)))},
		kgo.RecordHeader{Key: HeaderDLQOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
		kgo.RecordHeader{Key: HeaderDLQReason, Value: []byte(reason.Error())},
		kgo.RecordHeader{Key: HeaderDLQTime, Value: []byte(now.UTC().Format(time.RFC3339Nano))},
	)
	return &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: h}
}

// Header returns the value of the first header named key.
func Header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// StageConfig configures a consumer-group stage.
type StageConfig struct {
	Name   string   // stage name, for logs, metrics and dead-letter headers
	Group  string   // consumer group; defaults to "mcpwatch-" + Name
	Topics []string // input topics
	// MaxPoll bounds a batch. Default 5000.
	MaxPoll int
	// MaxBatchBytes and MaxBatchDelay let a batch grow over several polls: after the first
	// record arrives the stage keeps polling until the batch holds MaxPoll records or
	// MaxBatchBytes bytes of keys and values, or MaxBatchDelay has passed. Zero delay (the
	// default) handles whatever one poll returned. A sink that writes to a database wants few
	// large batches; a stage that reacts wants none of the wait.
	MaxBatchBytes int
	MaxBatchDelay time.Duration
	// ShutdownTimeout is how long an in-flight batch may take to finish after shutdown begins;
	// past it the batch is abandoned uncommitted and redelivered later. Default 30s.
	ShutdownTimeout time.Duration
	// FromEnd starts a new group at the end of the topics instead of the start.
	FromEnd bool
	// DeadLetterTopic receives records the handler gives up on. Required.
	DeadLetterTopic string
	// OnAssigned runs when the group gives this consumer partitions of the input topics, before
	// any of their records is handled; OnRevoked when they are taken away or lost, after the last
	// batch from them was committed (rebalances wait for the batch in hand). A stage with
	// partition-local state loads and drops it here. Either may be nil.
	OnAssigned, OnRevoked func(ctx context.Context, partitions map[string][]int32)
	// InstanceID, if set, makes this consumer a static member of its group (KIP-345): when a
	// process with the same instance id comes back after a crash it takes over its partitions at
	// once, instead of the group waiting out the dead member's session. Each replica needs its
	// own id.
	InstanceID string
}

// Stage is a consumer-group loop: poll → handle → produce outputs and dead letters → wait for
// acknowledgement → commit. Offsets are committed only for batches whose outputs are durable, so a
// crash at any point redelivers rather than loses (at-least-once; records carry ids for dedup).
type Stage struct {
	cfg       StageConfig
	cl        *kgo.Client
	closeOnce sync.Once
	h         Handler
	log       *slog.Logger
	m         *stageMetrics
}

// NewStage builds a stage with its own client. reg may be nil.
func NewStage(kcfg Config, cfg StageConfig, h Handler, reg prometheus.Registerer, log *slog.Logger) (*Stage, error) {
	if cfg.Name == "" || len(cfg.Topics) == 0 || h == nil || cfg.DeadLetterTopic == "" {
		return nil, errors.New("stage: name, topics, dead-letter topic and handler are required")
	}
	if cfg.Group == "" {
		cfg.Group = "mcpwatch-" + cfg.Name
	}
	if cfg.MaxPoll <= 0 {
		cfg.MaxPoll = 5000
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 30 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("stage", cfg.Name)
	if kcfg.ClientID == "" {
		kcfg.ClientID = "mcpwatch-" + cfg.Name
	}
	kcfg.Logger = log
	start := kgo.NewOffset().AtStart()
	if cfg.FromEnd {
		start = kgo.NewOffset().AtEnd()
	}
	var hooks []kgo.Opt
	if f := cfg.OnAssigned; f != nil {
		hooks = append(hooks, kgo.OnPartitionsAssigned(func(ctx context.Context, _ *kgo.Client, m map[string][]int32) { f(ctx, m) }))
	}
	if f := cfg.OnRevoked; f != nil {
		hook := func(ctx context.Context, _ *kgo.Client, m map[string][]int32) { f(ctx, m) }
		hooks = append(hooks, kgo.OnPartitionsRevoked(hook), kgo.OnPartitionsLost(hook))
	}
	if cfg.InstanceID != "" {
		hooks = append(hooks, kgo.InstanceID(cfg.InstanceID))
	}
	cl, err := NewClient(kcfg, append(hooks,
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topics...),
		kgo.ConsumeResetOffset(start),
		kgo.DisableAutoCommit(),
		// Partitions are not taken away between a poll and its commit, so a rebalance cannot
		// hand a batch to a second consumer while the first is still writing its outputs.
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)...)
	if err != nil {
		return nil, err
	}
	return &Stage{cfg: cfg, cl: cl, h: h, log: log, m: newStageMetrics(reg, cfg.Name)}, nil
}

// Client returns the stage's client (for producing outside the loop, e.g. on a timer).
func (s *Stage) Client() *kgo.Client { return s.cl }

// Close leaves the group and closes the client; Run does it when it returns, and a second call
// does nothing. A stage built but never run must be closed.
func (s *Stage) Close() error {
	s.closeOnce.Do(s.cl.Close)
	return nil
}

// Run consumes until ctx ends, then finishes the in-flight batch, commits and leaves the group.
// It returns nil on a clean shutdown.
func (s *Stage) Run(ctx context.Context) error {
	defer s.Close()
	s.log.Info("stage running", "group", s.cfg.Group, "topics", s.cfg.Topics)
	for {
		fetches := s.cl.PollRecords(ctx, s.cfg.MaxPoll)
		if fetches.IsClientClosed() {
			return nil
		}
		s.fetchErrors(fetches)
		recs := fetches.Records()
		if len(recs) > 0 && s.cfg.MaxBatchDelay > 0 {
			recs = s.gather(ctx, recs)
		}
		if len(recs) > 0 {
			if err := s.process(ctx, recs); err != nil {
				s.cl.AllowRebalance()
				return err
			}
		}
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if n := len(p.Records); n > 0 {
				lag := p.HighWatermark - p.Records[n-1].Offset - 1
				s.m.lag.WithLabelValues(p.Topic, strconv.Itoa(int(p.Partition))).Set(float64(lag))
			}
		})
		s.cl.AllowRebalance()
		if ctx.Err() != nil {
			s.log.Info("stage stopped")
			return nil
		}
	}
}

func (s *Stage) fetchErrors(fetches kgo.Fetches) {
	fetches.EachError(func(t string, p int32, err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return
		}
		s.m.errors.WithLabelValues("fetch").Inc()
		s.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
	})
}

// gather polls more records into recs until the batch is full or MaxBatchDelay has passed since
// the first poll returned. Rebalances stay blocked meanwhile (BlockRebalanceOnPoll), so every
// record gathered still belongs to this consumer when the batch commits. Memory stays bounded:
// the batch by MaxPoll and MaxBatchBytes, and the client fetches no further while its buffered
// fetches have not been polled, which is what makes a slow handler push back on Kafka.
func (s *Stage) gather(ctx context.Context, recs []*kgo.Record) []*kgo.Record {
	size := 0
	for _, r := range recs {
		size += len(r.Key) + len(r.Value)
	}
	gctx, cancel := context.WithTimeout(ctx, s.cfg.MaxBatchDelay)
	defer cancel()
	for len(recs) < s.cfg.MaxPoll && (s.cfg.MaxBatchBytes <= 0 || size < s.cfg.MaxBatchBytes) && gctx.Err() == nil {
		fetches := s.cl.PollRecords(gctx, s.cfg.MaxPoll-len(recs))
		if fetches.IsClientClosed() {
			break
		}
		s.fetchErrors(fetches)
		for _, r := range fetches.Records() {
			recs = append(recs, r)
			size += len(r.Key) + len(r.Value)
		}
	}
	return recs
}

// process handles one batch to completion. It keeps going for ShutdownTimeout after ctx ends so
// that a SIGTERM finishes the batch instead of abandoning half-written outputs.
func (s *Stage) process(ctx context.Context, recs []*kgo.Record) error {
	start := time.Now()
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(s.cfg.ShutdownTimeout, cancel) })
	defer stop()

	s.m.in.Add(float64(len(recs)))
	res, err := retry(wctx, s, "handler", func() (Result, error) { return s.h.Handle(wctx, recs) })
	if err != nil {
		return fmt.Errorf("stage %s: batch abandoned uncommitted: %w", s.cfg.Name, err)
	}
	out := res.Out
	now := time.Now()
	for _, d := range res.Dead {
		s.log.Warn("dead-lettering record", "topic", d.Record.Topic, "partition", d.Record.Partition,
			"offset", d.Record.Offset, "reason", d.Reason)
		out = append(out, DeadLetterRecord(s.cfg.DeadLetterTopic, s.cfg.Name, d.Record, d.Reason, now))
	}
	if len(out) > 0 {
		if _, err := retry(wctx, s, "produce", func() (struct{}, error) {
			return struct{}{}, s.cl.ProduceSync(wctx, out...).FirstErr()
		}); err != nil {
			return fmt.Errorf("stage %s: outputs not acknowledged, batch uncommitted: %w", s.cfg.Name, err)
		}
	}
	if _, err := retry(wctx, s, "commit", func() (struct{}, error) {
		return struct{}{}, s.cl.CommitRecords(wctx, recs...)
	}); err != nil {
		return fmt.Errorf("stage %s: commit: %w", s.cfg.Name, err)
	}
	for _, r := range res.Out {
		s.m.out.WithLabelValues(r.Topic).Inc()
	}
	s.m.dead.Add(float64(len(res.Dead)))
	s.m.batch.Observe(time.Since(start).Seconds())
	return nil
}

// retry runs op with exponential backoff until it succeeds or ctx ends.
func retry[T any](ctx context.Context, s *Stage, what string, op func() (T, error)) (T, error) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	return backoff.Retry(ctx, func() (T, error) {
		v, err := op()
		if err != nil {
			s.m.errors.WithLabelValues(what).Inc()
			s.log.Warn("retrying", "step", what, "err", err)
		}
		return v, err
	}, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(0))
}

type stageMetrics struct {
	in     prometheus.Counter
	out    *prometheus.CounterVec
	dead   prometheus.Counter
	errors *prometheus.CounterVec
	batch  prometheus.Histogram
	lag    *prometheus.GaugeVec
}

func newStageMetrics(reg prometheus.Registerer, stage string) *stageMetrics {
	l := prometheus.Labels{"stage": stage}
	m := &stageMetrics{
		in: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_stage_records_in_total",
			Help: "Records consumed by the stage.", ConstLabels: l}),
		out: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_stage_records_out_total",
			Help: "Records produced by the stage, by topic.", ConstLabels: l}, []string{"topic"}),
		dead: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_stage_dead_letters_total",
			Help: "Records sent to the dead-letter topic.", ConstLabels: l}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_stage_errors_total",
			Help: "Errors by step (fetch, handler, produce, commit); handler errors are retried.", ConstLabels: l}, []string{"step"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mcpwatch_stage_batch_seconds",
			Help: "Time from poll to commit of a batch.", ConstLabels: l, Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mcpwatch_stage_consumer_lag",
			Help: "Records behind the high watermark at the last poll.", ConstLabels: l}, []string{"topic", "partition"}),
	}
	if reg != nil {
		reg.MustRegister(m.in, m.out, m.dead, m.errors, m.batch, m.lag)
	}
	return m
}
