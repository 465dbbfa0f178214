package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// auditPartition is the audit topic's only partition: one chain, one order.
const auditPartition = 0

// bounds returns the audit topic's log start and last stable offset (the end of what is
// committed: an open transaction's records are not yet part of the chain).
func bounds(ctx context.Context, adm *kadm.Client, topic string) (start, end int64, err error) {
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("end offset of %s: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("start offset of %s: %w", topic, err)
	}
	e, ok := ends.Lookup(topic, auditPartition)
	s, ok2 := starts.Lookup(topic, auditPartition)
	if !ok || !ok2 {
		return 0, 0, fmt.Errorf("%s has no partition %d (does the topic exist? `mcpwatch topics` creates it)", topic, auditPartition)
	}
	return s.Offset, e.Offset, nil
}

// readRange passes the committed records of the audit topic in [from, end) to fn, in order,
// skipping transaction markers and aborted records. end must be a last stable offset, so that
// the record at end-1 (an entry or a marker) exists and ends the read.
func readRange(ctx context.Context, kcfg kafkaio.Config, topic string, from, end int64, fn func(*kgo.Record) error, opts ...kgo.Opt) error {
	if from >= end {
		return nil
	}
	cl, err := kafkaio.NewClient(kcfg, append([]kgo.Opt{
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {auditPartition: kgo.NewOffset().At(from)}}),
	}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading %s: %w", topic, err)
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("reading %s: %w", topic, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		done := false
		for it := fetches.RecordIter(); !it.Done(); {
			r := it.Next()
			if r.Offset >= end {
				done = true
				break
			}
			if !r.Attrs.IsControl() {
				if err := fn(r); err != nil {
					return err
				}
			}
			if r.Offset >= end-1 {
				done = true
				break
			}
		}
		if done {
			return nil
		}
	}
}

// KafkaSource reads the audit topic from its start to its last stable offset when called,
// committed entries only. opts are appended to the client's options.
func KafkaSource(kcfg kafkaio.Config, topic string, opts ...kgo.Opt) Source {
	return func(ctx context.Context, fn func([]byte) error) error {
		cl, err := kafkaio.NewClient(kcfg, opts...)
		if err != nil {
			return err
		}
		start, end, err := bounds(ctx, kadm.NewClient(cl), topic)
		cl.Close()
		if err != nil {
			return err
		}
		return readRange(ctx, kcfg, topic, start, end, func(r *kgo.Record) error { return fn(r.Value) }, opts...)
	}
}
