package sigma

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

var c0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// Base rules the correlation tests relate: any tool call (named "call"), a denied call
// ("denied"), a read ("read_db") and an egress call ("send_mail").
const baseRules = `title: Any tool call
id: 11111111-1111-4111-8111-111111111111
name: call
level: low
tags: [attack.discovery]
logsource: {category: mcp_call}
detection:
  sel: {mcp.method: tools/call}
  condition: sel
---
title: Denied call
id: 22222222-2222-4222-8222-222222222222
name: denied
logsource: {category: mcp_call}
detection:
  sel: {outcome.result: denied}
  condition: sel
---
title: Database read
id: 33333333-3333-4333-8333-333333333333
name: read_db
tags: [attack.collection]
logsource: {category: mcp_call}
detection:
  sel: {mcp.tool: db_query}
  condition: sel
---
title: Mail sent
id: 44444444-4444-4444-8444-444444444444
name: send_mail
tags: [attack.exfiltration]
logsource: {category: mcp_call}
detection:
  sel: {mcp.tool: send_mail}
  condition: sel
`

func corrDoc(id, body string) string {
	return "---\ntitle: Correlation " + id + "\nid: " + id + "\nlevel: high\ncorrelation:\n" + body
}

const (
	idA = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
	idB = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
)

func mustCorr(t *testing.T, docs string, lim Limits) (*RuleSet, *Correlator) {
	t.Helper()
	rs, errs := Parse("corr.yml", []byte(baseRules+docs))
	if len(errs) > 0 {
		t.Fatalf("parse: %v", errs)
	}
	c, err := rs.NewCorrelator(lim)
	if err != nil {
		t.Fatal(err)
	}
	return rs, c
}

var cseq int

// call is a tool call of tool by sub at offset at, allowed or denied.
func call(sub, tool string, at time.Duration, denied bool) *event.Event {
	cseq++
	e := &event.Event{ID: fmt.Sprintf("ev-%04d", cseq), Time: c0.Add(at), Source: event.SourceMCP, Tenant: "acme",
		Principal: event.Principal{Subject: sub},
		MCP:       &event.MCP{Direction: event.DirRequest, Method: "tools/call", Tool: tool},
		Outcome:   event.Outcome{Result: event.ResultAllowed}, Network: event.Network{SrcIP: "10.0.0." + sub}}
	if denied {
		e.Outcome.Result = event.ResultDenied
	}
	return e
}

// feed runs events through the rule set and the correlator, in the order given, and returns
// the correlation matches with the index of the event that completed each.
func feed(rs *RuleSet, c *Correlator, evs ...*event.Event) (ms []CorrelationMatch, at []int) {
	for i, e := range evs {
		n := len(ms)
		ms = c.Observe(e, rs.Match(e), ms)
		for range ms[n:] {
			at = append(at, i)
		}
		c.Expire(e.Time)
	}
	return ms, at
}

// event_count: a count crossing the threshold inside the timespan matches, once, at the event
// that crossed it; the same count spread wider than the timespan, or over two groups, does not.
// If this fails, a denial spree goes unreported or a slow trickle is called a spree.
func TestEventCount(t *testing.T) {
	doc := corrDoc(idA, "  type: event_count\n  rules: [denied]\n  group-by: [principal.id]\n  timespan: 1m\n  condition: {gte: 3}\n")
	cases := []struct {
		name string
		evs  []*event.Event
		want []int // indexes of the events that complete a match
	}{
		{"inside", []*event.Event{call("alice", "x", 0, true), call("alice", "x", 20*time.Second, true), call("alice", "x", 40*time.Second, true)}, []int{2}},
		{"outside", []*event.Event{call("alice", "x", 0, true), call("alice", "x", 40*time.Second, true), call("alice", "x", 80*time.Second, true)}, nil},
		{"boundary", []*event.Event{call("alice", "x", 0, true), call("alice", "x", 30*time.Second, true), call("alice", "x", time.Minute, true)}, nil},
		{"groups", []*event.Event{call("alice", "x", 0, true), call("bob", "x", time.Second, true), call("alice", "x", 2*time.Second, true),
			call("bob", "x", 3*time.Second, true), call("bob", "x", 4*time.Second, true)}, []int{4}},
		{"allowed calls do not count", []*event.Event{call("alice", "x", 0, true), call("alice", "x", time.Second, false), call("alice", "x", 2*time.Second, true)}, nil},
		{"reset after a match", []*event.Event{call("alice", "x", 0, true), call("alice", "x", 1*time.Second, true), call("alice", "x", 2*time.Second, true),
			call("alice", "x", 3*time.Second, true), call("alice", "x", 4*time.Second, true), call("alice", "x", 5*time.Second, true)}, []int{2, 5}},
		{"out of order within the window", []*event.Event{call("alice", "x", 50*time.Second, true), call("alice", "x", 10*time.Second, true), call("alice", "x", 30*time.Second, true)}, []int{2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rs, c := mustCorr(t, doc, DefaultLimits)
			ms, at := feed(rs, c, tc.evs...)
			if !reflect.DeepEqual(at, tc.want) {
				t.Fatalf("matches at events %v, want %v", at, tc.want)
			}
			for _, m := range ms {
				if m.Count != 3 || m.Correlation.ID != idA || len(m.GroupBy) != 1 || m.GroupBy[0].Field != "principal.id" || len(m.EventIDs) != 3 {
					t.Fatalf("match %+v", m)
				}
				if !m.WindowEnd.After(m.WindowStart) || m.WindowEnd.Sub(m.WindowStart) != time.Minute {
					t.Fatalf("window (%s, %s]", m.WindowStart, m.WindowEnd)
				}
			}
		})
	}
}

