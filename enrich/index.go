package enrich

import (
	"slices"

	"github.com/mcpwatch/mcpwatch/internal/glob"
)

// index finds the rules whose patterns match a name without testing every pattern: literal
// patterns sit in a map, and wildcard patterns are bucketed by their literal prefix (the text
// before the first wildcard), so a lookup probes one bucket per distinct prefix length that fits
// the name (a handful in practice: "s3://<bucket>/" prefixes are mostly of similar length) and
// runs the full match only on patterns whose prefix is already known to fit.
type index struct {
	exact    map[string][]posting
	byPrefix map[string][]posting
	lens     []int // distinct literal-prefix lengths in byPrefix, ascending
}

// posting is one pattern of one rule. server, when set, must also match the event's server
// (server-qualified tool and prompt patterns).
type posting struct {
	name   *glob.Pattern
	server *glob.Pattern
	rule   int32
}

func (x *index) add(p posting) {
	if p.name.Literal() {
		if x.exact == nil {
			x.exact = map[string][]posting{}
		}
		x.exact[p.name.Prefix()] = append(x.exact[p.name.Prefix()], p)
		return
	}
	if x.byPrefix == nil {
		x.byPrefix = map[string][]posting{}
	}
	k := p.name.Prefix()
	if _, ok := x.byPrefix[k]; !ok {
		if i, found := slices.BinarySearch(x.lens, len(k)); !found {
			x.lens = slices.Insert(x.lens, i, len(k))
		}
	}
	x.byPrefix[k] = append(x.byPrefix[k], p)
}

func (x *index) empty() bool { return len(x.exact) == 0 && len(x.byPrefix) == 0 }

// lookup appends to m the rules with a pattern matching name (and server).
func (x *index) lookup(name, server string, m []int32) []int32 {
	for _, p := range x.exact[name] {
		if p.server == nil || p.server.Match(server) {
			m = append(m, p.rule)
		}
	}
	for _, n := range x.lens {
		if n > len(name) {
			break
		}
		for _, p := range x.byPrefix[name[:n]] {
			if p.name.Match(name) && (p.server == nil || p.server.Match(server)) {
				m = append(m, p.rule)
			}
		}
	}
	return m
}
