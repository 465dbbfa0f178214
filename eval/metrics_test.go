package eval

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

// oracle is scikit-learn, an independent implementation of the metrics. Under CI it must be
// there (scripts/peers.sh installs it); elsewhere its absence skips.
func oracle(t *testing.T) string {
	t.Helper()
	py := FindPython("")
	if _, err := runPython(py, "import sklearn", nil); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("scikit-learn oracle missing under CI: %v", err)
		}
		t.Skipf("scikit-learn oracle missing (run scripts/peers.sh): %v", err)
	}
	return py
}

const sklearnMetrics = `
import json, sys
import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve
cases = json.load(sys.stdin)
out = []
for c in cases:
    y, s = np.array(c["labels"], dtype=int), np.array(c["scores"], dtype=float)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    out.append({"auc": roc_auc_score(y, s),
                "r1": float(tpr[fpr <= 0.01].max()), "r5": float(tpr[fpr <= 0.05].max())})
json.dump(out, sys.stdout)
`

func TestMetricsAgainstScikitLearn(t *testing.T) {
	py := oracle(t)
	type tcase struct {
		Labels []bool    `json:"labels"`
		Scores []float64 `json:"scores"`
	}
	r := rand.New(rand.NewPCG(7, 7))
	var cases []tcase
	for k := range 12 {
		n := 200 + r.IntN(3000)
		var c tcase
		for range n {
			l := r.Float64() < 0.05+0.02*float64(k)
			s := r.NormFloat64() + float64(k%4)*b2f(l)
			if k%3 == 0 { // coarse scores: many ties, as detector scores have (0 for most windows)
				s = math.Max(0, math.Round(s*3)*10)
			}
			c.Labels, c.Scores = append(c.Labels, l), append(c.Scores, s)
		}
		cases = append(cases, c)
	}
	in, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := runPython(py, sklearnMetrics, in)
	if err != nil {
		t.Fatal(err)
	}
	var want []struct{ AUC, R1, R5 float64 }
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		auc := AUC(c.Labels, c.Scores)
		r1, _ := RecallAtFPR(c.Labels, c.Scores, 0.01)
		r5, _ := RecallAtFPR(c.Labels, c.Scores, 0.05)
		if math.Abs(auc-want[i].AUC) > 1e-9 || math.Abs(r1-want[i].R1) > 1e-9 || math.Abs(r5-want[i].R5) > 1e-9 {
			t.Errorf("case %d: got auc %.6f r@1%% %.6f r@5%% %.6f, scikit-learn %.6f %.6f %.6f", i, auc, r1, r5, want[i].AUC, want[i].R1, want[i].R5)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func TestQuantileLikeNumpy(t *testing.T) {
	xs := []float64{4, 1, 3, 2}
	if q := Quantile(xs, 0.5); q != 2.5 {
		t.Errorf("median %v, want 2.5", q)
	}
	if q := Quantile(xs, 0.95); math.Abs(q-3.85) > 1e-12 {
		t.Errorf("p95 %v, want 3.85", q)
	}
}