// An event older than the newest seen minus the timespan cannot share a window with anything
// still to come: it is counted late, not added (if this fails, a replayed backlog would pile
// into groups long expired).
func TestLate(t *testing.T) {
	rs, c := mustCorr(t, corrDoc(idA, "  type: event_count\n  rules: [denied]\n  group-by: [principal.id]\n  timespan: 1m\n  condition: {gte: 2}\n"), DefaultLimits)
	ms, _ := feed(rs, c, call("alice", "x", 5*time.Minute, true), call("alice", "x", 0, true), call("alice", "x", time.Minute, true))
	if len(ms) != 0 || c.Stats().Late != 2 {
		t.Fatalf("matches %v, late %d; want none and 2 late", ms, c.Stats().Late)
	}
}

// value_count counts distinct values, not events; a repeated value adds nothing, and absent
// values are not values.
func TestValueCount(t *testing.T) {
	doc := corrDoc(idA, "  type: value_count\n  rules: [call]\n  group-by: [principal.id]\n  timespan: 10m\n  condition: {field: mcp.tool, gt: 2}\n")
	rs, c := mustCorr(t, doc, DefaultLimits)
	ms, _ := feed(rs, c, call("alice", "a", 0, false), call("alice", "a", time.Second, false), call("alice", "a", 2*time.Second, false),
		call("alice", "b", 3*time.Second, false), call("bob", "c", 4*time.Second, false), call("alice", "", 5*time.Second, false))
	if len(ms) != 0 {
		t.Fatalf("matched %+v with two distinct tools", ms)
	}
	ms, _ = feed(rs, c, call("alice", "c", 6*time.Second, false))
	if len(ms) != 1 || ms[0].Count != 3 || !reflect.DeepEqual(ms[0].Values, []string{"a", "b", "c"}) {
		t.Fatalf("matches %+v, want one of 3 distinct tools", ms)
	}
	// A value seen outside the timespan does not count.
	rs, c = mustCorr(t, doc, DefaultLimits)
	ms, _ = feed(rs, c, call("alice", "a", 0, false), call("alice", "b", 9*time.Minute, false), call("alice", "c", 11*time.Minute, false))
	if len(ms) != 0 {
		t.Fatalf("matched %+v with a value 11 minutes old", ms)
	}
}

