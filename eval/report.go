package eval

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/mcpwatch/mcpwatch/eval/traffic"
	"github.com/mcpwatch/mcpwatch/event"
)

// Num is a metric: NaN (undefined, e.g. a TTD with nothing detected) is null in JSON.
type Num float64

// MarshalJSON writes NaN and infinities as null.
func (n Num) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', 6, 64), nil
}

// cleanFindings counts the test phase's findings on principals no instance attacked, and that
// per principal-hour of the evaluated half's unattacked principals.
func cleanFindings(d *traffic.Dataset, fs []event.Finding) (int, Num, map[string]int) {
	attacked := map[string]bool{}
	for _, in := range d.Instances {
		attacked[in.Principal] = true
	}
	clean := 0
	for _, p := range d.Principals {
		if p.InEval() == (d.Config.Split == traffic.Eval) && !attacked[p.ID()] {
			clean++
		}
	}
	n := 0
	by := map[string]int{}
	for _, f := range fs {
		if !f.Time.Before(d.TestStart) && f.Time.Before(d.TestEnd) && !attacked[event.PrincipalID(f.Principal)] &&
			principalInSplit(d, event.PrincipalID(f.Principal)) {
			n++
			by[checkName(f)]++
		}
	}
	return n, Num(float64(n) / (float64(clean) * d.TestEnd.Sub(d.TestStart).Hours())), by
}

// principalInSplit reports whether id is on the evaluated half of the roster: findings on the
// other half are neither counted as hits nor as false alarms.
func principalInSplit(d *traffic.Dataset, id string) bool {
	for _, p := range d.Principals {
		if p.ID() == id {
			return p.InEval() == (d.Config.Split == traffic.Eval)
		}
	}
	return false
}

// checkName names what concluded a finding: "detector/check", or the detector alone.
func checkName(f event.Finding) string {
	if f.Check == "" {
		return f.Detector
	}
	return f.Detector + "/" + f.Check
}

// Goal is one target of the detector with its outcome on the worst seed.
type Goal struct {
	Name  string `json:"name"`
	Worst Num    `json:"worst"`
	Pass  bool   `json:"pass"`
}

// goals judges the detector's targets on the worst seed.
func goals(r *Report) []Goal {
	worst := func(f func(s *SeedResult) float64, higherBetter bool) Num {
		w := math.NaN()
		for i := range r.Seeds {
			v := f(&r.Seeds[i])
			if math.IsNaN(v) {
				return Num(math.NaN())
			}
			if math.IsNaN(w) || (higherBetter && v < w) || (!higherBetter && v > w) {
				w = v
			}
		}
		return Num(w)
	}
	ge := func(name string, f func(*SeedResult) float64, goal float64) Goal {
		v := worst(f, true)
		return Goal{name, v, float64(v) >= goal}
	}
	lt := func(name string, f func(*SeedResult) float64, goal float64) Goal {
		v := worst(f, false)
		return Goal{name, v, float64(v) < goal}
	}
	var gs []Goal
	for _, k := range r.kinds() {
		gs = append(gs, ge(fmt.Sprintf("%s detected in >= 90%% of instances", k), func(s *SeedResult) float64 { return float64(s.Detector.Kinds[k].Recall) }, 0.9))
	}
	gs = append(gs,
		ge("recall >= 0.9 at <= 1% FPR", func(s *SeedResult) float64 { return float64(s.Detector.RecallAt1) }, 0.9),
		ge("ROC AUC >= 0.97", func(s *SeedResult) float64 { return float64(s.Detector.AUC) }, 0.97))
	var fast []float64
	for i := range r.Seeds {
		for _, k := range traffic.Kinds {
			if k != traffic.LowSlow {
				fast = append(fast, r.Seeds[i].ttdDetected(k)...)
			}
		}
	}
	med := Num(Quantile(fast, 0.5))
	gs = append(gs, Goal{"median TTD < 5 s (all kinds but low-and-slow, all seeds)", med, float64(med) < 5})
	if slices.Contains(r.kinds(), traffic.LowSlow) {
		gs = append(gs, lt("median TTD < 60 s for low-and-slow", func(s *SeedResult) float64 { return float64(s.Detector.Kinds[traffic.LowSlow].TTDP50) }, 60))
	}
	if len(r.Seeds) > 0 && r.Seeds[0].Baseline != nil {
		gs = append(gs, ge(">= 3x the Isolation Forest's recall at 1% FPR", func(s *SeedResult) float64 {
			b := float64(s.Baseline.RecallAt1)
			if b == 0 {
				return math.Inf(1) * float64(s.Detector.RecallAt1) // any recall beats none
			}
			return float64(s.Detector.RecallAt1) / b
		}, 3))
	}
	return gs
}

// kinds are the scenario kinds with instances in some seed (a live run may run a few), in
// report order.
func (r *Report) kinds() []traffic.Kind {
	var out []traffic.Kind
	for _, k := range traffic.Kinds {
		for _, s := range r.Seeds {
			if s.Detector.Kinds[k].Instances > 0 {
				out = append(out, k)
				break
			}
		}
	}
	return out
}

// ttdDetected is the TTDs of a kind's detected instances, in seconds.
func (s *SeedResult) ttdDetected(k traffic.Kind) []float64 { return s.Detector.Kinds[k].TTDs }

