package response

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/control"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
	"github.com/mcpwatch/mcpwatch/response/playbook"
)

const testPlaybooks = `
defaults:
  expire_after: 1h
playbooks:
  - name: contain
    match: {min_score: 80}
    actions:
      - revoke: subject
        dedup_window: 10m
        escalate: {after: 3, within: 1h, to: {revoke: subject, permanent: true}}
      - quarantine: sandbox
        expire_after: 30m
      - step_up: true
      - block_egress: true
      - notify: soc
  - name: watch-contractors
    dry_run: true
    match: {role: "contractor*"}
    actions:
      - revoke: client
`

// playbookResponder returns a responder deciding under src, with the tests' fixed clock.
func playbookResponder(t *testing.T, src string, controls *control.Store) (*Responder, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "playbooks.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	store, err := playbook.NewStore(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(event.TopicNames("t"), DefaultConfig(), nil, nil, WithClock(func() time.Time { return now }), WithPlaybooks(store, controls))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r, path
}

func sandboxed(f *event.Finding) *event.Finding {
	f.Evidence = append(f.Evidence, event.Evidence{Feature: "sandbox", ObservedText: "sbx-1"}, event.Evidence{Feature: "server", ObservedText: "files"})
	return f
}

func byTarget(acts []*event.Action) map[string]*event.Action {
	m := map[string]*event.Action{}
	for _, a := range acts {
		m[a.Target] = a
	}
	return m
}

// One finding over the playbook's score: each action becomes its control, with the playbook as
// actor, the matched conditions as reason and the action's expiry; the notification is left to
// the notify stage. If this failed, playbooks would not act, or act with the wrong scope or
// lifetime.
func TestDecideControls(t *testing.T) {
	r, _ := playbookResponder(t, testPlaybooks, nil)
	f := sandboxed(finding(90))
	ctls, acts := r.Decide(0, f)
	want := map[string]time.Duration{
		"revoke/subject/acme/mallory":     time.Hour,
		"quarantine/sandbox/acme/sbx-1":   30 * time.Minute,
		"step_up/subject/acme/mallory":    time.Hour,
		"block_egress/sandbox/acme/sbx-1": time.Hour,
	}
	if len(ctls) != len(want) || len(acts) != len(want) {
		t.Fatalf("%d controls, %d actions; want %d of each", len(ctls), len(acts), len(want))
	}
	am := byTarget(acts)
	for _, c := range ctls {
		d, ok := want[c.Key()]
		if !ok {
			t.Fatalf("unexpected control %s", c.Key())
		}
		if c.Expires == nil || !c.Expires.Equal(f.Time.Add(d).UTC()) {
			t.Errorf("%s expires %v, want finding time + %s", c.Key(), c.Expires, d)
		}
		if c.Actor != "playbook:contain" || c.FindingID != f.ID || !strings.Contains(c.Reason, "score 90 >= 80") {
			t.Errorf("%s: actor %q finding %q reason %q", c.Key(), c.Actor, c.FindingID, c.Reason)
		}
		a := am[c.Key()]
		if a == nil || a.Status != StatusSucceeded || a.ControlID != c.ID || a.Playbook != "contain" || a.Scope != c.Scope {
			t.Errorf("action for %s: %+v", c.Key(), a)
		}
	}
	// Redelivered, the same finding yields the same ids (and is suppressed by the dedup window
	// for the revocation, which is what an at-least-once redelivery looks like).
	r2, _ := playbookResponder(t, testPlaybooks, nil)
	ctls2, acts2 := r2.Decide(0, f)
	for i := range ctls {
		if ctls[i].ID != ctls2[i].ID || acts[i].ID != acts2[i].ID {
			t.Fatalf("ids differ between deliveries: %s/%s %s/%s", ctls[i].ID, ctls2[i].ID, acts[i].ID, acts2[i].ID)
		}
	}
}

