package sigma

import (
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpwatch/mcpwatch/detectors/detect"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/filewatch"
)

// Name is the [event.Finding.Detector] name of the Sigma [Detector].
const Name = "sigma"

// maxDetail bounds an event value quoted in a finding's evidence.
const maxDetail = 200

// Detector runs a [RuleSet] in the detect stage; it implements [detect.Detector]. Each match of
// a detection rule, and each match of a correlation rule, is a finding carrying the rule's id,
// title, level (as its severity, see [Severity]) and tags (with "sigma" first), and the matched
// fields as evidence. Rules that only feed correlations conclude nothing themselves (see
// [Rule.Output]). It emits no signals: its findings feed the threat score's user-risk component
// through the scorer's findings, so its single check declares that component.
//
// Rules are reloaded by [Detector.Run] (or [Detector.Reload]) from another goroutine; the set in
// force is swapped between two events, and correlation groups of correlations the reload left
// unchanged are kept ([Correlator.Carry]).
//
// Correlation state is partition-local and in memory only: after a restart or a rebalance the
// windows start empty (they are short), so a correlation straddling it is judged only on its
// events after it.
type Detector struct {
	cfg Config
	log *slog.Logger
	m   *metrics

	next atomic.Pointer[loaded] // the set in force, as reloads leave it

	// Stage goroutine only.
	cur     *loaded
	corr    *Correlator
	matches []Match
	cms     []CorrelationMatch
	stats   detect.Stats
	last    CorrelatorStats

	// Reloads, under mu.
	mu      sync.Mutex
	settle  filewatch.Settle // Run: when changed content is settled, and what failed
	lastErr error
	reloads [2]uint64 // ok, failed
}

type loaded struct {
	rs   *RuleSet
	hash [32]byte
}

// Option configures a [Detector].
type Option func(*Detector)

// WithLogger logs reloads and their errors to l (default: discard).
func WithLogger(l *slog.Logger) Option { return func(d *Detector) { d.log = l } }

// WithRegisterer registers the detector's metrics with reg: mcpwatch_sigma_reloads_total{result},
// mcpwatch_sigma_rules{kind} and mcpwatch_sigma_evicted_values_total.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(d *Detector) { d.m = newMetrics(reg) }
}

type metrics struct {
	reloads *prometheus.CounterVec
	rules   *prometheus.GaugeVec
	values  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_sigma_reloads_total",
			Help: "Reloads of changed Sigma rule files: ok (the new set is in force) or failed (the old set stays)."}, []string{"result"}),
		rules: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mcpwatch_sigma_rules",
			Help: "Sigma rules in force, by kind: detection or correlation."}, []string{"kind"}),
		values: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_sigma_evicted_values_total",
			Help: "Entries dropped from full correlation groups (raise max_values)."}),
	}
	if reg != nil {
		reg.MustRegister(m.reloads, m.rules, m.values)
	}
	return m
}

// New loads cfg.Rules and returns the detector. Unlike a reload, a first load with any error is
// an error (the [*Error]s joined, sorted by file and position): a stage must not start without
// the rules it was given. No rules is not an error; the detector then concludes nothing.
func New(cfg Config, opts ...Option) (*Detector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sigma: %w", err)
	}
	d := &Detector{cfg: cfg, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(d)
	}
	if d.m == nil {
		d.m = newMetrics(nil)
	}
	l, err := d.load()
	if err != nil {
		return nil, err
	}
	d.install(l)
	d.log.Info("sigma rules loaded", "paths", cfg.Rules, "rules", l.rs.Len(), "correlations", len(l.rs.corrs))
	return d, nil
}

// NewWithRules returns a detector running rs, which is never reloaded (cfg.Rules is ignored).
func NewWithRules(rs *RuleSet, cfg Config, opts ...Option) (*Detector, error) {
	cfg.Rules = nil
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sigma: %w", err)
	}
	if err := joinSorted(rs.CheckLimits(cfg.Limits())); err != nil {
		return nil, err
	}
	d := &Detector{cfg: cfg, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(d)
	}
	if d.m == nil {
		d.m = newMetrics(nil)
	}
	d.install(&loaded{rs: rs})
	return d, nil
}

func (d *Detector) install(l *loaded) {
	d.next.Store(l)
	d.m.rules.WithLabelValues("detection").Set(float64(l.rs.Len()))
	d.m.rules.WithLabelValues("correlation").Set(float64(len(l.rs.corrs)))
}

// RuleSet returns the rule set in force (the latest a reload installed).
func (d *Detector) RuleSet() *RuleSet { return d.next.Load().rs }

// Info names the detector; its one check feeds the user-risk component.
func (d *Detector) Info() detect.Info {
	return detect.Info{Name: Name, Checks: []detect.Check{{Name: Name, Component: detect.Risk}}}
}

