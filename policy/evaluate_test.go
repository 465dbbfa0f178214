package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

type evalCase struct {
	name   string
	mod    func(r *Request)
	effect Effect
	rule   string
	reason string // substring of Decision.Reason
}

func runEval(t *testing.T, p *Policy, base func() Request, cases []evalCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := base()
			if tc.mod != nil {
				tc.mod(&req)
			}
			d := p.Evaluate(req)
			if d.Effect != tc.effect || d.Rule != tc.rule || !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("Evaluate = {%s %s %q}, want {%s %s ...%q...}", d.Effect, d.Rule, d.Reason, tc.effect, tc.rule, tc.reason)
			}
			if e := p.Explain(req); e.Decision.Effect != d.Effect || e.Decision.Rule != d.Rule || e.Decision.Reason != d.Reason {
				t.Errorf("Explain decided %+v, Evaluate %+v", e.Decision, d)
			}
		})
	}
}

// The example policy's analyst rule exercises every attribute; a failure here means a condition
// or the risk tiers no longer decide as documented.
func TestEvaluateExampleAnalyst(t *testing.T) {
	p := mustLoadFile(t, "testdata/example.yaml")
	ip := func(s string) func(*Request) { return func(r *Request) { r.SourceIP = netip.MustParseAddr(s) } }
	at := func(day, h, m int) func(*Request) { return func(r *Request) { r.Time = kst(day, h, m) } }
	risk := func(v float64) func(*Request) { return func(r *Request) { r.Risk = v } }
	runEval(t, p, analyst, []evalCase{
		{"allowed", nil, Allow, "analyst-db-query", "rule analyst-db-query allows call on tool:sales-db/db_query"},
		{"outside office ip", ip("10.0.0.5"), Deny, DefaultDenyRule,
			"rule analyst-db-query requires ip in [192.168.1.0/24, 2001:db8:1::/48], got 10.0.0.5"},
		{"office ipv6", ip("2001:db8:1::42"), Allow, "analyst-db-query", ""},
		{"other ipv6", ip("2001:db8:2::1"), Deny, DefaultDenyRule, "got 2001:db8:2::1"},
		{"ipv4-mapped ipv6 is unmapped", ip("::ffff:192.168.1.20"), Allow, "analyst-db-query", ""},
		{"unknown ip fails closed", func(r *Request) { r.SourceIP = netip.Addr{} }, Deny, DefaultDenyRule, "got unknown"},
		{"start of window", at(22, 9, 0), Allow, "analyst-db-query", ""},
		{"last minute of window", at(22, 17, 59), Allow, "analyst-db-query", ""},
		{"end is exclusive", at(22, 18, 0), Deny, DefaultDenyRule, "requires time 09:00-18:00 mon-fri Asia/Seoul, got Wed 18:00 KST"},
		{"before window", at(22, 8, 59), Deny, DefaultDenyRule, "got Wed 08:59 KST"},
		{"09:36 KST is 00:36 UTC", func(r *Request) { r.Time = time.Date(2025, 1, 22, 0, 36, 0, 0, time.UTC) }, Allow, "analyst-db-query", ""},
		{"saturday", at(25, 10, 0), Deny, DefaultDenyRule, "got Sat 10:00 KST"},
		{"unknown time fails closed", func(r *Request) { r.Time = time.Time{} }, Deny, DefaultDenyRule, "got unknown"},
		{"not an analyst", func(r *Request) { r.Principal.Roles = []string{"dev"} }, Deny, DefaultDenyRule,
			"for sub alice (rule analyst-db-query applies to principals [role:analyst], not sub alice)"},
		{"noncompliant device", func(r *Request) { r.DeviceHealth = "jailbroken" }, Deny, DefaultDenyRule, "device_health any of [compliant], got jailbroken"},
		{"device health compares case-insensitively", func(r *Request) { r.DeviceHealth = "Compliant" }, Allow, "analyst-db-query", ""},
		{"unknown device fails closed", func(r *Request) { r.DeviceHealth = "" }, Deny, DefaultDenyRule, "got unknown"},
		{"password only", func(r *Request) { r.Principal.AuthMethods = []string{"pwd"} }, Deny, DefaultDenyRule, "auth_methods any of [mfa, hwk], got [pwd]"},
		{"hardware key", func(r *Request) { r.Principal.AuthMethods = []string{"hwk"} }, Allow, "analyst-db-query", ""},
		{"risk at step-up threshold", risk(50), Allow, "analyst-db-query", ""},
		{"risk above step-up threshold", risk(60), StepUp, "analyst-db-query", "requires step-up authentication (hwk or mfa) within 10m0s: risk 60 above step_up_risk 50"},
		{"fresh step-up satisfies", func(r *Request) { r.Risk, r.AuthTime = 60, r.Time.Add(-3*time.Minute) }, Allow, "analyst-db-query", "recent step-up authentication"},
		{"stale step-up does not", func(r *Request) { r.Risk, r.AuthTime = 60, r.Time.Add(-11*time.Minute) }, StepUp, "analyst-db-query", ""},
		{"auth time in the future does not", func(r *Request) { r.Risk, r.AuthTime = 60, r.Time.Add(5*time.Minute) }, StepUp, "analyst-db-query", ""},
		{"risk at max", risk(80), StepUp, "analyst-db-query", ""},
		{"risk above max denies by the rule", risk(80.5), Deny, "analyst-db-query", "rule analyst-db-query allows risk up to 80, sub alice has 80.5"},
		{"fresh step-up does not beat max_risk", func(r *Request) { r.Risk, r.AuthTime = 95, r.Time }, Deny, "analyst-db-query", ""},
		{"unknown risk fails closed", func(r *Request) { r.RiskKnown = false }, Deny, "analyst-db-query", "requires a known risk score (max_risk 80)"},
		{"other tool", func(r *Request) { r.Tool = "db_admin" }, Deny, DefaultDenyRule, "no rule allows call on tool:sales-db/db_admin"},
		{"list the catalogue", func(r *Request) { r.Method, r.Tool = "tools/list", "" }, Allow, "analyst-db-list", "allows list on tool:sales-db/"},
		{"ungoverned method", func(r *Request) { r.Method = "completion/complete" }, Deny, DefaultDenyRule, `method "completion/complete" is not governed`},
		{"call without tool", func(r *Request) { r.Tool = "" }, Deny, DefaultDenyRule, "tools/call names no tool"},
		{"dot segment", func(r *Request) { r.Tool = "../admin" }, Deny, DefaultDenyRule, "dot segment"},
		{"server with slash", func(r *Request) { r.Server = "sales-db/x" }, Deny, DefaultDenyRule, "invalid server name"},
		{"pii by e-mail denied", func(r *Request) { r.Server, r.Tool, r.DataClasses = "mail", "send_email", []string{"PII"} }, Deny, "no-pii-email",
			"rule no-pii-email denies call on tool:mail/send_email: personal data must not be sent by e-mail"},
	})
}

