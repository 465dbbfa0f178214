package kafkaio

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ReadPartitions reads the given partitions of topic from their start to the end committed when
// it began, passing each record (transaction markers aside) to fn in offset order per partition,
// and returns once it has seen them all. It is how a stage loads partition-local state from a
// compacted topic when the group assigns it partitions. kcfg's client options apply; opts are
// appended (tests lower kgo.MetadataMinAge).
func ReadPartitions(ctx context.Context, kcfg Config, topic string, partitions []int32, fn func(*kgo.Record), opts ...kgo.Opt) error {
	if len(partitions) == 0 {
		return nil
	}
	cl, err := NewClient(kcfg, append([]kgo.Opt{kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords()}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	// Wait for the record at end-1 of each partition with records: it always exists, as the
	// follower explains (compaction never cleans the active segment; markers are kept).
	pending := map[int32]int64{}
	start := map[int32]kgo.Offset{}
	for _, p := range partitions {
		end, ok := ends.Lookup(topic, p)
		if !ok {
			return fmt.Errorf("%s has no partition %d (are it and the input topic partitioned alike?)", topic, p)
		}
		if s, ok := starts.Lookup(topic, p); end.Offset > 0 && (!ok || end.Offset > s.Offset) {
			pending[p] = end.Offset
			start[p] = kgo.NewOffset().AtStart()
		}
	}
	if len(pending) == 0 {
		return nil
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: start})
	for len(pending) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading %s: %w", topic, err)
		}
		var ferr error
		fetches.EachError(func(_ string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("reading %s partition %d: %w", topic, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
			for _, r := range ftp.Records {
				if !r.Attrs.IsControl() {
					fn(r)
				}
			}
			if n := len(ftp.Records); n > 0 && ftp.Records[n-1].Offset >= pending[ftp.Partition]-1 {
				delete(pending, ftp.Partition)
			}
		})
	}
	return nil
}

// ReadCommittedWindow reads, for each given partition of topic, the records before group's
// committed offset c whose timestamps are at or after since(last) — last being the record at c-1,
// the last one the group handled — and passes them to fn (transaction markers aside) in offset
// order per partition. Partitions the group has no offset for are skipped.
//
// It is how a stage rebuilds a memory of recent input that it does not checkpoint: the records
// before c were handled by the partition's previous owner, the ones from c on will be handled again
// by this one. Anchoring the window at the last handled record rather than at the wall clock keeps
// it right when the group lags: a memory of "the last ten minutes before the next record" must
// not depend on when the consumer restarted.
func ReadCommittedWindow(ctx context.Context, kcfg Config, group, topic string, partitions []int32, since func(last *kgo.Record) time.Time, fn func(*kgo.Record), opts ...kgo.Opt) error {
	if len(partitions) == 0 {
		return nil
	}
	base := append([]kgo.Opt{kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords()}, opts...)
	cl, err := NewClient(kcfg, base...)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	committed, err := adm.FetchOffsetsForTopics(ctx, group, topic)
	if err == nil {
		err = committed.Error()
	}
	if err != nil {
		return fmt.Errorf("committed offsets of group %s on %s: %w", group, topic, err)
	}
	ends := map[int32]int64{}
	for _, p := range partitions {
		if c, ok := committed.Lookup(topic, p); ok && c.At > 0 {
			ends[p] = c.At
		}
	}
	if len(ends) == 0 {
		return nil
	}
	// The last handled record of each partition anchors its window.
	lasts, err := readAt(ctx, kcfg, topic, ends, base)
	if err != nil {
		return err
	}
	start := map[int32]kgo.Offset{}
	for p, last := range lasts {
		at := since(last)
		offs, err := adm.ListOffsetsAfterMilli(ctx, at.UnixMilli(), topic)
		if err == nil {
			err = offs.Error()
		}
		if err != nil {
			return fmt.Errorf("offsets of %s after %s: %w", topic, at.Format(time.RFC3339), err)
		}
		o, ok := offs.Lookup(topic, p)
		if !ok || o.Offset < 0 || o.Offset >= ends[p] { // -1: no record at or after at
			delete(ends, p)
			continue
		}
		start[p] = kgo.NewOffset().At(o.Offset)
	}
	for p := range ends {
		if _, ok := start[p]; !ok {
			delete(ends, p)
		}
	}
	if len(ends) == 0 {
		return nil
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: start})
	return drain(ctx, cl, topic, ends, fn)
}

// readAt returns the record at offset end-1 of each partition (or the first one after it, when
// compaction or retention removed it); partitions with no such record are left out.
func readAt(ctx context.Context, kcfg Config, topic string, ends map[int32]int64, opts []kgo.Opt) (map[int32]*kgo.Record, error) {
	cl, err := NewClient(kcfg, opts...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	at := map[int32]kgo.Offset{}
	for p, end := range ends {
		at[p] = kgo.NewOffset().At(end - 1)
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: at})
	out := map[int32]*kgo.Record{}
	for len(out) < len(ends) {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("reading %s: %w", topic, err)
		}
		var ferr error
		fetches.EachError(func(_ string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("reading %s partition %d: %w", topic, p, err)
			}
		})
		if ferr != nil {
			return nil, ferr
		}
		fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
			if _, done := out[ftp.Partition]; !done && len(ftp.Records) > 0 {
				out[ftp.Partition] = ftp.Records[0]
			}
		})
	}
	return out, nil
}

// drain passes the records of each partition up to, not including, its end offset to fn.
func drain(ctx context.Context, cl *kgo.Client, topic string, ends map[int32]int64, fn func(*kgo.Record)) error {
	for len(ends) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading %s: %w", topic, err)
		}
		var ferr error
		fetches.EachError(func(_ string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("reading %s partition %d: %w", topic, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
			end, ok := ends[ftp.Partition]
			if !ok {
				return
			}
			for _, r := range ftp.Records {
				if r.Offset >= end {
					break
				}
				if !r.Attrs.IsControl() {
					fn(r)
				}
			}
			if n := len(ftp.Records); n > 0 && ftp.Records[n-1].Offset >= end-1 {
				delete(ends, ftp.Partition)
			}
		})
	}
	return nil
}
