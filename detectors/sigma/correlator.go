package sigma

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mcpwatch/mcpwatch/detectors/detect"
	"github.com/mcpwatch/mcpwatch/detectors/internal/lru"
	"github.com/mcpwatch/mcpwatch/event"
)

// Limits bound a [Correlator]'s memory: at most MaxGroups groups over all correlations, each
// holding at most MaxValues entries — event times (event_count), distinct values with their
// latest time (value_count), or times per referenced rule (temporal). A group is a correlation
// and one combination of the tenant and the group-by values.
type Limits struct {
	MaxGroups int
	MaxValues int
}

// DefaultLimits are 10,000 groups of at most 1,000 entries: at most about 80 MB of event times.
var DefaultLimits = Limits{MaxGroups: 10_000, MaxValues: 1_000}

// sampleSize is how many event ids a group keeps as the evidence of a correlation match.
const sampleSize = 16

// CorrelationMatch is a correlation rule whose condition held for one group.
type CorrelationMatch struct {
	Correlation *Correlation
	// Count is what the condition held for: events (event_count), distinct values
	// (value_count) or referenced rules (temporal types) in the window.
	Count int
	// WindowStart and WindowEnd bound the window: (WindowStart, WindowEnd], WindowEnd the
	// newest event time in it.
	WindowStart, WindowEnd time.Time
	// GroupBy are the group's values of the group-by fields, as the event that completed the
	// match had them.
	GroupBy []FieldMatch
	// Values are the distinct values a value_count counted (at most [sampleSize]), sorted.
	Values []string
	// EventIDs are a sample of the events in the window, oldest first.
	EventIDs []string
}

// CorrelatorStats counts what a [Correlator] did.
type CorrelatorStats struct {
	Groups int // held now
	// Late counts matches older than the newest event time seen minus their correlation's
	// timespan: they cannot share a window with what is still to come, and are not counted.
	Late           uint64
	EvictedIdle    uint64 // groups forgotten two timespans after their newest event
	EvictedGroups  uint64 // groups forgotten to stay within Limits.MaxGroups
	EvictedValues  uint64 // entries dropped to stay within Limits.MaxValues
	Fired          uint64 // correlation matches
	Carried, Reset int    // groups kept and dropped by the last [Correlator.Carry]
}

// Correlator evaluates a [RuleSet]'s correlation rules over a stream of events and the matches
// of its detection rules, with state per group in memory. It works on event time only: events
// may arrive out of order within a correlation's timespan. When a correlation's condition
// holds, its group's state is reset, so each match accounts for events no earlier match
// counted.
//
// A Correlator is not safe for concurrent use.
type Correlator struct {
	rs     *RuleSet
	lim    Limits
	groups *lru.Table[groupKey, group]
	mark   int64 // newest event time seen
	fired  []bool
	keys   []keyed
	stats  CorrelatorStats
}

type groupKey struct {
	corr string // the correlation's id
	key  string // tenant and group-by values
}

type group struct {
	corr   *Correlation
	newest int64
	times  []int64          // event_count: sorted event times
	rules  [][]int64        // temporal types: sorted times per reference
	values map[string]int64 // value_count: value → latest time
	sample [sampleSize]idAt // newest events, a ring
	next   int
}

type idAt struct {
	t  int64
	id detect.EventID // a copy: the event's own strings may refer to the record judged
}

// keyed is a group key and the references of one correlation that matched an event under it.
type keyed struct {
	key  string
	refs []int
}

// NewCorrelator returns a correlator for the correlations of rs, or an error for each
// correlation whose condition could never hold within lim (a threshold above MaxValues).
func (rs *RuleSet) NewCorrelator(lim Limits) (*Correlator, error) {
	if lim.MaxGroups < 1 || lim.MaxValues < 1 {
		return nil, fmt.Errorf("sigma: limits %+v: both must be at least 1", lim)
	}
	if err := errors.Join(rs.CheckLimits(lim)...); err != nil {
		return nil, err
	}
	return &Correlator{rs: rs, lim: lim, groups: lru.New[groupKey, group](),
		fired: make([]bool, len(rs.rules)+len(rs.corrs))}, nil
}

