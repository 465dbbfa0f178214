package eval

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/mcpwatch/mcpwatch/eval/traffic"
	"github.com/mcpwatch/mcpwatch/event"
)

// Options of an evaluation.
type Options struct {
	Seeds      []uint64
	Principals int
	History    time.Duration
	PerKind    int           // attack instances per scenario kind (default 3)
	Split      traffic.Split // Eval (default) or Tune: see traffic.Split
	Baseline   bool          // run the Isolation Forest baseline (needs Python with scikit-learn)
	Python     string        // "" finds the peers venv, else python3
	Stages     Stages
	Out        io.Writer // the table; nil: none
	JSONFile   string    // the report as JSON; "": none
}

// KindResult is one system's result on one scenario kind.
type KindResult struct {
	Instances int       `json:"instances"`
	Detected  int       `json:"detected"`
	Recall    Num       `json:"recall"`
	TTDP50    Num       `json:"ttd_p50_s"` // seconds, over the detected instances; NaN: none
	TTDP95    Num       `json:"ttd_p95_s"`
	TTDs      []float64 `json:"ttds_s"` // of every detected instance, in seconds
	// Windows are the kind's positive principal-windows; WindowRecall1 the share of them at or
	// above the 1 % FPR threshold: which kinds the window recall misses.
	Windows       int `json:"windows"`
	WindowRecall1 Num `json:"window_recall_1pct_fpr"`
}

// SystemResult is one system's result on one seed.
type SystemResult struct {
	AUC       Num                         `json:"auc"`
	RecallAt1 Num                         `json:"recall_at_1pct_fpr"`
	RecallAt5 Num                         `json:"recall_at_5pct_fpr"`
	Threshold Num                         `json:"threshold_1pct"`
	Kinds     map[traffic.Kind]KindResult `json:"kinds"`
	Overall   KindResult                  `json:"overall"`
	// CleanFindings are findings in the test phase on principals that were not attacked.
	CleanFindings     int `json:"clean_findings"`
	CleanPerPrincHour Num `json:"clean_findings_per_principal_hour"`
	// CleanByCheck breaks CleanFindings down by what concluded them ("ueba/new_value").
	CleanByCheck map[string]int `json:"clean_findings_by_check,omitempty"`
}

// SeedResult is one seed's run.
type SeedResult struct {
	Seed      uint64        `json:"seed"`
	Calls     int           `json:"calls"`
	Events    int           `json:"events"`
	Findings  int           `json:"findings"`
	Scores    int           `json:"scores"`
	Positives int           `json:"positive_windows"`
	Negatives int           `json:"negative_windows"`
	Detector  SystemResult  `json:"mcpwatch"`
	Baseline  *SystemResult `json:"iforest,omitempty"`
	Took      float64       `json:"took_s"`
}

// Report is the whole evaluation.
type Report struct {
	Split    string       `json:"split"`
	Mode     string       `json:"mode,omitempty"` // the driver when not offline ("live")
	Seeds    []SeedResult `json:"seeds"`
	Goals    []Goal       `json:"goals"`
	Protocol string       `json:"protocol"`
}

// Protocol is how the evaluation keeps tuning and judging apart, for the report.
const Protocol = "attacks land only on the evaluated half of the roster (odd principal indices; --tune uses the even ones, " +
	"for tuning on other seeds); negatives are the 1-minute windows of that half's unattacked principals; " +
	"an instance is detected by a finding on its principal in [start, end+2m]; recall at FPR thresholds come from the clean windows' scores; " +
	"goals are judged on the worst seed"

