package sigma

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// CorrelationType is what a [Correlation] counts.
type CorrelationType string

// The correlation types of the Sigma correlation specification (v2).
const (
	// EventCount counts the events the referenced rules matched, per group, within the timespan.
	EventCount CorrelationType = "event_count"
	// ValueCount counts the distinct values of a field among those events.
	ValueCount CorrelationType = "value_count"
	// Temporal counts how many of the referenced rules matched within the timespan (by default
	// all of them must).
	Temporal CorrelationType = "temporal"
	// TemporalOrdered is Temporal with the rules matching in the order they are listed.
	TemporalOrdered CorrelationType = "temporal_ordered"
)

// MaxTimespan bounds a correlation's timespan: its state is held in memory for two timespans.
const MaxTimespan = 7 * 24 * time.Hour

// Correlation is one loaded Sigma correlation rule: it relates the matches of other rules
// (detection rules or correlations, by id or name) over a window of event time, per group of
// events that share the values of its group-by fields. [Correlator] evaluates it.
type Correlation struct {
	Meta

	Type CorrelationType
	// Rules are the references as written (ids or names).
	Rules []string
	// GroupBy are the group-by fields (or aliases) as written.
	GroupBy  []string
	Timespan time.Duration
	// Field is the field whose distinct values a value_count counts.
	Field string
	// Condition is the condition in words ("gte 10", "gt 2 and lte 5"); for temporal types
	// without one, "all".
	Condition string
	// Generate keeps the referenced rules' own findings (generate: true).
	Generate bool

	File string
	Line int

	refs  []int // resolved references: node indexes (rules first, then correlations)
	cond  []countBound
	condN *node // positions the condition in errors about it
	// groupBy[i][j] is the field of group-by entry j for the events of reference i (aliases
	// resolved); field[i] the value_count field for reference i.
	groupBy [][]*fieldDef
	field   []*fieldDef

	// unresolved parts, kept until every file of the set is read
	refNodes   []*node
	groupNodes []*node
	fieldNode  *node
	aliases    map[string]map[string]*node // alias → rule name → field node
	aliasNodes map[string]*node
	output     bool
	index      int // in RuleSet.corrs
}

// Output reports whether the correlation's matches are findings: false when another
// correlation refers to it and none of those says "generate: true".
func (c *Correlation) Output() bool { return c.output }

// countBound is one criterion of a correlation condition: the count op n.
type countBound struct {
	op numOp
	n  float64
}

func (c *Correlation) holds(count int) bool {
	v := float64(count)
	for _, b := range c.cond {
		switch b.op {
		case numEq:
			if v != b.n {
				return false
			}
		case numLT:
			if v >= b.n {
				return false
			}
		case numLTE:
			if v > b.n {
				return false
			}
		case numGT:
			if v <= b.n {
				return false
			}
		case numGTE:
			if v < b.n {
				return false
			}
		}
	}
	return true
}

// least is the smallest count from 1 that satisfies the condition, or 0 when none up to limit
// does.
func (c *Correlation) least(limit int) int {
	lo := 1
	for _, b := range c.cond {
		switch b.op {
		case numEq, numGTE:
			lo = max(lo, int(math.Ceil(b.n)))
		case numGT:
			lo = max(lo, int(math.Floor(b.n))+1)
		}
	}
	if lo > limit || !c.holds(lo) {
		return 0
	}
	return lo
}

var timespanRE = regexp.MustCompile(`^([1-9][0-9]{0,9})([smhdw])$`)

// parseTimespan reads a Sigma timespan: a number and one of s, m, h, d (and w, which pySigma
// also reads).
func parseTimespan(s string) (time.Duration, bool) {
	m := timespanRE.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	unit := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour, "w": 7 * 24 * time.Hour}[m[2]]
	if n > int64(MaxTimespan/unit) {
		return MaxTimespan + 1, true
	}
	return time.Duration(n) * unit, true
}

var correlationKeys = map[string]bool{"type": true, "rules": true, "aliases": true, "group-by": true, "timespan": true,
	"condition": true, "generate": true}