// CheckLimits returns an [*Error] for each correlation of rs whose condition needs more
// entries per group than lim.MaxValues holds.
func (rs *RuleSet) CheckLimits(lim Limits) []error {
	var errs []error
	for _, c := range rs.corrs {
		if c.Type != EventCount && c.Type != ValueCount {
			continue
		}
		if c.least(lim.MaxValues) == 0 {
			what := "events"
			if c.Type == ValueCount {
				what = "distinct values"
			}
			e := &Error{File: c.File, Line: c.Line, Rule: c.ID, kind: ErrUnsupported,
				Reason: fmt.Sprintf("condition %s can only hold with more than %d %s per group, the limit (max_values)", c.Condition, lim.MaxValues, what)}
			if c.condN != nil {
				e.Line, e.Column = c.condN.line, c.condN.col
			}
			errs = append(errs, e)
		}
	}
	return errs
}

// Stats returns what the correlator did.
func (c *Correlator) Stats() CorrelatorStats {
	s := c.stats
	s.Groups = c.groups.Len()
	return s
}

// Observe feeds one event and the matches of c's rule set's detection rules on it (from
// [RuleSet.AppendMatches] of the same set), and appends the correlations it completed. A
// correlation that matches feeds those that refer to it, with the same event. The event's time
// must be valid (see package detect).
func (c *Correlator) Observe(e *event.Event, matches []Match, dst []CorrelationMatch) []CorrelationMatch {
	rs := c.rs
	if len(rs.corrs) == 0 {
		return dst
	}
	t := e.Time.UnixNano()
	c.mark = max(c.mark, t)
	clear(c.fired)
	anyFired := false
	for i := range matches {
		if k, ok := rs.index[matches[i].RuleID]; ok {
			c.fired[k] = true
			anyFired = true
		}
	}
	if !anyFired {
		return dst
	}
	nr := len(rs.rules)
	for _, corr := range rs.corrs {
		c.keys = c.keys[:0]
		for i, ref := range corr.refs {
			if !c.fired[ref] {
				continue
			}
			k := groupKeyOf(e, corr.groupBy[i])
			j := slices.IndexFunc(c.keys, func(x keyed) bool { return x.key == k })
			if j < 0 {
				c.keys = append(c.keys, keyed{key: k})
				j = len(c.keys) - 1
			}
			c.keys[j].refs = append(c.keys[j].refs, i)
		}
		if len(c.keys) == 0 {
			continue
		}
		ts := int64(corr.Timespan)
		if t <= c.mark-ts {
			c.stats.Late++
			continue
		}
		for _, k := range c.keys {
			if m, ok := c.update(corr, k, e, t); ok {
				dst = append(dst, m)
				c.fired[nr+corr.index] = true
				c.stats.Fired++
			}
		}
	}
	return dst
}

// groupKeyOf is the tenant and the values of fields, each length-prefixed so no two
// combinations share a key.
func groupKeyOf(e *event.Event, fields []*fieldDef) string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(len(e.Tenant)))
	b.WriteByte(':')
	b.WriteString(e.Tenant)
	for _, f := range fields {
		v := rawValue(f, e)
		b.WriteString(strconv.Itoa(len(v)))
		b.WriteByte(':')
		b.WriteString(v)
	}
	return b.String()
}

