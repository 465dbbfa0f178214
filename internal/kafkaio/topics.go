package kafkaio

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
)

// TopicSpec is the desired shape of one topic.
type TopicSpec struct {
	Name        string
	Partitions  int32
	Replication int16
	Configs     map[string]string
	// CleanupFrom lists the cleanup.policy values an existing topic may have that EnsureTopics
	// changes to this spec's, because the change loses nothing a reader needs. Any other
	// difference is refused: silently changing compaction could delete audit records.
	CleanupFrom []string
}

// Topics returns mcpwatch's topics. Event topics are partitioned by tenant/principal and kept for
// retentionHours; the control and score topics are compacted so that a new gateway or detector
// rebuilds current state by reading them from the start.
func Topics(names event.Topics, partitions int32, replication int16, retentionHours int) []TopicSpec {
	retention := fmt.Sprint(int64(retentionHours) * 3_600_000)
	del := func(name string) TopicSpec {
		return TopicSpec{Name: name, Partitions: partitions, Replication: replication, Configs: map[string]string{
			"cleanup.policy": "delete",
			"retention.ms":   retention,
		}}
	}
	minISR := "1"
	if replication > 1 {
		minISR = "2"
	}
	specs := []TopicSpec{
		del(names.Raw),
		del(names.Events),
		del(names.OCSF),
		del(names.Findings),
		del(names.Actions),
		{Name: names.Scores, Partitions: partitions, Replication: replication, Configs: map[string]string{
			"cleanup.policy": "compact",
		}},
		// Profiles are partitioned like the events they summarise, so the detector that owns an
		// events partition restores its principals from the same partition here.
		{Name: names.Profiles, Partitions: partitions, Replication: replication, Configs: map[string]string{
			"cleanup.policy": "compact",
		}},
		// One partition: every gateway reads all of it, and one partition keeps control records
		// in the order the responder wrote them.
		{Name: names.Control, Partitions: 1, Replication: replication, Configs: map[string]string{
			"cleanup.policy":        "compact",
			"min.compaction.lag.ms": "0",
			"delete.retention.ms":   "86400000", // tombstones stay a day so followers see lifts
			"segment.ms":            "3600000",
		}},
		// One partition, so every reader folds approval entries in one order: the first claim of
		// an approved call in the log wins at every gateway. Each entry has its own key (request
		// id + entry), so compaction alone would keep every entry forever; time-based deletion
		// bounds the topic. That is safe: a request can be used at most one timeout after its
		// deadline (timeouts are at most 24h, approval.MaxTimeout), so 48h after it was made,
		// and readers forget it an hour later; 4 days is twice that. Deletion takes whole old
		// segments, so a request goes no later than its votes and claims (votes without their
		// request never count). Topics made as compact only are changed to this (CleanupFrom).
		{Name: names.Approvals, Partitions: 1, Replication: replication, Configs: map[string]string{
			"cleanup.policy":      "compact,delete",
			"retention.ms":        approvalsRetentionMS,
			"segment.ms":          "86400000", // segments roll daily, so deletion is not held up by an open one
			"delete.retention.ms": "86400000",
		}, CleanupFrom: []string{"compact"}},
		// The audit trail is one hash chain: one partition keeps its order, and it is never
		// deleted by time (retention.ms -1); ClickHouse keeps a copy for queries.
		{Name: names.Audit, Partitions: 1, Replication: replication, Configs: map[string]string{
			"cleanup.policy": "delete",
			"retention.ms":   "-1",
		}},
		// Dead letters are evidence: kept four times as long as events.
		{Name: names.DeadLetter, Partitions: partitions, Replication: replication, Configs: map[string]string{
			"cleanup.policy": "delete",
			"retention.ms":   fmt.Sprint(int64(retentionHours) * 4 * 3_600_000),
		}},
	}
	for i := range specs {
		specs[i].Configs["min.insync.replicas"] = minISR
	}
	return specs
}

// approvalsRetentionMS is the approvals topic's retention: 4 days (see [Topics]).
const approvalsRetentionMS = "345600000"

