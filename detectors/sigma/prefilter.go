package sigma

import (
	"math/bits"
	"slices"
	"strings"
)

// The prefilter skips rules that cannot match an event without evaluating them. At load, each
// rule's condition tree yields a necessary condition of the form "one of these string fields has
// one of these exact values" (compared lower-cased, as matching does): the rule's [need]. Rules
// are filed in buckets by those values, one map per field; an event evaluates the rules in the
// buckets of its own values plus the rules without a need, in load order, so
// [RuleSet.AppendMatches] returns exactly what evaluating every rule returns.
//
// A need comes from items that compare a string field for equality only: "field: value" and value
// lists (without wildcards, case-insensitive or cased), "field: null" and "field|exists: false"
// (the empty value). Everything else gives none: wildcards, contains/startswith/endswith, re,
// cidr, numbers, lists, keywords, "exists: true", and anything under "not".

// key is one (field, lower-cased value) pair of a need.
type key struct {
	f *fieldDef
	v string
}

// need is a necessary condition for a rule to match: the event's lower-cased value of some key's
// field equals that key's value. nil means none: the rule is evaluated for every event.
type need []key

// prefilter is a rule set's index of rules by their needs.
type prefilter struct {
	fields []indexedField // the fields some need names, in registry order
	always []uint64       // bit set of the rules without a need
	words  int            // len(always): one bit per rule
}

type indexedField struct {
	f       *fieldDef
	buckets map[string][]int32 // lower-cased value → indexes of the rules that need it, ascending
}

// lowCardinality ranks fields with few distinct values last when a rule's AND offers several
// needs: their buckets hold most events (every tool call is "tools/call", every event of the
// mcp_call logsource has source "mcp"). Other fields rank 0.
var lowCardinality = map[string]int{
	"outcome.result": 1,
	"mcp.method":     2,
	"mcp.direction":  3,
	"source":         4,
}

// newPrefilter indexes rules; it returns nil when no rule has a need (evaluating every rule is
// then all there is to do).
func newPrefilter(rules []*Rule) *prefilter {
	words := (len(rules) + 63) / 64
	p := &prefilter{always: make([]uint64, words), words: words}
	byField := map[*fieldDef]map[string][]int32{}
	indexed := 0
	for i, r := range rules {
		nd := ruleNeed(r)
		if nd == nil {
			p.always[i/64] |= 1 << (i % 64)
			continue
		}
		indexed++
		for _, k := range nd {
			m := byField[k.f]
			if m == nil {
				m = map[string][]int32{}
				byField[k.f] = m
			}
			if b := m[k.v]; len(b) == 0 || b[len(b)-1] != int32(i) {
				m[k.v] = append(b, int32(i))
			}
		}
	}
	if indexed == 0 {
		return nil
	}
	for f, m := range byField {
		p.fields = append(p.fields, indexedField{f: f, buckets: m})
	}
	slices.SortFunc(p.fields, func(a, b indexedField) int { return a.f.slot - b.f.slot })
	return p
}

// candidates sets in cand (p.words long) the bits of the rules to evaluate for the event in x.
func (p *prefilter) candidates(x *evalCtx, cand []uint64) {
	copy(cand, p.always)
	for i := range p.fields {
		pf := &p.fields[i]
		for _, r := range pf.buckets[x.lower(pf.f, pf.f.str(x.e))] {
			cand[r>>6] |= 1 << (r & 63)
		}
	}
}

// nextRule returns the lowest rule index set in cand at or after word w, clearing it, or -1.
func nextRule(cand []uint64, w *int) int {
	for ; *w < len(cand); *w++ {
		if b := cand[*w]; b != 0 {
			t := bits.TrailingZeros64(b)
			cand[*w] = b & (b - 1)
			return *w*64 + t
		}
	}
	return -1
}

// ruleNeed derives the rule's need from its condition tree.
func ruleNeed(r *Rule) need { return condNeed(r, r.cond) }