// temporal needs every referenced rule within the timespan, in any order; temporal_ordered in
// the order listed. If this fails, "read then mail" fires on a read alone, or on a mail sent
// before the read.
func TestTemporal(t *testing.T) {
	unordered := corrDoc(idA, "  type: temporal\n  rules: [read_db, send_mail]\n  group-by: [principal.id]\n  timespan: 5m\n")
	ordered := corrDoc(idA, "  type: temporal_ordered\n  rules: [read_db, send_mail]\n  group-by: [principal.id]\n  timespan: 5m\n")
	cases := []struct {
		name string
		doc  string
		evs  []*event.Event
		want []int
	}{
		{"both inside", unordered, []*event.Event{call("alice", "db_query", 0, false), call("alice", "send_mail", 4*time.Minute, false)}, []int{1}},
		{"reverse order", unordered, []*event.Event{call("alice", "send_mail", 0, false), call("alice", "db_query", time.Minute, false)}, []int{1}},
		{"too far apart", unordered, []*event.Event{call("alice", "db_query", 0, false), call("alice", "send_mail", 6*time.Minute, false)}, nil},
		{"one rule only", unordered, []*event.Event{call("alice", "db_query", 0, false), call("alice", "db_query", time.Minute, false)}, nil},
		{"two principals", unordered, []*event.Event{call("alice", "db_query", 0, false), call("bob", "send_mail", time.Minute, false)}, nil},
		{"out of order arrival", unordered, []*event.Event{call("alice", "send_mail", 3*time.Minute, false), call("alice", "x", 4*time.Minute, false),
			call("alice", "db_query", time.Minute, false)}, []int{2}},
		{"ordered", ordered, []*event.Event{call("alice", "db_query", 0, false), call("alice", "send_mail", time.Minute, false)}, []int{1}},
		{"ordered wrong order", ordered, []*event.Event{call("alice", "send_mail", 0, false), call("alice", "db_query", time.Minute, false)}, nil},
		{"ordered late arrival in order", ordered, []*event.Event{call("alice", "send_mail", 2*time.Minute, false), call("alice", "db_query", time.Minute, false)}, []int{1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rs, c := mustCorr(t, tc.doc, DefaultLimits)
			ms, at := feed(rs, c, tc.evs...)
			if !reflect.DeepEqual(at, tc.want) {
				t.Fatalf("matches at events %v, want %v (%+v)", at, tc.want, ms)
			}
			for _, m := range ms {
				if m.Count != 2 {
					t.Fatalf("count %d, want 2 rules", m.Count)
				}
			}
		})
	}
	// A condition counts rules: 2 of 3 is enough.
	rs, c := mustCorr(t, corrDoc(idA, "  type: temporal\n  rules: [read_db, send_mail, denied]\n  group-by: [principal.id]\n  timespan: 5m\n  condition: {gte: 2}\n"), DefaultLimits)
	if ms, _ := feed(rs, c, call("alice", "db_query", 0, false), call("alice", "send_mail", time.Minute, false)); len(ms) != 1 {
		t.Fatalf("2 of 3 rules: %d matches", len(ms))
	}
}

// A rule used only by correlations concludes nothing itself unless generate says so; a
// correlation feeds another (chaining), and only the outermost concludes. If this fails,
// every single denied call of a spree rule is a finding of its own.
func TestOutputAndChaining(t *testing.T) {
	docs := corrDoc(idA, "  type: event_count\n  rules: [denied]\n  group-by: [principal.id]\n  timespan: 1m\n  condition: {gte: 2}\n") +
		"name: spree\n" +
		corrDoc(idB, "  type: temporal_ordered\n  rules: [spree, send_mail]\n  group-by: [principal.id]\n  timespan: 10m\n")
	rs, c := mustCorr(t, docs, DefaultLimits)
	out := map[string]bool{}
	for _, r := range rs.Rules() {
		out[r.Title] = r.Output()
	}
	for _, cr := range rs.Correlations() {
		out[cr.ID] = cr.Output()
	}
	want := map[string]bool{"Any tool call": true, "Denied call": false, "Database read": true, "Mail sent": false, idA: false, idB: true}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("output %v, want %v", out, want)
	}
	if cs := rs.Correlations(); cs[0].ID != idA || cs[1].ID != idB {
		t.Fatalf("evaluation order %s, %s: a correlation must come after those it refers to", cs[0].ID, cs[1].ID)
	}
	ms, _ := feed(rs, c, call("alice", "x", 0, true), call("alice", "x", time.Second, true), call("alice", "send_mail", time.Minute, false))
	if len(ms) != 2 || ms[0].Correlation.ID != idA || ms[1].Correlation.ID != idB {
		t.Fatalf("matches %+v, want the spree then the spree followed by mail", ms)
	}

	gen := strings.Replace(docs, "  condition: {gte: 2}\n", "  condition: {gte: 2}\n  generate: true\n", 1)
	rs, _ = mustCorr(t, gen, DefaultLimits)
	if !rs.Rules()[1].Output() {
		t.Fatal("generate: true did not keep the denied rule's own findings")
	}
}

// Aliases let one group-by name read different fields for different rules.
func TestAliases(t *testing.T) {
	doc := corrDoc(idA, `  type: temporal
  rules: [read_db, send_mail]
  group-by: [who]
  timespan: 5m
  aliases:
    who:
      read_db: principal.id
      send_mail: network.src_ip
`)
	rs, c := mustCorr(t, doc, DefaultLimits)
	mail := call("zed", "send_mail", time.Minute, false)
	mail.Network.SrcIP = "alice"
	ms, _ := feed(rs, c, call("alice", "db_query", 0, false), mail)
	if len(ms) != 1 || ms[0].GroupBy[0] != (FieldMatch{"who", "alice"}) {
		t.Fatalf("matches %+v, want one grouped by who=alice", ms)
	}
}

