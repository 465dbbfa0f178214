package policy

import (
	"net/netip"
	"strings"
	"testing"
)

// Explain lists every rule with the first check it failed, so an operator can see why a request
// was denied; a change in the order of checks or in the text shows up here.
func TestExplainDenied(t *testing.T) {
	p := mustLoadFile(t, "testdata/example.yaml")
	req := analyst()
	req.SourceIP = netip.MustParseAddr("10.0.0.5")
	e := p.Explain(req)
	if e.Decision.Effect != Deny || e.Decision.Rule != DefaultDenyRule || e.Action != ActionCall || e.Target != "tool:sales-db/db_query" {
		t.Fatalf("explanation %+v", e)
	}
	want := []struct {
		id, failed, detail string
	}{
		{"no-pii-email", "resource", "target tool:sales-db/db_query matches none of [tool:*/send_email]"},
		{"finance-read", "action", "action call not in [read]"},
		{"analyst-db-query", "ip_range", "ip_range fails: requires ip in [192.168.1.0/24, 2001:db8:1::/48], got 10.0.0.5"},
		{"analyst-db-list", "action", "action call not in [list]"},
		{"oncall-restart", "resource", "matches none of [tool:ops/restart_*]"},
		{"hr-records", "action", "action call not in [read]"},
		{"docs-prompts", "action", "action call not in [get,list]"},
	}
	if len(e.Rules) != len(want) {
		t.Fatalf("%d rules explained, want %d", len(e.Rules), len(want))
	}
	for i, w := range want {
		r := e.Rules[i]
		if r.ID != w.id || r.Failed != w.failed || !strings.Contains(r.Detail, w.detail) || r.Matched || r.Decisive || r.Line == 0 {
			t.Errorf("rule %d = %+v, want %s failing %s with %q", i, r, w.id, w.failed, w.detail)
		}
	}
	s := e.String()
	for _, sub := range []string{
		"decision: deny by default-deny\n",
		"reason:   rule analyst-db-query requires ip in [192.168.1.0/24, 2001:db8:1::/48], got 10.0.0.5\n",
		"request:  call tool:sales-db/db_query\n",
		"  allow analyst-db-query         line 29   ip_range fails",
	} {
		if !strings.Contains(s, sub) {
			t.Errorf("String() lacks %q:\n%s", sub, s)
		}
	}
}

func TestExplainDecisive(t *testing.T) {
	p := mustLoad(t, `
version: 1
rules:
  - {id: a1, resource: "tool:x/*", actions: [call]}
  - {id: a2, resource: "tool:x/*", actions: [call], conditions: {max_risk: 0}}
  - {id: d1, effect: deny, resource: "tool:x/*", actions: [call], conditions: {ip_range: 10.0.0.0/8}}
  - {id: d2, effect: deny, resource: "tool:x/*", actions: [call], conditions: {device_health: compliant}}
`)
	req := Request{Principal: analyst().Principal, Method: "tools/call", Server: "x", Tool: "t", SourceIP: netip.MustParseAddr("10.1.1.1"), Risk: 5, RiskKnown: true}
	e := p.Explain(req)
	got := map[string]RuleResult{}
	for _, r := range e.Rules {
		got[r.ID] = r
	}
	if e.Decision.Rule != "d1" || !got["d1"].Decisive || got["a1"].Decisive || !got["a1"].Matched {
		t.Fatalf("explanation %+v", e)
	}
	// d2's unknown device health satisfies a deny rule (fails closed): it matches, though d1 decided.
	if !got["d2"].Matched || got["d2"].Decisive {
		t.Errorf("d2 = %+v", got["d2"])
	}
	if !got["a2"].Matched || !strings.Contains(got["a2"].Detail, "matched: deny (rule a2 allows risk up to 0") {
		t.Errorf("a2 = %+v", got["a2"])
	}
	if !strings.Contains(e.String(), "* deny  d1") {
		t.Errorf("decisive rule not marked:\n%s", e)
	}
}

func TestExplainRefusedRequest(t *testing.T) {
	p := mustLoadFile(t, "testdata/example.yaml")
	req := analyst()
	req.Method = "sampling/createMessage"
	e := p.Explain(req)
	if e.Decision.Effect != Deny || len(e.Rules) != p.Len() || e.Rules[0].Failed != "request" || !strings.Contains(e.Rules[0].Detail, "not governed") {
		t.Fatalf("%+v", e)
	}
}