func condNeed(r *Rule, c *cond) need {
	switch c.op {
	case opSel:
		return selectionNeed(r.sels[c.sel])
	case opNot:
		return nil
	case opAnd:
		return bestNeed(r, c.kids)
	case opOr:
		return unionNeed(r, c.kids)
	}
	// opOf: at least n of the kids. All of them is an AND; otherwise, when fewer than n kids lack
	// a need, one of the kids with a need must hold.
	if len(c.kids) == 0 || c.n < 1 {
		return nil
	}
	if c.n >= len(c.kids) {
		return bestNeed(r, c.kids)
	}
	var out need
	without := 0
	for _, k := range c.kids {
		nd := condNeed(r, k)
		if nd == nil {
			without++
			continue
		}
		out = append(out, nd...)
	}
	if without >= c.n {
		return nil
	}
	return out
}

// bestNeed is the need of an AND: every kid must hold, so any kid's need is one; the best is
// taken (see [better]).
func bestNeed(r *Rule, kids []*cond) need {
	var best need
	for _, k := range kids {
		if nd := condNeed(r, k); nd != nil && (best == nil || better(nd, best)) {
			best = nd
		}
	}
	return best
}

// unionNeed is the need of an OR: one kid must hold, so the union of their needs, or none if a
// kid has none.
func unionNeed(r *Rule, kids []*cond) need {
	var out need
	for _, k := range kids {
		nd := condNeed(r, k)
		if nd == nil {
			return nil
		}
		out = append(out, nd...)
	}
	return out
}

// selectionNeed: a selection is an OR of alternatives, each an AND of items.
func selectionNeed(s *selection) need {
	var out need
	for _, alt := range s.alts {
		var best need
		for _, it := range alt {
			if nd := itemNeed(it); nd != nil && (best == nil || better(nd, best)) {
				best = nd
			}
		}
		if best == nil {
			return nil
		}
		out = append(out, best...)
	}
	return out
}

// itemNeed: an item matches when one of its value groups does (every group, with "all"); a group
// when one of its values does.
func itemNeed(it *item) need {
	if it.field == nil || it.field.kind != kString {
		return nil
	}
	if it.all {
		var best need
		for _, g := range it.groups {
			if nd := groupNeed(it.field, g); nd != nil && (best == nil || better(nd, best)) {
				best = nd
			}
		}
		return best
	}
	var out need
	for _, g := range it.groups {
		nd := groupNeed(it.field, g)
		if nd == nil {
			return nil
		}
		out = append(out, nd...)
	}
	return out
}

func groupNeed(f *fieldDef, g []valueMatcher) need {
	out := make(need, 0, len(g))
	for i := range g {
		m := &g[i]
		switch {
		case m.kind == mEqual && m.cased:
			// raw == s implies lower(raw) == lower(s).
			out = append(out, key{f, strings.ToLower(m.s)})
		case m.kind == mEqual:
			out = append(out, key{f, m.s}) // compared with the lowered value as it is
		case m.kind == mNull, m.kind == mExists && !m.exists:
			out = append(out, key{f, ""}) // absent is the empty string
		default:
			return nil
		}
	}
	return out
}

// better reports whether need a is likely to exclude more events than b: its worst field has
// more distinct values, then it has fewer keys.
func better(a, b need) bool {
	ra, rb := worstRank(a), worstRank(b)
	if ra != rb {
		return ra < rb
	}
	return len(a) < len(b)
}

func worstRank(n need) int {
	w := 0
	for _, k := range n {
		w = max(w, lowCardinality[k.f.name])
	}
	return w
}

// indexedRules is how many rules the prefilter can skip (those with a need).
func (rs *RuleSet) indexedRules() int {
	if rs.pre == nil {
		return 0
	}
	n := len(rs.rules)
	for _, w := range rs.pre.always {
		n -= bits.OnesCount64(w)
	}
	return n
}
