// Package score is the only writer of the scores topic: a [Scorer] combines the [detect.Signal]s
// of every detector into one threat score per principal and decides when it is published.
//
// The score follows the source document's formula,
// 0.3·(API call frequency) + 0.4·(data sensitivity) + 0.3·(user risk profile): each component
// is the highest latest value of the detectors feeding it, and the score is the weighted mean of
// the components some enabled detector feeds. With the rate detector alone the score is therefore
// the rate detector's own score.
package score

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mcpwatch/mcpwatch/detectors/detect"
	"github.com/mcpwatch/mcpwatch/detectors/internal/intern"
	"github.com/mcpwatch/mcpwatch/detectors/internal/lru"
	"github.com/mcpwatch/mcpwatch/event"
)

// ErrSignal is wrapped by the errors of signals the scorer refuses: from a detector it does not
// know, for a component the detector does not feed, with a value outside 0–100 or a bogus time.
var ErrSignal = errors.New("signal refused")

// Scorer keeps, per principal, the latest signal of each detector on each component it feeds,
// and turns them into [event.Score] records:
//
//   - component value: the highest live signal value on it (0 without one);
//   - score: Σ wᵢ·componentᵢ / Σ wᵢ over the components the detectors feed, rounded to one
//     decimal;
//   - publication: at once when the score moves by PublishDelta or more from the last published
//     score, else when it changed and PublishEvery passed since the last publication, in event
//     time; when the principal's last live signal expires, a final 0 if the last published score
//     was above 0, stamped with the expired signal's time.
//
// A score record's time is the newest signal time of the principal, so its records never go
// back in time while it is tracked. Its [event.Score.Components] hold every component the
// detectors feed and every detector's latest value (0 when it has none); see [Scorer.Keys].
//
// Memory is bounded: a principal is tracked from its first signal above 0 until its last live
// signal expires, and at most MaxPrincipals are tracked (the one signalled least recently is
// forgotten first, its last published score left standing).
//
// A Scorer is not safe for concurrent use.
type Scorer struct {
	delta float64
	every int64 // nanoseconds
	max   int

	comps   []detect.Component // fed by some detector, in the formula's order
	weights []float64          // parallel to comps, summing to 1
	// A slot is one (detector, component) pair a detector declared: the unit of "latest signal".
	slotOf       map[slotID]int
	slotIDs      []slotID
	slotComp     []int    // slot → index in comps
	slotKey      []string // slot → its key in Score.Components
	slotCompName []detect.Component
	dets         map[string]bool

	// findingsSlot is the slot of the user-risk component the findings feed, -1 when they do not.
	findingsSlot int
	halfLife     int64 // nanoseconds
	evidence     int
	lastTick     int64
	iterating    bool

	table   *lru.Table[key, principal]
	tenants intern.Table // the keys' tenants, shared
	stats   Stats
}

type slotID struct {
	detector string
	check    string
}

// key is a principal: its tenant and subject ([event.PrincipalID]).
type key struct{ tenant, subject string }

type principal struct {
	slots        []slot
	marks        []mark // recent findings, at most maxFindings
	now          int64  // newest signal or finding time
	published    float64
	publishedAt  int64
	hasPublished bool
	gone         bool // nothing live: Tick forgets it after iterating
}

// maxFindings bounds the findings a principal's user-risk component remembers.
const maxFindings = 8

// mark is a finding remembered for the user-risk component.
type mark struct {
	at                           int64
	weight                       float64 // severity as 0–1
	detector, check, summary, id string
}

type slot struct {
	live     bool
	value    float64
	at       int64
	evidence detect.Evidence // but for the findings slot's (see Scorer.slotEvidence)
}

// Stats counts what a [Scorer] did since it was created.
type Stats struct {
	Principals      int    // tracked now
	Signals         uint64 // applied
	Refused         uint64 // refused with [ErrSignal]
	Findings        uint64 // findings recorded in the user-risk component
	Published       uint64 // score records returned
	EvictedIdle     uint64 // principals forgotten when their last live signal expired
	EvictedCapacity uint64 // principals forgotten to stay within MaxPrincipals
}

