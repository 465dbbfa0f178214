package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/policy"
)

// The bench's percentiles are nearest-rank: if this broke, the figures in BENCHMARKS.md would be
// off by a rank or, at the edges, index out of range.
func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		vals []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 99.9, 7 * time.Millisecond},
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 51, 3 * time.Millisecond},
		{ms(1, 2, 3, 4), 100, 4 * time.Millisecond},
		{ms(hundred...), 99, 99 * time.Millisecond},
		{ms(hundred...), 99.9, 100 * time.Millisecond},
		{ms(hundred...), 0.001, 1 * time.Millisecond},
	} {
		if got := percentile(tc.vals, tc.p); got != tc.want {
			t.Errorf("percentile(%d values, %v) = %v, want %v", len(tc.vals), tc.p, got, tc.want)
		}
	}
}

// summarize must sort what the workers recorded in completion order and count the achieved rate
// from successful calls only; the report's "added" columns must be gateway − direct of the same
// rate and mode, never across rates.
func TestSummarizeAndReport(t *testing.T) {
	lat := []time.Duration{5 * time.Millisecond, time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond}
	s := summarize(lat, 1, 2*time.Second)
	if s.n != 4 || s.errors != 1 || s.achieved != 2 || s.p50 != 2*time.Millisecond || s.maxLat != 5*time.Millisecond {
		t.Fatalf("summary %+v", s)
	}
	rows := []benchRow{
		{rate: 500, mode: "json", target: "direct", sum: latencySummary{p50: 1 * time.Millisecond, p99: 2 * time.Millisecond}},
		{rate: 500, mode: "json", target: "gateway", sum: latencySummary{p50: 1500 * time.Microsecond, p99: 2750 * time.Microsecond}},
		{rate: 2000, mode: "json", target: "direct", sum: latencySummary{p50: 9 * time.Millisecond, p99: 9 * time.Millisecond}},
	}
	if _, ok := added(rows, rows[0]); ok {
		t.Fatal("a direct row has no added latency")
	}
	if d, ok := added(rows, rows[1]); !ok || d.rate != 500 || d.target != "direct" {
		t.Fatalf("gateway row paired with %+v", d)
	}
	var out bytes.Buffer
	writeBenchTable(&out, rows)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if f := strings.Fields(lines[len(lines)-2]); len(lines) != 4 || strings.Join(f[len(f)-2:], " ") != "0.500 0.750" {
		t.Fatalf("report:\n%s", out.String())
	}
}

// The generated policy must load and hold the ~50 rules the benchmark claims.
func TestBenchPolicy(t *testing.T) {
	p, err := policy.Load(strings.NewReader(benchPolicy()), "bench")
	if err != nil {
		t.Fatal(err)
	}
	if p.Len() != 50 {
		t.Fatalf("%d rules", p.Len())
	}
}
