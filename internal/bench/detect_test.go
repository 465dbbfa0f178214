package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// A tiny run reports sane figures (no timing is asserted).
func TestRunDetect(t *testing.T) {
	var buf bytes.Buffer
	rep, err := RunDetect(context.Background(), DetectOptions{Principals: 1_000, Events: 20_000, Warmup: 5_000,
		LatencyEvents: 500, Out: &buf})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + buf.String())
	for _, d := range []string{"rate", "ueba", "score"} {
		if n := rep.Held[d]; n <= 0 || n > rep.Principals {
			t.Errorf("%s holds %d principals of %d", d, n, rep.Principals)
		}
	}
	if rep.Held["ueba"] < rep.Principals*9/10 {
		t.Errorf("ueba holds %d of %d principals", rep.Held["ueba"], rep.Principals)
	}
	if rep.Events != 20_000 || rep.Cores != 1 || rep.Elapsed <= 0 || rep.PerSecond <= 0 {
		t.Errorf("throughput fields %+v", rep)
	}
	if !(rep.P50 > 0 && rep.P50 <= rep.P99 && rep.P99 <= rep.P999 && rep.P999 <= rep.Max) {
		t.Errorf("latencies p50 %v p99 %v p999 %v max %v", rep.P50, rep.P99, rep.P999, rep.Max)
	}
	if rep.HeapBytes == 0 || rep.PerPrincipal != float64(rep.HeapBytes)/float64(rep.Principals) {
		t.Errorf("heap %d, per principal %v", rep.HeapBytes, rep.PerPrincipal)
	}
	if rep.Scores == 0 || rep.Profiles == 0 || rep.Dead != 0 {
		t.Errorf("produced %d scores, %d profiles, %d dead", rep.Scores, rep.Profiles, rep.Dead)
	}
	for _, s := range []string{"events/s per core", "p99", "per principal", "findings"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("report lacks %q", s)
		}
	}
	if _, err := RunDetect(context.Background(), DetectOptions{Principals: -1}); err == nil {
		t.Error("negative principals accepted")
	}
}
