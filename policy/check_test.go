package policy

import (
	"strings"
	"testing"
)

// The shipped example must lint clean: it is what users copy.
func TestCheckExampleClean(t *testing.T) {
	if ws := Check(mustLoadFile(t, "testdata/example.yaml")); len(ws) != 0 {
		t.Errorf("example has warnings: %v", ws)
	}
}

func TestCheck(t *testing.T) {
	p := mustLoad(t, `
version: 1
rules:
  - id: allow-mail
    resource: "tool:mail/*"
    actions: [call]
  - id: allow-mail-again
    resource: "tool:mail/*"
    actions: [call]
    conditions: {ip_range: 10.0.0.0/8}
  - id: block-mail
    effect: deny
    resources: ["tool:mail/*"]
    actions: [call]
  - id: never
    resource: "tool:b/*"
    actions: [call]
    conditions: {time: "09:00-09:00"}
  - id: contradiction
    resource: "tool:c/*"
    actions: [call]
    conditions: {data_class: {any_of: [PII], none_of: [pii]}}
  - id: step
    resource: "tool:d/*"
    actions: [call]
    conditions: {max_risk: 50, step_up_risk: 60}
  - id: pii-open
    resource: "resource:crm://customers/**"
    actions: [read]
    principals: [role:support]
    conditions: {data_class: [pii]}
  - id: pii-guarded
    resource: "resource:crm://customers/**"
    actions: [read]
    principals: [role:support]
    conditions: {data_class: [pii], device_health: compliant}
  - id: everything
    resources: ["tool:**", "resource:**", "prompt:**"]
    actions: ["*"]
`)
	got := map[string]string{}
	for _, w := range Check(p) {
		got[w.Rule+"/"+w.Code] = w.String()
	}
	want := map[string]string{
		"allow-mail/shadowed":              `test.yaml:4: rule "allow-mail": never decides: rule "block-mail" (line 11) has the same scope, no conditions, and denies, and deny rules win (shadowed)`,
		"allow-mail-again/shadowed":        `rule "allow-mail" (line 4) has the same scope, no conditions, and comes first`,
		"never/never-matches":              "time window 09:00-09:00 UTC is empty",
		"contradiction/never-matches":      "data_class: every any_of value is also in none_of",
		"step/step-up-unreachable":         "step_up_risk 60 >= max_risk 50",
		"pii-open/sensitive-unconditional": "allows data class pii with no ip_range",
		"everything/allow-all":             "this is allow-by-default",
	}
	for k, sub := range want {
		if !strings.Contains(got[k], sub) {
			t.Errorf("%s: got %q, want it to contain %q", k, got[k], sub)
		}
		delete(got, k)
	}
	for k, v := range got {
		t.Errorf("unexpected warning %s: %s", k, v)
	}
	if ws := Check(mustLoad(t, "version: 1\n")); len(ws) != 1 || ws[0].Code != "no-allow" {
		t.Errorf("empty policy: %v", ws)
	}
}