// The source document's example rule and the other example rules.
func TestEvaluateExampleOthers(t *testing.T) {
	p := mustLoadFile(t, "testdata/example.yaml")
	finance := func() Request {
		r := analyst()
		r.Method, r.Server, r.Tool, r.ResourceURI = "resources/read", "", "", "s3://finance-data/q1.csv"
		return r
	}
	runEval(t, p, finance, []evalCase{
		{"finance read", nil, Allow, "finance-read", "allows read on resource:s3://finance-data/q1.csv"},
		{"finance read after hours", func(r *Request) { r.Time = kst(22, 19, 0) }, Deny, DefaultDenyRule, "rule finance-read requires time 09:00-18:00 Asia/Seoul"},
		{"finance read from outside", func(r *Request) { r.SourceIP = netip.MustParseAddr("10.0.0.5") }, Deny, DefaultDenyRule,
			"rule finance-read requires ip in 192.168.1.0/24, got 10.0.0.5"},
		{"* stays in one segment", func(r *Request) { r.ResourceURI = "s3://finance-data/2024/q1.csv" }, Deny, DefaultDenyRule, "no rule allows read"},
		{"traversal refused", func(r *Request) { r.ResourceURI = "s3://finance-data/../hr/x" }, Deny, DefaultDenyRule, "dot segment"},
		{"encoded traversal refused", func(r *Request) { r.ResourceURI = "s3://finance-data/%2E%2e%2fhr" }, Deny, DefaultDenyRule, "percent-encoded"},
		{"write is not read", func(r *Request) { r.Method = "tools/call"; r.Server, r.Tool = "s3", "put" }, Deny, DefaultDenyRule, ""},
		{"hr records need hr role", func(r *Request) { r.ResourceURI = "hr://records/kim/2024.json" }, Deny, DefaultDenyRule, "applies to principals [role:hr]"},
		{"hr records", func(r *Request) {
			r.ResourceURI, r.Principal.Roles, r.Principal.AuthMethods, r.DataClasses = "hr://records/kim/2024.json", []string{"hr"}, []string{"hwk"}, []string{"pii"}
		}, Allow, "hr-records", ""},
		{"hr records marked secret", func(r *Request) {
			r.ResourceURI, r.Principal.Roles, r.Principal.AuthMethods, r.DataClasses = "hr://records/kim/2024.json", []string{"hr"}, []string{"hwk"}, []string{"pii", "Secret"}
		}, Deny, DefaultDenyRule, "data_class any of [pii, hr] and none of [secret], got [pii, Secret]"},
		{"hr records need a hardware key", func(r *Request) {
			r.ResourceURI, r.Principal.Roles, r.DataClasses = "hr://records/kim/2024.json", []string{"hr"}, []string{"pii"}
		}, Deny, DefaultDenyRule, "auth_methods all of [hwk], got [pwd, mfa]"},
		{"docs prompt for anyone authenticated", func(r *Request) { r.Method, r.Server, r.Prompt = "prompts/get", "docs", "summarize" }, Allow, "docs-prompts", ""},
		{"docs prompt not for anonymous", func(r *Request) {
			r.Method, r.Server, r.Prompt, r.Principal = "prompts/get", "docs", "summarize", event.Principal{}
		}, Deny, DefaultDenyRule, "allow rules without principals apply only to authenticated principals"},
	})
	oncall := func() Request {
		r := analyst()
		r.Principal.Roles, r.Groups, r.Server, r.Tool, r.Time, r.Risk = nil, []string{"oncall"}, "ops", "restart_api", kst(22, 23, 30), 0
		return r
	}
	runEval(t, p, oncall, []evalCase{
		{"night restart", nil, Allow, "oncall-restart", ""},
		{"after midnight", func(r *Request) { r.Time = kst(23, 5, 59) }, Allow, "oncall-restart", ""},
		{"morning", func(r *Request) { r.Time = kst(23, 6, 0) }, Deny, DefaultDenyRule, "requires time 22:00-06:00 Asia/Seoul"},
		{"some risk steps up", func(r *Request) { r.Risk = 1 }, StepUp, "oncall-restart", "(mfa) within 5m0s"},
		{"unknown risk steps up", func(r *Request) { r.RiskKnown = false }, StepUp, "oncall-restart", "risk unknown"},
		{"not on call", func(r *Request) { r.Groups = nil }, Deny, DefaultDenyRule, "applies to principals [group:oncall]"},
	})
}