// update adds the event to its group of corr and reports the match its condition makes.
func (c *Correlator) update(corr *Correlation, k keyed, e *event.Event, t int64) (CorrelationMatch, bool) {
	ts := int64(corr.Timespan)
	ent := c.groups.Get(groupKey{corr.ID, k.key})
	if ent == nil {
		if c.groups.Len() >= c.lim.MaxGroups {
			c.groups.Remove(c.groups.Oldest())
			c.stats.EvictedGroups++
		}
		ent = c.groups.Add(groupKey{corr.ID, k.key})
		ent.Value = group{corr: corr, newest: t}
		if corr.Type == Temporal || corr.Type == TemporalOrdered {
			ent.Value.rules = make([][]int64, len(corr.refs))
		}
		if corr.Type == ValueCount {
			ent.Value.values = map[string]int64{}
		}
	} else {
		c.groups.Touch(ent)
	}
	g := &ent.Value
	g.newest = max(g.newest, t)
	cut := c.mark - 2*ts // entries at or before it share no window with an event still counted
	var count int
	var start, end int64
	var ok bool
	switch corr.Type {
	case EventCount:
		g.times = c.insert(g.times, t)
		g.times = pruneTimes(g.times, cut)
		count, start, end, ok = c.evalCount(corr, g.times, t)
	case ValueCount:
		added := false
		for _, i := range k.refs {
			v := rawValue(corr.field[i], e)
			if v == "" {
				continue // an absent value is not a value (COUNT(DISTINCT) skips NULL)
			}
			added = true
			if old, seen := g.values[v]; seen {
				g.values[v] = max(old, t)
				continue
			}
			if len(g.values) >= c.lim.MaxValues {
				c.evictValue(g)
			}
			g.values[strings.Clone(v)] = t // kept: the event's strings may refer to the record judged
		}
		if !added {
			return CorrelationMatch{}, false
		}
		end = g.newest
		start = end - ts
		for v, at := range g.values {
			switch {
			case at <= cut:
				delete(g.values, v)
			case at > start && at <= end:
				count++
			}
		}
		ok = corr.holds(count)
	default:
		for _, i := range k.refs {
			g.rules[i] = c.insert(g.rules[i], t)
		}
		for i := range g.rules {
			g.rules[i] = pruneTimes(g.rules[i], cut)
		}
		count, start, end, ok = c.evalTemporal(corr, g.rules, t)
	}
	g.sample[g.next] = idAt{t, detect.MakeEventID(e.ID)}
	g.next = (g.next + 1) % sampleSize
	if !ok {
		return CorrelationMatch{}, false
	}
	m := CorrelationMatch{Correlation: corr, Count: count,
		WindowStart: time.Unix(0, start).UTC(), WindowEnd: time.Unix(0, end).UTC()}
	fields := corr.groupBy[k.refs[0]]
	for j, f := range fields {
		m.GroupBy = append(m.GroupBy, FieldMatch{Field: corr.GroupBy[j], Value: rawValue(f, e)})
	}
	var sample []idAt
	for _, s := range g.sample {
		if !s.id.IsZero() && s.t > start && s.t <= end {
			sample = append(sample, s)
		}
	}
	sort.SliceStable(sample, func(a, b int) bool { return sample[a].t < sample[b].t })
	for _, s := range sample {
		m.EventIDs = append(m.EventIDs, s.id.String())
	}
	if corr.Type == ValueCount {
		for v, at := range g.values {
			if at > start && at <= end {
				m.Values = append(m.Values, v)
			}
		}
		sort.Strings(m.Values)
		if len(m.Values) > sampleSize {
			m.Values = m.Values[:sampleSize]
		}
	}
	// Reset: the next match accounts for events this one did not count.
	g.times = g.times[:0]
	for i := range g.rules {
		g.rules[i] = g.rules[i][:0]
	}
	clear(g.values)
	g.sample = [sampleSize]idAt{}
	return m, true
}

// insert adds t to the sorted times, dropping the oldest when the group is full.
func (c *Correlator) insert(times []int64, t int64) []int64 {
	if len(times) >= c.lim.MaxValues {
		times = append(times[:0], times[1:]...)
		c.stats.EvictedValues++
	}
	i := sort.Search(len(times), func(i int) bool { return times[i] > t })
	times = append(times, 0)
	copy(times[i+1:], times[i:])
	times[i] = t
	return times
}

func (c *Correlator) evictValue(g *group) {
	oldest, first := "", true
	for v, at := range g.values {
		if first || at < g.values[oldest] || (at == g.values[oldest] && v < oldest) {
			oldest, first = v, false
		}
	}
	delete(g.values, oldest)
	c.stats.EvictedValues++
}

// pruneTimes drops the times at or before cut.
func pruneTimes(times []int64, cut int64) []int64 {
	i := sort.Search(len(times), func(i int) bool { return times[i] > cut })
	if i == 0 {
		return times
	}
	return append(times[:0], times[i:]...)
}

// windowEnds calls try with the end of every window of length ts that holds t and ends at an
// event: t itself, then the later times of lists (ascending, each once), until try reports a
// match.
func windowEnds(t, ts int64, lists [][]int64, try func(end int64) bool) bool {
	if try(t) {
		return true
	}
	var ends []int64
	for _, l := range lists {
		for i := sort.Search(len(l), func(i int) bool { return l[i] > t }); i < len(l) && l[i] < t+ts; i++ {
			ends = append(ends, l[i])
		}
	}
	if len(ends) == 0 {
		return false
	}
	slices.Sort(ends)
	ends = slices.Compact(ends)
	for _, end := range ends {
		if try(end) {
			return true
		}
	}
	return false
}

// evalCount finds a window holding t in which the number of events satisfies the condition.
func (c *Correlator) evalCount(corr *Correlation, times []int64, t int64) (count int, start, end int64, ok bool) {
	ts := int64(corr.Timespan)
	ok = windowEnds(t, ts, [][]int64{times}, func(e int64) bool {
		lo := sort.Search(len(times), func(i int) bool { return times[i] > e-ts })
		hi := sort.Search(len(times), func(i int) bool { return times[i] > e })
		count, start, end = hi-lo, e-ts, e
		return corr.holds(count)
	})
	return count, start, end, ok
}

