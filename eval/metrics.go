// Package eval measures how well mcpwatch's detectors find the attacks of a labelled traffic run
// (eval/traffic), next to an Isolation Forest baseline, judged by recall at low false-positive
// rates (docs: DESIGN.md "Detection: what the best do"). The call stream and these metrics do not
// depend on the driver that ran the calls through mcpwatch (offline here; live later).
package eval

import (
	"cmp"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/mcpwatch/mcpwatch/eval/traffic"
	"github.com/mcpwatch/mcpwatch/event"
)

// Window is the length of a principal-window.
const Window = time.Minute

// Grace is how long after an instance's last call a finding still counts as detecting it.
const Grace = 2 * time.Minute

// Windows are the labelled principal-windows of a run's test phase. Positives are the windows in
// which an attack instance is active on the principal; negatives the windows of principals of the
// evaluated half that were not attacked at all. Windows of an attacked principal outside its
// attacks are left out: a score still raised after an attack is the same incident, not a false
// alarm on a clean principal.
type Windows struct {
	Principal []string
	Start     []time.Time
	Label     []bool
	Kind      []traffic.Kind // of the positive windows
}

// Len is the number of windows.
func (w *Windows) Len() int { return len(w.Label) }

// LabelWindows lists d's test-phase windows of the principals of its split's half.
func LabelWindows(d *traffic.Dataset) *Windows {
	byP := map[string][]traffic.Instance{}
	for _, in := range d.Instances {
		byP[in.Principal] = append(byP[in.Principal], in)
	}
	w := &Windows{}
	for _, p := range d.Principals {
		if p.InEval() != (d.Config.Split == traffic.Eval) {
			continue
		}
		ins := byP[p.ID()]
		for t := d.TestStart; t.Before(d.TestEnd); t = t.Add(Window) {
			var kind traffic.Kind
			for _, in := range ins {
				if !in.End.Before(t) && in.Start.Before(t.Add(Window)) {
					kind = in.Kind
				}
			}
			if len(ins) > 0 && kind == "" {
				continue
			}
			w.Principal, w.Start = append(w.Principal, p.ID()), append(w.Start, t)
			w.Label, w.Kind = append(w.Label, kind != ""), append(w.Kind, kind)
		}
	}
	return w
}

// ScoreWindows is each window's score: the principal's highest published threat score in it,
// its last score record before the window standing until the next.
func ScoreWindows(w *Windows, scores []event.Score) []float64 {
	byP := map[string][]event.Score{}
	for _, s := range scores {
		byP[s.Subject] = append(byP[s.Subject], s)
	}
	for _, ss := range byP {
		slices.SortStableFunc(ss, func(a, b event.Score) int { return a.Time.Compare(b.Time) })
	}
	out := make([]float64, w.Len())
	for i := range out {
		ss, t := byP[w.Principal[i]], w.Start[i]
		k := sort.Search(len(ss), func(j int) bool { return !ss[j].Time.Before(t) })
		v := 0.0
		if k > 0 {
			v = ss[k-1].Score
		}
		for ; k < len(ss) && ss[k].Time.Before(t.Add(Window)); k++ {
			v = max(v, ss[k].Score)
		}
		out[i] = v
	}
	return out
}

// AUC is the area under the ROC curve of scores for labels (ties count half), NaN without both
// classes.
func AUC(labels []bool, scores []float64) float64 {
	idx := order(scores)
	var pos, neg, rankSum float64
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && scores[idx[j]] == scores[idx[i]] {
			j++
		}
		avg := float64(i+j+1) / 2 // 1-based average rank of the tie group (ascending)
		for _, k := range idx[i:j] {
			if labels[k] {
				pos++
				rankSum += avg
			} else {
				neg++
			}
		}
		i = j
	}
	if pos == 0 || neg == 0 {
		return math.NaN()
	}
	return (rankSum - pos*(pos+1)/2) / (pos * neg)
}

// order is the indices of scores, ascending.
func order(scores []float64) []int {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(scores[a], scores[b]) })
	return idx
}

// RecallAtFPR is the highest recall (true-positive rate) over thresholds "score ≥ t" whose
// false-positive rate on the negatives is at most fpr, and the highest such threshold (+Inf when
// none but flagging nothing qualifies). It is max(tpr[fpr ≤ x]) of scikit-learn's roc_curve.
func RecallAtFPR(labels []bool, scores []float64, fpr float64) (recall, threshold float64) {
	idx := order(scores)
	slices.Reverse(idx)
	var pos, neg int
	for _, l := range labels {
		if l {
			pos++
		} else {
			neg++
		}
	}
	if pos == 0 || neg == 0 {
		return math.NaN(), math.Inf(1)
	}
	threshold = math.Inf(1)
	tp, fp, best := 0, 0, 0
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && scores[idx[j]] == scores[idx[i]] {
			if labels[idx[j]] {
				tp++
			} else {
				fp++
			}
			j++
		}
		if float64(fp)/float64(neg) <= fpr && tp > best {
			best, threshold = tp, scores[idx[i]]
		}
		i = j
	}
	return float64(best) / float64(pos), threshold
}

// Quantile is the q-quantile of xs by linear interpolation (numpy's default), NaN when empty.
func Quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(s)-1)
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

// Detection is when an instance was first detected; Detected false when it was not.
type Detection struct {
	Instance traffic.Instance
	Detected bool
	TTD      time.Duration // first detection − start
}

// DetectByFindings judges each instance by the findings on its principal in [start, end+Grace].
func DetectByFindings(d *traffic.Dataset, fs []event.Finding) []Detection {
	out := make([]Detection, len(d.Instances))
	for i, in := range d.Instances {
		out[i].Instance = in
		for _, f := range fs {
			if event.PrincipalID(f.Principal) != in.Principal || f.Time.Before(in.Start) || f.Time.After(in.End.Add(Grace)) {
				continue
			}
			if ttd := f.Time.Sub(in.Start); !out[i].Detected || ttd < out[i].TTD {
				out[i].Detected, out[i].TTD = true, ttd
			}
		}
	}
	return out
}

// DetectByWindows judges each instance by window scores at threshold: detected when a window of
// its principal overlapping [start, end+Grace] scores at least threshold, at that window's end
// (a per-window model such as the baseline concludes when its window closes).
func DetectByWindows(d *traffic.Dataset, w *Windows, scores []float64, threshold float64) []Detection {
	out := make([]Detection, len(d.Instances))
	for i, in := range d.Instances {
		out[i].Instance = in
		for k := range scores {
			if w.Principal[k] != in.Principal || scores[k] < threshold || !w.Label[k] {
				continue
			}
			end := w.Start[k].Add(Window)
			if end.Before(in.Start) || w.Start[k].After(in.End.Add(Grace)) {
				continue
			}
			if ttd := max(end.Sub(in.Start), 0); !out[i].Detected || ttd < out[i].TTD {
				out[i].Detected, out[i].TTD = true, ttd
			}
		}
	}
	return out
}