// New returns a scorer for signals of the detectors described by dets, or an error when the
// config is invalid, dets is empty, two detectors share a name, a detector feeds no component or
// an unknown one, or the components the detectors feed all weigh 0.
func New(cfg Config, dets ...detect.Info) (*Scorer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("score: %w", err)
	}
	if len(dets) == 0 {
		return nil, errors.New("score: no detectors")
	}
	s := &Scorer{delta: cfg.PublishDelta, every: int64(cfg.PublishEvery), max: cfg.MaxPrincipals,
		slotOf: map[slotID]int{}, dets: map[string]bool{}, table: lru.New[key, principal](),
		findingsSlot: -1, halfLife: int64(cfg.FindingsHalfLife), evidence: cfg.Evidence}
	fed := map[detect.Component]bool{}
	for _, d := range dets {
		switch {
		case d.Name == "":
			return nil, errors.New("score: a detector has no name")
		case s.dets[d.Name]:
			return nil, fmt.Errorf("score: two detectors are named %q", d.Name)
		case len(d.Checks) == 0:
			return nil, fmt.Errorf("score: detector %s has no checks", d.Name)
		}
		s.dets[d.Name] = true
		for _, c := range d.Checks {
			switch {
			case c.Name == "":
				return nil, fmt.Errorf("score: detector %s has a check without a name", d.Name)
			case !c.Component.Valid():
				return nil, fmt.Errorf("score: detector %s: check %s feeds unknown component %q", d.Name, c.Name, c.Component)
			}
			fed[c.Component] = true
		}
	}
	sum := 0.0
	for _, c := range detect.Components() {
		if fed[c] {
			s.comps = append(s.comps, c)
			s.weights = append(s.weights, cfg.Weights.Of(c))
			sum += cfg.Weights.Of(c)
		}
	}
	if sum == 0 {
		return nil, fmt.Errorf("score: weights: the components the detectors feed (%v) all weigh 0", s.comps)
	}
	for i := range s.weights {
		s.weights[i] /= sum
	}
	keys := map[string]bool{}
	for _, c := range s.comps {
		keys[string(c)] = true
	}
	for _, d := range dets {
		for _, c := range d.Checks {
			id := slotID{d.Name, c.Name}
			if _, dup := s.slotOf[id]; dup {
				return nil, fmt.Errorf("score: detector %s declares check %s twice", d.Name, c.Name)
			}
			key := d.Name
			if c.Name != d.Name {
				key = d.Name + "." + c.Name
			}
			if keys[key] {
				return nil, fmt.Errorf("score: detector %s: component key %q is taken", d.Name, key)
			}
			keys[key] = true
			s.slotOf[id] = len(s.slotKey)
			s.slotIDs = append(s.slotIDs, id)
			s.slotKey = append(s.slotKey, key)
			s.slotComp = append(s.slotComp, s.compIndex(c.Component))
			s.slotCompName = append(s.slotCompName, c.Component)
		}
	}
	if fed[detect.Risk] && s.halfLife > 0 && s.weights[s.compIndex(detect.Risk)] > 0 {
		if keys[FindingsKey] {
			return nil, fmt.Errorf("score: component key %q is taken", FindingsKey)
		}
		s.findingsSlot = len(s.slotKey)
		s.slotIDs = append(s.slotIDs, slotID{FindingsKey, FindingsKey})
		s.slotKey = append(s.slotKey, FindingsKey)
		s.slotComp = append(s.slotComp, s.compIndex(detect.Risk))
		s.slotCompName = append(s.slotCompName, detect.Risk)
	}
	return s, nil
}

// FindingsKey is the key in [event.Score.Components] of the user-risk the principal's recent
// findings carry (see [Scorer.Finding]).
const FindingsKey = "findings"