// Deny rules win wherever they are in the file, and the first matching allow rule is final.
func TestEvaluationOrder(t *testing.T) {
	p := mustLoad(t, `
version: 1
rules:
  - id: mail-all
    resource: "tool:mail/*"
    actions: [call]
  - id: strict-first
    resource: "tool:crm/*"
    actions: [call]
    conditions: {max_risk: 10}
  - id: lax-second
    resource: "tool:crm/*"
    actions: [call]
  - id: no-pii-email
    effect: deny
    resource: "tool:*/send_email"
    actions: ["*"]
    conditions: {data_class: [PII]}
  - id: guest-net
    effect: deny
    resource: "**"
    actions: ["*"]
    conditions: {ip_range: ["172.16.0.0/12", "fd00::/8"]}
  - id: block-mallory
    effect: deny
    resources: ["**"]
    actions: ["*"]
    principals: [sub:mallory, client:evil-bot]
`)
	base := func() Request {
		return Request{Principal: event.Principal{Subject: "bob"}, Method: "tools/call", Server: "mail", Tool: "send_email",
			SourceIP: netip.MustParseAddr("10.1.1.1"), Time: kst(22, 12, 0), Risk: 50, RiskKnown: true}
	}
	runEval(t, p, base, []evalCase{
		{"allow without pii", nil, Allow, "mail-all", ""},
		{"deny after allow still wins", func(r *Request) { r.DataClasses = []string{"pii"} }, Deny, "no-pii-email", ""},
		{"first matching allow is final", func(r *Request) { r.Server, r.Tool = "crm", "lookup" }, Deny, "strict-first", "allows risk up to 10"},
		{"deny by principal", func(r *Request) { r.Principal.Subject = "mallory" }, Deny, "block-mallory", ""},
		{"deny by client", func(r *Request) { r.Principal.ClientID = "evil-bot" }, Deny, "block-mallory", ""},
		{"deny by cidr v6", func(r *Request) { r.SourceIP = netip.MustParseAddr("fd12::1") }, Deny, "guest-net", ""},
		// A deny rule's unknown attribute counts as matching: missing context never denies less.
		{"deny rule fails closed on unknown ip", func(r *Request) { r.SourceIP = netip.Addr{} }, Deny, "guest-net", ""},
		{"deny rules apply to anonymous", func(r *Request) { r.Principal = event.Principal{}; r.DataClasses = []string{"pii"} }, Deny, "no-pii-email", ""},
	})
}

