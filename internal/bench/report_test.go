package bench

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite internal/bench/testdata/*.golden from the current output")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s:\n--- got\n%s\n--- want\n%s", name, path, got, want)
	}
}

// The report's "added" columns must be gateway − direct of the same rate and mode, never across
// rates or modes, and empty for direct rows.
func TestAdded(t *testing.T) {
	rows := []gatewayRow{
		{rate: 500, mode: "json", target: "direct", sum: latencySummary{p50: 1 * time.Millisecond, p99: 2 * time.Millisecond}},
		{rate: 500, mode: "sse", target: "direct", sum: latencySummary{p50: 7 * time.Millisecond}},
		{rate: 500, mode: "json", target: "gateway", sum: latencySummary{p50: 1500 * time.Microsecond, p99: 2750 * time.Microsecond}},
		{rate: 2000, mode: "json", target: "direct", sum: latencySummary{p50: 9 * time.Millisecond, p99: 9 * time.Millisecond}},
		{rate: 2000, mode: "sse", target: "gateway"},
	}
	if _, ok := added(rows, rows[0]); ok {
		t.Fatal("a direct row has no added latency")
	}
	if d, ok := added(rows, rows[2]); !ok || d.rate != 500 || d.mode != "json" || d.target != "direct" {
		t.Fatalf("gateway row paired with %+v", d)
	}
	if d, ok := added(rows, rows[4]); ok {
		t.Fatalf("gateway row without its direct row paired with %+v", d)
	}
}

// The gateway table is what BENCHMARKS.md quotes: right-aligned columns, milliseconds to three
// decimals, added p50/p99 on gateway rows only (negative when the gateway row was faster).
func TestGatewayTableGolden(t *testing.T) {
	rows := []gatewayRow{
		{rate: 500, mode: "json", target: "direct", sum: latencySummary{n: 5000, achieved: 500, p50: 416 * time.Microsecond,
			p90: 900 * time.Microsecond, p99: 12200 * time.Microsecond, p999: 24200 * time.Microsecond, maxLat: 31 * time.Millisecond}},
		{rate: 500, mode: "json", target: "gateway", sum: latencySummary{n: 4998, errors: 2, achieved: 499.8, p50: 1209 * time.Microsecond,
			p90: 2 * time.Millisecond, p99: 16100 * time.Microsecond, p999: 42100 * time.Microsecond, maxLat: 55 * time.Millisecond}},
		{rate: 2000, mode: "sdk-sse", target: "direct", sum: latencySummary{n: 20000, achieved: 2000, p50: 3 * time.Millisecond,
			p90: 9 * time.Millisecond, p99: 126 * time.Millisecond, p999: 247 * time.Millisecond, maxLat: 301 * time.Millisecond}},
		{rate: 2000, mode: "sdk-sse", target: "gateway", sum: latencySummary{n: 19990, errors: 10, achieved: 1999, p50: 2500 * time.Microsecond,
			p90: 20 * time.Millisecond, p99: 213 * time.Millisecond, p999: 302 * time.Millisecond, maxLat: 1234567 * time.Microsecond}},
		{rate: 10, mode: "json", target: "gateway", sum: latencySummary{errors: 100}},
	}
	var out bytes.Buffer
	writeGatewayTable(&out, rows)
	golden(t, "gateway_table", out.Bytes())
}

// The pipeline report: one throughput line per round with the passes relative to the raw copy,
// then the lag figures rounded to milliseconds. A round missing a pass prints 0 for it, and
// ratios against a missing copy pass come out as +Inf% or NaN%, as they always have.
func TestPipelineReportGolden(t *testing.T) {
	o := &PipelineOptions{Events: 200_000, Rounds: 2, LagDuration: 30 * time.Second, Poll: 20 * time.Millisecond}
	results := []passResult{
		{name: "copy", round: 1, rows: 199_000, elapsed: time.Second},
		{name: "sink", round: 1, rows: 180_000, elapsed: 9 * time.Second},
		{name: "pipeline", round: 1, rows: 190_000, elapsed: 6 * time.Second},
		{name: "sink", round: 2, rows: 170_000, elapsed: 8 * time.Second},
	}
	lag := &lagResult{rate: 10_000, produced: 300_000, sampled: 6000, seen: 5998, missing: 0, achieved: 9999.6,
		p50: 602400 * time.Microsecond, p90: 1002 * time.Millisecond, p99: 1101600 * time.Microsecond, max: 2500 * time.Millisecond}
	var out bytes.Buffer
	writePipelineReport(&out, o, results, lag)
	golden(t, "pipeline_report", out.Bytes())

	out.Reset()
	o.Rounds = 1
	writePipelineReport(&out, o, results[:3], nil)
	golden(t, "pipeline_report_nolag", out.Bytes())
}
