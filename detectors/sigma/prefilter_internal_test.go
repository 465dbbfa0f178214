package sigma

import (
	"slices"
	"strings"
	"testing"
)

// TestRuleNeed: the necessary condition derived from each shape of detection. If this fails, a
// rule is filed under values it does not need (TestPrefilterSameMatches then finds the lost
// matches) or is no longer indexed where it could be (the benchmark's gain shrinks).
func TestRuleNeed(t *testing.T) {
	for _, tc := range []struct{ detection, want string }{
		{"sel:\n    mcp.tool: [DB_Query, read_file]\n  condition: sel", "mcp.tool=db_query mcp.tool=read_file"},
		{"sel:\n    mcp.tool|cased: DB_Query\n  condition: sel", "mcp.tool=db_query"},
		{"sel:\n    mcp.server: Files\n  condition: sel", "target.server=files"},
		{"sel:\n    mcp.tool: null\n  condition: sel", "mcp.tool="},
		{"sel:\n    mcp.tool|exists: false\n  condition: sel", "mcp.tool="},
		{"sel:\n    mcp.tool|exists: true\n  condition: sel", "none"},
		{"sel:\n    mcp.tool: ['db_*', read_file]\n  condition: sel", "none"},
		{"sel:\n    mcp.tool|startswith: pay_\n  condition: sel", "none"},
		{"sel:\n    mcp.tool|re: '^pay_'\n  condition: sel", "none"},
		{"sel:\n    principal.roles: intern\n  condition: sel", "none"},
		{"sel:\n    network.dst_port: 443\n  condition: sel", "none"},
		{"kw: [db_query]\n  condition: kw", "none"},
		// An AND takes the need of its most selective field.
		{"sel:\n    mcp.method: tools/call\n    mcp.direction: request\n    mcp.tool: [a, b]\n  condition: sel", "mcp.tool=a mcp.tool=b"},
		{"sel:\n    mcp.method: tools/call\n    mcp.direction: request\n  condition: sel", "mcp.method=tools/call"},
		{"sel:\n    mcp.tool|all: [a, A]\n  condition: sel", "mcp.tool=a"},
		{"sel:\n    - mcp.tool: a\n    - target.server: s\n  condition: sel", "mcp.tool=a target.server=s"},
		{"sel:\n    - mcp.tool: a\n    - network.user_agent|contains: curl\n  condition: sel", "none"},
		{"sel:\n    mcp.tool: a\n  filter:\n    mcp.client_name: cursor\n  condition: sel and not filter", "mcp.tool=a"},
		{"sel:\n    mcp.tool: a\n  condition: not sel", "none"},
		{"a:\n    mcp.tool: a\n  b:\n    target.server: s\n  condition: a or b", "mcp.tool=a target.server=s"},
		{"a:\n    mcp.tool: a\n  b:\n    mcp.arguments_masked|contains: x\n  condition: a or b", "none"},
		{"sel_a:\n    mcp.tool: a\n  sel_b:\n    mcp.tool: b\n  condition: 1 of sel_*", "mcp.tool=a mcp.tool=b"},
		{"sel_a:\n    mcp.method: m\n  sel_b:\n    mcp.tool: b\n  condition: all of sel_*", "mcp.tool=b"},
		// 2 of 3 with one selection without a need: one of the other two must hold.
		{"sel_a:\n    mcp.tool: a\n  sel_b:\n    mcp.tool: b\n  sel_c:\n    mcp.arguments_masked|contains: x\n  condition: 2 of sel_*", "mcp.tool=a mcp.tool=b"},
		{"sel_a:\n    mcp.tool: a\n  sel_b:\n    mcp.arguments_masked|contains: y\n  sel_c:\n    mcp.arguments_masked|contains: x\n  condition: 2 of sel_*", "none"},
		{"sel:\n    mcp.tool: a\n  condition:\n    - sel\n    - not sel", "none"},
	} {
		rs := mustParse(t, rule("  "+tc.detection+"\n"))
		var got []string
		for _, k := range ruleNeed(rs.rules[0]) {
			got = append(got, k.f.name+"="+k.v)
		}
		slices.Sort(got)
		s := strings.Join(got, " ")
		if got == nil {
			s = "none"
		}
		if s != tc.want {
			t.Errorf("%s\nneed %q, want %q", tc.detection, s, tc.want)
		}
	}
}
