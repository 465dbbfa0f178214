package eval

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

//go:embed iforest.py
var iforestPy string

// FeatureNames are the baseline's per principal-window features, computed from the same
// normalized events the detectors see.
var FeatureNames = []string{"calls", "distinct_targets", "denials", "distinct_denied", "request_bytes", "response_bytes",
	"sensitivity_sum", "pii", "egress_calls", "distinct_clients", "distinct_uas", "distinct_networks", "hour_of_week",
	"new_targets", "tool_changes"}

type winKey struct {
	p string
	t int64 // window start, unix seconds
}

type winAcc struct {
	f                                  [15]float64
	targets, denied, clients, uas, ips map[string]bool
}

// Features accumulates the baseline's features per principal-window from a stream of normalized
// events in time order.
type Features struct {
	wins map[winKey]*winAcc
	seen map[string]map[string]bool // targets each principal used before
}

// NewFeatures returns an empty accumulator.
func NewFeatures() *Features {
	return &Features{wins: map[winKey]*winAcc{}, seen: map[string]map[string]bool{}}
}

func set(m *map[string]bool, k string) {
	if *m == nil {
		*m = map[string]bool{}
	}
	(*m)[k] = true
}

// Observe adds one normalized event.
func (f *Features) Observe(e *event.Event) {
	if e.MCP == nil {
		return
	}
	p := event.PrincipalID(e.Principal)
	k := winKey{p, e.Time.Truncate(Window).Unix()}
	w := f.wins[k]
	if w == nil {
		w = &winAcc{}
		f.wins[k] = w
	}
	target := e.Target.Server + "/" + e.MCP.Method + "/" + e.MCP.Tool + e.MCP.ResourceURI + e.MCP.Prompt
	switch e.MCP.Direction {
	case event.DirRequest:
		w.f[0]++
		set(&w.targets, target)
		w.f[1] = float64(len(w.targets))
		if e.Outcome.Result == event.ResultDenied {
			w.f[2]++
			set(&w.denied, target)
			w.f[3] = float64(len(w.denied))
		}
		w.f[4] += float64(e.Size.Request)
		if e.Normalized != nil {
			w.f[6] += e.Normalized.Sensitivity
		}
		for _, n := range e.PII {
			w.f[7] += float64(n)
		}
		if slices.Contains(e.DataClasses, "egress") {
			w.f[8]++
		}
		set(&w.clients, e.MCP.ClientName+"/"+e.MCP.ClientVersion)
		set(&w.uas, e.Network.UserAgent)
		set(&w.ips, e.Network.SrcIP)
		w.f[9], w.f[10], w.f[11] = float64(len(w.clients)), float64(len(w.uas)), float64(len(w.ips))
		s := f.seen[p]
		if s == nil {
			s = map[string]bool{}
			f.seen[p] = s
		}
		if !s[target] {
			s[target] = true
			w.f[13]++
		}
	case event.DirResponse:
		w.f[5] += float64(e.Size.Response)
		if e.Attributes["mcp.tool.changed"] != "" {
			w.f[14]++
		}
	}
}

func hourOfWeek(t time.Time) float64 {
	t = t.UTC()
	return float64((int(t.Weekday())+6)%7*24 + t.Hour())
}

// vector is the features of p's window starting at t (zeros but the hour when it was idle).
func (f *Features) vector(p string, t time.Time) []float64 {
	var v [15]float64
	if w := f.wins[winKey{p, t.Unix()}]; w != nil {
		v = w.f
	}
	v[12] = hourOfWeek(t)
	return v[:]
}

// Train is the active windows before cut: the history a baseline learns normal from.
func (f *Features) Train(cut time.Time) [][]float64 {
	keys := make([]winKey, 0, len(f.wins))
	for k := range f.wins {
		if k.t < cut.Unix() {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b winKey) int {
		if a.t != b.t {
			return int(a.t - b.t)
		}
		if a.p < b.p {
			return -1
		}
		return 1
	})
	out := make([][]float64, len(keys))
	for i, k := range keys {
		out[i] = f.vector(k.p, time.Unix(k.t, 0))
	}
	return out
}

// IsolationForest scores the windows w with scikit-learn's IsolationForest (eval/iforest.py, fixed
// random_state) trained on the history's active windows before cut. A window without events
// scores 0, below every active one: there is nothing in it to flag, and a model that learnt only
// active windows would find emptiness itself anomalous.
func (f *Features) IsolationForest(python string, w *Windows, cut time.Time) ([]float64, error) {
	var test [][]float64
	var active []int
	for i := range w.Len() {
		if f.wins[winKey{w.Principal[i], w.Start[i].Unix()}] != nil {
			test, active = append(test, f.vector(w.Principal[i], w.Start[i])), append(active, i)
		}
	}
	in, err := json.Marshal(map[string][][]float64{"train": f.Train(cut), "test": test})
	if err != nil {
		return nil, err
	}
	out, err := runPython(python, iforestPy, in)
	if err != nil {
		return nil, fmt.Errorf("isolation forest baseline: %w", err)
	}
	var got []float64
	if err := json.Unmarshal(out, &got); err != nil {
		return nil, fmt.Errorf("isolation forest baseline: %w", err)
	}
	if len(got) != len(active) {
		return nil, fmt.Errorf("isolation forest baseline: %d scores for %d windows", len(got), len(active))
	}
	scores := make([]float64, w.Len())
	for j, i := range active {
		scores[i] = got[j]
	}
	return scores, nil
}
