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

// ReadCommittedSince reads the given partitions of topic from the first record at or after since
// up to, not including, group's committed offset of each, passing each record (transaction
// markers aside) to fn in offset order per partition. Partitions the group has no offset for, or
// with nothing in that range, are skipped. It is how a stage rebuilds a memory of recent input
// that it does not checkpoint: the records before the committed offset were handled by the
// partition's previous owner, and the ones after it will be handled again by this one.
func ReadCommittedSince(ctx context.Context, kcfg Config, group, topic string, partitions []int32, since time.Time, fn func(*kgo.Record), opts ...kgo.Opt) error {
	if len(partitions) == 0 {
		return nil
	}
	cl, err := NewClient(kcfg, append([]kgo.Opt{kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords()}, opts...)...)
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
	starts, err := adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("offsets of %s after %s: %w", topic, since.Format(time.RFC3339), err)
	}
	ends := map[int32]int64{}
	start := map[int32]kgo.Offset{}
	for _, p := range partitions {
		c, ok := committed.Lookup(topic, p)
		if !ok || c.At <= 0 {
			continue
		}
		s, ok := starts.Lookup(topic, p)
		if !ok || s.Offset < 0 || s.Offset >= c.At { // -1: no record at or after since
			continue
		}
		ends[p] = c.At
		start[p] = kgo.NewOffset().At(s.Offset)
	}
	if len(ends) == 0 {
		return nil
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: start})
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