// swap makes the latest loaded set the one in force, carrying unchanged correlations' groups.
func (d *Detector) swap() {
	l := d.next.Load()
	if l == d.cur {
		return
	}
	c, err := l.rs.NewCorrelator(d.cfg.Limits())
	if err != nil { // cannot happen: load checked the limits
		d.log.Error("sigma correlator not built; keeping the rules in force", "err", err)
		d.next.CompareAndSwap(l, d.cur)
		return
	}
	c.Carry(d.corr)
	if d.corr != nil {
		s := c.Stats()
		d.log.Info("sigma rules swapped in", "rules", l.rs.Len(), "correlations", len(l.rs.corrs),
			"groups_kept", s.Carried, "groups_reset", s.Reset)
	}
	d.cur, d.corr, d.last = l, c, CorrelatorStats{}
}

// Observe matches e against the rules in force and appends a finding per match.
func (d *Detector) Observe(e *event.Event, out *detect.Output) {
	d.swap()
	rs := d.cur.rs
	if !detect.ValidTime(e.Time) || !applies(e) || (rs.Len() == 0 && len(rs.corrs) == 0) {
		d.stats.Ignored++
		return
	}
	d.stats.Counted++
	d.matches = rs.AppendMatches(d.matches[:0], e)
	for i := range d.matches {
		m := &d.matches[i]
		if r := rs.rules[rs.index[m.RuleID]]; r.output {
			out.Findings = append(out.Findings, ruleFinding(r, m, e))
		}
	}
	d.cms = d.corr.Observe(e, d.matches, d.cms[:0])
	for i := range d.cms {
		if cm := &d.cms[i]; cm.Correlation.output {
			out.Findings = append(out.Findings, correlationFinding(rs, cm, e))
		}
	}
	clear(d.matches)
	clear(d.cms)
	d.account()
}

// Expire forgets correlation groups idle for two timespans. The detector emits no signals, so
// there is none to retire.
func (d *Detector) Expire(now time.Time, _ *detect.Output) {
	d.swap()
	d.corr.Expire(now)
	d.account()
}

// account folds the correlator's counters into the detector's.
func (d *Detector) account() {
	s := d.corr.Stats()
	d.stats.Late += s.Late - d.last.Late
	d.stats.EvictedIdle += s.EvictedIdle - d.last.EvictedIdle
	d.stats.EvictedCapacity += s.EvictedGroups - d.last.EvictedGroups
	if n := s.EvictedValues - d.last.EvictedValues; n > 0 {
		d.m.values.Add(float64(n))
	}
	d.last = s
}

// Stats counts what the detector did; Principals is the correlation groups held, and
// EvictedCapacity the groups forgotten to stay within max_groups.
func (d *Detector) Stats() detect.Stats {
	s := d.stats
	if d.corr != nil {
		s.Principals = d.corr.Stats().Groups
	}
	return s
}

// CorrelatorStats returns the correlation state's counters (entries evicted from full groups
// among them), since the last reload swapped a set in.
func (d *Detector) CorrelatorStats() CorrelatorStats {
	if d.corr == nil {
		return CorrelatorStats{}
	}
	return d.corr.Stats()
}

// appendResources adds the server, tool and sandbox the event names as evidence (features
// "server", "tool", "sandbox" with the name as ObservedText), after the matched fields: what a
// playbook's server, tool and sandbox conditions and its quarantine actions act on, and what a
// notification names. A rule on a kernel event of a sandbox can so quarantine that sandbox.
func appendResources(ev []event.Evidence, e *event.Event, value float64, at time.Time) []event.Evidence {
	for _, r := range [...]struct{ feature, name string }{
		{"server", e.Target.Server}, {"tool", mcp(e).Tool}, {"sandbox", e.Target.Sandbox},
	} {
		if r.name == "" {
			continue
		}
		ev = append(ev, event.Evidence{Detector: Name, Check: Name, Component: string(detect.Risk), Feature: r.feature,
			Value: value, ObservedText: clip(r.name), BaselineSource: "rule",
			Detail:      fmt.Sprintf("the event's %s", r.feature),
			WindowStart: at, WindowEnd: at, EventIDs: []string{e.ID}})
	}
	return ev
}

func levelOf(level string) string {
	if level == "" {
		return "no level"
	}
	return level
}

func ruleFinding(r *Rule, m *Match, e *event.Event) *event.Finding {
	sev := Severity(r.Level)
	at := e.Time.UTC()
	ev := make([]event.Evidence, 0, max(len(m.Fields), 1)+3)
	for _, fm := range m.Fields {
		obs, _ := strconv.ParseFloat(fm.Value, 64)
		ev = append(ev, event.Evidence{Detector: Name, Check: Name, Component: string(detect.Risk), Feature: fm.Field,
			Value: float64(sev * 10), Observed: obs, ObservedText: clip(fm.Value), BaselineSource: "rule",
			Detail:      fmt.Sprintf("rule %s (%s) matched %s = %s", r.Title, r.ID, fm.Field, quote(fm.Value)),
			WindowStart: at, WindowEnd: at, EventIDs: []string{e.ID}})
	}
	if len(ev) == 0 {
		ev = append(ev, event.Evidence{Detector: Name, Check: Name, Component: string(detect.Risk), Feature: "rule",
			Value: float64(sev * 10), BaselineSource: "rule", Detail: fmt.Sprintf("rule %s (%s) matched (condition %s)", r.Title, r.ID, r.Condition),
			WindowStart: at, WindowEnd: at, EventIDs: []string{e.ID}})
	}
	ev = appendResources(ev, e, float64(sev*10), at)
	return &event.Finding{
		ID: detect.FindingID(Name+"/"+r.ID, e.ID), Time: at, Tenant: e.Tenant, Principal: e.Principal,
		Detector: Name, Check: Name, Score: float64(sev * 10), Severity: sev,
		Summary:     fmt.Sprintf("%s: Sigma rule %q matched (%s)", event.PrincipalID(e.Principal), r.Title, levelOf(r.Level)),
		WindowStart: at, WindowEnd: at, Features: map[string]float64{"severity": float64(sev), "fields": float64(len(m.Fields))},
		EventIDs: []string{e.ID}, Evidence: ev, Tags: append([]string{Name}, r.Tags...),
	}
}

