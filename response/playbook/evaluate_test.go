package playbook

import (
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

func finding() *event.Finding {
	return &event.Finding{Tenant: "t", Detector: "rate", Score: 90, Severity: 9,
		Principal: event.Principal{Subject: "alice", ClientID: "cli", TokenID: "jti1", Department: "finance", Roles: []string{"analyst"}},
		Evidence:  []event.Evidence{{Feature: "tool", ObservedText: "db_query"}, {Feature: "sandbox", ObservedText: "sb-1"}}}
}

func load(t *testing.T) *Set {
	t.Helper()
	s, err := LoadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var t0 = time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)

// Matching: a high-score finance finding on db_* triggers exfil-high with its three actions,
// expiries from defaults or the action; a lower score or other tool matches nothing.
func TestEvaluateMatching(t *testing.T) {
	s := load(t)
	ds := s.Evaluate(finding(), NewState(0), t0)
	if len(ds) != 3 {
		t.Fatalf("decisions: %+v", ds)
	}
	want := []struct {
		kind    Kind
		target  string
		expires time.Time
	}{{KindRevoke, "alice", t0.Add(time.Hour)}, {KindQuarantine, "sb-1", t0.Add(30 * time.Minute)}, {KindNotify, "soc", time.Time{}}}
	for i, w := range want {
		if d := ds[i]; d.Kind != w.kind || d.Target != w.target || !d.Expires.Equal(w.expires) || d.Suppressed || d.DryRun {
			t.Errorf("decision %d: %+v, want %+v", i, d, w)
		}
	}
	if !strings.Contains(ds[0].Reason, "score 90 >= 80") || !strings.Contains(ds[0].Reason, "tool db_query matches db_*") {
		t.Errorf("reason does not name the conditions: %s", ds[0].Reason)
	}
	for _, mod := range []func(*event.Finding){
		func(f *event.Finding) { f.Score = 79 },
		func(f *event.Finding) { f.Evidence[0].ObservedText = "shell" },
		func(f *event.Finding) { f.Principal.Department = "hr" },
	} {
		f := finding()
		mod(f)
		if ds := s.Evaluate(f, NewState(0), t0); len(ds) != 0 {
			t.Errorf("should not match: %+v", ds)
		}
	}
}

// A target the finding lacks (no sandbox) yields no decision rather than an empty target.
func TestEvaluateMissingTarget(t *testing.T) {
	f := finding()
	f.Evidence = f.Evidence[:1]
	for _, d := range load(t).Evaluate(f, nil, t0) {
		if d.Target == "" || d.Kind == KindQuarantine {
			t.Fatalf("decision without target: %+v", d)
		}
	}
}

// Dedup: the same action on the same target within the window is suppressed, after it is not.
func TestEvaluateDedup(t *testing.T) {
	s, st := load(t), NewState(0)
	s.Evaluate(finding(), st, t0)
	ds := s.Evaluate(finding(), st, t0.Add(5*time.Minute))
	if !ds[0].Suppressed || !ds[2].Suppressed {
		t.Fatalf("within 10m not suppressed: %+v", ds)
	}
	ds = s.Evaluate(finding(), st, t0.Add(16*time.Minute))
	if ds[0].Suppressed {
		t.Fatalf("after window still suppressed: %+v", ds[0])
	}
}

// Escalation: the third finding of alice within 1h adds a permanent client revocation.
func TestEvaluateEscalation(t *testing.T) {
	s, st := load(t), NewState(0)
	for i := 0; i < 2; i++ {
		for _, d := range s.Evaluate(finding(), st, t0.Add(time.Duration(i)*time.Minute)) {
			if d.Escalated {
				t.Fatalf("escalated after %d findings", i+1)
			}
		}
	}
	ds := s.Evaluate(finding(), st, t0.Add(2*time.Minute))
	var esc *Decision
	for i := range ds {
		if ds[i].Escalated {
			esc = &ds[i]
		}
	}
	if esc == nil || esc.Kind != KindRevoke || esc.Scope != ScopeClient || esc.Target != "cli" || !esc.Expires.IsZero() {
		t.Fatalf("no permanent client revocation: %+v", ds)
	}
	// Findings outside the window do not count.
	st2 := NewState(0)
	for i := 0; i < 3; i++ {
		for _, d := range s.Evaluate(finding(), st2, t0.Add(time.Duration(i)*time.Hour)) {
			if d.Escalated {
				t.Fatal("escalated on findings an hour apart")
			}
		}
	}
}

// Dry run: a dry_run playbook's decisions are flagged; file-level dry_run flags all.
func TestEvaluateDryRun(t *testing.T) {
	f := finding()
	f.Detector, f.Principal.Roles = "ueba", []string{"contractor-ext"}
	ds := load(t).Evaluate(f, nil, t0)
	if len(ds) != 1 || ds[0].Kind != KindStepUp || !ds[0].DryRun || ds[0].Target != "alice" {
		t.Fatalf("%+v", ds)
	}
	s, err := Load("x.yaml", []byte("dry_run: true\nplaybooks:\n  - name: a\n    actions:\n      - revoke: subject\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ds := s.Evaluate(finding(), nil, t0); len(ds) != 1 || !ds[0].DryRun {
		t.Fatalf("file dry_run: %+v", ds)
	}
}

// State stays within its bound, evicting the oldest entry.
func TestStateBound(t *testing.T) {
	st := NewState(2)
	for i, k := range []string{"a", "b", "c"} {
		st.dedup(k, t0.Add(time.Duration(i)*time.Second), time.Hour, nil)
	}
	if n, _ := st.Len(); n != 2 {
		t.Fatalf("dedup entries: %d", n)
	}
	if _, ok := st.lastSeen["a"]; ok {
		t.Fatal("oldest entry not evicted")
	}
}

// Explain names the first failed condition of each non-matching playbook.
func TestExplain(t *testing.T) {
	f := finding()
	f.Score = 50
	out := load(t).Explain(f).String()
	for _, want := range []string{"playbook exfil-high: no match: score 50 is below min_score 80", `playbook ueba-watch: no match: detector "rate" does not match "ueba"`} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}

// Impact decides which actions wait for approval: above_impact high holds a client revocation
// and anything permanent, not a subject revocation or a step-up; `approval: false` opts out. If
// this failed, the approval rule would hold the wrong actions or none.
func TestApprovalByImpact(t *testing.T) {
	s, err := Load("t.yaml", []byte(`
approval:
  approvers: [alice, bob, carol]
  required: 2
  timeout: 5m
  above_impact: high
playbooks:
  - name: p
    actions:
      - revoke: subject
      - revoke: client
      - quarantine: server
        approval: false
      - step_up: true
      - revoke: token
        permanent: true
`))
	if err != nil {
		t.Fatal(err)
	}
	f := &event.Finding{ID: "f", Tenant: "acme", Principal: event.Principal{Subject: "s", ClientID: "c", TokenID: "t"},
		Evidence: []event.Evidence{{Feature: "server", ObservedText: "files"}}}
	held := map[string]bool{}
	for _, d := range s.Evaluate(f, nil, time.Now()) {
		held[string(d.Kind)+"/"+string(d.Scope)] = d.Approval != nil
		if d.Approval != nil && (d.Approval.Required != 2 || d.Approval.Timeout != 5*time.Minute || d.Approval.OnTimeout != "deny") {
			t.Errorf("approval spec %+v", d.Approval)
		}
	}
	want := map[string]bool{"revoke/subject": false, "revoke/client": true, "quarantine/server": false, "step_up/subject": false, "revoke/token": true}
	for k, v := range want {
		if held[k] != v {
			t.Errorf("%s waits for approval: %v, want %v (all: %v)", k, held[k], v, held)
		}
	}
}

// A notification's dedup window is per channel and principal: a noisy principal does not silence
// the channel about another. If this failed, the SOC would hear about the first attacker of the
// hour and not about the second.
func TestNotifyDedupPerPrincipal(t *testing.T) {
	s, err := Load("t.yaml", []byte("playbooks:\n  - name: p\n    actions:\n      - notify: soc\n        dedup_window: 10m\n"))
	if err != nil {
		t.Fatal(err)
	}
	st, now := NewState(0), time.Now()
	f := func(sub string) *event.Finding {
		return &event.Finding{ID: sub, Tenant: "acme", Principal: event.Principal{Subject: sub}}
	}
	for i, c := range []struct {
		sub        string
		suppressed bool
	}{{"mallory", false}, {"mallory", true}, {"trent", false}} {
		d := s.Evaluate(f(c.sub), st, now.Add(time.Duration(i)*time.Minute))
		if len(d) != 1 || d[0].Suppressed != c.suppressed {
			t.Fatalf("finding %d about %s: %+v, want suppressed=%v", i, c.sub, d, c.suppressed)
		}
	}
}

// A lift ends deduplication: within the dedup window, a finding before the operator's lift is
// suppressed, the first one after it acts again and is remembered (the next is suppressed), and a
// notification is never affected by lifts. If this failed, a principal whose revocation was lifted
// by mistake could misbehave again for the rest of the window without being revoked.
func TestLiftEndsDedup(t *testing.T) {
	s, err := Load("t.yaml", []byte("playbooks:\n  - name: p\n    actions:\n      - revoke: subject\n        dedup_window: 10m\n      - notify: soc\n        dedup_window: 10m\n"))
	if err != nil {
		t.Fatal(err)
	}
	lift := t0.Add(3 * time.Minute)
	var asked []string
	st := NewState(0).WithLifted(func(tenant string, kind Kind, scope Scope, target string, last, now time.Time) bool {
		asked = append(asked, string(kind)+"/"+string(scope)+"/"+tenant+"/"+target)
		return lift.After(last) && !lift.After(now)
	})
	f := finding()
	suppressed := func(at time.Duration) (revoke, notify bool) {
		t.Helper()
		ds := s.Evaluate(f, st, t0.Add(at))
		if len(ds) != 2 {
			t.Fatalf("decisions at +%s: %+v", at, ds)
		}
		return ds[0].Suppressed, ds[1].Suppressed
	}
	for _, c := range []struct {
		at             time.Duration
		revoke, notify bool
	}{
		{0, false, false},              // first decision
		{2 * time.Minute, true, true},  // within the window, before the lift
		{4 * time.Minute, false, true}, // after the lift: revoked again; notify still deduplicated
		{5 * time.Minute, true, true},  // the new decision is remembered
	} {
		if r, n := suppressed(c.at); r != c.revoke || n != c.notify {
			t.Errorf("+%s: revoke suppressed %v, notify suppressed %v; want %v, %v", c.at, r, n, c.revoke, c.notify)
		}
	}
	if len(asked) == 0 || asked[0] != "revoke/subject/"+f.Tenant+"/"+f.Principal.Subject {
		t.Errorf("lifts asked about %v", asked)
	}
}
