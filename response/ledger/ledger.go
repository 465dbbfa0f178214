package ledger

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// Errors that stop the ledger instead of being retried.
var (
	// ErrFenced: another ledger instance registered the same transactional id after this one.
	// Its transactions win; this instance must stop, or the two would take turns fencing each
	// other.
	ErrFenced = errors.New("ledger fenced by a newer instance with the same transactional id")
	// ErrBrokenTail: the end of the audit topic does not verify. Appending to it would sign a
	// chain that is already broken; the operator must look first (docs/response.md, runbook).
	ErrBrokenTail = errors.New("the audit topic's tail does not verify")
)

// Options configures a [Ledger].
type Options struct {
	Kafka  kafkaio.Config
	Topics event.Topics // Actions is read, Audit written
	// TransactionalID fences other instances: every ledger of one deployment must use the same.
	TransactionalID string
	Key             *Key
	// Trusted are the public keys, besides Key's, whose entries the ledger accepts at the tail it
	// resumes from: the keys it signed with before a rotation.
	Trusted map[string]ed25519.PublicKey
	// DedupWindow is how many of the most recently chained action ids a repeated id is checked
	// against. Default 10,000.
	DedupWindow int
	// MaxBatch bounds the entries of one transaction. Default 1,000.
	MaxBatch int
	// PartitionCheck is how often the actions topic's partition count is checked; a grown topic
	// restarts the session so the new partitions are read. Default 1m.
	PartitionCheck time.Duration
	Registerer     prometheus.Registerer // may be nil
	Logger         *slog.Logger          // nil: discard
	// ClientOpts are appended to every Kafka client's options (tests lower MetadataMinAge).
	ClientOpts []kgo.Opt
	// beforeCommit, when set, runs after a batch was produced and before its transaction is
	// committed; an error abandons the transaction as a crash would (tests).
	beforeCommit func([]*event.AuditEntry) error
}

// Ledger is the ledger stage.
type Ledger struct {
	o   Options
	log *slog.Logger
	m   *metrics
	seq atomic.Uint64 // of the last committed entry, as the seq gauge
}