// Print writes the report as tables: per kind and overall, mean and min over seeds, detector and
// baseline side by side, then the goals.
func (r *Report) Print(w io.Writer) {
	mode := ""
	if r.Mode != "" {
		mode = " (" + r.Mode + ")"
	}
	fmt.Fprintf(w, "mcpwatch eval%s — split %s, %d seed(s)\n", mode, r.Split, len(r.Seeds))
	for _, s := range r.Seeds {
		fmt.Fprintf(w, "  seed %d: %d calls, %d events, %d findings, %d score records, %d positive / %d negative windows, %.1fs\n",
			s.Seed, s.Calls, s.Events, s.Findings, s.Scores, s.Positives, s.Negatives, s.Took)
	}
	base := len(r.Seeds) > 0 && r.Seeds[0].Baseline != nil
	fmt.Fprintf(w, "\n%-12s %-22s %-22s %-18s", "kind", "mcpwatch recall", "mcpwatch TTD p50/p95 s", "windows @1% FPR")
	if base {
		fmt.Fprintf(w, " %-22s %-22s %-18s", "iforest recall", "iforest TTD p50/p95 s", "windows @1% FPR")
	}
	fmt.Fprintln(w)
	sys := func(s *SeedResult, b bool) *SystemResult {
		if b {
			return s.Baseline
		}
		return &s.Detector
	}
	row := func(name string, get func(*SystemResult) KindResult) {
		fmt.Fprintf(w, "%-12s", name)
		for _, b := range []bool{false, true} {
			if b && !base {
				continue
			}
			var rec, p50, p95, win []float64
			for i := range r.Seeds {
				k := get(sys(&r.Seeds[i], b))
				rec, p50, p95 = append(rec, float64(k.Recall)), append(p50, float64(k.TTDP50)), append(p95, float64(k.TTDP95))
				win = append(win, float64(k.WindowRecall1))
			}
			fmt.Fprintf(w, " %-22s %-22s %-18s", fmt.Sprintf("%.2f (min %.2f)", mean(rec), minOf(rec)), fmt.Sprintf("%s / %s", fmtS(mean(p50)), fmtS(mean(p95))),
				fmt.Sprintf("%.2f (min %.2f)", mean(win), minOf(win)))
		}
		fmt.Fprintln(w)
	}
	for _, k := range r.kinds() {
		row(string(k), func(s *SystemResult) KindResult { return s.Kinds[k] })
	}
	row("overall", func(s *SystemResult) KindResult { return s.Overall })
	fmt.Fprintf(w, "\n%-34s %-20s", "window metric (mean, min over seeds)", "mcpwatch")
	if base {
		fmt.Fprintf(w, " %-20s", "iforest")
	}
	fmt.Fprintln(w)
	metric := func(name string, get func(*SystemResult) float64) {
		fmt.Fprintf(w, "%-34s", name)
		for _, b := range []bool{false, true} {
			if b && !base {
				continue
			}
			var xs []float64
			for i := range r.Seeds {
				xs = append(xs, get(sys(&r.Seeds[i], b)))
			}
			fmt.Fprintf(w, " %-20s", fmt.Sprintf("%.3f (min %.3f)", mean(xs), minOf(xs)))
		}
		fmt.Fprintln(w)
	}
	metric("ROC AUC", func(s *SystemResult) float64 { return float64(s.AUC) })
	metric("recall at 1% FPR", func(s *SystemResult) float64 { return float64(s.RecallAt1) })
	metric("recall at 5% FPR", func(s *SystemResult) float64 { return float64(s.RecallAt5) })
	var cf, cph []float64
	for _, s := range r.Seeds {
		cf, cph = append(cf, float64(s.Detector.CleanFindings)), append(cph, float64(s.Detector.CleanPerPrincHour))
	}
	fmt.Fprintf(w, "findings on clean principals (test phase): %.1f per seed, %.4f per principal-hour\n", mean(cf), mean(cph))
	by := map[string]int{}
	for _, s := range r.Seeds {
		for k, n := range s.Detector.CleanByCheck {
			by[k] += n
		}
	}
	if len(by) > 0 {
		fmt.Fprint(w, "  by check, all seeds:")
		for _, k := range slices.Sorted(maps.Keys(by)) {
			fmt.Fprintf(w, " %s %d", k, by[k])
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "\ngoals (mcpwatch, worst seed):")
	for _, g := range r.Goals {
		mark := "FAIL"
		if g.Pass {
			mark = "pass"
		}
		fmt.Fprintf(w, "  [%s] %-58s %s\n", mark, g.Name, fmtS(float64(g.Worst)))
	}
	fmt.Fprintf(w, "\nprotocol: %s\n", strings.TrimSpace(r.Protocol))
}

func mean(xs []float64) float64 {
	var s float64
	n := 0
	for _, x := range xs {
		if !math.IsNaN(x) {
			s += x
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return s / float64(n)
}

func minOf(xs []float64) float64 {
	m := math.NaN()
	for _, x := range xs {
		if math.IsNaN(x) {
			return math.NaN()
		}
		if math.IsNaN(m) || x < m {
			m = x
		}
	}
	return m
}

func fmtS(x float64) string {
	if math.IsNaN(x) {
		return "—"
	}
	return strconv.FormatFloat(x, 'f', 2, 64)
}