// correlation compiles the parts of a correlation rule that need nothing outside its document;
// references, group-by fields and aliases are resolved by [builder.resolve] once every file of
// the set is read.
func (c *ruleCompiler) correlation(doc *node) (*Correlation, error) {
	r := &Correlation{File: c.file, Line: doc.line}
	c.rule = &Rule{} // for error context
	if err := c.meta(doc, &r.Meta); err != nil {
		return nil, err
	}
	for _, k := range []string{"logsource", "detection"} {
		if doc.get(k) != nil {
			return nil, c.invalid(keyNode(doc, k), "a correlation rule has no %s: it relates the matches of the rules it refers to", k)
		}
	}
	genTop := doc.get("generate")
	if genTop != nil {
		if genTop.kind != nScalar || genTop.scalar != sBool {
			return nil, c.invalid(genTop, "generate must be true or false")
		}
		r.Generate = genTop.str == "true"
	}

	cs := doc.get("correlation")
	if cs.kind != nMap {
		return nil, c.invalid(cs, "correlation must be a mapping (type, rules, group-by, timespan, condition), not %s", cs.kindName())
	}
	for _, k := range cs.keys {
		if !correlationKeys[k.str] {
			return nil, c.unsupported(k, "unknown key %q in the correlation section (known: type, rules, aliases, group-by, timespan, condition, generate)", k.str)
		}
	}
	// pySigma reads generate inside the correlation section, the specification's schema at the
	// top: both are accepted, and must agree.
	if g := cs.get("generate"); g != nil {
		if g.kind != nScalar || g.scalar != sBool {
			return nil, c.invalid(g, "generate must be true or false")
		}
		if genTop != nil && genTop.str != g.str {
			return nil, c.invalid(g, "generate is %s here and %s at line %d", g.str, genTop.str, genTop.line)
		}
		r.Generate = g.str == "true"
	}
	typ, err := c.str(cs, "type", true)
	if err != nil {
		return nil, err
	}
	r.Type = CorrelationType(typ)
	switch r.Type {
	case EventCount, ValueCount, Temporal, TemporalOrdered:
	case "value_sum", "value_avg", "value_percentile", "value_median":
		return nil, c.unsupported(cs.get("type"), "correlation type %q is not in the Sigma specification mcpwatch implements (event_count, value_count, temporal, temporal_ordered)", typ)
	default:
		return nil, c.invalid(cs.get("type"), "correlation type %q is not one of event_count, value_count, temporal, temporal_ordered", typ)
	}

	rules := cs.get("rules")
	switch {
	case rules == nil || rules.kind == nNull:
		return nil, c.invalid(cs, "required field %q is missing", "rules")
	case rules.kind == nScalar:
		r.refNodes = []*node{rules}
	case rules.kind == nSeq && len(rules.items) > 0:
		r.refNodes = rules.items
	default:
		return nil, c.invalid(rules, "rules must be a list of rule ids or names")
	}
	seen := map[string]bool{}
	for _, n := range r.refNodes {
		if n.kind != nScalar || n.str == "" {
			return nil, c.invalid(n, "a rule reference must be a rule's id or name")
		}
		if seen[n.str] {
			return nil, c.invalid(n, "rule %q is listed twice", n.str)
		}
		seen[n.str] = true
		r.Rules = append(r.Rules, n.str)
	}
	if (r.Type == Temporal || r.Type == TemporalOrdered) && len(r.Rules) < 2 {
		return nil, c.invalid(rules, "a %s correlation relates at least two rules", r.Type)
	}

	if gb := cs.get("group-by"); gb != nil && gb.kind != nNull {
		switch gb.kind {
		case nScalar:
			r.groupNodes = []*node{gb}
		case nSeq:
			r.groupNodes = gb.items
		default:
			return nil, c.invalid(gb, "group-by must be a list of field names")
		}
		for _, n := range r.groupNodes {
			if n.kind != nScalar || n.str == "" {
				return nil, c.invalid(n, "group-by must be a list of field names")
			}
			r.GroupBy = append(r.GroupBy, n.str)
		}
	}

	ts, err := c.str(cs, "timespan", true)
	if err != nil {
		return nil, err
	}
	d, ok := parseTimespan(ts)
	switch {
	case !ok:
		return nil, c.invalid(cs.get("timespan"), "timespan %q is not a number and a unit s, m, h or d (90m, 1h, 2d)", ts)
	case d > MaxTimespan:
		return nil, c.unsupported(cs.get("timespan"), "timespan %s is longer than %s: correlation state is held in memory (use a detector profile for longer horizons)", ts, MaxTimespan)
	}
	r.Timespan = d

	if err := c.correlationCondition(r, cs); err != nil {
		return nil, err
	}

	if al := cs.get("aliases"); al != nil && al.kind != nNull {
		if al.kind != nMap {
			return nil, c.invalid(al, "aliases must map an alias to a mapping of rule names to field names")
		}
		r.aliases, r.aliasNodes = map[string]map[string]*node{}, map[string]*node{}
		for i, k := range al.keys {
			v := al.vals[i]
			if v.kind != nMap || len(v.keys) == 0 {
				return nil, c.invalid(v, "alias %q must map rule names to field names", k.str)
			}
			m := map[string]*node{}
			for j, rk := range v.keys {
				if fv := v.vals[j]; fv.kind != nScalar || fv.str == "" {
					return nil, c.invalid(fv, "alias %q: the field for rule %q must be a field name", k.str, rk.str)
				}
				m[rk.str] = v.vals[j]
			}
			r.aliases[k.str], r.aliasNodes[k.str] = m, k
		}
	}
	return r, nil
}

