package sigma

import "github.com/mcpwatch/mcpwatch/event"

// Hooks for the external tests (package sigma_test).

// ScanAll is rs.Match evaluating every rule, without the prefilter.
func ScanAll(rs *RuleSet, e *event.Event) []Match {
	rs.scanAll = true
	defer func() { rs.scanAll = false }()
	return rs.Match(e)
}

// IndexedRules is how many of rs's rules the prefilter can skip.
func IndexedRules(rs *RuleSet) int { return rs.indexedRules() }

// PrefilterKeys returns the prefilter's buckets: field name → the lower-cased values rules need.
func PrefilterKeys(rs *RuleSet) map[string][]string {
	out := map[string][]string{}
	if rs.pre == nil {
		return out
	}
	for _, pf := range rs.pre.fields {
		for v := range pf.buckets {
			out[pf.f.name] = append(out[pf.f.name], v)
		}
	}
	return out
}

// GenRules and GenMixedRules are the benchmarks' generated rule sets (bench_test.go).
var (
	GenRules      = genRules
	GenMixedRules = genMixedRules
)