// Memory is bounded: groups past MaxGroups and entries past MaxValues are evicted and counted,
// idle groups expire, and a threshold the limits cannot reach is refused at load.
func TestBounds(t *testing.T) {
	doc := corrDoc(idA, "  type: event_count\n  rules: [call]\n  group-by: [principal.id]\n  timespan: 1m\n  condition: {gte: 3}\n")
	rs, c := mustCorr(t, doc, Limits{MaxGroups: 2, MaxValues: 3})
	feed(rs, c, call("a", "x", 0, false), call("b", "x", 0, false), call("c", "x", 0, false))
	if s := c.Stats(); s.Groups != 2 || s.EvictedGroups != 1 {
		t.Fatalf("stats %+v, want 2 groups and 1 evicted", s)
	}
	c.Expire(c0.Add(2*time.Minute - time.Nanosecond))
	if s := c.Stats(); s.Groups != 2 {
		t.Fatalf("groups expired before two timespans: %+v", s)
	}
	c.Expire(c0.Add(2 * time.Minute))
	if s := c.Stats(); s.Groups != 0 || s.EvictedIdle != 2 {
		t.Fatalf("stats %+v, want every group expired", s)
	}

	vdoc := corrDoc(idA, "  type: value_count\n  rules: [call]\n  group-by: [principal.id]\n  timespan: 1h\n  condition: {field: mcp.tool, gte: 3}\n")
	rs, c = mustCorr(t, vdoc, Limits{MaxGroups: 10, MaxValues: 3})
	feed(rs, c, call("a", "t1", 0, false), call("a", "t2", time.Second, false))
	ms, _ := feed(rs, c, call("a", "t3", 2*time.Second, false))
	if len(ms) != 1 {
		t.Fatal("3 distinct values within a limit of 3 did not match")
	}

	rs, errs := Parse("corr.yml", []byte(baseRules+corrDoc(idA, "  type: event_count\n  rules: [call]\n  group-by: [principal.id]\n  timespan: 1m\n  condition: {gt: 3}\n")))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	_, err := rs.NewCorrelator(Limits{MaxGroups: 10, MaxValues: 3})
	if err == nil || !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "corr.yml:45:15: condition gt 3 can only hold with more than 3 events per group, the limit (max_values)") {
		t.Fatalf("error %v", err)
	}
}

// A reload keeps the groups of correlations it left unchanged and drops those of changed ones:
// if this fails, every reload forgets the sprees being counted (or counts old events under a
// new threshold's meaning).
func TestCarry(t *testing.T) {
	doc := corrDoc(idA, "  type: event_count\n  rules: [denied]\n  group-by: [principal.id]\n  timespan: 1m\n  condition: {gte: 3}\n")
	rs, c := mustCorr(t, doc, DefaultLimits)
	feed(rs, c, call("alice", "x", 0, true), call("alice", "x", time.Second, true))

	rs2, c2 := mustCorr(t, doc+"description: edited\n", DefaultLimits)
	c2.Carry(c)
	if ms, _ := feed(rs2, c2, call("alice", "x", 2*time.Second, true)); len(ms) != 1 {
		t.Fatalf("after an unchanged reload: %d matches, want the spree completed", len(ms))
	}

	rs, c = mustCorr(t, doc, DefaultLimits)
	feed(rs, c, call("alice", "x", 0, true), call("alice", "x", time.Second, true))
	rs3, c3 := mustCorr(t, strings.Replace(doc, "gte: 3", "gte: 4", 1), DefaultLimits)
	c3.Carry(c)
	if s := c3.Stats(); s.Reset != 1 || s.Groups != 0 {
		t.Fatalf("stats %+v: a changed threshold must drop the group", s)
	}
	if ms, _ := feed(rs3, c3, call("alice", "x", 2*time.Second, true)); len(ms) != 0 {
		t.Fatal("a changed correlation matched on state counted under the old one")
	}
}

