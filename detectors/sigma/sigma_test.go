package sigma

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

// baseEvent is a realistic MCP tool call as the gateway records it.
func baseEvent() *event.Event {
	return &event.Event{
		Schema: 1, ID: "0190d6c1-0000-7000-8000-000000000001",
		Time:   time.Date(2026, 12, 1, 9, 6, 12, 0, time.UTC),
		Source: event.SourceMCP, Tenant: "acme",
		Principal: event.Principal{Subject: "alice", ClientID: "claude-desktop", Roles: []string{"Analyst", "finance"},
			Department: "Finance"},
		MCP: &event.MCP{Direction: event.DirRequest, Method: "tools/call", Tool: "db_query",
			ProtocolVersion: "2025-06-18", Transport: "streamable-http",
			ArgumentsMasked: `{"sql":"SELECT * FROM Customers WHERE email='[EMAIL]'"}`,
			ClientName:      "Claude-Desktop", ClientVersion: "1.2.3"},
		Target:      event.Target{Server: "sales-db"},
		Network:     event.Network{SrcIP: "10.1.2.3", SrcPort: 51515, DstPort: 443, UserAgent: "python-httpx/0.27"},
		Outcome:     event.Outcome{Result: event.ResultDenied, PolicyRule: "deny-default", Reason: "no policy allows db_query"},
		Size:        event.Size{Request: 512},
		DataClasses: []string{"pii"},
		PII:         map[string]int{"email": 2},
		Attributes:  map[string]string{"region": "eu-west"},
		Normalized:  &event.Normalized{Signature: "MCP-1001", Sensitivity: 0.8},
	}
}

// rule builds a rule document around a detection block.
func rule(detection string) string {
	return `title: Test rule
id: 5a0f2b36-2f6c-4c1e-9a4e-3c6f0d1e2a7b
status: test
level: high
tags: [attack.exfiltration, attack.t1048]
logsource:
  product: mcpwatch
  category: mcp_call
detection:
` + detection
}

func mustParse(t *testing.T, doc string) *RuleSet {
	t.Helper()
	rs, errs := Parse("rule.yml", []byte(doc))
	if len(errs) > 0 {
		t.Fatalf("parse: %v", errs)
	}
	if rs.Len() != 1 {
		t.Fatalf("loaded %d rules, want 1", rs.Len())
	}
	return rs
}

