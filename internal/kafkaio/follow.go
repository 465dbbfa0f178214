package kafkaio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Table is state rebuilt from a compacted topic: Apply takes each record in order (a nil or empty
// value is a tombstone); an error marks the record malformed and it is skipped.
type Table interface {
	Apply(key, value []byte) error
	Len() int
}

// TimedTable is a [Table] that wants each record's timestamp too (when it was written to the
// topic); the [Follower] calls ApplyAt instead of Apply for it.
type TimedTable interface {
	Table
	ApplyAt(key, value []byte, at time.Time) error
}

// Follower keeps a [Table] in step with a compacted topic (revocations, threat scores). It reads
// every partition from the start with no consumer group, so every replica sees every record, and
// closes [Follower.Ready] once it has applied everything that was committed to the topic when it
// started. An enforcement point must not serve before that: it would act on stale state.
type Follower struct {
	closeOnce sync.Once
	cl        *kgo.Client
	adm       *kadm.Client
	name      string // what is followed, for logs and metric names: "control", "scores"
	topic     string
	store     Table
	log       *slog.Logger
	m         *followerMetrics

	ready     chan struct{}
	readyOnce sync.Once
}

// NewFollower returns a follower of topic into t, named name ("control", "scores": metrics are
// mcpwatch_<name>_*), with its own Kafka client. The client is its own because following needs
// options a producer must not have: no group, committed reads only, and control records kept so
// that a transaction marker at the end of the topic still counts as reaching it. opts are appended
// to the client options (tests lower kgo.MetadataMinAge). reg may be nil.
func NewFollower(kcfg Config, name, topic string, t Table, reg prometheus.Registerer, log *slog.Logger, opts ...kgo.Opt) (*Follower, error) {
	if name == "" || topic == "" || t == nil {
		return nil, errors.New("follower: name, topic and table are required")
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", name+"-follower", "topic", topic)
	if kcfg.ClientID == "" {
		kcfg.ClientID = "mcpwatch-" + name + "-follower"
	}
	kcfg.Logger = log
	base := []kgo.Opt{
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	}
	cl, err := NewClient(kcfg, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("%s follower: %w", name, err)
	}
	f := &Follower{
		cl: cl, adm: kadm.NewClient(cl), name: name, topic: topic, store: t, log: log,
		ready: make(chan struct{}),
	}
	f.m = newFollowerMetrics(reg, name, f.ready)
	return f, nil
}

// Ready is closed once the table holds every record committed to the topic when [Follower.Run]
// started.
func (f *Follower) Ready() <-chan struct{} { return f.ready }

// Close closes the follower's client; Run does it when it returns, and a second call does
// nothing. A follower made but never run must be closed.
func (f *Follower) Close() { f.closeOnce.Do(f.cl.Close) }

// WaitReady blocks until the follower is ready or ctx ends.
func (f *Follower) WaitReady(ctx context.Context) error {
	select {
	case <-f.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s topic %s not caught up: %w", f.name, f.topic, ctx.Err())
	}
}

// Run follows the topic until ctx ends, then closes the client and returns nil. Kafka being
// unreachable or the topic missing at start is retried with backoff (readiness stays false
// meanwhile); malformed records are counted, logged and skipped, never fatal.
func (f *Follower) Run(ctx context.Context) error {
	defer f.Close()
	pos, err := f.positions(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	start := make(map[int32]kgo.Offset, len(pos.all))
	for _, p := range pos.all {
		start[p] = kgo.NewOffset().AtStart()
	}
	f.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{f.topic: start})
	f.log.Info("following topic", "partitions", len(pos.all), "catching_up", len(pos.pending))
	pending := f.caughtUp(pos.pending, nil)
	for {
		fetches := f.cl.PollFetches(ctx)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return
			}
			f.m.errors.Inc()
			f.log.Warn("fetch error", "partition", p, "err", err)
		})
		fetches.EachRecord(f.apply)
		if pending != nil {
			pending = f.caughtUp(pending, fetches)
		}
	}
}

