package sigma_test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/mcpwatch/mcpwatch/detectors/sigma"
	"github.com/mcpwatch/mcpwatch/event"
)

// prefilterEdgeRules exercise each way a need is derived, or not: cased values, null and
// "exists: false" (the empty value), "all", "1 of", "N of", "all of", "not" at the top and
// inside, a list of conditions, aliases, attributes, base64 and windash expansions, wildcards and
// keywords beside exact values.
const prefilterEdgeRules = `
sel:
  mcp.tool|cased: DB_Query
condition: sel
---
sel:
  mcp.tool: null
  mcp.method: tools/list
condition: sel
---
sel:
  target.server|exists: false
condition: sel
---
sel:
  mcp.tool|all: [db_query, DB_QUERY]
condition: sel
---
sel:
  mcp.tool|contains|all: [db, query]
condition: sel
---
sel_a:
  mcp.tool: read_file
sel_b:
  mcp.server: files
sel_c:
  mcp.arguments_masked|contains: etc/passwd
condition: 2 of sel_*
---
sel_a:
  mcp.tool: read_file
sel_b:
  mcp.server: files
condition: all of sel_*
---
sel_a:
  mcp.tool: read_file
sel_b:
  mcp.arguments_masked|contains: secret
condition: 1 of sel_*
---
sel:
  mcp.tool: db_query
condition: not sel
---
sel:
  mcp.tool: db_query
filter:
  mcp.client_name: cursor
condition: sel and not filter
---
sel:
  mcp.tool: db_query
other:
  mcp.method: tools/list
condition: not (sel and not other)
---
sel:
  - mcp.tool: db_query
  - target.server: sales-db
condition: sel
---
sel:
  - mcp.tool: db_query
  - network.user_agent|contains: curl
condition: sel
---
sel:
  attributes.region: EU-West
condition: sel
---
sel:
  mcp.tool|base64: db_query
condition: sel
---
sel:
  mcp.tool|windash: -db_query
condition: sel
---
sel:
  mcp.tool: ['db_*', read_file]
condition: sel
---
kw:
  - db_query
sel:
  mcp.tool: read_file
condition: kw or sel
---
sel:
  mcp.direction: response
  outcome.result: [denied, error]
  mcp.tool: [db_query, read_file]
condition: sel
---
sel:
  source: mcp
  mcp.protocol_version: '2024-11-05'
condition: sel
---
sel:
  mcp.tool: db_query
condition:
  - sel
  - not sel
---
sel:
  mcp.tool: db_query
condition:
  - sel
  - sel
---
sel:
  mcp.tool|re: '^db_'
other:
  mcp.tool: ''
condition: sel or other
---
sel:
  network.dst_port: 443
  principal.roles: analyst
condition: sel
`

// edgeRuleSet wraps each detection of prefilterEdgeRules in a rule.
func edgeRuleSet(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	for i, det := range strings.Split(prefilterEdgeRules, "---\n") {
		fmt.Fprintf(&b, "title: Edge %d\nid: 00000000-0000-4000-a000-%012d\nlogsource: {category: mcp_call}\ndetection:\n", i, i)
		for _, line := range strings.Split(strings.TrimSpace(det), "\n") {
			b.WriteString("  " + line + "\n")
		}
		b.WriteString("---\n")
	}
	return b.String()
}

// prefilterSets are the rule sets the prefilter must not change: the peer corpus and the shipped
// rules together, the edge rules, and the benchmarks' generated sets.
func prefilterSets(t testing.TB) map[string]*sigma.RuleSet {
	t.Helper()
	sets := map[string]*sigma.RuleSet{}
	var files []string
	for _, dir := range []string{filepath.Join("testdata", "peer"), filepath.Join("..", "..", "rules", "sigma")} {
		m, err := filepath.Glob(filepath.Join(dir, "*.yml"))
		if err != nil || len(m) == 0 {
			t.Fatalf("no rules in %s (%v)", dir, err)
		}
		files = append(files, m...)
	}
	rs, errs := sigma.LoadPaths(files...)
	if len(errs) > 0 {
		t.Fatalf("corpus: %v", errs)
	}
	sets["corpus"] = rs
	for name, src := range map[string]string{
		"edge":       edgeRuleSet(t),
		"generated":  sigma.GenRules(1000),
		"mixed":      sigma.GenMixedRules(1000),
		"mixed-tiny": sigma.GenMixedRules(20),
	} {
		rs, errs := sigma.Parse(name+".yml", []byte(src))
		if len(errs) > 0 {
			t.Fatalf("%s: %v", name, errs)
		}
		sets[name] = rs
	}
	return sets
}

