package playbook

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Every broken file must fail at the line and column of its problem with a reason a person can
// act on; if positions regress, `mcpwatch playbook check` sends operators hunting.
func TestLoadErrors(t *testing.T) {
	for file, want := range map[string]string{
		"unknown_key.yaml":              `unknown_key.yaml:4:7: unknown key "detectr"`,
		"wrong_type.yaml":               "wrong_type.yaml:4:18: want a number, got a string",
		"duplicate_key.yaml":            `duplicate_key.yaml:3:5: key "name" given twice`,
		"permanent_and_expiry.yaml":     "permanent_and_expiry.yaml:5:20: playbooks[0].actions[0].permanent: permanent and expire_after exclude each other",
		"bad_scope.yaml":                `bad_scope.yaml:4:17: playbooks[0].actions[0].revoke: unknown scope "user" (want subject, token or client)`,
		"score_range.yaml":              "score_range.yaml:4:18: playbooks[0].match.min_score: must be between 0 and 100",
		"approval_required.yaml":        "approval_required.yaml:3:13: approval.required: must be between 1 and the number of approvers (2), got 3",
		"approval_without_section.yaml": "approval_without_section.yaml:5:19: playbooks[0].actions[0].approval: needs the file's `approval:` section",
		"approval_impact.yaml":          `approval_impact.yaml:4:17: approval.above_impact: must be "low", "medium" or "high", got "severe"`,
		"bad_source.yaml":               `bad_source.yaml:4:15: playbooks[0].match.source: must be "finding" or "score", got "scores"`,
		"bad_duration.yaml":             `bad_duration.yaml:5:23: want a duration such as 30m or 1h`,
		"escalate_no_to.yaml":           "escalate_no_to.yaml:6:16: playbooks[0].actions[0].escalate: to is required",
		"two_actions.yaml":              "two_actions.yaml:4:15: playbooks[0].actions[0]: more than one action in one entry",
		"duplicate_name.yaml":           `duplicate_name.yaml:5:11: playbooks[1].name: playbook "a" is defined twice`,
	} {
		t.Run(file, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("testdata", file))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Load(file, src)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("got %v\nwant %q", err, want)
			}
		})
	}
}

// The example must load, with defaults applied where an action sets no expiry.
func TestLoadExample(t *testing.T) {
	s, err := LoadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Playbooks) != 2 {
		t.Fatalf("playbooks: %d", len(s.Playbooks))
	}
	a := s.Playbooks[0].Actions
	if a[0].ExpireAfter != time.Hour || a[0].Permanent || a[0].DedupWindow != 10*time.Minute {
		t.Errorf("revoke: default expiry/dedup not applied: %+v", a[0])
	}
	if a[1].ExpireAfter != 30*time.Minute {
		t.Errorf("quarantine: own expiry lost: %+v", a[1])
	}
	if e := a[0].Escalate; e == nil || e.After != 3 || e.Within != time.Hour || !e.To.Permanent || e.To.Scope != ScopeClient {
		t.Errorf("escalation: %+v", e)
	}
	if a[2].ExpireAfter != 0 || a[2].Channel != "soc" {
		t.Errorf("notify: %+v", a[2])
	}
	if !s.Playbooks[1].DryRun || s.Playbooks[0].DryRun {
		t.Errorf("dry run flags wrong")
	}
}

// Without defaults.expire_after, revocations still expire (after 1h): permanence is opt-in.
func TestDefaultExpiryWithoutDefaults(t *testing.T) {
	s, err := Load("x.yaml", []byte("playbooks:\n  - name: a\n    actions:\n      - revoke: subject\n      - revoke: token\n        permanent: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a := s.Playbooks[0].Actions; a[0].ExpireAfter != time.Hour || !a[1].Permanent || a[1].ExpireAfter != 0 {
		t.Fatalf("%+v", a)
	}
}
