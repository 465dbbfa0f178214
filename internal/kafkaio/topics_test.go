package kafkaio

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// Bootstrap runs at every start: it must be idempotent and must not quietly flip a topic's
// cleanup policy (compacting an event topic would delete audit records).
func testEnsureTopics(t *testing.T, b broker) {
	ctx := context.Background()
	cl := b.client(t)
	specs := Topics(b.names, 3, 1, 24)
	if err := EnsureTopics(ctx, cl, specs); err != nil {
		t.Fatalf("second bootstrap: %v", err)
	}
	adm := kadm.NewClient(cl)
	rcs, err := adm.DescribeTopicConfigs(ctx, b.names.Control)
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := rcs.On(b.names.Control, nil)
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" && c.MaybeValue() != "compact" {
			t.Fatalf("control topic cleanup.policy=%s", c.MaybeValue())
		}
	}
	details, err := adm.ListTopics(ctx, b.names.Raw, b.names.Control)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(details[b.names.Raw].Partitions); n != 3 {
		t.Fatalf("raw has %d partitions", n)
	}
	if n := len(details[b.names.Control].Partitions); n != 1 {
		t.Fatalf("control has %d partitions", n)
	}
	for i := range specs {
		if specs[i].Name == b.names.Raw {
			specs[i].Configs["cleanup.policy"] = "compact"
		}
	}
	err = EnsureTopics(ctx, cl, specs)
	if err == nil || !strings.Contains(err.Error(), "cleanup.policy") {
		t.Fatalf("policy mismatch not refused: %v", err)
	}
}

func TestEnsureTopicsFake(t *testing.T)  { testEnsureTopics(t, fakeBroker(t)) }
func TestEnsureTopicsKafka(t *testing.T) { testEnsureTopics(t, realBroker(t)) }

// topicConfig reads one config of topic.
func topicConfig(t *testing.T, adm *kadm.Client, topic, key string) string {
	t.Helper()
	rcs, err := adm.DescribeTopicConfigs(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rc.Configs {
		if c.Key == key {
			return c.MaybeValue()
		}
	}
	return ""
}

// waitConfig waits until topic's config key reads want (cleanup policies compared as sets):
// the broker applies altered configs asynchronously.
func waitConfig(t *testing.T, adm *kadm.Client, topic, key, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := topicConfig(t, adm, topic, key)
		if got == want || (key == "cleanup.policy" && samePolicy(got, want)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s: %s=%s, want %s", topic, key, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// An approvals topic made before it had a retention (compact only) is brought to compact,delete
// with its retention at the next bootstrap, while a policy mcpwatch never gave it (delete only)
// is still refused. If this failed, upgraded deployments would either keep every approval entry
// forever or stop at bootstrap with an error about a topic mcpwatch itself created.
func TestEnsureTopicsApprovalsRetention(t *testing.T) {
	b := realBroker(t)
	ctx := context.Background()
	cl := b.client(t)
	adm := kadm.NewClient(cl)
	topic := b.names.Approvals
	if got := topicConfig(t, adm, topic, "cleanup.policy"); !samePolicy(got, "compact,delete") {
		t.Fatalf("new approvals topic: cleanup.policy=%s", got)
	}
	if got := topicConfig(t, adm, topic, "retention.ms"); got != approvalsRetentionMS {
		t.Fatalf("new approvals topic: retention.ms=%s", got)
	}
	set := func(policy string) {
		t.Helper()
		resps, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
			{Op: kadm.SetConfig, Name: "cleanup.policy", Value: kadm.StringPtr(policy)},
			{Op: kadm.DeleteConfig, Name: "retention.ms"},
		}, topic)
		if err == nil {
			var r kadm.AlterConfigsResponse
			if r, err = resps.On(topic, nil); err == nil {
				err = r.Err
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		waitConfig(t, adm, topic, "cleanup.policy", policy) // the broker applies it a moment later
	}
	set("compact") // as earlier versions made it
	if err := EnsureTopics(ctx, cl, Topics(b.names, 3, 1, 24)); err != nil {
		t.Fatalf("upgrade of a compact-only approvals topic refused: %v", err)
	}
	waitConfig(t, adm, topic, "cleanup.policy", "compact,delete")
	waitConfig(t, adm, topic, "retention.ms", approvalsRetentionMS)
	set("delete")
	err := EnsureTopics(ctx, cl, Topics(b.names, 3, 1, 24))
	if err == nil || !strings.Contains(err.Error(), topic) || !strings.Contains(err.Error(), "cleanup.policy=delete") {
		t.Fatalf("an approvals topic with cleanup.policy=delete: %v, want a refusal", err)
	}
}

func TestSamePolicy(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"compact,delete", "delete,compact", true},
		{"compact, delete", "compact,delete", true},
		{"compact", "compact", true},
		{"compact", "compact,delete", false},
		{"delete", "compact", false},
		{"", "delete", false},
	} {
		if got := samePolicy(tc.a, tc.b); got != tc.same {
			t.Errorf("samePolicy(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}
