package policy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpwatch/mcpwatch/event"
)

// Every broken file in testdata/invalid must fail with a precise, positioned message; a missing
// entry here fails the test so new cases cannot be forgotten.
func TestLoadErrors(t *testing.T) {
	want := map[string][]string{
		"unknown_rule_field.yaml":        {`unknown_rule_field.yaml:4:5: rule "typo": rule: unknown field "effct"`},
		"unknown_condition.yaml":         {`unknown_condition.yaml:8:9: rule "cond-typo": conditions: unknown field "tiem"`},
		"bad_cidr.yaml":                  {`bad_cidr.yaml:7:34: rule "x": ip_range "10.0.0.0/33": invalid CIDR`},
		"host_bits.yaml":                 {`host_bits.yaml:7:17: rule "office": ip_range "192.168.1.5/24": host bits set; did you mean 192.168.1.0/24?`},
		"allow_by_default.yaml":          {`allow_by_default.yaml:3:13: defaults.decision: allow-by-default is not supported`},
		"duplicate_id.yaml":              {`duplicate_id.yaml:6:5: rule "same": duplicate rule id (first at line 3)`},
		"missing_id.yaml":                {`missing_id.yaml:3:5: rule #1: id: required`},
		"missing_version.yaml":           {`missing_version.yaml:1:1: version: required`},
		"version_2.yaml":                 {`version_2.yaml:1:10: version: unsupported version "2"`},
		"bad_time.yaml":                  {`bad_time.yaml:7:15: rule "late": time "09:00-25:00": "25:00": no such time of day`},
		"bad_timezone.yaml":              {`bad_timezone.yaml:8:19: rule "mars": timezone "Mars/Olympus_Mons": not an IANA time zone`},
		"timezone_alone.yaml":            {`timezone_alone.yaml:7:9: rule "tz": timezone: needs time or days`},
		"bad_days.yaml":                  {`bad_days.yaml:8:16: rule "days": days "mon-fry": want mon`},
		"bad_action.yaml":                {`bad_action.yaml:5:21: rule "writer": actions: "write": want call, read, get, list or *`},
		"missing_actions.yaml":           {`missing_actions.yaml:3:5: rule "no-actions": actions: required`},
		"triple_star.yaml":               {`triple_star.yaml:4:15: rule "stars": resource "tool:a/***": three or more consecutive '*'`},
		"no_kind.yaml":                   {`no_kind.yaml:4:15: rule "bare": resource "sales-db/db_query": want a tool:, resource: or prompt: pattern`},
		"both_resource_fields.yaml":      {`both_resource_fields.yaml:5:16: rule "both": give either resource or resources, not both`},
		"step_up_on_deny.yaml":           {`step_up_on_deny.yaml:8:9: rule "deny-risky": step_up_risk: applies to allow rules only`},
		"risk_range.yaml":                {`risk_range.yaml:7:19: rule "risk": max_risk: "101": want a number from 0 to 100`},
		"duplicate_condition.yaml":       {`duplicate_condition.yaml:8:9: rule "twice": conditions: "ip_range" given twice (first at line 7)`},
		"duplicate_key.yaml":             {`duplicate_key.yaml:5:5: rule "dupkey": rule: field "effect" given twice`},
		"bad_effect.yaml":                {`bad_effect.yaml:4:13: rule "maybe": effect: "permit": want allow or deny`},
		"bad_principal.yaml":             {`bad_principal.yaml:6:18: rule "who": principals: "alice": want sub:<subject>`},
		"syntax.yaml":                    {`syntax.yaml:4:1: invalid YAML: `},
		"two_documents.yaml":             {`two_documents.yaml:3:1: more than one YAML document`},
		"empty.yaml":                     {`empty.yaml: empty policy`},
		"step_up_auth_without_risk.yaml": {`step_up_auth_without_risk.yaml:7:7: rule "auth": step_up_auth: needs step_up_risk`},
		"tool_without_name.yaml":         {`tool_without_name.yaml:4:15: rule "server-only": resource "tool:sales-db": want <kind>:<server>/<name>`},
		"reserved_id.yaml":               {`reserved_id.yaml:3:9: rule "default-deny": id "default-deny" is reserved`},
		"rules_not_list.yaml":            {`rules_not_list.yaml:3:3: rules: want a list, got a mapping`},
		"bad_auth_age.yaml":              {`bad_auth_age.yaml:7:21: rule "fresh": max_auth_age: "10": want a duration from 1s to 24h`},
		"auth_age_on_deny.yaml":          {`auth_age_on_deny.yaml:8:7: rule "stale-deny": max_auth_age: applies to allow rules only`},
		"approval_unreachable.yaml":      {`approval_unreachable.yaml:8:17: rule "wire": approval.required: 3 of 2 approvers can never be reached`},
		"approval_on_list.yaml":          {`approval_on_list.yaml:6:15: rule "wire": approval: applies to rules whose actions are [call] only, this rule has [call,list]`},
		"approval_bad_on_timeout.yaml":   {`approval_bad_on_timeout.yaml:9:19: rule "wire": approval.on_timeout: "maybe": want deny (the default) or approve`},
		"approval_unknown_field.yaml": {
			`approval_unknown_field.yaml:7:24: rule "wire": approval.approvers: "ann" listed twice`,
			`approval_unknown_field.yaml:8:7: rule "wire": approval: unknown field "requird"`,
		},
	}
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			subs, ok := want[name]
			if !ok {
				t.Fatalf("no expectation for %s", name)
			}
			delete(want, name)
			p, err := LoadFile(f)
			if err == nil {
				t.Fatalf("loaded %d rules, want error", p.Len())
			}
			for _, s := range subs {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error\n  %v\nwant it to contain\n  %s", err, s)
				}
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Errorf("error %T is not a *policy.Error", err)
			}
		})
	}
	for name := range want {
		t.Errorf("expectation for missing file %s", name)
	}
}

