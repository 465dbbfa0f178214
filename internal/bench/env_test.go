package bench

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
	"github.com/mcpwatch/mcpwatch/storage"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// A short gateway benchmark against the real Kafka: both upstream kinds, no failed call, the
// audit publisher healthy with nothing left in the spool, and the report in the shape
// BENCHMARKS.md quotes. If this failed, `mcpwatch bench gateway` would be broken or measure
// errors instead of latency.
func TestRunGateway(t *testing.T) {
	brokers := testenv.Kafka(t)
	var out bytes.Buffer
	err := RunGateway(context.Background(), GatewayOptions{
		Rates: []int{40}, Duration: 500 * time.Millisecond, Warmup: 100 * time.Millisecond, Conns: 2,
		Modes: []string{"json", "sdk-sse"}, MaxErrorRate: 0,
		Kafka:       kafkaio.Config{Brokers: brokers, Logger: quiet()},
		TopicPrefix: "test-" + testenv.Unique(t), Partitions: 1, Replication: 1,
		Log: quiet(), Out: &out,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	s := out.String()
	for _, re := range []string{
		`(?m)^upstream: per mode .*gateway: static token, 50-rule policy, masking, durable audit to Kafka ` + regexp.QuoteMeta(strings.Join(brokers, ",")) + ` topic test-\S+\.raw\.v1$`,
		`(?m)^load: open loop, each target at the given rate, interleaved per request; 2 connections per target; warm-up 100ms, measured 500ms$`,
		`(?m)^\s+rate/s\s+mode\s+target\s+achieved/s\s+calls\s+errors\s+p50 ms.*added p99$`,
		`(?m)^\s+40\s+json\s+direct\s+40\s+20\s+0\s`,
		`(?m)^\s+40\s+json\s+gateway\s+40\s+20\s+0\s+[\d.]+(\s+[\d.]+){4}\s+-?[\d.]+\s+-?[\d.]+$`,
		`(?m)^\s+40\s+sdk-sse\s+gateway\s+40\s+20\s+0\s`,
		`(?m)^audit publisher healthy: true; spool records: 0$`,
	} {
		if !regexp.MustCompile(re).MatchString(s) {
			t.Errorf("report lacks %s:\n%s", re, s)
		}
	}
}

// An unknown mode is refused after the audit path started, and what started is torn down (the
// goleak check of TestMain sees to the goroutines).
func TestRunGatewayUnknownMode(t *testing.T) {
	brokers := testenv.Kafka(t)
	err := RunGateway(context.Background(), GatewayOptions{
		Rates: []int{10}, Duration: time.Second, Conns: 1, Modes: []string{"json", "grpc"},
		Kafka:       kafkaio.Config{Brokers: brokers, Logger: quiet()},
		TopicPrefix: "test-" + testenv.Unique(t), Partitions: 1, Replication: 1,
	})
	if err == nil || !strings.Contains(err.Error(), `mode "grpc"`) {
		t.Fatalf("unknown mode: %v", err)
	}
}

// The lag measurement end to end against the real Kafka and ClickHouse: normalizer and sink
// built through the pipeline, every produced event found, every sample timed, in a database and
// topics of the benchmark's own. (The throughput passes need far more events than a test should
// produce before the rows stop arriving in one poll.) An unknown pass is refused.
func TestRunPipelineLag(t *testing.T) {
	brokers := testenv.Kafka(t)
	ch := testenv.ClickHouse(t)
	opts := func(out *bytes.Buffer) PipelineOptions {
		return PipelineOptions{
			Events: 1000, Rounds: 1, LagRate: 100, LagDuration: time.Second, LagSample: 10, Poll: 20 * time.Millisecond,
			Kafka:       kafkaio.Config{Brokers: brokers, Logger: quiet()},
			TopicPrefix: "test-" + testenv.Unique(t), Partitions: 1, Replication: 1,
			ClickHouse: storage.Options{Addr: ch.Addr, User: ch.AdminUser, Password: ch.AdminPassword},
			Log:        quiet(), Out: out,
		}
	}
	var out bytes.Buffer
	o := opts(&out)
	if err := RunPipeline(context.Background(), o); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{
		"Kafka → ClickHouse throughput, 1000 events per pass, rows/s from first to last row visible:\n",
		"End-to-end lag (raw event produced → row visible to a SELECT), normalizer + sink:\n",
		"over 1s; 100 produced, 0 missing; 10 sampled, 10 timed\n",
		"(poll interval 20ms)\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}

	o = opts(&out)
	o.Passes, o.LagRate = []string{"bogus"}, 0
	if err := RunPipeline(context.Background(), o); err == nil || !strings.Contains(err.Error(), `pass "bogus": want copy, sink or pipeline`) {
		t.Fatalf("unknown pass: %v", err)
	}
}

// Settings the pipeline benchmark cannot run with are refused before it connects anywhere.
func TestPipelineOptionsValidate(t *testing.T) {
	for name, o := range map[string]PipelineOptions{
		"few events": {Events: 999, Rounds: 1, LagSample: 1},
		"no rounds":  {Events: 1000, LagSample: 1},
		"no sample":  {Events: 1000, Rounds: 1},
	} {
		if err := RunPipeline(context.Background(), o); err == nil || err.Error() != "bench pipeline: want --events >= 1000, --rounds >= 1, --lag-sample >= 1" {
			t.Errorf("%s: %v", name, err)
		}
	}
}