// Dedup, escalation and the rule that no decision shortens a control in force. If this failed,
// a noisy principal would be revoked on every finding (flooding the control topic and the audit
// trail), the escalation would never come, or a later one-hour revocation would replace the
// escalation's permanent one — letting an attacker back in after an hour.
func TestDecideDedupEscalateNeverWeaken(t *testing.T) {
	r, _ := playbookResponder(t, testPlaybooks, nil)
	status := func(acts []*event.Action, key string) (string, *event.Action) {
		for _, a := range acts {
			if a.Target == key {
				return a.Status, a
			}
		}
		return "", nil
	}
	const key = "revoke/subject/acme/mallory"
	base := finding(90)
	var last []*event.Action
	for i := range 3 {
		f := finding(90)
		f.Time = base.Time.Add(time.Duration(i) * time.Minute)
		_, last = r.Decide(0, f)
		st, a := status(last, key)
		switch i {
		case 0:
			if st != StatusSucceeded {
				t.Fatalf("first finding: %s %+v", st, a)
			}
		case 1:
			if st != StatusSuppressed {
				t.Fatalf("second finding within the dedup window: %s %+v", st, a)
			}
		}
	}
	// The third finding within the hour escalates to a permanent revocation, published after
	// the suppressed one-hour decision.
	var permanent *event.Action
	for _, a := range last {
		if a.Target == key && a.Expires == nil {
			permanent = a
		}
	}
	if permanent == nil || permanent.Status != StatusSucceeded || !strings.Contains(permanent.Reason, "escalated: 3 findings") {
		t.Fatalf("no permanent escalation among %+v", last)
	}
	// After the dedup window, a one-hour decision is due again, but the permanent control is in
	// force: nothing is published, and the action says it holds through the permanent control.
	f := finding(90)
	f.Time = base.Time.Add(20 * time.Minute)
	ctls, acts := r.Decide(0, f)
	if st, a := status(acts, key); st != StatusSucceeded || !strings.Contains(a.Detail, "(permanent)") || a.ControlID != permanent.ControlID {
		t.Fatalf("one-hour revocation after a permanent one: %s %+v", st, a)
	}
	for _, c := range ctls {
		if c.Key() == key {
			t.Fatalf("published %+v over the permanent revocation", c)
		}
	}

	// The same rule reads the control topic's state: a longer control there is not shortened.
	controls := control.NewStore()
	exp := now.Add(48 * time.Hour)
	held := event.Control{ID: "c-48h", Time: now, Reason: "operator", Kind: event.ControlRevoke, Scope: event.ScopeSubject, Tenant: "acme", Value: "mallory", Expires: &exp}
	b, _ := event.Encode(&held)
	if err := controls.Apply([]byte(held.Key()), b); err != nil {
		t.Fatal(err)
	}
	r2, _ := playbookResponder(t, testPlaybooks, controls)
	_, acts = r2.Decide(0, finding(90))
	if st, a := status(acts, key); st != StatusSucceeded || a.ControlID != "c-48h" || !strings.Contains(a.Detail, "until "+exp.Format(time.RFC3339)) {
		t.Fatalf("one-hour revocation under a 48h one on the control topic: %s %+v", st, a)
	}
}

// Dry run, stale findings and findings that match no playbook. If this failed, a dry-run
// playbook would act, a replayed week-old finding would revoke someone an operator reinstated,
// or an unmatched finding would act.
func TestDecideDryRunStaleUnmatched(t *testing.T) {
	r, _ := playbookResponder(t, testPlaybooks, nil)
	f := finding(10)
	f.Principal.Roles = []string{"contractor-ext"}
	ctls, acts := r.Decide(0, f)
	if len(ctls) != 0 || len(acts) != 1 || acts[0].Status != StatusDryRun || !acts[0].DryRun ||
		acts[0].Target != "revoke/client/acme/claude-desktop" || !strings.Contains(acts[0].Detail, "would publish") {
		t.Fatalf("dry run: %d controls, actions %+v", len(ctls), acts)
	}
	old := finding(95)
	old.Time = now.Add(-2 * time.Hour)
	ctls, acts = r.Decide(0, old)
	if len(ctls) != 0 || len(acts) == 0 {
		t.Fatalf("stale finding: %d controls %d actions", len(ctls), len(acts))
	}
	for _, a := range acts {
		if a.Status != StatusSkipped || !strings.Contains(a.Detail, "older than the max age") {
			t.Fatalf("stale finding action %+v", a)
		}
	}
	if ctls, acts := r.Decide(0, finding(50)); len(ctls)+len(acts) != 0 {
		t.Fatalf("unmatched finding: %d controls %d actions", len(ctls), len(acts))
	}
}