func TestAllowByDefaultSentinel(t *testing.T) {
	_, err := LoadFile("testdata/invalid/allow_by_default.yaml")
	if !strings.Contains(err.Error(), ErrAllowByDefault.Error()) {
		t.Fatalf("error %v does not explain allow-by-default", err)
	}
}

// All problems are reported at once, not just the first.
func TestLoadReportsEveryError(t *testing.T) {
	_, err := Load(strings.NewReader(`
version: 1
rules:
  - id: a
    resource: "tool:x/*"
    actions: [jump]
  - id: b
    resource: "tool:x/*"
    actions: [call]
    conditions: {ip_range: nope, time: "9-5"}
`), "multi.yaml")
	if err == nil {
		t.Fatal("loaded")
	}
	for _, s := range []string{`multi.yaml:6:15: rule "a": actions: "jump"`, `multi.yaml:10:28: rule "b": ip_range "nope"`, `multi.yaml:10:40: rule "b": time "9-5"`} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("missing %q in\n%v", s, err)
		}
	}
}

func TestLoadLimitsAndAliases(t *testing.T) {
	big := bytes.Repeat([]byte("#"), MaxFileSize+1)
	if _, err := Load(bytes.NewReader(big), "big.yaml"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized file: %v", err)
	}
	// Aliases work (reuse a CIDR list) ...
	p := mustLoad(t, `
version: 1
rules:
  - id: a
    resource: "tool:x/*"
    actions: [call]
    conditions: {ip_range: &office ["10.0.0.0/8"]}
  - id: b
    resource: "tool:y/*"
    actions: [call]
    conditions: {ip_range: *office}
`)
	if p.Len() != 2 {
		t.Fatalf("rules %d", p.Len())
	}
	// ... but an alias bomb is cut off by the visit budget instead of exhausting memory or time.
	var b strings.Builder
	b.WriteString("version: 1\nx: &l0 [\"10.0.0.0/8\"]\n")
	_, err := Load(strings.NewReader(b.String()), "bomb.yaml")
	if err == nil || !strings.Contains(err.Error(), `unknown field "x"`) {
		t.Fatalf("unknown top-level key: %v", err)
	}
	b.Reset()
	b.WriteString("version: 1\nrules:\n  - &r\n    id: r\n    resource: \"tool:x/*\"\n    actions: [call]\n    conditions:\n      ip_range: &c [")
	for i := range 2000 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("\"10.0.0.0/8\"")
	}
	b.WriteString("]\n")
	for i := range 1000 {
		fmt.Fprintf(&b, "  - {id: r%d, resource: \"tool:x/*\", actions: [call], conditions: {ip_range: *c}}\n", i)
	}
	_, err = Load(strings.NewReader(b.String()), "bomb.yaml")
	if err == nil || !strings.Contains(err.Error(), "too many aliases") {
		t.Fatalf("alias expansion: %v", err)
	}
}

// The example policy loads, and the source document's bare "s3://" resource is a resource pattern.
func TestLoadExample(t *testing.T) {
	p := mustLoadFile(t, "testdata/example.yaml")
	if p.Len() != 7 || p.Name() != "example.yaml" {
		t.Fatalf("example: %d rules, name %q", p.Len(), p.Name())
	}
	var finance *rule
	for _, r := range p.rules {
		if r.id == "finance-read" {
			finance = r
		}
	}
	if finance == nil || finance.patterns[0].String() != "resource:s3://finance-data/*" || finance.actions != bitRead || len(finance.conds) != 2 {
		t.Fatalf("finance-read compiled as %+v", finance)
	}
	if _, err := LoadFile("testdata/none.yaml"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// An empty rule list is valid and denies everything.
func TestNoRules(t *testing.T) {
	for _, src := range []string{"version: 1\n", "version: 1\nrules:\n", "version: 1\nrules: []\ndefaults: {decision: deny}\n"} {
		p := mustLoad(t, src)
		d := p.Evaluate(Request{Principal: event.Principal{Subject: "s"}, Method: "tools/list", Server: "x"})
		if d.Effect != Deny || d.Rule != DefaultDenyRule || d.Reason != "no rule allows list on tool:x/" {
			t.Errorf("%q: %+v", src, d)
		}
	}
}