// Keys returns the keys of the published [event.Score.Components]: the components the detectors
// feed ("frequency", "sensitivity", "risk"), each the value that entered the formula, then one
// key per detector and component with the detector's latest value — the detector's name, or
// "name.component" for a detector feeding several components.
func (s *Scorer) Keys() []string {
	out := make([]string, 0, len(s.comps)+len(s.slotKey))
	for _, c := range s.comps {
		out = append(out, string(c))
	}
	return append(out, s.slotKey...)
}

// Apply records sig as the latest signal of its detector's check for its principal, and returns
// the score record to publish, or nil when the published score stands. A refused signal changes
// nothing and returns an error wrapping [ErrSignal].
func (s *Scorer) Apply(sig *detect.Signal) (*event.Score, error) {
	k, ok := s.slotOf[slotID{sig.Detector, sig.Check}]
	v := sig.Value
	switch {
	case !s.dets[sig.Detector]:
		return nil, s.refuse(sig, "unknown detector")
	case !ok:
		return nil, s.refuse(sig, "check not declared by the detector")
	case sig.Component != s.slotCompName[k]:
		return nil, s.refuse(sig, "component is not the check's")
	case !detect.ValidTime(sig.Time):
		return nil, s.refuse(sig, "bogus time")
	case sig.Expired:
		v = 0
	case math.IsNaN(v) || v < 0 || v > 100:
		return nil, s.refuse(sig, "value outside 0–100")
	}
	s.stats.Signals++
	pk := key{sig.Tenant, sig.Subject}
	ent := s.table.Get(pk)
	switch {
	case ent == nil && (sig.Expired || v == 0):
		return nil, nil // an untracked principal scores 0 and has no score above 0 published
	case ent == nil:
		ent = s.track(pk)
	case !sig.Expired:
		s.table.Touch(ent)
	}
	p := &ent.Value
	t := sig.Time.UnixNano()
	p.now = max(p.now, t)
	if sig.Expired {
		p.slots[k] = slot{}
	} else {
		p.slots[k] = slot{live: true, value: v, at: t, evidence: sig.Evidence}
	}
	return s.update(ent), nil
}

// Finding records f in its principal's user-risk component, where it weighs its severity (0–10
// as 0–1) fading with FindingsHalfLife, and returns the score record to publish, or nil. The risk
// is the noisy-or of the weights of the principal's last [maxFindings] findings. A scorer whose
// detectors feed no risk check, or configured with no half-life, ignores findings.
func (s *Scorer) Finding(f *event.Finding) *event.Score {
	if s.findingsSlot < 0 || !detect.ValidTime(f.Time) || f.Severity <= 0 {
		return nil
	}
	pk := key{f.Tenant, event.PrincipalID(f.Principal)}
	ent := s.table.Get(pk)
	if ent == nil {
		ent = s.track(pk)
	} else {
		s.table.Touch(ent)
	}
	p := &ent.Value
	t := f.Time.UnixNano()
	p.now = max(p.now, t)
	// A finding's strings may refer to the record being judged: the mark keeps copies.
	m := mark{at: t, weight: min(float64(f.Severity), 10) / 10, detector: strings.Clone(f.Detector),
		check: strings.Clone(f.Check), summary: strings.Clone(f.Summary), id: strings.Clone(f.ID)}
	// Replace the faintest mark when full: what is left is what weighs most now.
	if len(p.marks) < maxFindings {
		p.marks = append(p.marks, m)
	} else {
		i := 0
		for j := range p.marks {
			if s.fade(p.marks[j], p.now) < s.fade(p.marks[i], p.now) {
				i = j
			}
		}
		p.marks[i] = m
	}
	s.stats.Findings++
	return s.update(ent)
}