// Time windows: wrap-around midnight with days (the day is the one the window starts on), and a
// DST zone where a fixed UTC offset would be wrong half the year.
func TestTimeWindows(t *testing.T) {
	p := mustLoad(t, `
version: 1
rules:
  - id: fri-night
    resource: "tool:a/*"
    actions: [call]
    conditions:
      - time: 22:00-06:00
        timezone: Asia/Seoul
        days: fri
  - id: ny-office
    resource: "tool:b/*"
    actions: [call]
    conditions: {time: "09:00-17:00", timezone: America/New_York}
  - id: ny-fallback
    resource: "tool:c/*"
    actions: [call]
    conditions: {time: "01:00-02:00", timezone: America/New_York}
  - id: evening
    resource: "tool:d/*"
    actions: [call]
    conditions: {time: "18:00-24:00"}
  - id: weekend
    resource: "tool:e/*"
    actions: [call]
    conditions: {days: [fri-sun], timezone: Asia/Seoul}
`)
	utc := func(y int, mo time.Month, d, h, m int) time.Time { return time.Date(y, mo, d, h, m, 0, 0, time.UTC) }
	cases := []struct {
		server string
		at     time.Time
		want   bool
	}{
		{"a", kst(24, 23, 0), true},   // Fri 23:00
		{"a", kst(25, 2, 0), true},    // Sat 02:00 belongs to Friday's window
		{"a", kst(25, 23, 0), false},  // Sat 23:00: Saturday's window
		{"a", kst(24, 2, 0), false},   // Fri 02:00 belongs to Thursday's window
		{"a", kst(24, 21, 59), false}, // before
		{"a", kst(25, 6, 0), false},   // end exclusive
		{"a", utc(2025, 1, 24, 13, 0), true},
		{"b", utc(2025, 1, 15, 14, 0), true},   // 09:00 EST
		{"b", utc(2025, 1, 15, 13, 30), false}, // 08:30 EST
		{"b", utc(2025, 7, 15, 13, 0), true},   // 09:00 EDT
		{"b", utc(2025, 7, 15, 21, 30), false}, // 17:30 EDT, would be 16:30 in EST
		{"c", utc(2025, 11, 2, 5, 30), true},   // 01:30 EDT
		{"c", utc(2025, 11, 2, 6, 30), true},   // 01:30 EST, the repeated hour
		{"c", utc(2025, 11, 2, 7, 30), false},  // 02:30 EST
		{"d", utc(2025, 1, 1, 23, 59), true},
		{"d", utc(2025, 1, 2, 0, 0), false},
		{"e", kst(26, 12, 0), true}, // Sun
		{"e", kst(27, 0, 0), false}, // Mon
		{"e", kst(24, 0, 0), true},  // Fri
	}
	for _, tc := range cases {
		req := Request{Principal: event.Principal{Subject: "s"}, Method: "tools/call", Server: tc.server, Tool: "t", Time: tc.at}
		if got := p.Evaluate(req).Effect == Allow; got != tc.want {
			t.Errorf("%s at %s (%s): allowed=%v, want %v; %s", tc.server, tc.at.UTC().Format(time.RFC3339), tc.at.In(seoul).Weekday(), got, tc.want, p.Evaluate(req).Reason)
		}
	}
}