// The playbooks' memory is a function of the findings: a consumer that takes a partition over
// and replays its findings decides the next one exactly like the consumer that saw them all. If
// this failed, every rebalance or restart would reset dedup windows (repeat actions) and
// escalation counts (delay permanent revocations).
func TestRebuildDecidesAlike(t *testing.T) {
	seen, _ := playbookResponder(t, testPlaybooks, nil)
	fresh, _ := playbookResponder(t, testPlaybooks, nil)
	var history []*event.Finding
	for i := range 2 {
		f := finding(90)
		f.Time = now.Add(time.Duration(i-5) * time.Minute)
		history = append(history, f)
		seen.Decide(3, f)
	}
	for _, f := range history {
		rec, err := kafkaio.RecordOf("findings", "acme/mallory", f)
		if err != nil {
			t.Fatal(err)
		}
		rec.Partition = 3
		fresh.dec.rebuild(part{fresh.names.Findings, 3}, rec)
	}
	fresh.dec.rebuild(part{fresh.names.Findings, 3}, &kgo.Record{Partition: 3, Value: []byte("{garbage")}) // dead-lettered at first handling
	next := finding(90)
	_, a1 := seen.Decide(3, next)
	_, a2 := fresh.Decide(3, next)
	if len(a1) != len(a2) {
		t.Fatalf("%d vs %d actions", len(a1), len(a2))
	}
	escalated := false
	for i := range a1 {
		if a1[i].ID != a2[i].ID || a1[i].Status != a2[i].Status {
			t.Fatalf("action %d: %s %s vs %s %s", i, a1[i].Target, a1[i].Status, a2[i].Target, a2[i].Status)
		}
		escalated = escalated || a1[i].Expires == nil
	}
	if !escalated {
		t.Fatal("the third finding did not escalate: the test does not exercise the escalation memory")
	}
	// Partitions taken away are forgotten.
	fresh.dec.forget(map[string][]int32{fresh.names.Findings: {3}})
	if n := len(fresh.dec.state); n != 0 {
		t.Fatalf("%d partition memories after forgetting the only one", n)
	}
}