func correlationFinding(rs *RuleSet, cm *CorrelationMatch, e *event.Event) *event.Finding {
	c := cm.Correlation
	sev := Severity(c.Level)
	what := map[CorrelationType]string{EventCount: "events", ValueCount: "distinct values of " + c.Field,
		Temporal: "of the rules", TemporalOrdered: "of the rules in order"}[c.Type]
	var group []string
	for _, g := range cm.GroupBy {
		group = append(group, g.Field+"="+quote(g.Value))
	}
	by := ""
	if len(group) > 0 {
		by = " with " + strings.Join(group, ", ")
	}
	detail := fmt.Sprintf("correlation %s (%s) matched: %d %s (%s) within %s%s; condition %s",
		c.Title, c.ID, cm.Count, what, strings.Join(c.Rules, ", "), fmtDuration(c.Timespan), by, c.Condition)
	if len(cm.Values) > 0 {
		detail += "; values " + strings.Join(cm.Values, ", ")
	}
	ev := []event.Evidence{{Detector: Name, Check: Name, Component: string(detect.Risk), Feature: string(c.Type),
		Value: float64(sev * 10), Observed: float64(cm.Count), Baseline: float64(c.least(1 << 30)), BaselineSource: "rule",
		Detail: detail, WindowStart: cm.WindowStart, WindowEnd: cm.WindowEnd, EventIDs: cm.EventIDs}}
	for _, g := range cm.GroupBy {
		obs, _ := strconv.ParseFloat(g.Value, 64)
		ev = append(ev, event.Evidence{Detector: Name, Check: Name, Component: string(detect.Risk), Feature: g.Field,
			Value: float64(sev * 10), Observed: obs, ObservedText: clip(g.Value), BaselineSource: "rule",
			Detail:      fmt.Sprintf("correlation %s (%s) grouped by %s = %s", c.Title, c.ID, g.Field, quote(g.Value)),
			WindowStart: cm.WindowStart, WindowEnd: cm.WindowEnd})
	}
	tags := append([]string{Name}, c.Tags...)
	if len(c.Tags) == 0 {
		// Only the outermost rule of a correlation carries meta data in Sigma; without tags of its
		// own, a correlation carries those of the rules it relates.
		for _, t := range referencedTags(rs, c, map[*Correlation]bool{}) {
			if !slices.Contains(tags, t) {
				tags = append(tags, t)
			}
		}
	}
	return &event.Finding{
		ID: detect.FindingID(Name+"/"+c.ID, e.ID), Time: cm.WindowEnd, Tenant: e.Tenant, Principal: e.Principal,
		Detector: Name, Check: Name, Score: float64(sev * 10), Severity: sev,
		Summary:     fmt.Sprintf("%s: Sigma correlation %q matched (%s): %d %s within %s", event.PrincipalID(e.Principal), c.Title, levelOf(c.Level), cm.Count, what, fmtDuration(c.Timespan)),
		WindowStart: cm.WindowStart, WindowEnd: cm.WindowEnd,
		Features: map[string]float64{"severity": float64(sev), "count": float64(cm.Count), "timespan_s": c.Timespan.Seconds()},
		EventIDs: cm.EventIDs, Evidence: ev, Tags: tags,
	}
}

func referencedTags(rs *RuleSet, c *Correlation, seen map[*Correlation]bool) []string {
	seen[c] = true
	var out []string
	nr := len(rs.rules)
	for _, ref := range c.refs {
		if ref < nr {
			out = append(out, rs.rules[ref].Tags...)
		} else if inner := rs.corrs[ref-nr]; !seen[inner] {
			out = append(out, inner.Tags...)
			out = append(out, referencedTags(rs, inner, seen)...)
		}
	}
	return out
}

func quote(v string) string { return strconv.Quote(clip(v)) }

// clip bounds a matched value for evidence, at a character boundary, as a copy of its own.
func clip(v string) string {
	if len(v) <= maxDetail {
		return strings.Clone(v)
	}
	return strings.ToValidUTF8(v[:maxDetail], "") + "…"
}

// fmtDuration prints 10s, 5m, 1h30m rather than Go's 5m0s and 1h30m0s.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