// Principal selectors, tenants, roles and the source document's CBAC attributes together.
func TestPrincipalsAndAttributes(t *testing.T) {
	p := mustLoad(t, `
version: 1
rules:
  - id: cbac
    resource: "tool:db/*"
    actions: [call]
    tenants: [acme]
    conditions:
      - roles: analyst
      - device_health: [compliant, managed]
      - data_class: {none_of: [PII]}
  - id: public
    resource: "prompt:pub/*"
    actions: [get]
    principals: [anonymous, role:guest]
`)
	base := func() Request {
		return Request{Tenant: "acme", Principal: event.Principal{Subject: "s", Roles: []string{"analyst"}}, DeviceHealth: "managed",
			Method: "tools/call", Server: "db", Tool: "q"}
	}
	runEval(t, p, base, []evalCase{
		{"allowed", nil, Allow, "cbac", ""},
		{"other tenant", func(r *Request) { r.Tenant = "globex" }, Deny, DefaultDenyRule, `applies to tenants [acme], not "globex"`},
		{"role missing", func(r *Request) { r.Principal.Roles = nil }, Deny, DefaultDenyRule, "roles any of [analyst], got []"},
		{"role names are case-sensitive", func(r *Request) { r.Principal.Roles = []string{"Analyst"} }, Deny, DefaultDenyRule, ""},
		{"pii excluded", func(r *Request) { r.DataClasses = []string{"finance", "pii"} }, Deny, DefaultDenyRule, "none of [PII]"},
		{"non-pii fine", func(r *Request) { r.DataClasses = []string{"finance"} }, Allow, "cbac", ""},
		{"anonymous listed", func(r *Request) {
			r.Principal, r.Method, r.Server, r.Prompt = event.Principal{}, "prompts/get", "pub", "x"
		}, Allow, "public", ""},
		{"guest role listed", func(r *Request) {
			r.Principal.Roles, r.Method, r.Server, r.Prompt = []string{"guest"}, "prompts/get", "pub", "x"
		}, Allow, "public", ""},
		{"others not", func(r *Request) { r.Method, r.Server, r.Prompt = "prompts/get", "pub", "x" }, Deny, DefaultDenyRule, "applies to principals [anonymous, role:guest]"},
	})
}

func TestCIDRs(t *testing.T) {
	p := mustLoad(t, `
version: 1
rules:
  - id: nets
    resource: "tool:a/*"
    actions: [call]
    conditions:
      ip_range: ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7", "::1"]
`)
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"10.255.255.255", true}, {"11.0.0.0", false}, {"9.255.255.255", false},
		{"2001:db8:ffff::1", true}, {"2001:db9::1", false},
		{"192.0.2.7", true}, {"192.0.2.8", false},
		{"::1", true}, {"::2", false},
		{"::ffff:10.1.2.3", true}, // IPv4-mapped: unmapped first
		{"fe80::1%eth0", false},   // zone stripped, still not in range
		{"2001:db8::1%eth0", true},
	} {
		req := Request{Principal: event.Principal{Subject: "s"}, Method: "tools/call", Server: "a", Tool: "t", SourceIP: netip.MustParseAddr(tc.ip)}
		if got := p.Evaluate(req).Effect == Allow; got != tc.want {
			t.Errorf("%s: allowed=%v, want %v", tc.ip, got, tc.want)
		}
	}
}