func (c *ruleCompiler) correlationCondition(r *Correlation, cs *node) error {
	cn := cs.get("condition")
	r.condN = cn
	if cn == nil || cn.kind == nNull {
		if r.Type == EventCount || r.Type == ValueCount {
			return c.invalid(cs, "required field %q is missing: a %s correlation needs a threshold such as condition: {gte: 10}", "condition", r.Type)
		}
		r.Condition = "all"
		r.cond = []countBound{{op: numGTE, n: float64(len(r.Rules))}}
		r.condN = cs
		return nil
	}
	if cn.kind != nMap || len(cn.keys) == 0 {
		return c.invalid(cn, "condition must be a mapping such as {gte: 10} or {gt: 100, lte: 200}")
	}
	var words []string
	for i, k := range cn.keys {
		v := cn.vals[i]
		if k.str == "field" {
			if r.Type != ValueCount {
				return c.invalid(k, "condition.field belongs to value_count correlations")
			}
			if v.kind == nSeq {
				return c.unsupported(v, "condition.field with several fields is not supported; count the values of one field")
			}
			if v.kind != nScalar || v.str == "" {
				return c.invalid(v, "condition.field must be a field name")
			}
			r.Field, r.fieldNode = v.str, v
			continue
		}
		op, ok := numOps[k.str]
		if k.str == "eq" {
			op, ok = numEq, true
		}
		if !ok {
			return c.invalid(k, "unknown condition criterion %q (known: gt, gte, lt, lte, eq, and field for value_count)", k.str)
		}
		if v.kind != nScalar || v.scalar != sInt || v.num < 0 {
			return c.invalid(v, "condition %s takes a whole number of at least 0, not %q", k.str, v.str)
		}
		r.cond = append(r.cond, countBound{op: op, n: v.num})
		words = append(words, k.str+" "+v.str)
	}
	if r.Type == ValueCount && r.Field == "" {
		return c.invalid(cn, "a value_count correlation needs condition.field: the field whose distinct values it counts")
	}
	if len(r.cond) == 0 {
		return c.invalid(cn, "condition needs a criterion: gt, gte, lt, lte or eq")
	}
	r.Condition = strings.Join(words, " and ")
	if r.Type == TemporalOrdered {
		n := len(r.Rules)
		if !r.holds(n) || r.holds(n-1) {
			return c.unsupported(cn, "a temporal_ordered condition other than all %d rules in order is not supported; leave condition out", n)
		}
	}
	if r.Type == Temporal && r.least(len(r.Rules)) == 0 {
		return c.invalid(cn, "condition %s can never hold: a temporal correlation counts at most %d rules", r.Condition, len(r.Rules))
	}
	return nil
}

