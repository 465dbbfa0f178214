package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/ingest/sandbox"
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
	// Over HTTP: each replica's gateway refuses the subject's call after the finding (it served
	// it before, which RunResponse checks), and never before its store held the revocation.
	if res.HTTPLost != 0 || len(res.HTTPEverywhere) != 5 || len(res.HTTPPerReplica[0]) != 5 || len(res.HTTPPerReplica[1]) != 5 {
		t.Fatalf("HTTP result: lost %d, %d everywhere, per replica %v", res.HTTPLost, len(res.HTTPEverywhere), res.HTTPPerReplica)
	}
	for i, d := range res.HTTPEverywhere {
		if d < res.HTTPPerReplica[0][i] || d < res.HTTPPerReplica[1][i] || res.HTTPPerReplica[0][i]+time.Millisecond < res.PerReplica[0][i] {
			t.Fatalf("finding %d: HTTP everywhere %v, replicas %v, store of replica 1 %v", i, d, res.HTTPPerReplica, res.PerReplica[0][i])
		}
	}
	if !strings.Contains(out.String(), "every replica's HTTP") || !strings.Contains(out.String(), "p99_ms") {
		t.Fatalf("report:\n%s", out.String())
	}
}

// A short `bench response --quarantine` run on the real Kafka and real cgroups: every finding
// freezes the sandbox through the respond stage's playbook, the control topic and the gateway
// router, confirmed by cgroup.events; the spans add up (the respond part and the gateway part
// are each positive and at most the whole); the report prints the table. If it failed, the
// finding → frozen figures in BENCHMARKS.md could not be reproduced, or a playbook quarantine
// would not reach a sandboxed session.
func TestRunQuarantine(t *testing.T) {
	brokers := testenv.Kafka(t)
	if _, err := sandbox.FindCgroup2(); err != nil || os.Geteuid() != 0 {
		testenv.Missing(t, "cgroup v2 sandboxes", fmt.Sprintf("need a cgroup2 mount and root: %v", err))
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := RunQuarantine(context.Background(), QuarantineOptions{Kafka: kafkaio.Config{Brokers: brokers}, Findings: 5,
		Interval: 10 * time.Millisecond, Timeout: 20 * time.Second, Out: &out, Log: quiet(), MetadataMinAge: 100 * time.Millisecond,
		Server: []string{exe, "-test.run=^$"}, ServerEnv: []string{stdioServerEnv + "=1"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Lost != 0 || len(res.Frozen) != 5 || len(res.Control) != 5 || len(res.Gateway) != 5 {
		t.Fatalf("result %+v", res)
	}
	for i, d := range res.Frozen {
		if d <= 0 || d > 20*time.Second || res.Control[i] <= 0 || res.Gateway[i] <= 0 || res.Control[i] > d || res.Gateway[i] > d {
			t.Fatalf("finding %d: frozen after %v, control %v, gateway %v", i, d, res.Control[i], res.Gateway[i])
		}
	}
	if !strings.Contains(out.String(), "finding → frozen confirmed") || !strings.Contains(out.String(), "p99_ms") {
		t.Fatalf("report:\n%s", out.String())
	}
}