// Correlations are refused at load with the reason at the position to fix.
func TestCorrelationRefusals(t *testing.T) {
	head := "---\ntitle: C\nid: " + idA + "\ncorrelation:\n"
	cases := []struct {
		name, body string
		kind       error
		want       string
	}{
		{"unknown rule", "  type: event_count\n  rules: [nope]\n  group-by: [principal.id]\n  timespan: 1m\n  condition: {gte: 2}\n", ErrInvalid,
			`corr.yml:41:11: rule "nope" is not loaded: no rule or correlation of the set has this id or name`},
		{"no condition", "  type: event_count\n  rules: [denied]\n  timespan: 1m\n", ErrInvalid,
			`corr.yml:40:3: required field "condition" is missing: a event_count correlation needs a threshold such as condition: {gte: 10}`},
		{"value_count without field", "  type: value_count\n  rules: [denied]\n  timespan: 1m\n  condition: {gte: 2}\n", ErrInvalid,
			`corr.yml:43:15: a value_count correlation needs condition.field: the field whose distinct values it counts`},
		{"bad timespan", "  type: event_count\n  rules: [denied]\n  timespan: 1 hour\n  condition: {gte: 2}\n", ErrInvalid,
			`corr.yml:42:13: timespan "1 hour" is not a number and a unit s, m, h or d (90m, 1h, 2d)`},
		{"long timespan", "  type: event_count\n  rules: [denied]\n  timespan: 30d\n  condition: {gte: 2}\n", ErrUnsupported,
			`corr.yml:42:13: timespan 30d is longer than 168h0m0s: correlation state is held in memory (use a detector profile for longer horizons)`},
		{"unknown group-by field", "  type: event_count\n  rules: [denied]\n  group-by: [User]\n  timespan: 1m\n  condition: {gte: 2}\n", ErrUnsupported,
			`corr.yml:42:14: unknown field "User" for logsource mcpwatch (any category); docs/sigma.md lists the mapped fields`},
		{"unknown key", "  type: event_count\n  rules: [denied]\n  timespan: 1m\n  window: 5\n  condition: {gte: 2}\n", ErrUnsupported,
			`corr.yml:43:3: unknown key "window" in the correlation section (known: type, rules, aliases, group-by, timespan, condition, generate)`},
		{"value_sum", "  type: value_sum\n  rules: [denied]\n  timespan: 1m\n  condition: {gte: 2}\n", ErrUnsupported, ""},
		{"ordered some", "  type: temporal_ordered\n  rules: [read_db, send_mail, denied]\n  timespan: 1m\n  condition: {gte: 2}\n", ErrUnsupported,
			`corr.yml:43:15: a temporal_ordered condition other than all 3 rules in order is not supported; leave condition out`},
		{"self", "  type: event_count\n  rules: [" + idA + "]\n  timespan: 1m\n  condition: {gte: 2}\n", ErrInvalid,
			`corr.yml:41:11: a correlation cannot refer to itself`},
		{"several fields", "  type: value_count\n  rules: [denied]\n  timespan: 1m\n  condition: {field: [mcp.tool, mcp.method], gte: 2}\n", ErrUnsupported, ""},
		{"detection", "  type: event_count\n  rules: [denied]\n  timespan: 1m\n  condition: {gte: 2}\ndetection: {}\n", ErrInvalid, ""},
		{"no id", strings.Replace(head, "id: "+idA+"\n", "", 1), ErrInvalid, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := head + tc.body
			if tc.name == "no id" {
				doc = tc.body + "  type: event_count\n  rules: [denied]\n  timespan: 1m\n  condition: {gte: 2}\n"
			}
			rs, errs := Parse("corr.yml", []byte(baseRules+doc))
			if len(errs) != 1 {
				t.Fatalf("errors %v, want one", errs)
			}
			if !errors.Is(errs[0], tc.kind) {
				t.Errorf("%v is not %v", errs[0], tc.kind)
			}
			if tc.want != "" && errs[0].Error() != tc.want {
				t.Errorf("error\n  %s\nwant\n  %s", errs[0], tc.want)
			}
			if rs.Len() != 4 || len(rs.Correlations()) != 0 {
				t.Errorf("loaded %d rules and %d correlations; the base rules must load, the correlation not", rs.Len(), len(rs.Correlations()))
			}
		})
	}
	// A cycle is refused at both ends.
	cyc := corrDoc(idA, "  type: event_count\n  rules: ["+idB+"]\n  timespan: 1m\n  condition: {gte: 2}\n") +
		corrDoc(idB, "  type: event_count\n  rules: ["+idA+"]\n  timespan: 1m\n  condition: {gte: 2}\n")
	_, errs := Parse("corr.yml", []byte(baseRules+cyc))
	if len(errs) != 2 || !strings.Contains(errs[0].Error(), "cycle") {
		t.Fatalf("cycle: errors %v", errs)
	}
}