func TestUncanonicalTargets(t *testing.T) {
	p := mustLoad(t, "version: 1\nrules:\n  - {id: all, resource: \"**\", actions: [\"*\"]}\n")
	for _, uri := range []string{"file:///srv/./x", "file:///srv/..", "s3://b/%2e%2E/x", "s3://b/a%2Fb", "s3://b/a%5cb",
		`file:///c:\x`, "s3://b/\x00", "s3://b/\xff", "s3://b/" + strings.Repeat("a", maxTargetLen)} {
		req := Request{Principal: event.Principal{Subject: "s"}, Method: "resources/read", ResourceURI: uri}
		if d := p.Evaluate(req); d.Effect != Deny || !strings.Contains(d.Reason, "refused") {
			t.Errorf("%q: %+v, want refused", uri, d)
		}
	}
	// Dots inside names are fine.
	for _, uri := range []string{"s3://b/a..b", "s3://b/.env.example", "s3://b/x?y=%41"} {
		req := Request{Principal: event.Principal{Subject: "s"}, Method: "resources/read", ResourceURI: uri}
		if d := p.Evaluate(req); d.Effect != Allow {
			t.Errorf("%q: %+v, want allow", uri, d)
		}
	}
}

func TestActionOfAndListTargets(t *testing.T) {
	p := mustLoad(t, `
version: 1
rules:
  - {id: res-list, resource: "resource:files/*", actions: [list]}
  - {id: prompt-list, resource: "prompt:docs/*", actions: [list]}
`)
	for _, tc := range []struct {
		method, server, rule string
	}{
		{"resources/list", "files", "res-list"},
		{"resources/templates/list", "files", "res-list"},
		{"prompts/list", "docs", "prompt-list"},
		{"prompts/list", "files", DefaultDenyRule},
		{"tools/list", "files", DefaultDenyRule},
	} {
		d := p.Evaluate(Request{Principal: event.Principal{Subject: "s"}, Method: tc.method, Server: tc.server})
		if d.Rule != tc.rule {
			t.Errorf("%s on %s: %+v, want rule %s", tc.method, tc.server, d, tc.rule)
		}
	}
	if a, ok := ActionOf("resources/subscribe"); !ok || a != ActionRead {
		t.Errorf("ActionOf(resources/subscribe) = %q %v", a, ok)
	}
	if _, ok := ActionOf("initialize"); ok {
		t.Error("initialize must not be governed")
	}
}

func TestFromEventAndOutcome(t *testing.T) {
	e := &event.Event{Tenant: "acme", Time: kst(22, 10, 0), Principal: event.Principal{Subject: "alice", Roles: []string{"analyst"}},
		Network: event.Network{SrcIP: "192.168.1.9"}, Target: event.Target{Server: "sales-db"},
		MCP: &event.MCP{Method: "tools/call", Tool: "db_query"}, DataClasses: []string{"finance"}}
	r := FromEvent(e)
	if r.SourceIP != netip.MustParseAddr("192.168.1.9") || r.Tool != "db_query" || r.Server != "sales-db" || r.RiskKnown || !slices.Equal(r.DataClasses, e.DataClasses) {
		t.Fatalf("FromEvent = %+v", r)
	}
	// Device health and risk are not in events, so the example's analyst rule cannot allow.
	d := mustLoadFile(t, "testdata/example.yaml").Evaluate(r)
	if d.Effect != Deny {
		t.Fatalf("decision %+v", d)
	}
	if o := d.Outcome(); o.Result != event.ResultDenied || o.PolicyRule != d.Rule || o.Reason != d.Reason {
		t.Errorf("Outcome = %+v", o)
	}
	if o := (Decision{Effect: StepUp, Rule: "r"}).Outcome(); o.Result != event.ResultDenied {
		t.Errorf("step-up outcome %+v, want denied", o)
	}
	if o := (Decision{Effect: Allow, Rule: "r"}).Outcome(); o.Result != event.ResultAllowed {
		t.Errorf("allow outcome %+v", o)
	}
}

