package kafkaio

import (
	"context"
	"strings"
	"testing"

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