// Tick lets findings fade at event time now: at most once per PublishEvery it revisits every
// principal whose score rests on findings and returns the score records their fading publishes
// (a final 0 when nothing is left, after which the principal is forgotten).
func (s *Scorer) Tick(now time.Time) []*event.Score {
	t := now.UnixNano()
	if s.findingsSlot < 0 || !detect.ValidTime(now) || t-s.lastTick < max(s.every, int64(time.Second)) {
		return nil
	}
	s.lastTick = t
	var out []*event.Score
	var gone []*lru.Entry[key, principal]
	s.iterating = true
	s.table.Each(func(ent *lru.Entry[key, principal]) {
		p := &ent.Value
		if len(p.marks) == 0 || t <= p.now {
			return
		}
		p.now = t
		if rec := s.update(ent); rec != nil {
			out = append(out, rec)
		}
		if ent.Value.gone {
			gone = append(gone, ent)
		}
	})
	s.iterating = false
	for _, ent := range gone {
		s.table.Remove(ent)
		s.stats.EvictedIdle++
	}
	return out
}

// update recomputes ent's score at its newest time and returns the record to publish, or nil.
// A principal left with nothing live is forgotten (by Tick when it is iterating).
func (s *Scorer) update(ent *lru.Entry[key, principal]) *event.Score {
	p := &ent.Value
	if s.findingsSlot >= 0 {
		risk := 1.0
		for i := 0; i < len(p.marks); {
			w := s.fade(p.marks[i], p.now)
			if w < 0.005 { // faded to nothing: forget it
				p.marks[i] = p.marks[len(p.marks)-1]
				p.marks = p.marks[:len(p.marks)-1]
				continue
			}
			risk *= 1 - w
			i++
		}
		v := math.Round((1-risk)*1000) / 10
		if v > 0 {
			// Its evidence is worded only when asked for (see slotEvidence): most updates publish
			// nothing.
			p.slots[s.findingsSlot] = slot{live: true, value: v, at: p.now}
		} else {
			p.slots[s.findingsSlot] = slot{}
		}
	}
	var cv [3]float64 // component values, parallel to s.comps (at most every detect.Components())
	live := false
	for i := range p.slots {
		if sl := &p.slots[i]; sl.live {
			live = true
			cv[s.slotComp[i]] = max(cv[s.slotComp[i]], sl.value)
		}
	}
	score := 0.0
	for i, w := range s.weights {
		score += w * cv[i]
	}
	score = min(max(math.Round(score*10)/10, 0), 100)

	var rec *event.Score
	if d := math.Abs(score - p.published); d >= s.delta ||
		(d > 0 && (!p.hasPublished || p.now-p.publishedAt >= s.every)) ||
		(!live && p.published > 0) {
		p.published, p.publishedAt, p.hasPublished = score, p.now, true
		rec = s.record(ent.Key, p, score, cv[:len(s.comps)])
		s.stats.Published++
	}
	if !live {
		if s.iterating {
			p.gone = true
		} else {
			s.table.Remove(ent)
			s.stats.EvictedIdle++
		}
	}
	return rec
}

// fade is m's weight at time now.
func (s *Scorer) fade(m mark, now int64) float64 {
	return m.weight * math.Exp2(-float64(max(now-m.at, 0))/float64(s.halfLife))
}

// slotEvidence is the evidence of p's slot i. The findings slot's is worded from p's findings as
// they stand, which are those of p's last update: every change to them or to p.now ends in one.
func (s *Scorer) slotEvidence(p *principal, i int) detect.Evidence {
	if i == s.findingsSlot {
		return s.findingsEvidence(p)
	}
	return p.slots[i].evidence
}

// findingsEvidence explains the findings slot by its heaviest finding now.
func (s *Scorer) findingsEvidence(p *principal) detect.Evidence {
	best := -1
	for i := range p.marks {
		if best < 0 || s.fade(p.marks[i], p.now) > s.fade(p.marks[best], p.now) {
			best = i
		}
	}
	m := p.marks[best]
	name := m.detector
	if m.check != "" {
		name += "/" + m.check
	}
	ev := detect.Evidence{Feature: "findings", Observed: float64(len(p.marks)), BaselineSource: "rule",
		WindowStart: time.Unix(0, m.at).UTC(), WindowEnd: time.Unix(0, p.now).UTC(),
		Detail: fmt.Sprintf("%d recent finding(s); heaviest now %s %q (weight %.2f, half-life %s)",
			len(p.marks), name, m.summary, s.fade(m, p.now), time.Duration(s.halfLife))}
	if m.id != "" {
		ev.EventIDs = []detect.EventID{detect.MakeEventID(m.id)}
	}
	return ev
}