func TestStepUpHint(t *testing.T) {
	p := mustLoadFile(t, "testdata/example.yaml")
	r := analyst()
	r.Risk = 70
	d := p.Evaluate(r)
	if d.StepUp == nil || !slices.Equal(d.StepUp.AuthMethods, []string{"hwk", "mfa"}) || d.StepUp.MaxAge != 10*time.Minute {
		t.Fatalf("step-up hint %+v in %+v", d.StepUp, d)
	}
	d.StepUp.AuthMethods[0] = "changed" // callers cannot corrupt the compiled rule
	if d2 := p.Evaluate(r); d2.StepUp.AuthMethods[0] != "hwk" {
		t.Error("hint aliases the rule's slice")
	}
}

// max_auth_age: an authentication older than it, or of unknown time, gets step_up with the age as
// the hint's MaxAge (the gateway's RFC 9470 max_age); a recent one is allowed; with step_up_risk
// as well, the step-up must meet the stricter age. If this failed, a token from a login of last
// week would reach the tools an operator reserved for fresh logins.
func TestMaxAuthAge(t *testing.T) {
	p := mustLoad(t, `version: 1
rules:
  - id: payroll
    resource: "tool:hr/payroll_*"
    actions: [call]
    conditions:
      max_auth_age: 10m
  - id: both
    resource: "tool:hr/fire"
    actions: [call]
    conditions:
      - max_auth_age: 2m
      - step_up_risk: 50
        step_up_max_age: 5m
`)
	base := func() Request {
		return Request{Tenant: "acme", Principal: event.Principal{Subject: "alice", AuthMethods: []string{"mfa"}},
			Time: kst(22, 9, 0), Method: "tools/call", Server: "hr", Tool: "payroll_run", Risk: 10, RiskKnown: true}
	}
	ago := func(d time.Duration) func(*Request) { return func(r *Request) { r.AuthTime = r.Time.Add(-d) } }
	runEval(t, p, base, []evalCase{
		{"fresh", ago(time.Minute), Allow, "payroll", ""},
		{"stale", ago(11 * time.Minute), StepUp, "payroll", "requires an authentication within 10m0s, the principal authenticated 11m0s ago"},
		{"unknown", nil, StepUp, "payroll", "authentication time is unknown"},
		{"future beyond skew", ago(-2 * time.Minute), StepUp, "payroll", ""},
		{"risk step-up, then age", func(r *Request) { r.Tool, r.Risk, r.AuthTime = "fire", 60, r.Time.Add(-3*time.Minute) }, StepUp, "both", "within 2m0s"},
		{"both satisfied", func(r *Request) { r.Tool, r.Risk, r.AuthTime = "fire", 60, r.Time.Add(-time.Minute) }, Allow, "both", ""},
	})
	r := base()
	r.AuthTime = r.Time.Add(-time.Hour)
	if d := p.Evaluate(r); d.StepUp == nil || d.StepUp.MaxAge != 10*time.Minute || len(d.StepUp.AuthMethods) != 0 {
		t.Fatalf("hint %+v", d.StepUp)
	}
	r.Tool, r.Risk = "fire", 70
	if d := p.Evaluate(r); d.StepUp == nil || d.StepUp.MaxAge != 2*time.Minute {
		t.Fatalf("risk step-up hint %+v: want the stricter max age", d.StepUp)
	}
}

// unindexed returns a copy of p that tries every rule, the reference for the index.
func unindexed(p *Policy) *Policy {
	q := *p
	q.deny, q.allow = ruleIndex{}, ruleIndex{}
	for _, r := range p.rules {
		if r.effect == Deny {
			q.deny.wild = append(q.deny.wild, r)
		} else {
			q.allow.wild = append(q.allow.wild, r)
		}
	}
	return &q
}

