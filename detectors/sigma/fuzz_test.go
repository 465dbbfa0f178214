package sigma

import (
	"reflect"
	"strings"
	"testing"

	"github.com/mcpwatch/mcpwatch/event"
)

// FuzzParseCondition: if this fails, a hostile condition crashes the loader, or a parsed tree
// refers to a selection that does not exist.
func FuzzParseCondition(f *testing.F) {
	for _, s := range []string{
		"a", "a and b or not c", "1 of sel*", "all of them", "(a or b) and not (c)", "a | count() > 5",
		"2 of them", "not not not a", "((a)", "all of _*", "a and", "1 of", "x of y",
	} {
		f.Add(s)
	}
	names := []string{"a", "b", "c", "sel_1", "sel_2", "_f"}
	f.Fuzz(func(t *testing.T, src string) {
		c, err := parseCondition(src, names)
		if err != nil {
			if _, ok := err.(*condError); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		var walk func(*cond, int)
		walk = func(c *cond, depth int) {
			if depth > 2*maxCondDepth+10 {
				t.Fatalf("tree deeper than the parser allows")
			}
			if c.op == opSel && (c.sel < 0 || c.sel >= len(names)) {
				t.Fatalf("selection index %d out of range", c.sel)
			}
			if c.op == opOf && (c.n < 1 || c.n > len(c.kids)) {
				t.Fatalf("%d of %d kids", c.n, len(c.kids))
			}
			for _, k := range c.kids {
				walk(k, depth+1)
			}
		}
		walk(c, 0)
		_ = c.string(names)
	})
}

// FuzzLoadRule: if this fails, a hostile rule file crashes the loader or a loaded rule crashes
// matching, or the prefilter skips a rule that matches.
func FuzzLoadRule(f *testing.F) {
	f.Add(rule("  sel:\n    mcp.tool|contains: db\n  condition: sel\n"))
	f.Add(rule("  sel:\n    - mcp.tool|re|i: '^db'\n    - network.src_ip|cidr: 10.0.0.0/8\n  kw: [a, 'b*c']\n  condition: 1 of them\n"))
	f.Add(rule("  sel:\n    mcp.arguments_masked|base64offset|contains|all: [x, y]\n    size.request|gt: 5\n  condition: not sel\n"))
	f.Add(rule("  sel: &a\n    mcp.tool: x\n  sel2: *a\n  condition: all of sel*\n"))
	f.Add("title: x\n---\n- a\n")
	f.Add(rule("  sel:\n    mcp.tool|cased: DB_Query\n    mcp.method: [tools/call, null]\n  f:\n    mcp.server: sales-db\n  condition: sel and not f or 1 of f*\n"))
	f.Add(rule("  a:\n    mcp.tool|all: [db_query, x]\n  b:\n    target.server|exists: false\n  c: [db]\n  condition: 2 of them\n"))
	f.Fuzz(func(t *testing.T, doc string) {
		rs, errs := Parse("fuzz.yml", []byte(doc))
		for _, err := range errs {
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			if e.Reason == "" || !strings.HasPrefix(e.Error(), "fuzz.yml") {
				t.Fatalf("error without a reason or file: %q", e.Error())
			}
		}
		ev := baseEvent()
		samePrefiltered(t, rs, ev)
		ev.MCP.ArgumentsMasked = doc
		samePrefiltered(t, rs, ev)
		ev.MCP.Tool, ev.Target.Server = "", ""
		samePrefiltered(t, rs, ev)
	})
}

// samePrefiltered matches e with the prefilter and by evaluating every rule, and fails when the
// two differ.
func samePrefiltered(t *testing.T, rs *RuleSet, e *event.Event) {
	t.Helper()
	got := rs.Match(e)
	rs.scanAll = true
	want := rs.Match(e)
	rs.scanAll = false
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("with the prefilter %+v, every rule evaluated %+v", got, want)
	}
}