// setters write an event's string fields by Sigma name: the fields the prefilter may index.
var setters = map[string]func(e *event.Event, v string){
	"source":               func(e *event.Event, v string) { e.Source = event.Source(v) },
	"mcp.direction":        func(e *event.Event, v string) { e.MCP.Direction = event.Direction(v) },
	"mcp.method":           func(e *event.Event, v string) { e.MCP.Method = v },
	"mcp.tool":             func(e *event.Event, v string) { e.MCP.Tool = v },
	"mcp.resource_uri":     func(e *event.Event, v string) { e.MCP.ResourceURI = v },
	"mcp.prompt":           func(e *event.Event, v string) { e.MCP.Prompt = v },
	"mcp.protocol_version": func(e *event.Event, v string) { e.MCP.ProtocolVersion = v },
	"mcp.client_name":      func(e *event.Event, v string) { e.MCP.ClientName = v },
	"mcp.client_version":   func(e *event.Event, v string) { e.MCP.ClientVersion = v },
	"mcp.tools_hash":       func(e *event.Event, v string) { e.MCP.ToolsHash = v },
	"mcp.transport":        func(e *event.Event, v string) { e.MCP.Transport = v },
	"target.server":        func(e *event.Event, v string) { e.Target.Server = v },
	"target.route":         func(e *event.Event, v string) { e.Target.Route = v },
	"outcome.result":       func(e *event.Event, v string) { e.Outcome.Result = event.Result(v) },
	"outcome.policy_rule":  func(e *event.Event, v string) { e.Outcome.PolicyRule = v },
	"outcome.reason":       func(e *event.Event, v string) { e.Outcome.Reason = v },
	"network.user_agent":   func(e *event.Event, v string) { e.Network.UserAgent = v },
	"network.src_ip":       func(e *event.Event, v string) { e.Network.SrcIP = v },
	"principal.sub":        func(e *event.Event, v string) { e.Principal.Subject = v },
	"principal.department": func(e *event.Event, v string) { e.Principal.Department = v },
	"attributes.region": func(e *event.Event, v string) {
		e.Attributes = map[string]string{"region": v}
	},
}

// vocabulary collects, per settable field, the values rules need (from every set's prefilter),
// the corpus's own values and near misses, for mutated events to hit and miss buckets.
func vocabulary(sets map[string]*sigma.RuleSet, corpus []event.Event) map[string][]string {
	voc := map[string][]string{}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range sets {
			if !yield(n) {
				return
			}
		}
	}) {
		keys := sigma.PrefilterKeys(sets[name])
		for _, f := range slices.Sorted(func(yield func(string) bool) {
			for f := range keys {
				if !yield(f) {
					return
				}
			}
		}) {
			vs := slices.Clone(keys[f])
			slices.Sort(vs)
			voc[f] = append(voc[f], vs...)
		}
	}
	for _, base := range []string{"db_query", "read_file", "tools/call", "tools/list", "request", "response", "denied", "mcp", "otel", "sales-db", "files", "cursor", ""} {
		for f := range setters {
			voc[f] = append(voc[f], base, base+"x", strings.ToUpper(base))
		}
	}
	for i := range corpus {
		e := &corpus[i]
		if e.MCP == nil {
			continue
		}
		voc["mcp.tool"] = append(voc["mcp.tool"], e.MCP.Tool)
		voc["target.server"] = append(voc["target.server"], e.Target.Server)
	}
	for f := range voc {
		slices.Sort(voc[f])
		voc[f] = slices.Compact(voc[f])
	}
	return voc
}

// recase returns v as is, upper-cased, or with its first letter changed in case.
func recase(r *rand.Rand, v string) string {
	switch r.IntN(4) {
	case 1:
		return strings.ToUpper(v)
	case 2:
		rs := []rune(v)
		if len(rs) > 0 {
			if unicode.IsUpper(rs[0]) {
				rs[0] = unicode.ToLower(rs[0])
			} else {
				rs[0] = unicode.ToUpper(rs[0])
			}
		}
		return string(rs)
	}
	return v
}