// Run evaluates every seed (in parallel, up to the CPUs) and reports.
func Run(ctx context.Context, o Options) (*Report, error) {
	rep := &Report{Split: "eval", Seeds: make([]SeedResult, len(o.Seeds)), Protocol: Protocol}
	if o.Split == traffic.Tune {
		rep.Split = "tune"
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, runtime.GOMAXPROCS(0)))
	for i, seed := range o.Seeds {
		g.Go(func() error {
			r, err := runSeed(ctx, o, seed)
			if err != nil {
				return fmt.Errorf("seed %d: %w", seed, err)
			}
			rep.Seeds[i] = *r
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	rep.Goals = goals(rep)
	if o.Out != nil {
		rep.Print(o.Out)
	}
	if o.JSONFile != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(o.JSONFile, b, 0o644); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

func runSeed(ctx context.Context, o Options, seed uint64) (*SeedResult, error) {
	start := time.Now()
	d, err := traffic.Generate(traffic.Config{Seed: seed, Principals: o.Principals, History: o.History, PerKind: o.PerKind, Split: o.Split})
	if err != nil {
		return nil, err
	}
	var feats *Features
	var observe func(*event.Event)
	if o.Baseline {
		feats = NewFeatures()
		observe = feats.Observe
	}
	out, err := RunOffline(ctx, d, o.Stages, observe)
	if err != nil {
		return nil, err
	}
	w := LabelWindows(d)
	r := &SeedResult{Seed: seed, Calls: len(d.Calls), Events: out.Events, Findings: len(out.Findings), Scores: len(out.Scores)}
	for _, l := range w.Label {
		if l {
			r.Positives++
		} else {
			r.Negatives++
		}
	}
	r.Detector = JudgeDetector(d, w, out.Findings, out.Scores)
	if o.Baseline {
		bs, err := feats.IsolationForest(FindPython(o.Python), w, d.TestStart)
		if err != nil {
			return nil, err
		}
		_, thr := RecallAtFPR(w.Label, bs, 0.01)
		b := system(d, w, bs, DetectByWindows(d, w, bs, thr))
		r.Baseline = &b
	}
	r.Took = time.Since(start).Seconds()
	return r, nil
}

// JudgeDetector is mcpwatch's result on d from the findings and scores its detect stage
// published, whichever driver ran the calls; w is LabelWindows(d).
func JudgeDetector(d *traffic.Dataset, w *Windows, fs []event.Finding, ss []event.Score) SystemResult {
	s := system(d, w, ScoreWindows(w, ss), DetectByFindings(d, fs))
	s.CleanFindings, s.CleanPerPrincHour, s.CleanByCheck = cleanFindings(d, fs)
	return s
}

// NewReport is the report of seeds run by another driver (mode names it, e.g. "live"), its goals
// judged as [Run] judges them.
func NewReport(split traffic.Split, mode string, seeds []SeedResult) *Report {
	rep := &Report{Split: "eval", Mode: mode, Seeds: seeds, Protocol: Protocol}
	if split == traffic.Tune {
		rep.Split = "tune"
	}
	rep.Goals = goals(rep)
	return rep
}

// system computes a system's window metrics and per-kind instance results.
func system(d *traffic.Dataset, w *Windows, scores []float64, dets []Detection) SystemResult {
	s := SystemResult{AUC: Num(AUC(w.Label, scores)), Kinds: map[traffic.Kind]KindResult{}}
	r1, thr := RecallAtFPR(w.Label, scores, 0.01)
	r5, _ := RecallAtFPR(w.Label, scores, 0.05)
	s.RecallAt1, s.Threshold, s.RecallAt5 = Num(r1), Num(thr), Num(r5)
	hits := map[traffic.Kind]int{}
	for i, l := range w.Label {
		if l {
			k := s.Kinds[w.Kind[i]]
			k.Windows++
			s.Kinds[w.Kind[i]] = k
			if scores[i] >= thr {
				hits[w.Kind[i]]++
			}
		}
	}
	ttds := map[traffic.Kind][]float64{}
	var all []float64
	for _, dt := range dets {
		k := s.Kinds[dt.Instance.Kind]
		k.Instances++
		s.Overall.Instances++
		if dt.Detected {
			k.Detected++
			s.Overall.Detected++
			ttds[dt.Instance.Kind] = append(ttds[dt.Instance.Kind], dt.TTD.Seconds())
			all = append(all, dt.TTD.Seconds())
		}
		s.Kinds[dt.Instance.Kind] = k
	}
	for kind, k := range s.Kinds {
		k.Recall = Num(float64(k.Detected) / float64(k.Instances))
		k.WindowRecall1 = Num(float64(hits[kind]) / math.Max(1, float64(k.Windows)))
		k.TTDs = ttds[kind]
		k.TTDP50, k.TTDP95 = Num(Quantile(k.TTDs, 0.5)), Num(Quantile(k.TTDs, 0.95))
		s.Kinds[kind] = k
	}
	s.Overall.Recall = Num(float64(s.Overall.Detected) / math.Max(1, float64(s.Overall.Instances)))
	s.Overall.TTDP50, s.Overall.TTDP95 = Num(Quantile(all, 0.5)), Num(Quantile(all, 0.95))
	s.Overall.Windows, s.Overall.WindowRecall1 = 0, Num(r1)
	for _, l := range w.Label {
		if l {
			s.Overall.Windows++
		}
	}
	return s
}