// A changed playbook file is taken on reload; a broken one keeps the set in force. If this
// failed, fixing a playbook would need a restart, or a typo would disarm the responder.
func TestPlaybookReload(t *testing.T) {
	r, path := playbookResponder(t, testPlaybooks, nil)
	store := r.dec.store
	if err := os.WriteFile(path, []byte(strings.Replace(testPlaybooks, "min_score: 80", "min_score: 99", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := store.Reload(); err != nil {
		t.Fatal(err)
	}
	if ctls, _ := r.Decide(0, finding(90)); len(ctls) != 0 {
		t.Fatalf("score 90 acted on under min_score 99: %d controls", len(ctls))
	}
	if err := os.WriteFile(path, []byte("playbooks:\n  - name: x\n    match: {min_scor: 1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := store.Reload()
	if err == nil || !strings.Contains(err.Error(), ":3:") {
		t.Fatalf("broken reload: %v, want an error with its line", err)
	}
	if ctls, _ := r.Decide(0, finding(99.5)); len(ctls) == 0 {
		t.Fatal("the set in force was dropped by a broken reload")
	}
}

// A playbook can act on threat scores: source score matches the score records, not findings, and
// repeated scores inside the dedup window are counted, not recorded. If this failed, a principal
// whose score climbs past the line without any one finding being severe would never be contained,
// or every score update would write an action record.
func TestDecideScore(t *testing.T) {
	const src = `
playbooks:
  - name: risky
    match: {source: score, min_score: 90}
    actions:
      - step_up: true
        dedup_window: 15m
`
	r, _ := playbookResponder(t, src, nil)
	s := &event.Score{Schema: event.SchemaVersion, Time: now, Tenant: "acme", Subject: "mallory", Score: 95,
		Explanation: "threat score 95: user_risk 40, frequency 30", Evidence: []event.Evidence{{Feature: "calls_per_min", Observed: 300, Baseline: 2}}}
	ctls, acts := r.DecideScore(1, s)
	if len(ctls) != 1 || ctls[0].Key() != "step_up/subject/acme/mallory" || len(acts) != 1 ||
		!strings.Contains(acts[0].Reason, "score 95 >= 90") || acts[0].FindingID == "" {
		t.Fatalf("score 95: controls %+v actions %+v", ctls, acts)
	}
	s2 := *s
	s2.Time = now.Add(time.Minute)
	if ctls, acts := r.DecideScore(1, &s2); len(ctls)+len(acts) != 0 {
		t.Fatalf("repeated score inside the dedup window: %d controls %d actions", len(ctls), len(acts))
	}
	low := *s
	low.Score, low.Subject = 50, "bob"
	if ctls, _ := r.DecideScore(1, &low); len(ctls) != 0 {
		t.Fatal("score 50 acted on under min_score 90")
	}
	if ctls, acts := r.Decide(1, finding(99)); len(ctls)+len(acts) != 0 {
		t.Fatal("a finding matched a playbook of source score")
	}
}

// An operator's lift ends a playbook's deduplication, as the lift runbook says: within the
// dedup window a finding after the lift revokes again (a new control, published), a finding before
// it stays suppressed, and a consumer that rebuilds its memory from the same findings over the
// same lift decides the next finding alike. If this failed, lifting a revocation would disarm the
// playbook for that principal for the rest of its window.
func TestDecideLiftEndsDedup(t *testing.T) {
	// Permanent, so the responder's memory of its own control would outlast the new one if it
	// ignored the lift.
	const src = "playbooks:\n  - name: contain\n    match: {min_score: 80}\n    actions:\n      - revoke: subject\n        permanent: true\n        dedup_window: 10m\n"
	path := filepath.Join(t.TempDir(), "playbooks.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	controls := control.NewStore()
	clock := now
	newResponder := func() *Responder {
		store, err := playbook.NewStore(path, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		r, err := New(event.TopicNames("t"), DefaultConfig(), nil, nil, WithClock(func() time.Time { return clock }), WithPlaybooks(store, controls))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
		return r
	}
	r := newResponder()
	const key = "revoke/subject/acme/mallory"
	decide := func(r *Responder, at time.Time) (*event.Control, *event.Action) {
		t.Helper()
		clock = at.Add(time.Second) // decided a second after the finding
		f := finding(90)
		f.ID, f.Time = "f-"+at.Format("150405"), at
		ctls, acts := r.Decide(0, f)
		var c *event.Control
		for _, x := range ctls {
			if x.Key() == key {
				c = x
				b, _ := event.Encode(x)
				if err := controls.ApplyAt([]byte(x.Key()), b, clock); err != nil { // read back by the follower
					t.Fatal(err)
				}
			}
		}
		return c, byTarget(acts)[key]
	}
	t0 := now.Add(-30 * time.Minute)
	c1, a1 := decide(r, t0)
	if c1 == nil || a1.Status != StatusSucceeded {
		t.Fatalf("first finding: %+v %+v", c1, a1)
	}
	if c, a := decide(r, t0.Add(time.Minute)); c != nil || a.Status != StatusSuppressed {
		t.Fatalf("second finding within the window, before any lift: %+v %+v", c, a)
	}
	// The operator lifts the revocation (its tombstone on the control topic).
	if err := controls.ApplyAt([]byte(key), nil, t0.Add(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	c3, a3 := decide(r, t0.Add(4*time.Minute))
	if c3 == nil || a3.Status != StatusSucceeded || c3.ID == c1.ID || a3.ControlID != c3.ID {
		t.Fatalf("finding after the lift, within the window: control %+v action %+v; want a new revocation", c3, a3)
	}
	if c, a := decide(r, t0.Add(5*time.Minute)); c != nil || a.Status != StatusSuppressed {
		t.Fatalf("finding after the re-revocation: %+v %+v; want suppressed", c, a)
	}

	// A consumer that takes the partition over replays the same findings over the same lift.
	fresh := newResponder()
	for i, at := range []time.Duration{0, time.Minute, 4 * time.Minute, 5 * time.Minute} {
		f := finding(90)
		f.ID, f.Time = fmt.Sprintf("replay-%d", i), t0.Add(at)
		rec, err := kafkaio.RecordOf("findings", "acme/mallory", f)
		if err != nil {
			t.Fatal(err)
		}
		fresh.dec.rebuild(part{fresh.names.Findings, 0}, rec)
	}
	next := t0.Add(13 * time.Minute) // outside the first decision's window, inside the re-revocation's
	_, want := decide(r, next)
	_, got := decide(fresh, next)
	if want.Status != StatusSuppressed || got.Status != want.Status {
		t.Fatalf("after the window of the first decision: live %s, rebuilt %s; want both suppressed", want.Status, got.Status)
	}
}