// mutate copies base and rewrites some of its indexable fields with vocabulary values.
func mutate(r *rand.Rand, base *event.Event, voc map[string][]string, fields []string) *event.Event {
	e := *base
	m := event.MCP{}
	if base.MCP != nil {
		m = *base.MCP
	}
	e.MCP = &m
	for _, f := range fields {
		if r.IntN(3) != 0 || len(voc[f]) == 0 {
			continue
		}
		setters[f](&e, recase(r, voc[f][r.IntN(len(voc[f]))]))
	}
	return &e
}

func checkSame(t testing.TB, set string, rs *sigma.RuleSet, e *event.Event) int {
	t.Helper()
	got, want := rs.Match(e), sigma.ScanAll(rs, e)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("set %s, event %+v, MCP %+v:\nwith the prefilter    %+v\nevery rule evaluated  %+v", set, e, e.MCP, got, want)
	}
	return len(want)
}

// The prefilter skips rules that cannot match an event. It runs every rule of the peer corpus,
// the shipped rules, edge rules for each way a need is derived and the generated benchmark sets
// over the peer events (generated company traffic and edge events) and 20,000 mutated events
// that hit and miss the indexed values in any letter case, and requires the same matches, in the
// same order, with the same fields, as evaluating every rule. If this fails, the prefilter skips a
// rule that would have fired: a detection silently lost.
func TestPrefilterSameMatches(t *testing.T) {
	sets := prefilterSets(t)
	corpus := peerEvents(t)
	voc := vocabulary(sets, corpus)
	fields := slices.Sorted(func(yield func(string) bool) {
		for f := range setters {
			if !yield(f) {
				return
			}
		}
	})
	for name := range voc {
		if setters[name] == nil {
			t.Errorf("the prefilter indexes %s, which the test cannot set: add a setter", name)
		}
	}
	r := rand.New(rand.NewPCG(7, 11))
	events := make([]*event.Event, 0, len(corpus)+20000)
	for i := range corpus {
		events = append(events, &corpus[i])
	}
	for range 20000 {
		events = append(events, mutate(r, &corpus[r.IntN(len(corpus))], voc, fields))
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range sets {
			if !yield(n) {
				return
			}
		}
	}) {
		rs := sets[name]
		matches := 0
		for _, e := range events {
			matches += checkSame(t, name, rs, e)
		}
		t.Logf("%s: %d rules, %d indexed, %d events, %d matches", name, rs.Len(), sigma.IndexedRules(rs), len(events), matches)
		if matches == 0 {
			t.Errorf("set %s: no event matched any rule; the comparison proves nothing", name)
		}
	}
	// The prefilter must index what it is for, or the benchmark's gain is not where it is said.
	if n := sigma.IndexedRules(sets["mixed"]); n != 800 {
		t.Errorf("mixed set: %d of 1000 rules indexed, want 800", n)
	}
	if n := sigma.IndexedRules(sets["edge"]); n == 0 {
		t.Errorf("edge set: no rule indexed")
	}
}

// FuzzPrefilter: the prefilter and evaluating every rule agree on random events (random strings
// and vocabulary values in the indexed fields, random letter case). If this fails, a rule that
// would fire is skipped.
func FuzzPrefilter(f *testing.F) {
	sets := prefilterSets(f)
	voc := vocabulary(sets, edgeEvents())
	fields := slices.Sorted(func(yield func(string) bool) {
		for f := range setters {
			if !yield(f) {
				return
			}
		}
	})
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range sets {
			if !yield(n) {
				return
			}
		}
	})
	base := edgeEvents()
	f.Add(uint64(1), "db_query", "DB_QUERY")
	f.Add(uint64(2), "", "tools/list")
	f.Add(uint64(3), "Read_File", "İ")
	f.Fuzz(func(t *testing.T, seed uint64, a, b string) {
		r := rand.New(rand.NewPCG(seed, seed>>7))
		e := mutate(r, &base[r.IntN(len(base))], voc, fields)
		// The fuzzer's strings go into two random indexed fields.
		setters[fields[r.IntN(len(fields))]](e, a)
		setters[fields[r.IntN(len(fields))]](e, b)
		for _, name := range names {
			checkSame(t, name, sets[name], e)
		}
	})
}