// New checks o and returns a ledger.
func New(o Options) (*Ledger, error) {
	switch {
	case o.Key == nil:
		return nil, errors.New("ledger: a signing key is required")
	case o.Topics.Actions == "" || o.Topics.Audit == "":
		return nil, errors.New("ledger: actions and audit topics are required")
	case o.TransactionalID == "":
		return nil, errors.New("ledger: a transactional id is required")
	}
	if err := o.Kafka.Validate(); err != nil {
		return nil, err
	}
	if o.DedupWindow <= 0 {
		o.DedupWindow = 10_000
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 1_000
	}
	if o.PartitionCheck <= 0 {
		o.PartitionCheck = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	trusted := maps.Clone(o.Trusted)
	if trusted == nil {
		trusted = map[string]ed25519.PublicKey{}
	}
	trusted[o.Key.ID] = o.Key.Public
	o.Trusted = trusted
	return &Ledger{o: o, log: o.Logger.With("key_id", o.Key.ID), m: newMetrics(o.Registerer)}, nil
}

// Run chains actions until ctx ends (nil) or the ledger is fenced or finds a broken tail. Any
// other failure (Kafka down, a transaction that did not commit) ends the session, and the next
// one starts over from the committed tail after a backoff: what was committed is kept, what was
// not is chained again, nothing twice.
func (l *Ledger) Run(ctx context.Context) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 200 * time.Millisecond
	b.MaxInterval = 10 * time.Second
	for {
		start := time.Now()
		err := l.session(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrFenced), errors.Is(err, ErrBrokenTail):
			l.log.Error("ledger stopped", "err", err)
			return err
		case err == nil:
			continue
		}
		if time.Since(start) > time.Minute {
			b.Reset()
		}
		l.m.restarts.Inc()
		wait := b.NextBackOff()
		l.log.Warn("ledger session ended, resuming from the committed tail", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// errPartitionsGrew ends a session so the next reads the new partitions.
var errPartitionsGrew = errors.New("actions topic has new partitions")

// state is where the chain stands.
type state struct {
	seq    uint64
	prev   string
	next   []int64
	recent *idWindow
}

func (l *Ledger) session(ctx context.Context) error {
	kcfg := l.o.Kafka
	prod, err := kafkaio.NewClient(kcfg, append([]kgo.Opt{
		kgo.TransactionalID(l.o.TransactionalID),
		kgo.TransactionTimeout(time.Minute),
		kgo.DefaultProduceTopic(l.o.Topics.Audit),
	}, l.o.ClientOpts...)...)
	if err != nil {
		return err
	}
	defer prod.Close()
	// Registering the transactional id first fences an older instance and aborts (or finishes)
	// its open transaction, so the tail read next is final.
	if _, _, err := prod.ProducerID(ctx); err != nil {
		return fenced(fmt.Errorf("init transactional producer %q: %w", l.o.TransactionalID, err))
	}
	adm := kadm.NewClient(prod)
	st, err := l.loadTail(ctx, adm)
	if err != nil {
		return err
	}
	nparts, err := l.actionPartitions(ctx, adm)
	if err != nil {
		return err
	}
	for len(st.next) < nparts {
		st.next = append(st.next, 0)
	}
	offsets := make(map[int32]kgo.Offset, len(st.next))
	for p, o := range st.next {
		offsets[int32(p)] = kgo.NewOffset().At(o)
	}
	cons, err := kafkaio.NewClient(kcfg, append([]kgo.Opt{
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{l.o.Topics.Actions: offsets}),
		// A stored position past a partition's end means the topic was recreated: start over
		// from its beginning, and let the dedup window catch what was chained already.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}, l.o.ClientOpts...)...)
	if err != nil {
		return err
	}
	defer cons.Close()
	l.log.Info("ledger resuming", "seq", st.seq, "next", st.next, "dedup_ids", st.recent.len())
	l.m.seq.Set(float64(st.seq))
	lastCheck := time.Now()
	for {
		pctx, cancel := context.WithTimeout(ctx, l.o.PartitionCheck)
		fetches := cons.PollRecords(pctx, l.o.MaxBatch)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return
			}
			l.m.errors.WithLabelValues("fetch").Inc()
			l.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			if !kerr.IsRetriable(err) {
				ferr = fmt.Errorf("read %s partition %d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		if entries := l.chain(&st, fetches.Records()); len(entries) > 0 {
			if err := l.commit(ctx, prod, entries); err != nil {
				return err
			}
			l.m.appended.Add(float64(len(entries)))
			l.m.seq.Set(float64(st.seq))
			l.seq.Store(st.seq)
		}
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if n := len(p.Records); n > 0 {
				l.m.lag.WithLabelValues(strconv.Itoa(int(p.Partition))).Set(float64(p.HighWatermark - p.Records[n-1].Offset - 1))
			}
		})
		if time.Since(lastCheck) >= l.o.PartitionCheck {
			lastCheck = time.Now()
			if n, err := l.actionPartitions(ctx, adm); err == nil && n > len(st.next) {
				return errPartitionsGrew
			}
		}
	}
}

// chain turns records into sealed entries, advancing st. Transaction markers never reach it;
// empty records and repeated action ids are skipped (and counted).
func (l *Ledger) chain(st *state, recs []*kgo.Record) []*event.AuditEntry {
	var out []*event.AuditEntry
	now := time.Now().UnixMilli()
	for _, r := range recs {
		if int(r.Partition) >= len(st.next) {
			continue // a partition this session does not know; the next session reads it
		}
		if len(r.Value) == 0 {
			st.next[r.Partition] = r.Offset + 1
			l.m.skipped.WithLabelValues("empty").Inc()
			continue
		}
		var a event.Action
		id := ""
		if err := event.Decode(r.Value, &a); err == nil {
			id = a.ID
		} else {
			// Chained all the same: the trail holds every record the actions topic held.
			l.m.skipped.WithLabelValues("malformed_chained").Inc()
			l.log.Warn("chaining an action record that does not decode", "partition", r.Partition, "offset", r.Offset, "err", err)
		}
		if id != "" && st.recent.has(id) {
			st.next[r.Partition] = r.Offset + 1
			l.m.skipped.WithLabelValues("duplicate").Inc()
			continue
		}
		st.next[r.Partition] = r.Offset + 1
		e := &event.AuditEntry{Seq: st.seq + 1, TimeMS: now, PrevHash: st.prev, Partition: r.Partition,
			Offset: r.Offset, Next: slices.Clone(st.next), ActionID: id, Action: r.Value}
		if err := Seal(e, l.o.Key); err != nil {
			panic("ledger: sealing an entry with a valid prev hash failed: " + err.Error()) // st.prev is always 64 hex
		}
		st.seq, st.prev = e.Seq, e.Hash
		if id != "" {
			st.recent.add(id)
		}
		out = append(out, e)
	}
	return out
}

// commitTimeout bounds producing and committing one batch; a shutdown waits for it.
const commitTimeout = 30 * time.Second

// commit produces entries in one transaction and commits it. On an error the session ends; the
// next reads the tail to learn whether the transaction committed.
func (l *Ledger) commit(ctx context.Context, prod *kgo.Client, entries []*event.AuditEntry) error {
	start := time.Now()
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	if err := prod.BeginTransaction(); err != nil {
		return fmt.Errorf("begin audit transaction: %w", err)
	}
	errs := make(chan error, len(entries))
	for _, e := range entries {
		b, err := event.EncodeAudit(e)
		if err != nil {
			_ = prod.EndTransaction(tctx, kgo.TryAbort)
			return err
		}
		prod.Produce(tctx, &kgo.Record{Topic: l.o.Topics.Audit, Partition: auditPartition,
			Key: []byte(strconv.FormatUint(e.Seq, 10)), Value: b}, func(_ *kgo.Record, err error) { errs <- err })
	}
	var perr error
	for range entries {
		if err := <-errs; err != nil && perr == nil {
			perr = err
		}
	}
	if l.o.beforeCommit != nil {
		if err := l.o.beforeCommit(entries); err != nil {
			return err
		}
	}
	if perr != nil {
		l.m.errors.WithLabelValues("produce").Inc()
		_ = prod.EndTransaction(tctx, kgo.TryAbort)
		return fenced(fmt.Errorf("produce audit entries %d..%d: %w", entries[0].Seq, entries[len(entries)-1].Seq, perr))
	}
	if err := prod.EndTransaction(tctx, kgo.TryCommit); err != nil {
		l.m.errors.WithLabelValues("commit").Inc()
		return fenced(fmt.Errorf("commit audit entries %d..%d: %w", entries[0].Seq, entries[len(entries)-1].Seq, err))
	}
	l.m.commit.Observe(time.Since(start).Seconds())
	return nil
}

// fenced marks err as [ErrFenced] when Kafka says a newer producer holds the transactional id.
func fenced(err error) error {
	if errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) {
		return fmt.Errorf("%w: %w", ErrFenced, err)
	}
	return err
}

func (l *Ledger) actionPartitions(ctx context.Context, adm *kadm.Client) (int, error) {
	td, err := adm.ListTopics(ctx, l.o.Topics.Actions)
	if err != nil {
		return 0, fmt.Errorf("describe %s: %w", l.o.Topics.Actions, err)
	}
	t, ok := td[l.o.Topics.Actions]
	if !ok || t.Err != nil || len(t.Partitions) == 0 {
		return 0, fmt.Errorf("describe %s: topic missing (run `mcpwatch topics`)", l.o.Topics.Actions)
	}
	return len(t.Partitions), nil
}

// loadTail reads the committed end of the audit topic: the last entry gives seq, prev hash and
// the next offset of every actions partition; the last DedupWindow entries give the recent
// action ids. The entries read are verified, and the last must be signed by a trusted key:
// the ledger never extends a chain it cannot vouch for.
func (l *Ledger) loadTail(ctx context.Context, adm *kadm.Client) (state, error) {
	st := state{prev: ZeroHash, recent: newIDWindow(l.o.DedupWindow)}
	start, end, err := bounds(ctx, adm, l.o.Topics.Audit)
	if err != nil {
		return st, err
	}
	// Each transaction adds a marker, and aborted batches add records read_committed skips:
	// widen the window until it holds an entry or reaches the start.
	window := 2*int64(l.o.DedupWindow) + 16
	var entries []*event.AuditEntry
	for end > start {
		from := max(start, end-window)
		entries = entries[:0]
		err := readRange(ctx, l.o.Kafka, l.o.Topics.Audit, from, end, func(r *kgo.Record) error {
			e := new(event.AuditEntry)
			if err := event.DecodeAudit(r.Value, e); err != nil {
				return fmt.Errorf("%w: offset %d: %v", ErrBrokenTail, r.Offset, err)
			}
			entries = append(entries, e)
			return nil
		}, l.o.ClientOpts...)
		if err != nil {
			return st, err
		}
		if len(entries) > 0 || from == start {
			break
		}
		window *= 4
	}
	if len(entries) == 0 {
		return st, nil
	}
	v := NewVerifier(l.o.Trusted, Resume(), AllowUnknownKeys())
	for _, e := range entries {
		v.AddEntry(e)
	}
	if rep := v.Report(); !rep.OK() {
		return st, fmt.Errorf("%w: %s (%d broken links in the last %d entries)", ErrBrokenTail, rep.FirstBreak(), rep.BreakCount, rep.Entries)
	}
	last := entries[len(entries)-1]
	if _, ok := l.o.Trusted[last.KeyID]; !ok {
		return st, fmt.Errorf("%w: the last entry (seq %d) is signed by key %s, which this ledger does not trust: after a rotation, list the old public key in ledger.previous_public_keys", ErrBrokenTail, last.Seq, last.KeyID)
	}
	st.seq, st.prev, st.next = last.Seq, last.Hash, slices.Clone(last.Next)
	for _, e := range entries[max(0, len(entries)-l.o.DedupWindow):] {
		if e.ActionID != "" {
			st.recent.add(e.ActionID)
		}
	}
	return st, nil
}

// idWindow is the set of the n most recently added ids.
type idWindow struct {
	ring []string
	pos  int
	set  map[string]struct{}
}

func newIDWindow(n int) *idWindow {
	return &idWindow{ring: make([]string, n), set: make(map[string]struct{}, n)}
}

func (w *idWindow) has(id string) bool { _, ok := w.set[id]; return ok }
func (w *idWindow) len() int           { return len(w.set) }

func (w *idWindow) add(id string) {
	if old := w.ring[w.pos]; old != "" {
		delete(w.set, old)
	}
	w.ring[w.pos] = id
	w.set[id] = struct{}{}
	w.pos = (w.pos + 1) % len(w.ring)
}

type metrics struct {
	appended prometheus.Counter
	skipped  *prometheus.CounterVec
	errors   *prometheus.CounterVec
	restarts prometheus.Counter
	seq      prometheus.Gauge
	lag      *prometheus.GaugeVec
	commit   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		appended: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_ledger_entries_appended_total",
			Help: "Audit entries committed to the audit topic."}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_ledger_records_skipped_total",
			Help: "Action records not chained (duplicate: an action id chained within the dedup window; empty), or chained although malformed (malformed_chained)."}, []string{"reason"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_ledger_errors_total",
			Help: "Errors by step (fetch, produce, commit); the session restarts from the committed tail."}, []string{"step"}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_ledger_session_restarts_total",
			Help: "Sessions that ended on an error and resumed from the committed tail."}),
		seq: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mcpwatch_ledger_seq",
			Help: "Seq of the last committed audit entry."}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mcpwatch_ledger_lag",
			Help: "Action records not yet chained, by actions partition, at the last poll."}, []string{"partition"}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mcpwatch_ledger_commit_seconds",
			Help: "Time to produce and commit one batch of entries.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	if reg != nil {
		reg.MustRegister(m.appended, m.skipped, m.errors, m.restarts, m.seq, m.lag, m.commit)
	}
	return m
}
