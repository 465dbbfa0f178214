package eval

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/eval/traffic"
)

// The detect stage with its default config, on a seed and on principals it was not tuned on
// (tuning used the even half of the roster, seeds 11 and 12): every attack kind is caught, a
// clean principal is rarely disturbed, and attack windows stand out at 1 % false positives. A
// detection change that loses an attack kind, or floods clean principals, fails here before
// it reaches the numbers in BENCHMARKS.md.
func TestDetectionRegression(t *testing.T) {
	if testing.Short() {
		t.Skip("a whole evaluation run")
	}
	var out strings.Builder
	rep, err := Run(context.Background(), Options{Seeds: []uint64{21}, Principals: 120, History: 48 * time.Hour,
		PerKind: 2, Stages: realStages(), Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Seeds[0].Detector
	for _, k := range traffic.Kinds {
		kr := s.Kinds[k]
		if kr.Instances == 0 {
			t.Errorf("%s: no instances", k)
			continue
		}
		if kr.Detected < kr.Instances {
			t.Errorf("%s: %d of %d instances detected", k, kr.Detected, kr.Instances)
		}
	}
	if v := float64(s.CleanPerPrincHour); v > 0.1 {
		t.Errorf("%.3f findings per clean principal-hour (%v)", v, s.CleanByCheck)
	}
	// 0.928 and 0.978 when written: a margin for detector changes, not for luck (the run is
	// deterministic).
	if v := float64(s.RecallAt1); v < 0.88 {
		t.Errorf("window recall %.3f at 1%% FPR", v)
	}
	if v := float64(s.AUC); v < 0.95 {
		t.Errorf("window ROC AUC %.3f", v)
	}
	if v := float64(s.Overall.TTDP50); v > 5 {
		t.Errorf("median time to detect %.1f s", v)
	}
	if t.Failed() {
		t.Log(out.String())
	}
}
