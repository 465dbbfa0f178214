package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

// A short `bench response` run on the real Kafka: every finding's revocation reaches both
// replicas' stores, each latency is positive and below the timeout, "every replica" is the later
// of the two, and the report prints the table. If it failed, the figures in BENCHMARKS.md could
// not be reproduced, or would measure something other than enforcement at every replica.
func TestRunResponse(t *testing.T) {
	brokers := testenv.Kafka(t)
	var out bytes.Buffer
	res, err := RunResponse(context.Background(), ResponseOptions{Kafka: kafkaio.Config{Brokers: brokers}, Findings: 5,
		Interval: 10 * time.Millisecond, Timeout: 20 * time.Second, Out: &out, Log: quiet(), MetadataMinAge: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Lost != 0 || len(res.Everywhere) != 5 || len(res.PerReplica) != 2 || len(res.PerReplica[0]) != 5 || len(res.PerReplica[1]) != 5 {
		t.Fatalf("result %+v", res)
	}
	for i, d := range res.Everywhere {
		if d <= 0 || d > 20*time.Second || d < res.PerReplica[0][i] || d < res.PerReplica[1][i] {
			t.Fatalf("finding %d: everywhere %v, replicas %v %v", i, d, res.PerReplica[0][i], res.PerReplica[1][i])
		}
	}
	if !strings.Contains(out.String(), "every replica") || !strings.Contains(out.String(), "p99_ms") {
		t.Fatalf("report:\n%s", out.String())
	}
}
