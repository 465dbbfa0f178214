package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/internal/bench"
	"github.com/mcpwatch/mcpwatch/internal/demo"
)

// benchCmd holds the performance benchmarks that need real servers: they print figures and never
// fail on timing, only on errors (performance targets do not belong in timed unit tests). The
// harness is internal/bench; these commands map flags onto its options.
func benchCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Performance benchmarks against real servers (print figures)"}
	cmd.AddCommand(benchGatewayCmd(g), benchPipelineCmd(g), benchDetectCmd(g), benchResponseCmd(g), benchStdioServerCmd())
	return cmd
}

func benchGatewayCmd(g *globals) *cobra.Command {
	var o bench.GatewayOptions
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Latency the gateway adds to tools/call over a direct connection, with auth, policy, masking and audit on",
		Long: `Starts a stateless MCP upstream on loopback per --modes (a minimal endpoint answering like the
demo's db_query, or the demo server on the official Go SDK) and a gateway in front of each with static-token auth, a 50-rule policy, masking, and the durable audit
publisher producing to the real Kafka (--kafka) under a fresh topic prefix, spooling to a
temporary directory. It then sends the same tools/call bytes open-loop at each rate to both the
upstream (direct) and the gateway, interleaved request by request, each target receiving the
full rate. Latency is measured from each request's scheduled send time (no coordinated
omission) to the end of its response body. Exits non-zero if more than --max-error-rate of the
calls of any target fail.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Kafka, o.Partitions, o.Replication = g.kafkaConfig(""), g.partitions, g.replication
			o.Log, o.Out = g.log, cmd.OutOrStdout()
			return bench.RunGateway(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.IntSliceVar(&o.Rates, "rates", []int{500, 2000}, "calls per second sent to each target")
	f.DurationVar(&o.Duration, "duration", 10*time.Second, "measured time per rate and mode")
	f.DurationVar(&o.Warmup, "warmup", 2*time.Second, "unmeasured load before each measurement")
	f.IntVar(&o.Conns, "conns", 256, "concurrent HTTP connections per target")
	f.StringSliceVar(&o.Modes, "modes", []string{"json"}, "upstreams: json or sse (a minimal endpoint answering application/json or text/event-stream), sdk-json or sdk-sse (the demo server on the official Go SDK, stateless)")
	f.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the whole process (gateway, upstream and load generator) to this file")
	f.Float64Var(&o.MaxErrorRate, "max-error-rate", 0.01, "fail when a target's error rate exceeds this fraction")
	f.DurationVar(&o.Slice, "slice", 0, "instead of sending to both targets at once, alternate them in slices of this length (each still gets --duration at the full rate): halves the machine's load, for rates where two targets at once saturate it")
	return cmd
}

func benchPipelineCmd(g *globals) *cobra.Command {
	var o bench.PipelineOptions
	cmd := &cobra.Command{
		Use:   "pipeline",
		Short: "Kafka → ClickHouse throughput (raw copy vs sink vs normalize+sink) and end-to-end lag",
		Long: `Measures, side by side in one run, against the real Kafka and ClickHouse:

  copy      the raw copy rate: a bare franz-go consumer inserting each raw record's bytes into a
            one-column MergeTree table with columnar batches, no decoding (the machine's limit);
  sink      the storage stage alone: normalized events from a Kafka topic into the events table;
  pipeline  the normalizer and the sink: raw events → normalized topic → events table;

each over --events pre-produced gateway-shaped tools/call events, repeated --rounds times in
the order copy, sink, pipeline so that drift on a shared machine shows. Throughput is counted
from the first row visible in ClickHouse to the last (polling count()), the same way for all
three, so consumer-group joins do not count against the stages.

Then lag: the normalizer and the sink run while events are produced open-loop at --lag-rate
for --lag-duration; every --lag-sample-th event is timed from its production to the moment a
SELECT as the benchmark sees it in the events table. Finally every produced event must be in
ClickHouse, or the run fails.

Everything runs in a fresh database (created and dropped with the admin user) and fresh topics.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Kafka, o.Partitions, o.Replication = g.kafkaConfig(""), g.partitions, g.replication
			o.ClickHouse, o.Log, o.Out = g.clickhouseAdmin(), g.log, cmd.OutOrStdout()
			return bench.RunPipeline(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Events, "events", 200_000, "events per throughput pass")
	f.IntVar(&o.Rounds, "rounds", 2, "throughput rounds (each runs copy, sink, pipeline)")
	f.IntVar(&o.LagRate, "lag-rate", 10_000, "events per second for the lag measurement (0 skips it)")
	f.DurationVar(&o.LagDuration, "lag-duration", 30*time.Second, "how long to produce at --lag-rate")
	f.IntVar(&o.LagSample, "lag-sample", 50, "time every n-th event of the lag run")
	f.DurationVar(&o.Poll, "poll", 20*time.Millisecond, "how often the benchmark queries ClickHouse for arrivals")
	f.BoolVar(&o.Keep, "keep", false, "keep the benchmark database and topics")
	f.StringSliceVar(&o.Passes, "passes", []string{"copy", "sink", "pipeline"}, "throughput passes to run, in this order")
	f.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the benchmark process (stages, producer, copy consumer) to this file")
	return cmd
}

func benchDetectCmd(g *globals) *cobra.Command {
	var o bench.DetectOptions
	var profile string
	cmd := &cobra.Command{
		Use:   "detect",
		Short: "Detect stage throughput per core, per-event latency and memory per principal (no servers)",
		Long: `Feeds the detect stage (the default config's detectors, or --detectors, and the scorer) realistic
normalized events for --principals principals in memory: a warm-up, then --events events in
batches of --batch records with GOMAXPROCS=1 (events/s per core, JSON decode included, event
generation not timed), then --latency-events single-record batches, each timed (p50/p99/p99.9).
The records cost what a Kafka fetch costs (--harness fetch): on one core the garbage a harness
leaves is collected on the stage's time.
Prints the live heap per principal after a forced GC and the findings, scores and profiles
produced.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Log, o.Out = g.log, cmd.OutOrStdout()
			if profile != "" {
				f, err := os.Create(profile)
				if err != nil {
					return err
				}
				defer f.Close()
				o.CPUProfile = f
			}
			_, err := bench.RunDetect(cmd.Context(), o)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&profile, "cpuprofile", "", "write a CPU profile of the measured batches to this file")
	f.IntVar(&o.Principals, "principals", 100_000, "distinct principals")
	f.IntVar(&o.Events, "events", 1_000_000, "measured events")
	f.IntVar(&o.Warmup, "warmup", 0, "events before measuring (0: 10 per principal)")
	f.IntVar(&o.Batch, "batch", 500, "records per Handle call")
	f.IntVar(&o.Rate, "rate", 100_000, "events per second of event time in the generated traffic")
	f.IntVar(&o.LatencyEvents, "latency-events", 20_000, "single-record batches timed for latency")
	f.StringSliceVar(&o.Detectors, "detectors", nil, "detectors the stage runs, in order (default: the default config's)")
	f.StringVar(&o.Harness, "harness", bench.HarnessFetch, "how the records are made, untimed: fetch (each batch encoded into one buffer, as a Kafka fetch hands it over) or alloc (a fresh event, key and value per record: the first harness)")
	return cmd
}

func benchResponseCmd(g *globals) *cobra.Command {
	var o bench.ResponseOptions
	var q bench.QuarantineOptions
	var mode string
	cmd := &cobra.Command{
		Use:   "response",
		Short: "Finding → revocation enforced at every gateway replica, or → sandbox frozen (p50/p99), on the real Kafka",
		Long: `--mode revoke (default): runs the respond stage and --replicas control-topic followers (each
holding the control store a gateway replica checks on every call) under a fresh topic prefix on
the real Kafka (--kafka). Publishes --findings findings one at a time, --interval apart, each for
a new subject above the threshold, and measures from the finding's hand-over to Kafka until each
replica's store first refuses the subject. Prints p50/p90/p99/max per replica and for the last
replica of each finding.

--mode quarantine (root, cgroup v2): runs the respond stage with a playbook that quarantines the
finding's sandbox, and a gateway router with a sandboxed stdio MCP server (the demo server, this
binary) whose session it opens with the official Go SDK client. Each finding names the sandbox
(evidence feature "sandbox"); measured from its hand-over to Kafka until the gateway's quarantine
action record, written once cgroup.events says frozen 1 (checked again by the benchmark). The
quarantine is then lifted (a tombstone) and the thaw awaited before the next finding. Prints
finding → control decided (the respond stage), control → frozen (control topic, gateway,
kernel) and finding → frozen.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch mode {
			case "revoke":
				o.Kafka, o.Partitions, o.Replication = g.kafkaConfig(""), g.partitions, g.replication
				o.Log, o.Out = g.log, cmd.OutOrStdout()
				_, err := bench.RunResponse(cmd.Context(), o)
				return err
			case "quarantine":
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				q.Kafka, q.Partitions, q.Replication = g.kafkaConfig(""), g.partitions, g.replication
				q.Log, q.Out = g.log, cmd.OutOrStdout()
				q.Findings, q.Interval, q.Timeout = o.Findings, o.Interval, o.Timeout
				q.Server = []string{exe, "--log-level", "error", "bench", "stdio-server"}
				_, err = bench.RunQuarantine(cmd.Context(), q)
				return err
			}
			return fmt.Errorf("--mode %q: want revoke or quarantine", mode)
		},
	}
	f := cmd.Flags()
	f.StringVar(&mode, "mode", "revoke", "revoke (finding → revocation at every replica) or quarantine (finding → sandbox frozen; root and cgroup v2)")
	f.IntVar(&o.Findings, "findings", 200, "measured findings")
	f.DurationVar(&o.Interval, "interval", 50*time.Millisecond, "pause between findings (quarantine: after each thaw)")
	f.IntVar(&o.Replicas, "replicas", 2, "gateway replicas following the control topic (revoke)")
	f.DurationVar(&o.Timeout, "timeout", 10*time.Second, "per finding, before it counts as not enforced")
	return cmd
}

// benchStdioServerCmd is the demo MCP server on stdio: the server `bench response --mode
// quarantine` runs in a sandbox.
func benchStdioServerCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "stdio-server",
		Short:  "The demo MCP server on stdio (for bench response --mode quarantine)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE:   func(cmd *cobra.Command, _ []string) error { return demo.ServeStdio(cmd.Context()) },
	}
}