// TestDetection: if this fails, a Sigma construct matches events it should not (or misses ones
// it should), so shipped and user rules fire wrongly.
func TestDetection(t *testing.T) {
	cases := []struct {
		name      string
		detection string
		edit      func(*event.Event)
		want      bool
	}{
		{"equal is case-insensitive", "  sel:\n    mcp.tool: DB_QUERY\n  condition: sel", nil, true},
		{"equal whole value only", "  sel:\n    mcp.tool: db\n  condition: sel", nil, false},
		{"list of values is OR", "  sel:\n    mcp.tool: [x, db_query]\n  condition: sel", nil, true},
		{"map is AND", "  sel:\n    mcp.tool: db_query\n    target.server: other\n  condition: sel", nil, false},
		{"list of maps is OR", "  sel:\n    - mcp.tool: nope\n    - target.server: sales-db\n  condition: sel", nil, true},
		{"contains", "  sel:\n    mcp.arguments_masked|contains: 'from customers'\n  condition: sel", nil, true},
		{"startswith", "  sel:\n    mcp.method|startswith: TOOLS/\n  condition: sel", nil, true},
		{"endswith", "  sel:\n    mcp.tool|endswith: _query\n  condition: sel", nil, true},
		{"endswith misses", "  sel:\n    mcp.tool|endswith: db\n  condition: sel", nil, false},
		{"contains all", "  sel:\n    mcp.arguments_masked|contains|all: [select, '[email]']\n  condition: sel", nil, true},
		{"contains all needs every value", "  sel:\n    mcp.arguments_masked|contains|all: [select, drop]\n  condition: sel", nil, false},
		{"cased equal", "  sel:\n    mcp.client_name|cased: claude-desktop\n  condition: sel", nil, false},
		{"cased equal exact", "  sel:\n    mcp.client_name|cased: Claude-Desktop\n  condition: sel", nil, true},
		{"cased contains", "  sel:\n    mcp.arguments_masked|contains|cased: Customers\n  condition: sel", nil, true},
		{"wildcard star", "  sel:\n    mcp.tool: 'db_*'\n  condition: sel", nil, true},
		{"wildcard question", "  sel:\n    mcp.tool: 'db?query'\n  condition: sel", nil, true},
		{"wildcard question is one char", "  sel:\n    mcp.tool: 'db??query'\n  condition: sel", nil, false},
		{"wildcard inner", "  sel:\n    mcp.arguments_masked: '*select*customers*'\n  condition: sel", nil, true},
		{"escaped star is literal", `  sel:
    mcp.arguments_masked|contains: 'SELECT \*'
  condition: sel`, nil, true},
		{"escaped star not a wildcard", `  sel:
    mcp.tool: 'db\*'
  condition: sel`, nil, false},
		{"escaped star matches star", `  sel:
    mcp.tool: 'db\*'
  condition: sel`, func(e *event.Event) { e.MCP.Tool = "db*" }, true},
		{"escaped backslash", `  sel:
    mcp.tool: 'c:\\dir\\*'
  condition: sel`, func(e *event.Event) { e.MCP.Tool = `c:\dir\x` }, true},
		{"lone backslash is literal", `  sel:
    mcp.tool: 'c:\dir'
  condition: sel`, func(e *event.Event) { e.MCP.Tool = `C:\DIR` }, true},
		{"re", "  sel:\n    mcp.tool|re: '^db_(query|exec)$'\n  condition: sel", nil, true},
		{"re is case-sensitive", "  sel:\n    mcp.tool|re: '^DB_'\n  condition: sel", nil, false},
		{"re i", "  sel:\n    mcp.tool|re|i: '^DB_'\n  condition: sel", nil, true},
		{"re s", "  sel:\n    mcp.prompt|re|s: 'a.b'\n  condition: sel", func(e *event.Event) { e.MCP.Prompt = "a\nb" }, true},
		{"re without s", "  sel:\n    mcp.prompt|re: 'a.b'\n  condition: sel", func(e *event.Event) { e.MCP.Prompt = "a\nb" }, false},
		{"re m", "  sel:\n    mcp.prompt|re|m: '^b$'\n  condition: sel", func(e *event.Event) { e.MCP.Prompt = "a\nb" }, true},
		{"cidr v4", "  sel:\n    network.src_ip|cidr: 10.0.0.0/8\n  condition: sel", nil, true},
		{"cidr list", "  sel:\n    network.src_ip|cidr: [192.168.0.0/16, 172.16.0.0/12]\n  condition: sel", nil, false},
		{"cidr v6", "  sel:\n    network.src_ip|cidr: 'fd00::/8'\n  condition: sel", func(e *event.Event) { e.Network.SrcIP = "fd12::1" }, true},
		{"cidr mapped v4", "  sel:\n    network.src_ip|cidr: 10.0.0.0/8\n  condition: sel", func(e *event.Event) { e.Network.SrcIP = "::ffff:10.0.0.1" }, true},
		{"cidr not an ip", "  sel:\n    network.src_ip|cidr: 10.0.0.0/8\n  condition: sel", func(e *event.Event) { e.Network.SrcIP = "unix" }, false},
		{"base64", "  sel:\n    mcp.arguments_masked|base64|contains: '/bin/bash'\n  condition: sel", func(e *event.Event) { e.MCP.ArgumentsMasked = `{"x":"L2Jpbi9iYXNo"}` }, true},
		{"base64offset 0", "  sel:\n    mcp.arguments_masked|base64offset|contains: '/bin/bash'\n  condition: sel", func(e *event.Event) { e.MCP.ArgumentsMasked = "L2Jpbi9iYXNo" }, true},
		{"base64offset 1", "  sel:\n    mcp.arguments_masked|base64offset|contains: '/bin/bash'\n  condition: sel", func(e *event.Event) { e.MCP.ArgumentsMasked = "eC9iaW4vYmFzaA==" }, true},
		{"base64offset 2", "  sel:\n    mcp.arguments_masked|base64offset|contains: '/bin/bash'\n  condition: sel", func(e *event.Event) { e.MCP.ArgumentsMasked = "eHgvYmluL2Jhc2g=" }, true},
		{"base64offset all with two values", "  sel:\n    mcp.arguments_masked|base64offset|contains|all: ['/bin/bash', 'nope']\n  condition: sel", func(e *event.Event) { e.MCP.ArgumentsMasked = "L2Jpbi9iYXNo" }, false},
		{"windash", "  sel:\n    mcp.arguments_masked|windash|contains: ' -enc '\n  condition: sel", func(e *event.Event) { e.MCP.ArgumentsMasked = "powershell x-enc xyz" }, false},
		{"windash option", "  sel:\n    mcp.arguments_masked|windash|contains: ' -enc'\n  condition: sel", func(e *event.Event) { e.MCP.ArgumentsMasked = "powershell —enc xyz" }, true},
		{"windash slash", "  sel:\n    mcp.arguments_masked|windash|contains: '-enc'\n  condition: sel", func(e *event.Event) { e.MCP.ArgumentsMasked = "powershell /enc xyz" }, true},
		{"exists true", "  sel:\n    principal.department|exists: true\n  condition: sel", nil, true},
		{"exists false", "  sel:\n    principal.peer_group|exists: false\n  condition: sel", nil, true},
		{"exists on list", "  sel:\n    principal.scope|exists: true\n  condition: sel", nil, false},
		{"exists on number", "  sel:\n    outcome.http_status|exists: true\n  condition: sel", nil, false},
		{"null is absent", "  sel:\n    principal.peer_group: null\n  condition: sel", nil, true},
		{"null present", "  sel:\n    principal.department: null\n  condition: sel", nil, false},
		{"null in a list", "  sel:\n    principal.peer_group: [x, null]\n  condition: sel", nil, true},
		{"empty string is absent", "  sel:\n    principal.peer_group: ''\n  condition: sel", nil, true},
		{"gt", "  sel:\n    size.request|gt: 500\n  condition: sel", nil, true},
		{"gt equal", "  sel:\n    size.request|gt: 512\n  condition: sel", nil, false},
		{"gte", "  sel:\n    size.request|gte: 512\n  condition: sel", nil, true},
		{"lt", "  sel:\n    normalized.sensitivity|lt: 0.5\n  condition: sel", nil, false},
		{"lte float", "  sel:\n    normalized.sensitivity|lte: 0.8\n  condition: sel", nil, true},
		{"number equal", "  sel:\n    network.dst_port: 443\n  condition: sel", nil, true},
		{"number as string", "  sel:\n    network.dst_port: '443'\n  condition: sel", nil, true},
		{"number wildcard", "  sel:\n    network.src_port|startswith: '515'\n  condition: sel", nil, true},
		{"gt on string attribute", "  sel:\n    attributes.region|gt: 1\n  condition: sel", nil, false},
		{"list field any element", "  sel:\n    principal.roles: analyst\n  condition: sel", nil, true},
		{"list field all", "  sel:\n    principal.roles|all: [analyst, finance]\n  condition: sel", nil, true},
		{"list field all missing one", "  sel:\n    principal.roles|all: [analyst, admin]\n  condition: sel", nil, false},
		{"alias", "  sel:\n    mcp.server: sales-db\n    decision: denied\n    principal.role: FINANCE\n    arguments|contains: email\n  condition: sel", nil, true},
		{"attributes", "  sel:\n    attributes.region|startswith: eu-\n  condition: sel", nil, true},
		{"pii count", "  sel:\n    pii.email|gte: 2\n  condition: sel", nil, true},
		{"principal.id falls back to client", "  sel:\n    principal.id: claude-desktop\n  condition: sel", func(e *event.Event) { e.Principal.Subject = "" }, true},
		{"bool value as text", "  sel:\n    attributes.flag: true\n  condition: sel", func(e *event.Event) { e.Attributes["flag"] = "TRUE" }, true},
		{"keyword contains", "  keywords:\n    - 'no policy allows'\n  condition: keywords", nil, true},
		{"keyword any field", "  keywords:\n    - nothing-here\n    - HTTPX\n  condition: keywords", nil, true},
		{"keyword misses", "  keywords:\n    - nothing-here\n  condition: keywords", nil, false},
		{"keyword not in non-text fields", "  keywords:\n    - acme\n  condition: keywords", nil, false},
		{"keyword wildcard", "  keywords: 'select*from'\n  condition: keywords", nil, true},
		{"keyword re", "  keywords:\n    '|re': 'db_q[a-z]+'\n  condition: keywords", nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rs := mustParse(t, rule(tc.detection))
			e := baseEvent()
			if tc.edit != nil {
				tc.edit(e)
			}
			got := len(rs.Match(e)) == 1
			if got != tc.want {
				t.Errorf("match = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestCondition: if this fails, the condition grammar's precedence or quantifiers are wrong and
// rules combine their selections differently from every other Sigma engine.
func TestCondition(t *testing.T) {
	names := []string{"a", "b", "c", "sel_1", "sel_2", "_filter"}
	cases := []struct{ cond, want string }{
		{"a or b and c", "(a or (b and c))"},
		{"a and b or c", "((a and b) or c)"},
		{"not a and b", "(not a and b)"},
		{"not (a and b)", "not (a and b)"},
		{"a and not b or not c", "((a and not b) or not c)"},
		{"(a or b) and c", "((a or b) and c)"},
		{"a AND b", "(a and b)"},
		{"1 of sel*", "1 of (sel_1, sel_2)"},
		{"all of sel_*", "2 of (sel_1, sel_2)"},
		{"1 of them", "1 of (a, b, c, sel_1, sel_2)"},
		{"all of them and not _filter", "(5 of (a, b, c, sel_1, sel_2) and not _filter)"},
		{"2 of them", "2 of (a, b, c, sel_1, sel_2)"},
		{"1 of _*", "1 of (_filter)"},
		{"not not a", "not not a"},
	}
	for _, tc := range cases {
		c, err := parseCondition(tc.cond, names)
		if err != nil {
			t.Errorf("%q: %v", tc.cond, err)
			continue
		}
		if got := c.string(names); got != tc.want {
			t.Errorf("%q parsed as %s, want %s", tc.cond, got, tc.want)
		}
	}
	bad := []struct{ cond, want string }{
		{"a and", "condition column 6: condition ends where a search identifier, not or ( was expected"},
		{"(a or b", "condition column 8: expected ) to close the ( at column 1"},
		{"a b", `condition column 3: unexpected "b"; expected and, or or the end`},
		{"x", `condition column 1: "x" is not a search identifier of this rule's detection`},
		{"1 of z*", `condition column 6: "z*" matches no search identifier of this rule's detection`},
		{"sel*", `condition column 1: wildcard "sel*" is only allowed after "1 of" or "all of"`},
		{"0 of them", `condition column 1: "0 of" can never be satisfied; use 1 or more`},
		{"3 of sel*", `condition column 1: "3 of sel*" can never be satisfied: only 2 identifiers match`},
		{"a | count() > 5", `condition column 3: aggregation expressions ("| count() ...") are not supported (they are deprecated in Sigma); write a correlation rule instead`},
		{"a = b", `condition column 3: unexpected character '='`},
		{strings.Repeat("(", 60) + "a" + strings.Repeat(")", 60), "condition column 51: condition nested deeper than 50 levels"},
	}
	for _, tc := range bad {
		_, err := parseCondition(tc.cond, names)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q: error %v, want %s", tc.cond, err, tc.want)
		}
	}
}

// TestConditionEval: if this fails, a correctly parsed condition is evaluated wrongly.
func TestConditionEval(t *testing.T) {
	const sels = `  sel_tool:
    mcp.tool: db_query
  sel_server:
    target.server: sales-db
  sel_miss:
    mcp.tool: nope
  _filter:
    principal.sub: alice
`
	cases := []struct {
		cond string
		want bool
	}{
		{"sel_tool and sel_server", true},
		{"sel_tool and sel_miss", false},
		{"sel_miss or sel_tool and sel_server", true},
		{"(sel_miss or sel_tool) and not sel_server", false},
		{"1 of sel_*", true},
		{"all of sel_*", false},
		{"2 of sel_*", true},
		{"all of them", false},
		{"1 of sel_* and not _filter", false},
		{"all of sel_t* and all of sel_s*", true},
		{"not sel_miss", true},
	}
	for _, tc := range cases {
		rs := mustParse(t, rule(sels+"  condition: "+tc.cond+"\n"))
		if got := len(rs.Match(baseEvent())) == 1; got != tc.want {
			t.Errorf("%q: match = %v, want %v", tc.cond, got, tc.want)
		}
	}
	// A list of conditions matches when any does.
	rs := mustParse(t, rule(sels+"  condition:\n    - sel_miss\n    - sel_server\n"))
	if len(rs.Match(baseEvent())) != 1 {
		t.Error("a list of conditions should match when one of them does")
	}
}

// TestMatchEvidence: if this fails, findings lose the rule metadata or the fields an analyst
// needs to see why the rule fired.
func TestMatchEvidence(t *testing.T) {
	rs := mustParse(t, rule(`  sel:
    mcp.tool|startswith: db_
    network.src_ip|cidr: 10.0.0.0/8
  kw:
    - 'no policy'
  filter:
    principal.sub: bob
  condition: (sel or kw) and not filter
`))
	ms := rs.Match(baseEvent())
	if len(ms) != 1 {
		t.Fatalf("matches = %d, want 1", len(ms))
	}
	m := ms[0]
	if m.RuleID != "5a0f2b36-2f6c-4c1e-9a4e-3c6f0d1e2a7b" || m.Title != "Test rule" || m.Level != "high" ||
		strings.Join(m.Tags, ",") != "attack.exfiltration,attack.t1048" {
		t.Errorf("metadata: %+v", m)
	}
	got := fmt.Sprint(m.Fields)
	want := "[{mcp.tool|startswith db_query} {network.src_ip|cidr 10.1.2.3} {outcome.reason no policy allows db_query}]"
	if got != want {
		t.Errorf("evidence %s, want %s", got, want)
	}
	// Only MCP calls belong to logsource mcp_call.
	e := baseEvent()
	e.Source = event.SourceKernel
	if rs.Match(e) != nil {
		t.Error("a kernel event matched an mcp_call rule")
	}
}

// TestRefusals: if this fails, a rule using something the engine does not do is run with the
// feature ignored (or refused with a reason nobody can act on).
func TestRefusals(t *testing.T) {
	cases := []struct {
		name   string
		doc    string
		kind   error
		reason string
	}{
		{"unknown field", rule("  sel:\n    CommandLine: x\n  condition: sel"), ErrUnsupported,
			`rule.yml:11:5: unknown field "CommandLine" for logsource mcpwatch/mcp_call; it is a field of kernel events (logsource categories process_creation, file_access, network_connection)`},
		{"unknown field anywhere", rule("  sel:\n    Hashes: x\n  condition: sel"), ErrUnsupported,
			`rule.yml:11:5: unknown field "Hashes" for logsource mcpwatch/mcp_call; docs/sigma.md lists the mapped fields`},
		{"field case", rule("  sel:\n    MCP.Tool: x\n  condition: sel"), ErrUnsupported,
			`rule.yml:11:5: unknown field "MCP.Tool" for logsource mcpwatch/mcp_call (field names are case-sensitive: did you mean "mcp.tool"?)`},
		{"unknown modifier", rule("  sel:\n    mcp.tool|foo: x\n  condition: sel"), ErrUnsupported,
			`rule.yml:11:5: unknown modifier "foo" in "mcp.tool|foo"`},
		{"expand", rule("  sel:\n    mcp.tool|expand: '%tools%'\n  condition: sel"), ErrUnsupported,
			`rule.yml:11:5: modifier "expand" needs placeholder values from a processing pipeline, which mcpwatch does not have`},
		{"fieldref", rule("  sel:\n    mcp.tool|fieldref: mcp.method\n  condition: sel"), ErrUnsupported,
			`rule.yml:11:5: modifier "fieldref" (compare with another field) is not supported yet`},
		{"wide", rule("  sel:\n    mcp.tool|wide|base64offset|contains: x\n  condition: sel"), ErrUnsupported,
			`rule.yml:11:5: modifier "wide" is not supported: mcpwatch events are UTF-8 text, so UTF-16 encodings never occur in them`},
		{"aggregation", rule("  sel:\n    mcp.tool: x\n  condition: sel | count() by principal.sub > 5"), ErrUnsupported,
			`rule.yml:12:14: condition "sel | count() by principal.sub > 5": at column 5: aggregation expressions ("| count() ...") are not supported (they are deprecated in Sigma); write a correlation rule instead`},
		{"timeframe", rule("  sel:\n    mcp.tool: x\n  timeframe: 5m\n  condition: sel"), ErrUnsupported,
			`rule.yml:12:3: detection.timeframe belongs to aggregation expressions, which are not supported; write a correlation rule instead`},
		{"re lookahead", rule("  sel:\n    mcp.tool|re: 'a(?=b)'\n  condition: sel"), ErrUnsupported,
			"rule.yml:11:18: regular expression \"a(?=b)\": error parsing regexp: invalid or unsupported Perl syntax: `(?=` (Go's RE2 has no lookaround, backreferences or possessive quantifiers)"},
		{"re backreference", rule("  sel:\n    mcp.tool|re: '(a)\\1'\n  condition: sel"), ErrUnsupported,
			"rule.yml:11:18: regular expression \"(a)\\\\1\": error parsing regexp: invalid escape sequence: `\\1` (Go's RE2 has no lookaround, backreferences or possessive quantifiers)"},
		{"re broken", rule("  sel:\n    mcp.tool|re: 'a('\n  condition: sel"), ErrInvalid,
			"rule.yml:11:18: regular expression \"a(\": error parsing regexp: missing closing ): `a(`"},
		{"re flag without re", rule("  sel:\n    mcp.tool|i: x\n  condition: sel"), ErrInvalid,
			`rule.yml:11:5: modifier "i" only qualifies "re" and must follow it`},
		{"re contains", rule("  sel:\n    mcp.tool|re|contains: x\n  condition: sel"), ErrInvalid,
			`rule.yml:11:5: modifier "re" cannot be combined with "contains"`},
		{"cidr bad", rule("  sel:\n    network.src_ip|cidr: 10.0.0.0/33\n  condition: sel"), ErrInvalid,
			`rule.yml:11:26: modifier "cidr": "10.0.0.0/33" is not a network such as 10.0.0.0/8 or fd00::/8`},
		{"gt string", rule("  sel:\n    size.request|gt: many\n  condition: sel"), ErrInvalid,
			`rule.yml:11:22: modifier "gt" compares numbers; "many" is not a number`},
		{"exists not bool", rule("  sel:\n    mcp.tool|exists: yes\n  condition: sel"), ErrInvalid,
			`rule.yml:11:22: modifier "exists" takes true or false, not "yes"`},
		{"base64 wildcard", rule("  sel:\n    mcp.tool|base64: 'a*'\n  condition: sel"), ErrInvalid,
			`rule.yml:11:22: modifier "base64" cannot encode the wildcards in "a*"; escape them (\* \?) or drop the wildcards`},
		{"contains then base64", rule("  sel:\n    mcp.tool|contains|base64: a\n  condition: sel"), ErrInvalid,
			`rule.yml:11:5: modifier "base64" after "contains" would encode the wildcards; write base64|contains`},
		{"two positions", rule("  sel:\n    mcp.tool|contains|endswith: a\n  condition: sel"), ErrInvalid,
			`rule.yml:11:5: modifiers "contains" and "endswith" cannot be combined`},
		{"null with modifier", rule("  sel:\n    mcp.tool|contains: null\n  condition: sel"), ErrInvalid,
			`rule.yml:11:24: null in "mcp.tool|contains": null only means "the field is absent" and takes no modifiers`},
		{"correlation value_sum", `title: Spree
id: 5a0f2b36-2f6c-4c1e-9a4e-3c6f0d1e2a7c
correlation:
  type: value_sum
  rules: [x]
  timespan: 5m
  condition: {gte: 10}
`, ErrUnsupported, `rule.yml:4:9: correlation type "value_sum" is not in the Sigma specification mcpwatch implements (event_count, value_count, temporal, temporal_ordered)`},
		{"windows product", strings.Replace(rule("  sel:\n    mcp.tool: x\n  condition: sel"), "product: mcpwatch", "product: windows", 1), ErrUnsupported,
			`rule.yml:7:12: logsource product "windows" has no mapping onto mcpwatch events; use product: mcpwatch`},
		{"MCP field in a kernel category", strings.Replace(rule("  sel:\n    mcp.tool: x\n  condition: sel"), "category: mcp_call", "category: process_creation", 1), ErrUnsupported,
			`rule.yml:11:5: unknown field "mcp.tool" for logsource mcpwatch/process_creation; it is a field of MCP messages (logsource category mcp_call), which kernel events do not have`},
		{"kernel field case", strings.Replace(rule("  sel:\n    image: x\n  condition: sel"), "category: mcp_call", "category: process_creation", 1), ErrUnsupported,
			`rule.yml:11:5: unknown field "image" for logsource mcpwatch/process_creation (field names are case-sensitive: did you mean "Image"?)`},
		{"file_event", strings.Replace(rule("  sel:\n    TargetFilename: x\n  condition: sel"), "category: mcp_call", "category: file_event", 1), ErrUnsupported,
			`rule.yml:8:13: logsource category "file_event" is not mapped: Sigma's file_event is files created or modified; the probes see open attempts without their outcome, so mcpwatch maps them to file_access (match the open flags in attributes.kernel.open_flags if needed)`},
		{"unmapped category", strings.Replace(rule("  sel:\n    mcp.tool: x\n  condition: sel"), "category: mcp_call", "category: registry_event", 1), ErrUnsupported,
			`rule.yml:8:13: logsource category "registry_event" has no mapping onto mcpwatch events (mapped: mcp_call, process_creation, file_access, network_connection)`},
		{"missing title", "id: 5a0f2b36-2f6c-4c1e-9a4e-3c6f0d1e2a7b\nlogsource: {category: mcp_call}\ndetection: {sel: {mcp.tool: x}, condition: sel}\n", ErrInvalid,
			`rule.yml:1:1: required field "title" is missing`},
		{"bad id", strings.Replace(rule("  sel:\n    mcp.tool: x\n  condition: sel"), "5a0f2b36-2f6c-4c1e-9a4e-3c6f0d1e2a7b", "rule-1", 1), ErrInvalid,
			`rule.yml:2:5: id "rule-1" is not a UUID (write it as xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)`},
		{"bad level", strings.Replace(rule("  sel:\n    mcp.tool: x\n  condition: sel"), "level: high", "level: severe", 1), ErrInvalid,
			`rule.yml:4:8: level "severe" is not one of informational, low, medium, high, critical`},
		{"no condition", rule("  sel:\n    mcp.tool: x\n"), ErrInvalid, `rule.yml:9:1: detection has no condition`},
		{"unknown identifier", rule("  sel:\n    mcp.tool: x\n  condition: sel and other"), ErrInvalid,
			`rule.yml:12:14: condition "sel and other": at column 9: "other" is not a search identifier of this rule's detection`},
		{"yaml syntax", "title: [unclosed\n", ErrInvalid, ``},
		{"duplicate key", rule("  sel:\n    mcp.tool: x\n    mcp.tool: y\n  condition: sel"), ErrInvalid,
			`rule.yml:12:5: YAML syntax: mapping key "mcp.tool" already defined at [11:5]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := Parse("rule.yml", []byte(tc.doc))
			if len(errs) != 1 {
				t.Fatalf("errors = %v, want one", errs)
			}
			if !errors.Is(errs[0], tc.kind) {
				t.Errorf("error %v is not %v", errs[0], tc.kind)
			}
			if tc.reason != "" && errs[0].Error() != tc.reason {
				t.Errorf("error\n  %s\nwant\n  %s", errs[0], tc.reason)
			}
			var e *Error
			if !errors.As(errs[0], &e) || e.Line == 0 {
				t.Errorf("error %v has no position", errs[0])
			}
		})
	}
}

// TestLoad: if this fails, one broken file stops the good rules from loading, or a broken file is
// not reported with its name.
func TestLoad(t *testing.T) {
	good := rule("  sel:\n    mcp.tool: db_query\n  condition: sel\n")
	fsys := fstest.MapFS{
		"rules/a.yml":         {Data: []byte(good)},
		"rules/b/broken.yaml": {Data: []byte(rule("  sel:\n    mcp.tool|nope: x\n  condition: sel\n"))},
		"rules/b/dup.yml":     {Data: []byte(good)},
		"rules/c.yml": {Data: []byte(strings.Replace(good, "5a0f2b36-2f6c-4c1e-9a4e-3c6f0d1e2a7b", "5a0f2b36-2f6c-4c1e-9a4e-3c6f0d1e2a7d", 1) +
			"---\n" + strings.Replace(good, "5a0f2b36-2f6c-4c1e-9a4e-3c6f0d1e2a7b", "5a0f2b36-2f6c-4c1e-9a4e-3c6f0d1e2a7e", 1))},
		"rules/readme.txt": {Data: []byte("not a rule")},
	}
	rs, errs := Load(fsys, "rules")
	if rs.Len() != 3 {
		t.Errorf("loaded %d rules, want 3", rs.Len())
	}
	var got []string
	for _, err := range Errors(errs) {
		got = append(got, err.Error())
	}
	want := []string{
		`rules/b/broken.yaml:11:5: unknown modifier "nope" in "mcp.tool|nope"`,
		`rules/b/dup.yml:1:1: rule id 5a0f2b36-2f6c-4c1e-9a4e-3c6f0d1e2a7b is already used by "Test rule" at rules/a.yml:1`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := len(rs.Match(baseEvent())); n != 3 {
		t.Errorf("matches = %d, want 3", n)
	}
}

// TestBase64Offsets: if this fails, base64offset values differ from pySigma's and rules shared
// with other SIEMs match differently here.
func TestBase64Offsets(t *testing.T) {
	got := strings.Join(base64Offsets("/bin/bash"), ",")
	if want := "L2Jpbi9iYXNo,9iaW4vYmFza,vYmluL2Jhc2"; got != want {
		t.Errorf("base64Offsets = %s, want %s", got, want)
	}
}

// TestGlob: if this fails, wildcard values match the wrong strings.
func TestGlob(t *testing.T) {
	cases := []struct {
		pat, v string
		want   bool
	}{
		{"a*b", "ab", true}, {"a*b", "axxb", true}, {"a*b", "axxbc", false},
		{"*a*b*", "xxaxxbxx", true}, {"a?c", "abc", true}, {"a?c", "ac", false},
		{"a?c", "aéc", true}, {"**", "", true}, {"*?", "", false}, {"a*b*c", "abbbbc", true},
		{"a*b*c", "acb", false}, {"*aab", "aaab", true},
	}
	for _, tc := range cases {
		m := compileString(parseSigmaString(tc.pat), "", true)
		if got := m.matchString(tc.v); got != tc.want {
			t.Errorf("%q ~ %q = %v, want %v", tc.pat, tc.v, got, tc.want)
		}
	}
}

// TestWindash: if this fails, windash misses Windows option spellings or rewrites dashes inside
// words.
func TestWindash(t *testing.T) {
	got := windash("a -x b-c")
	if len(got) != 5 || got[0] != "a -x b-c" || got[1] != "a /x b-c" || got[2] != "a –x b-c" {
		t.Errorf("windash = %q", got)
	}
}