// apply applies one record. Transaction markers only move the position.
func (f *Follower) apply(r *kgo.Record) {
	if r.Attrs.IsControl() {
		return
	}
	var err error
	if tt, ok := f.store.(TimedTable); ok {
		err = tt.ApplyAt(r.Key, r.Value, r.Timestamp)
	} else {
		err = f.store.Apply(r.Key, r.Value)
	}
	if err != nil {
		f.m.malformed.Inc()
		f.log.Warn("skipping malformed record", "partition", r.Partition, "offset", r.Offset, "err", err)
		return
	}
	if len(r.Value) == 0 {
		f.m.applied.WithLabelValues("tombstone").Inc()
	} else {
		f.m.applied.WithLabelValues("upsert").Inc()
	}
}

// caughtUp removes from pending the partitions whose records up to the target have all been seen,
// and signals readiness when none remain. It returns nil once ready. Waiting for the record at
// target-1 is sound because that record always exists: compaction never cleans the active
// segment, which holds the last record, and transaction markers are returned to this client.
func (f *Follower) caughtUp(pending map[int32]int64, fetches kgo.Fetches) map[int32]int64 {
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if n := len(p.Records); n > 0 && p.Records[n-1].Offset >= pending[p.Partition]-1 {
			delete(pending, p.Partition)
		}
	})
	if len(pending) > 0 {
		return pending
	}
	f.readyOnce.Do(func() {
		f.log.Info("topic caught up", "entries", f.store.Len())
		close(f.ready)
	})
	return nil
}

// positions is where the topic stood when the follower started.
type positions struct {
	all []int32 // every partition
	// pending maps each partition with records to the committed end offset the follower must
	// reach before it is ready.
	pending map[int32]int64
}

// positions lists the topic's partitions and offsets, retrying until Kafka answers.
func (f *Follower) positions(ctx context.Context) (positions, error) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 200 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	return backoff.Retry(ctx, func() (positions, error) {
		out, err := f.listPositions(ctx)
		if err != nil {
			f.m.errors.Inc()
			f.log.Warn("listing topic offsets, retrying", "err", err)
		}
		return out, err
	}, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(0))
}

func (f *Follower) listPositions(ctx context.Context) (positions, error) {
	// Committed (last stable) offsets, because the follower reads committed records only: an
	// open transaction at the end must not hold readiness back until it resolves.
	ends, err := f.adm.ListCommittedOffsets(ctx, f.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return positions{}, fmt.Errorf("end offsets of %s: %w", f.topic, err)
	}
	starts, err := f.adm.ListStartOffsets(ctx, f.topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return positions{}, fmt.Errorf("start offsets of %s: %w", f.topic, err)
	}
	out := positions{pending: map[int32]int64{}}
	for p, end := range ends[f.topic] {
		if p < 0 {
			continue
		}
		out.all = append(out.all, p)
		// Compaction or deleteRecords can leave a partition whose start has reached its end.
		if s, ok := starts.Lookup(f.topic, p); end.Offset > 0 && (!ok || end.Offset > s.Offset) {
			out.pending[p] = end.Offset
		}
	}
	if len(out.all) == 0 {
		return positions{}, fmt.Errorf("%s topic %s has no partitions (does it exist?)", f.name, f.topic)
	}
	return out, nil
}

type followerMetrics struct {
	applied   *prometheus.CounterVec
	malformed prometheus.Counter
	errors    prometheus.Counter
}

func newFollowerMetrics(reg prometheus.Registerer, name string, ready <-chan struct{}) *followerMetrics {
	p := "mcpwatch_" + name + "_"
	m := &followerMetrics{
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "records_applied_total",
			Help: "Records of the " + name + " topic applied, by op (upsert, tombstone)."}, []string{"op"}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{Name: p + "records_malformed_total",
			Help: "Records of the " + name + " topic skipped because they did not decode or were under the wrong key."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: p + "errors_total",
			Help: "Errors fetching the " + name + " topic or listing its offsets (all retried)."}),
	}
	if reg != nil {
		reg.MustRegister(m.applied, m.malformed, m.errors,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: p + "ready",
				Help: "1 once the " + name + " topic has been read up to its end at start."},
				func() float64 {
					select {
					case <-ready:
						return 1
					default:
						return 0
					}
				}),
		)
	}
	return m
}