// Signals returns the live latest signals of the principal tenant/subject, in the order of
// [Scorer.Keys]: what its current score is made of, with the evidence, its Detail worded.
func (s *Scorer) Signals(tenant, subject string) []detect.Signal {
	ent := s.table.Get(key{tenant, subject})
	if ent == nil {
		return nil
	}
	var out []detect.Signal
	for k, sl := range ent.Value.slots {
		if sl.live {
			id := s.slotIDs[k]
			ev := s.slotEvidence(&ent.Value, k)
			ev.Detail = ev.Text()
			out = append(out, detect.Signal{Detector: id.detector, Check: id.check, Tenant: tenant, Subject: subject,
				Time: time.Unix(0, sl.at).UTC(), Component: s.slotCompName[k], Value: sl.value, Evidence: ev})
		}
	}
	return out
}

// Explain returns the evidence behind the principal's current score, the largest contribution
// first, at most the configured number: what a finding concluded now should carry.
func (s *Scorer) Explain(tenant, subject string) []event.Evidence {
	ent := s.table.Get(key{tenant, subject})
	if ent == nil {
		return nil
	}
	ev, _ := s.explain(&ent.Value)
	return ev
}

// Stats returns counters of what the scorer did.
func (s *Scorer) Stats() Stats {
	st := s.stats
	st.Principals = s.table.Len()
	return st
}

func (s *Scorer) refuse(sig *detect.Signal, why string) error {
	s.stats.Refused++
	return fmt.Errorf("%w: %s: detector %q, check %q, component %q, principal %s/%s, value %v, time %v",
		ErrSignal, why, sig.Detector, sig.Check, sig.Component, sig.Tenant, sig.Subject, sig.Value, sig.Time)
}

func (s *Scorer) compIndex(c detect.Component) int {
	for i, x := range s.comps {
		if x == c {
			return i
		}
	}
	panic("score: component not fed: " + string(c))
}

func (s *Scorer) track(k key) *lru.Entry[key, principal] {
	if s.table.Len() >= s.max {
		s.table.Remove(s.table.Oldest())
		s.stats.EvictedCapacity++
	}
	// The key's strings may refer to the record being judged (a finding's): the table keeps
	// copies.
	ent := s.table.Add(key{s.tenants.Copy(k.tenant), strings.Clone(k.subject)})
	ent.Value = principal{slots: make([]slot, len(s.slotKey))}
	return ent
}

// explain ranks p's live slots: each slot's contribution is its component's weight times its
// value when it is the component's highest (the value that entered the formula), else 0. It
// returns the evidence of the top slots and the contribution per component.
func (s *Scorer) explain(p *principal) ([]event.Evidence, []float64) {
	type ranked struct {
		slot    int
		contrib float64
	}
	var top [3]int // per component: the slot carrying its value, -1 when none
	for i := range top {
		top[i] = -1
	}
	for i := range p.slots {
		if sl := &p.slots[i]; sl.live && sl.value > 0 {
			c := s.slotComp[i]
			if top[c] < 0 || sl.value > p.slots[top[c]].value {
				top[c] = i
			}
		}
	}
	contrib := make([]float64, len(s.comps))
	var rs []ranked
	for i := range p.slots {
		sl := &p.slots[i]
		if !sl.live || sl.value <= 0 {
			continue
		}
		c := s.slotComp[i]
		r := ranked{slot: i}
		if top[c] == i {
			r.contrib = s.weights[c] * sl.value
			contrib[c] = r.contrib
		}
		rs = append(rs, r)
	}
	sort.SliceStable(rs, func(a, b int) bool {
		if rs[a].contrib != rs[b].contrib {
			return rs[a].contrib > rs[b].contrib
		}
		return p.slots[rs[a].slot].value > p.slots[rs[b].slot].value
	})
	if len(rs) > s.evidence {
		rs = rs[:s.evidence]
	}
	out := make([]event.Evidence, 0, len(rs))
	for _, r := range rs {
		sl := &p.slots[r.slot]
		id := s.slotIDs[r.slot]
		e := s.slotEvidence(p, r.slot)
		ev := event.Evidence{Detector: id.detector, Check: id.check, Component: string(s.slotCompName[r.slot]),
			Feature: e.Feature, Value: sl.value, Contribution: round1(r.contrib), Observed: finite(e.Observed),
			Baseline: finite(e.Baseline), BaselineSource: e.BaselineSource, Detail: e.Text(),
			WindowStart: e.WindowStart, WindowEnd: e.WindowEnd, EventIDs: detect.EventIDStrings(e.EventIDs)}
		if id.check == id.detector {
			ev.Check = ""
		}
		if e.HasPeer {
			pp := finite(e.PeerPercentile)
			ev.PeerPercentile = &pp
		}
		out = append(out, ev)
	}
	return out, contrib
}