// evalTemporal finds a window holding t in which enough of the referenced rules matched (all
// of them, in order, for temporal_ordered).
func (c *Correlator) evalTemporal(corr *Correlation, rules [][]int64, t int64) (count int, start, end int64, ok bool) {
	ts := int64(corr.Timespan)
	ok = windowEnds(t, ts, rules, func(e int64) bool {
		start, end = e-ts, e
		if corr.Type == TemporalOrdered {
			// Latest-first greedy: the last rule's latest time at or before e, then each earlier
			// rule's latest time at or before the one after it; all inside the window.
			cur := e
			count = 0
			for i := len(rules) - 1; i >= 0; i-- {
				l := rules[i]
				j := sort.Search(len(l), func(k int) bool { return l[k] > cur }) - 1
				if j < 0 || l[j] <= start {
					return false
				}
				cur = l[j]
				count++
			}
			return true
		}
		count = 0
		for _, l := range rules {
			j := sort.Search(len(l), func(k int) bool { return l[k] > e }) - 1
			if j >= 0 && l[j] > start {
				count++
			}
		}
		return corr.holds(count)
	})
	return count, start, end, ok
}

// Expire moves the correlator's clock to now (when it is newer) and forgets the groups whose
// newest event is two of their correlation's timespans old, starting from the least recently
// updated, so it is cheap when nothing is idle.
func (c *Correlator) Expire(now time.Time) {
	c.mark = max(c.mark, now.UnixNano())
	for ent := c.groups.Oldest(); ent != nil && ent.Value.newest <= c.mark-2*int64(ent.Value.corr.Timespan); ent = c.groups.Oldest() {
		c.groups.Remove(ent)
		c.stats.EvictedIdle++
	}
}

// Carry takes over old's state for the correlations that a reload left unchanged (the same id,
// type, references, group-by, timespan, field and condition); the groups of the others are
// dropped. It is how a rule set reload keeps the windows that are filling.
func (c *Correlator) Carry(old *Correlator) {
	if old == nil {
		return
	}
	c.mark = max(c.mark, old.mark)
	c.stats.Carried, c.stats.Reset = 0, 0
	byID := map[string]*Correlation{}
	for _, corr := range c.rs.corrs {
		byID[corr.ID] = corr
	}
	same := map[*Correlation]*Correlation{}
	for ent := old.groups.Oldest(); ent != nil; ent = old.groups.Oldest() {
		g := ent.Value
		old.groups.Remove(ent)
		nc, seen := same[g.corr]
		if !seen {
			if cand := byID[g.corr.ID]; cand != nil && fingerprint(old.rs, g.corr) == fingerprint(c.rs, cand) {
				nc = cand
			}
			same[g.corr] = nc
		}
		if nc == nil || c.groups.Get(ent.Key) != nil || c.groups.Len() >= c.lim.MaxGroups {
			c.stats.Reset++
			continue
		}
		g.corr = nc
		for len(g.times) > c.lim.MaxValues {
			g.times = g.times[1:]
		}
		ne := c.groups.Add(ent.Key) // oldest first: the recency order is kept
		ne.Value = g
		c.stats.Carried++
	}
}

// fingerprint describes what a correlation's state means: two correlations with the same
// fingerprint count the same things the same way.
func fingerprint(rs *RuleSet, c *Correlation) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%d|%s|%s|", c.Type, c.Timespan, c.Field, c.Condition)
	nr := len(rs.rules)
	for _, ref := range c.refs {
		if ref < nr {
			b.WriteString(rs.rules[ref].ID)
		} else {
			b.WriteString(rs.corrs[ref-nr].ID)
		}
		b.WriteByte(',')
	}
	for i := range c.groupBy {
		for _, f := range c.groupBy[i] {
			b.WriteString(f.name)
			b.WriteByte(',')
		}
		b.WriteByte(';')
	}
	return b.String()
}

// rawValue is f's value in e as text: a list joined with commas, a number in its shortest form
// ("" when the event omits it, as it does 0).
func rawValue(f *fieldDef, e *event.Event) string {
	switch f.kind {
	case kString:
		return f.str(e)
	case kList:
		return strings.Join(f.list(e), ",")
	}
	v := f.num(e)
	if v == 0 {
		return ""
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}