// The rule index must never change a decision: every pattern shape against every target shape.
func TestIndexAgreesWithFullScan(t *testing.T) {
	patterns := []string{"**", "tool:**", "tool:a/*", "tool:a/b", "tool:*/b", "tool:a*/b", "resource:**", "resource:s3://b/*",
		"resource:s3://b*/x", "resource:s3:/*", "resource:s3:**", "resource:file:///etc/*", "resource:file://**", "resource:urn:x:*",
		"resource:urn:x:y", "resource:a/b", "prompt:p/*", "prompt:p/q", "resource:s3://b/**", "resource:s3://*/x"}
	targets := []Request{}
	for _, c := range []struct{ method, server, name string }{
		{"tools/call", "a", "b"}, {"tools/call", "a", "c"}, {"tools/call", "ab", "b"}, {"tools/list", "a", ""},
		{"resources/read", "", "s3://b/x"}, {"resources/read", "", "s3://bb/x"}, {"resources/read", "", "s3://b/x/y"},
		{"resources/read", "", "file:///etc/passwd"}, {"resources/read", "", "urn:x:y"}, {"resources/read", "", "urn:x:z"},
		{"resources/read", "", "a/b"}, {"resources/read", "", "s3:/x"}, {"resources/list", "a", ""},
		{"prompts/get", "p", "q"}, {"prompts/list", "p", ""},
	} {
		r := Request{Principal: event.Principal{Subject: "s"}, Method: c.method, Server: c.server}
		r.Tool, r.ResourceURI, r.Prompt = c.name, c.name, c.name
		targets = append(targets, r)
	}
	var b strings.Builder
	b.WriteString("version: 1\nrules:\n")
	for i, pat := range patterns {
		for j, eff := range []string{"allow", "deny"} {
			// Deny rules only for some principals, so allow rules get their turn.
			fmt.Fprintf(&b, "  - {id: r%d-%d, effect: %s, resource: %q, actions: [\"*\"], principals: [\"sub:s%d\"]}\n", i, j, eff, pat, i%4*j)
		}
	}
	p := mustLoad(t, b.String())
	q := unindexed(p)
	if len(p.allow.byKey) == 0 || len(p.allow.wild) == len(patterns) {
		t.Fatalf("index not used: %d keys, %d wild", len(p.allow.byKey), len(p.allow.wild))
	}
	for _, sub := range []string{"s", "s0", "s1", "s2", "s3"} {
		for _, r := range targets {
			r.Principal.Subject = sub
			if got, want := p.Evaluate(r), q.Evaluate(r); got.Rule != want.Rule || got.Effect != want.Effect {
				t.Errorf("%s %s/%s%s as %s: indexed %s %s, full scan %s %s", r.Method, r.Server, r.Tool, r.ResourceURI, sub, got.Effect, got.Rule, want.Effect, want.Rule)
			}
		}
	}
}

// A rule with approval: allows the call only once approved: the decision is an allow carrying
// the terms (defaults: 10m, on_timeout deny), Allowed() is false, and the reason names the
// approvers. If this failed, the gateway would forward held calls as plain allows.
func TestApprovalDecision(t *testing.T) {
	p, err := Load(strings.NewReader(`version: 1
rules:
  - id: wire
    resource: "tool:bank/transfer"
    actions: [call]
    approval: {approvers: [ann, ben, cat], required: 2}
`), "approval.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := p.Evaluate(Request{Principal: event.Principal{Subject: "alice"}, Method: "tools/call", Server: "bank", Tool: "transfer"})
	if d.Effect != Allow || d.Approval == nil || d.Allowed() {
		t.Fatalf("decision %+v, want an allow held for approval", d)
	}
	a := d.Approval
	if a.Required != 2 || len(a.Approvers) != 3 || a.Timeout != 10*time.Minute || a.OnTimeout != "deny" {
		t.Fatalf("terms %+v", a)
	}
	if !strings.Contains(d.Reason, "once 2 of [ann, ben, cat] approve") {
		t.Fatalf("reason %q", d.Reason)
	}
}
