package detectors

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/detectors/detect"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// checkpoint appends the profiles the stateful detectors have due, keyed like the events they
// summarise so each lands in the partition of its principal's events. They are produced with the
// batch's other outputs before its offsets commit, so a restart resumes from state at least as
// new as the committed position (events after it may be counted twice; none is missed).
func (h *handler) checkpoint(res *kafkaio.Result) {
	for _, d := range h.dets {
		st, ok := d.Detector.(detect.Stateful)
		if !ok {
			continue
		}
		h.profiles = st.Checkpoint(h.mark, h.profiles[:0])
		for _, p := range h.profiles {
			out, err := kafkaio.RecordOf(h.topics.Profiles, p.Key(), p)
			if err != nil {
				d.log.Error("profile not encodable", "principal", p.Key(), "err", err)
				d.m.errors.Inc()
				continue
			}
			res.Out = append(res.Out, out)
			d.m.profiles.WithLabelValues("checkpointed").Inc()
		}
		clear(h.profiles)
	}
}

// restore hands a profile record to the stateful detector that wrote it.
func (h *handler) restore(r *kgo.Record) {
	if len(r.Value) == 0 {
		// A tombstone deletes the profile: forget what an earlier record of the same read
		// restored.
		tenant, subject, err := event.ParseScoreKey(string(r.Key))
		if err != nil {
			return
		}
		for _, d := range h.dets {
			if st, ok := d.Detector.(detect.Stateful); ok {
				st.Forget(func(t, s string) bool { return t != tenant || s != subject })
			}
		}
		return
	}
	var p event.Profile
	err := event.Decode(r.Value, &p)
	for _, d := range h.dets {
		st, ok := d.Detector.(detect.Stateful)
		if !ok || (err == nil && p.Detector != d.name) {
			continue
		}
		if err == nil {
			err = st.Restore(&p)
		}
		if err != nil {
			d.m.profiles.WithLabelValues("refused").Inc()
			d.log.Warn("profile not restored", "partition", r.Partition, "offset", r.Offset, "err", err)
			return
		}
		d.m.profiles.WithLabelValues("restored").Inc()
		h.restored++
		return
	}
}

// stateful reports whether some detector keeps state on the profiles topic.
func (h *handler) stateful() bool {
	for _, d := range h.dets {
		if _, ok := d.Detector.(detect.Stateful); ok {
			return true
		}
	}
	return false
}

// Hooks returns the stage hooks that make a detect handler's profiles follow its partitions:
// when the group assigns it partitions of the events topic it reads the same partitions of the
// profiles topic and resumes their principals; when they are revoked it forgets those
// principals. They are nil when no detector is stateful, or h is not a detect handler. kcfg is
// the Kafka client config to read with; opts are appended to its options.
func Hooks(h kafkaio.Handler, topics event.Topics, kcfg kafkaio.Config, opts ...kgo.Opt) (assigned, revoked func(context.Context, map[string][]int32)) {
	dh, ok := h.(*handler)
	if !ok || !dh.stateful() {
		return nil, nil
	}
	assigned = func(ctx context.Context, m map[string][]int32) {
		parts := m[topics.Events]
		if len(parts) == 0 {
			return
		}
		start := time.Now()
		// Held for the whole read: no batch may be judged before its principals are resumed.
		dh.mu.Lock()
		defer dh.mu.Unlock()
		before := dh.restored
		if err := kafkaio.ReadPartitions(ctx, kcfg, topics.Profiles, parts, dh.restore, opts...); err != nil {
			// Judging with empty profiles is better than not judging: the gap is logged.
			dh.log.Error("profiles not restored; these partitions start from empty profiles", "partitions", parts, "err", err)
			return
		}
		dh.log.Info("profiles restored", "partitions", parts, "profiles", dh.restored-before, "took", time.Since(start).Round(time.Millisecond))
	}
	revoked = func(ctx context.Context, m map[string][]int32) {
		parts := m[topics.Events]
		if len(parts) == 0 {
			return
		}
		n, err := partitionCount(ctx, kcfg, topics.Events, opts...)
		dh.mu.Lock()
		defer dh.mu.Unlock()
		if err != nil {
			// Without the count no principal can be placed: forget them all, and let the next
			// assignment restore what stays here.
			dh.log.Warn("partition count unknown; forgetting every principal", "err", err)
		}
		gone := map[int32]bool{}
		for _, p := range parts {
			gone[p] = true
		}
		part := kgo.StickyKeyPartitioner(nil).ForTopic(topics.Events)
		keep := func(tenant, subject string) bool {
			if err != nil {
				return false
			}
			r := &kgo.Record{Key: []byte(event.ScoreKey(tenant, subject))}
			return !gone[int32(part.Partition(r, n))]
		}
		for _, d := range dh.dets {
			if st, ok := d.Detector.(detect.Stateful); ok {
				n := st.Stats().Principals
				st.Forget(keep)
				d.m.profiles.WithLabelValues("forgotten").Add(float64(max(n-st.Stats().Principals, 0)))
			}
		}
	}
	return assigned, revoked
}

// partitionCount is the number of partitions of topic.
func partitionCount(ctx context.Context, kcfg kafkaio.Config, topic string, opts ...kgo.Opt) (int, error) {
	cl, err := kafkaio.NewClient(kcfg, opts...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	td, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		return 0, err
	}
	t, ok := td[topic]
	if !ok || t.Err != nil || len(t.Partitions) == 0 {
		return 0, fmt.Errorf("topic %s: no partitions (%v)", topic, t.Err)
	}
	return len(t.Partitions), nil
}
