package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/eval/traffic"
	"github.com/mcpwatch/mcpwatch/event"
)

func smallData(t *testing.T) *traffic.Dataset {
	t.Helper()
	d, err := traffic.Generate(traffic.Config{Seed: 11, Principals: 80, History: 24 * time.Hour, PerKind: 1})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The real policy refuses every probing call, and the raw events say so as the gateway would.
func TestPolicyRefusesProbing(t *testing.T) {
	d := smallData(t)
	_, pol, err := Company(d)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := newRawBuilder(pol)
	if err != nil {
		t.Fatal(err)
	}
	probes, cleanAllowed, clean := 0, 0, 0
	for i := range d.Calls {
		c := &d.Calls[i]
		evs, err := rb.events(c)
		if err != nil {
			t.Fatal(err)
		}
		req := evs[0]
		if c.Kind == traffic.Probing {
			probes++
			if req.Outcome.Result != event.ResultDenied || len(evs) != 1 {
				t.Errorf("probing call %s %s%s allowed (rule %s)", c.Method, c.Tool, c.Resource, req.Outcome.PolicyRule)
			}
		}
		if c.Kind == "" {
			clean++
			if req.Outcome.Result == event.ResultAllowed {
				cleanAllowed++
			}
		}
	}
	if probes == 0 {
		t.Fatal("no probing calls")
	}
	// Clean traffic is what the roles may do: the policy allows (nearly) all of it.
	if float64(cleanAllowed) < 0.99*float64(clean) {
		t.Errorf("policy allowed %d of %d clean calls", cleanAllowed, clean)
	}
}

// The raw events carry what the gateway's masker found: personal data counted, never recorded.
func TestRawEventsMaskPII(t *testing.T) {
	d := smallData(t)
	_, pol, _ := Company(d)
	rb, _ := newRawBuilder(pol)
	found := false
	for i := range d.Calls {
		c := &d.Calls[i]
		if c.Kind != traffic.PIIEgress {
			continue
		}
		evs, err := rb.events(c)
		if err != nil {
			t.Fatal(err)
		}
		req := evs[0]
		if req.PII["email"] < 20 || strings.Contains(req.MCP.ArgumentsMasked, "@example.com") {
			t.Errorf("pii egress event: pii %v, arguments %.80q", req.PII, req.MCP.ArgumentsMasked)
		}
		found = true
	}
	if !found {
		t.Fatal("no pii egress calls")
	}
}

// A small offline run end to end: the harness, not the detection goals (the detectors are still
// being built).
func TestOfflineEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the stages over a day of traffic")
	}
	var withBaseline bool
	py := FindPython("")
	if _, err := runPython(py, "import sklearn", nil); err == nil {
		withBaseline = true
	} else if os.Getenv("CI") == "true" {
		t.Fatalf("scikit-learn missing under CI: %v", err)
	}
	var out bytes.Buffer
	jf := filepath.Join(t.TempDir(), "eval.json")
	rep, err := Run(context.Background(), Options{Seeds: []uint64{11}, Principals: 80, History: 24 * time.Hour, PerKind: 1,
		Baseline: withBaseline, Python: py, Stages: realStages(), Out: &out, JSONFile: jf})
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Seeds[0]
	if s.Events < s.Calls || s.Positives == 0 || s.Negatives == 0 {
		t.Fatalf("seed result %+v", s)
	}
	if s.Detector.Overall.Instances != len(traffic.Kinds) {
		t.Errorf("%d instances judged, want %d", s.Detector.Overall.Instances, len(traffic.Kinds))
	}
	if withBaseline && (s.Baseline == nil || s.Baseline.Overall.Instances != len(traffic.Kinds)) {
		t.Errorf("baseline result %+v", s.Baseline)
	}
	if !strings.Contains(out.String(), "recall at 1% FPR") || !strings.Contains(out.String(), "goals") {
		t.Errorf("table:\n%s", out.String())
	}
	b, err := os.ReadFile(jf)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || len(back.Seeds) != 1 {
		t.Fatalf("json report: %v", err)
	}
	t.Log("\n" + out.String())
}

// Findings and scores become detections and window scores as documented.
func TestDetectionAndWindowScoring(t *testing.T) {
	d := smallData(t)
	in := d.Instances[0]
	fs := []event.Finding{{Time: in.Start.Add(3 * time.Second), Principal: event.Principal{Subject: in.Principal}}}
	det := DetectByFindings(d, fs)
	if !det[0].Detected || det[0].TTD != 3*time.Second || det[1].Detected {
		t.Errorf("detections %+v", det[:2])
	}
	late := []event.Finding{{Time: in.End.Add(Grace + time.Second), Principal: event.Principal{Subject: in.Principal}}}
	if DetectByFindings(d, late)[0].Detected {
		t.Error("a finding after the grace detected the instance")
	}
	w := &Windows{Principal: []string{"p", "p", "p"}, Start: []time.Time{d.TestStart, d.TestStart.Add(time.Minute), d.TestStart.Add(2 * time.Minute)},
		Label: []bool{false, false, true}}
	sc := ScoreWindows(w, []event.Score{{Subject: "p", Time: d.TestStart.Add(-time.Hour), Score: 10},
		{Subject: "p", Time: d.TestStart.Add(90 * time.Second), Score: 50}, {Subject: "p", Time: d.TestStart.Add(100 * time.Second), Score: 20}})
	if sc[0] != 10 || sc[1] != 50 || sc[2] != 20 {
		t.Errorf("window scores %v, want [10 50 20]", sc)
	}
}