func (s *Scorer) record(k key, p *principal, score float64, cv []float64) *event.Score {
	comps := make(map[string]float64, len(cv)+len(p.slots))
	for i, c := range s.comps {
		comps[string(c)] = cv[i]
	}
	for i := range p.slots {
		comps[s.slotKey[i]] = p.slots[i].value
	}
	rec := &event.Score{Time: time.Unix(0, p.now).UTC(), Tenant: k.tenant, Subject: k.subject, Score: score,
		Components: comps}
	if score == 0 {
		return rec
	}
	ev, contrib := s.explain(p)
	rec.Evidence = ev
	rec.Contributions = make(map[string]float64, len(s.comps))
	for i, c := range s.comps {
		rec.Contributions[string(c)] = round1(contrib[i])
	}
	rec.Explanation = s.explanation(score, contrib, ev)
	return rec
}

// explanation is the score in one line: the sum of the contributions, then the evidence.
func (s *Scorer) explanation(score float64, contrib []float64, ev []event.Evidence) string {
	var b strings.Builder
	fmt.Fprintf(&b, "score %g =", score)
	for i, c := range s.comps {
		if i > 0 {
			b.WriteString(" +")
		}
		fmt.Fprintf(&b, " %s %.1f", c, contrib[i])
	}
	if len(ev) > 0 {
		b.WriteString(": ")
		b.WriteString(Line(ev))
	}
	return b.String()
}

// Line renders evidence in one line, item by item: "detector/check value (feature observed vs
// baseline source, peer pN, over window)".
func Line(ev []event.Evidence) string {
	var b strings.Builder
	for i, e := range ev {
		if i > 0 {
			b.WriteString("; ")
		}
		name := e.Detector
		if e.Check != "" {
			name += "/" + e.Check
		}
		if e.ObservedText != "" { // a match, not a measure: no baseline to compare with
			fmt.Fprintf(&b, "%s %g (%s = %s)", name, e.Value, e.Feature, strconv.Quote(e.ObservedText))
			continue
		}
		fmt.Fprintf(&b, "%s %g (%s %s vs %s", name, e.Value, e.Feature, num(e.Observed), num(e.Baseline))
		if e.BaselineSource != "" {
			fmt.Fprintf(&b, " %s", e.BaselineSource)
		}
		if e.PeerPercentile != nil {
			fmt.Fprintf(&b, ", peer p%s", num(*e.PeerPercentile))
		}
		if !e.WindowStart.IsZero() && e.WindowEnd.After(e.WindowStart) {
			fmt.Fprintf(&b, ", over %s", e.WindowEnd.Sub(e.WindowStart).Round(time.Second))
		}
		b.WriteString(")")
	}
	return b.String()
}

func num(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// finite keeps evidence encodable: JSON has no NaN or infinities.
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}