// resolve links the correlations to the rules they refer to, resolves their group-by fields and
// aliases, orders them so each comes after those it refers to, and marks which rules produce
// findings of their own. It appends an error for each correlation it cannot resolve, and drops
// that correlation and those that refer to it.
func (b *builder) resolve() {
	byRef := map[string]int{} // id or name → node index
	for i, r := range b.rules {
		byRef[r.ID] = i
		if r.Name != "" {
			byRef[r.Name] = i
		}
	}
	nr := len(b.rules)
	for j, c := range b.corrs {
		byRef[c.ID] = nr + j
		if c.Name != "" {
			byRef[c.Name] = nr + j
		}
	}
	nameOf := func(node int) []string {
		if node < nr {
			r := b.rules[node]
			return []string{r.Name, r.ID}
		}
		c := b.corrs[node-nr]
		return []string{c.Name, c.ID}
	}
	bad := make([]bool, len(b.corrs))
	for j, c := range b.corrs {
		comp := ruleCompiler{file: c.File, reg: b.reg, rule: &Rule{Meta: Meta{ID: c.ID}}}
		err := func() error {
			c.refs = c.refs[:0]
			for _, n := range c.refNodes {
				k, ok := byRef[n.str]
				switch {
				case !ok:
					return comp.invalid(n, "rule %q is not loaded: no rule or correlation of the set has this id or name", n.str)
				case k == nr+j:
					return comp.invalid(n, "a correlation cannot refer to itself")
				}
				c.refs = append(c.refs, k)
			}
			for name, m := range c.aliases {
				for rn, fn := range m {
					if _, ok := byRef[rn]; !ok {
						return comp.invalid(fn, "alias %q: rule %q is not loaded", name, rn)
					}
				}
			}
			lookup := func(n *node) (*fieldDef, error) {
				f, reason := b.reg.lookup(n.str, "")
				if f == nil {
					return nil, comp.unsupported(n, "%s", reason)
				}
				return f, nil
			}
			// Each referenced rule reads each group-by entry from the field its alias names
			// for it, or from the entry itself.
			c.groupBy = make([][]*fieldDef, len(c.refs))
			c.field = make([]*fieldDef, len(c.refs))
			for i, ref := range c.refs {
				resolveFor := func(n *node) (*fieldDef, error) {
					m, isAlias := c.aliases[n.str]
					if !isAlias {
						return lookup(n)
					}
					for _, name := range nameOf(ref) {
						if fn, ok := m[name]; ok && name != "" {
							return lookup(fn)
						}
					}
					return nil, comp.invalid(c.aliasNodes[n.str], "alias %q names no field for rule %q", n.str, c.Rules[i])
				}
				for _, gn := range c.groupNodes {
					f, err := resolveFor(gn)
					if err != nil {
						return err
					}
					c.groupBy[i] = append(c.groupBy[i], f)
				}
				if c.fieldNode != nil {
					f, err := resolveFor(c.fieldNode)
					if err != nil {
						return err
					}
					c.field[i] = f
				}
			}
			for name, an := range c.aliasNodes {
				used := false
				for _, g := range c.GroupBy {
					used = used || g == name
				}
				if !used && c.Field != name {
					return comp.invalid(an, "alias %q is not used in group-by or condition.field", name)
				}
			}
			return nil
		}()
		if err != nil {
			b.errs = append(b.errs, err)
			bad[j] = true
		}
	}
	// Order: a correlation after those it refers to; a cycle, or a reference to a dropped
	// correlation, drops it.
	state := make([]uint8, len(b.corrs)) // 0 new, 1 visiting, 2 done
	var order []*Correlation
	var visit func(j int) bool
	visit = func(j int) bool {
		switch state[j] {
		case 1:
			return false
		case 2:
			return !bad[j]
		}
		state[j] = 1
		c := b.corrs[j]
		ok := !bad[j]
		for i, ref := range c.refs {
			if ref < nr || !ok {
				continue
			}
			if !visit(ref - nr) {
				if !bad[j] {
					comp := ruleCompiler{file: c.File, reg: b.reg, rule: &Rule{Meta: Meta{ID: c.ID}}}
					reason := "rule %q is a correlation that does not load"
					if state[ref-nr] == 1 {
						reason = "rule %q refers back to this correlation: correlations must not form a cycle"
					}
					b.errs = append(b.errs, comp.invalid(c.refNodes[i], reason, c.Rules[i]))
				}
				ok = false
			}
		}
		bad[j] = !ok
		state[j] = 2
		if ok {
			order = append(order, c)
		}
		return ok
	}
	for j := range b.corrs {
		visit(j)
	}
	// Which rules and correlations produce findings of their own, by their original indexes.
	referenced := make([]bool, nr+len(b.corrs))
	generated := make([]bool, nr+len(b.corrs))
	for _, c := range order {
		for _, ref := range c.refs {
			referenced[ref] = true
			generated[ref] = generated[ref] || c.Generate
		}
	}
	for i, r := range b.rules {
		r.output = !referenced[i] || generated[i]
	}
	orig := b.corrs
	for j, c := range orig {
		c.output = !referenced[nr+j] || generated[nr+j]
	}
	// Node indexes of correlations follow the evaluation order from here on.
	for j, c := range order {
		c.index = j
	}
	for _, c := range order {
		for i, ref := range c.refs {
			if ref >= nr {
				c.refs[i] = nr + orig[ref-nr].index
			}
		}
	}
	b.corrs = order
}