// EnsureTopics creates missing topics and brings the configs of existing ones to the spec. It is
// idempotent. It never lowers partition counts (Kafka cannot) and refuses a topic whose cleanup
// policy differs, since silently changing compaction would lose data — unless the spec lists the
// topic's policy in [TopicSpec.CleanupFrom] as safe to change.
func EnsureTopics(ctx context.Context, cl *kgo.Client, specs []TopicSpec) error {
	adm := kadm.NewClient(cl)
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	existing, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	var created []string
	for _, s := range specs {
		td, ok := existing[s.Name]
		if ok && errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
			ok = false
		}
		if !ok {
			cfg := make(map[string]*string, len(s.Configs))
			for k, v := range s.Configs {
				cfg[k] = kadm.StringPtr(v)
			}
			resp, err := adm.CreateTopic(ctx, s.Partitions, s.Replication, cfg, s.Name)
			if err == nil {
				err = resp.Err
			}
			switch {
			case err == nil:
				created = append(created, s.Name)
				continue
			case errors.Is(err, kerr.TopicAlreadyExists):
				// Created since we listed (another stage bootstrapping, or metadata that had not
				// caught up): check it like any existing topic.
				if err := reconcile(ctx, adm, s, s.Partitions); err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
					return err
				}
				continue
			default:
				return fmt.Errorf("create topic %s: %w (%s)", s.Name, err, resp.ErrMessage)
			}
		}
		if td.Err != nil {
			return fmt.Errorf("describe topic %s: %w", s.Name, td.Err)
		}
		if err := reconcile(ctx, adm, s, int32(len(td.Partitions))); err != nil {
			return err
		}
	}
	return waitVisible(ctx, adm, created)
}

// waitVisible returns once every topic in names has leaders for all its partitions. A broker
// acknowledges CreateTopics before its metadata shows the topic, and stages that start right
// after bootstrap should not begin with unknown-topic errors.
func waitVisible(ctx context.Context, adm *kadm.Client, names []string) error {
	for len(names) > 0 {
		details, err := adm.ListTopics(ctx, names...)
		if err == nil {
			var missing []string
			for _, n := range names {
				td, ok := details[n]
				if !ok || td.Err != nil || len(td.Partitions) == 0 {
					missing = append(missing, n)
					continue
				}
				for _, p := range td.Partitions {
					if p.Err != nil || p.Leader < 0 {
						missing = append(missing, n)
						break
					}
				}
			}
			names = missing
		}
		if len(names) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topics created but not visible in metadata: %v: %w", names, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// samePolicy compares cleanup.policy values as sets: Kafka reads "compact,delete" and
// "delete, compact" alike.
func samePolicy(a, b string) bool {
	norm := func(s string) []string {
		var out []string
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(norm(a), norm(b))
}

func reconcile(ctx context.Context, adm *kadm.Client, s TopicSpec, have int32) error {
	rcs, err := adm.DescribeTopicConfigs(ctx, s.Name)
	if err != nil {
		return fmt.Errorf("describe configs %s: %w", s.Name, err)
	}
	rc, err := rcs.On(s.Name, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return fmt.Errorf("describe configs %s: %w", s.Name, err)
	}
	current := map[string]string{}
	for _, c := range rc.Configs {
		current[c.Key] = c.MaybeValue()
	}
	if want, have := s.Configs["cleanup.policy"], current["cleanup.policy"]; want != "" && !samePolicy(have, want) {
		if !slices.ContainsFunc(s.CleanupFrom, func(from string) bool { return samePolicy(have, from) }) {
			return fmt.Errorf("topic %s has cleanup.policy=%s, mcpwatch needs %s: fix the topic by hand, it will not be changed automatically",
				s.Name, have, want)
		}
	}
	var alter []kadm.AlterConfig
	for k, v := range s.Configs {
		if k == "cleanup.policy" && samePolicy(current[k], v) {
			continue
		}
		if current[k] != v {
			alter = append(alter, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: kadm.StringPtr(v)})
		}
	}
	if len(alter) > 0 {
		resps, err := adm.AlterTopicConfigs(ctx, alter, s.Name)
		if err == nil {
			var r kadm.AlterConfigsResponse
			if r, err = resps.On(s.Name, nil); err == nil {
				err = r.Err
			}
		}
		if err != nil {
			return fmt.Errorf("alter configs %s: %w", s.Name, err)
		}
	}
	if have < s.Partitions {
		resps, err := adm.UpdatePartitions(ctx, int(s.Partitions), s.Name)
		if err == nil {
			var r kadm.CreatePartitionsResponse
			if r, err = resps.On(s.Name, nil); err == nil {
				err = r.Err
			}
		}
		if err != nil {
			return fmt.Errorf("grow %s from %d to %d partitions: %w", s.Name, have, s.Partitions, err)
		}
	}
	return nil
}
