package ops

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

// Planning an operator control: the default expiry is 1h (never permanent by accident), --for and
// --permanent are honoured, and the action record carries who, why, which finding and the control
// it published. Bad requests are refused with every reason at once. If it failed, operator
// controls could be permanent by mistake, unexplained, or aimed at the wrong kind of target.
func TestPlanControl(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	r := Request{Operator: "carol", Reason: " exfil ", FindingID: "f-1", Tenant: "acme", Kind: event.ControlRevoke,
		Scope: event.ScopeSubject, Value: "alice"}
	ctl, a, err := PlanControl(r, now)
	if err != nil {
		t.Fatal(err)
	}
	if ctl.Expires == nil || !ctl.Expires.Equal(now.Add(time.Hour)) || ctl.Actor != "operator:carol" || ctl.Reason != "exfil" ||
		ctl.Key() != "revoke/subject/acme/alice" {
		t.Fatalf("control %+v", ctl)
	}
	if a.Kind != event.ActionRevoke || a.Target != ctl.Key() || a.ControlID != ctl.ID || a.Actor != "operator:carol" ||
		a.FindingID != "f-1" || a.Subject != "alice" || a.Status != StatusSucceeded || ActionKey(a) != "acme/alice" {
		t.Fatalf("action %+v", a)
	}
	r.Permanent = true
	if ctl, _, _ := PlanControl(r, now); ctl.Expires != nil {
		t.Fatal("--permanent control expires")
	}
	r.Permanent, r.For = false, 30*time.Minute
	if ctl, _, _ := PlanControl(r, now); !ctl.Expires.Equal(now.Add(30 * time.Minute)) {
		t.Fatalf("--for 30m: expires %v", ctl.Expires)
	}
	q := Request{Operator: "carol", Reason: "x", Kind: event.ControlQuarantine, Scope: event.ScopeServer, Value: "files", Tenant: "acme"}
	if _, a, err := PlanControl(q, now); err != nil || a.Subject != "" || ActionKey(a) != "acme/quarantine/server/acme/files" {
		t.Fatalf("server quarantine: %v %+v", err, a)
	}

	_, _, err = PlanControl(Request{Kind: event.ControlQuarantine, Scope: event.ScopeSubject, For: time.Hour, Permanent: true}, now)
	for _, want := range []string{"--reason", "--operator", "quarantine applies to one of sandbox, server, tool", "no subject given", "exclusive"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad request: error %v does not say %q", err, want)
		}
	}
	if !errors.Is(err, ErrNoReason) {
		t.Error("missing reason is not ErrNoReason")
	}
}

// Lifting: the action names the lifter and reason, keeps the control's finding unless another is
// given, and keys parse back into their parts (values may hold '/'); Select finds by key or by
// target and says how to see what exists when nothing matches. If it failed, lifts would be
// unattributed or lift the wrong control.
func TestLift(t *testing.T) {
	c := event.Control{ID: "c1", Kind: event.ControlQuarantine, Scope: event.ScopeTool, Tenant: "acme", Value: "files/delete",
		Reason: "poisoned", FindingID: "f-7", Actor: "playbook:contain"}
	a, err := PlanLift(Lift{Operator: "dave", Reason: "patched"}, c, time.Now())
	if err != nil || a.Kind != event.ActionLift || a.Actor != "operator:dave" || a.FindingID != "f-7" || a.ControlID != "c1" ||
		!strings.Contains(a.Detail, "playbook:contain") {
		t.Fatalf("%v %+v", err, a)
	}
	if _, err := PlanLift(Lift{Operator: "dave"}, c, time.Now()); !errors.Is(err, ErrNoReason) {
		t.Fatalf("lift without reason: %v", err)
	}
	kind, scope, tenant, value, err := ParseKey(c.Key())
	if err != nil || kind != c.Kind || scope != c.Scope || tenant != "acme" || value != "files/delete" {
		t.Fatalf("ParseKey(%q) = %s %s %s %s %v", c.Key(), kind, scope, tenant, value, err)
	}
	if _, _, _, _, err := ParseKey("revoke/subject"); err == nil {
		t.Fatal("short key accepted")
	}
	cs := []event.Control{c, {Kind: event.ControlRevoke, Scope: event.ScopeTool, Tenant: "acme", Value: "files/delete"}}
	if got, err := Select(cs, "", "acme", event.ScopeTool, "files/delete"); err != nil || len(got) != 2 {
		t.Fatalf("select by target: %v %v", got, err)
	}
	if got, err := Select(cs, c.Key(), "", "", ""); err != nil || len(got) != 1 {
		t.Fatalf("select by key: %v %v", got, err)
	}
	if _, err := Select(cs, "", "other", event.ScopeTool, "files/delete"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "list --all") {
		t.Fatalf("select nothing: %v", err)
	}
}

// list hides expired controls unless asked, and the table never passes control characters from
// a reason to the terminal. If it failed, operators would act on stale controls or a crafted
// reason could rewrite their screen.
func TestRows(t *testing.T) {
	now := time.Now()
	past := now.Add(-time.Minute)
	cs := []event.Control{
		{ID: "1", Kind: event.ControlRevoke, Scope: event.ScopeSubject, Value: "alice", Reason: "a\x1b[2Jb", Time: now},
		{ID: "2", Kind: event.ControlBlockEgress, Scope: event.ScopeSandbox, Value: "sb", Time: past, Expires: &past},
	}
	if rows := Rows(cs, now, false); len(rows) != 1 || rows[0].ID != "1" {
		t.Fatalf("in force: %+v", rows)
	}
	rows := Rows(cs, now, true)
	if len(rows) != 2 || rows[1].InForce || !strings.HasPrefix(rows[1].Enforced, "egress refused") {
		t.Fatalf("all: %+v", rows)
	}
	var b strings.Builder
	if err := WriteTable(&b, rows, now); err != nil || strings.Contains(b.String(), "\x1b") || !strings.Contains(b.String(), "(expired)") {
		t.Fatalf("table:\n%q", b.String())
	}
}
