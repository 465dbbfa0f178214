// Package playbook is the response playbook language: a YAML file of playbooks, each matching
// findings (detector, check, score, severity, principal attributes, server, tool, sandbox) and
// naming the actions to take (revoke, quarantine, block_egress, step_up, notify) with expiry,
// deduplication, escalation and dry-run.
//
// It is a pure library: [Set.Evaluate] turns a finding into [Decision] values and never acts;
// the respond stage is not wired to it yet (see docs/response.md).
package playbook

import (
	"fmt"
	"github.com/google/uuid"
	"sort"
	"strings"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/glob"
)

// Kind is what an action does.
type Kind string

const (
	KindRevoke      Kind = "revoke"
	KindQuarantine  Kind = "quarantine"
	KindBlockEgress Kind = "block_egress"
	KindStepUp      Kind = "step_up"
	KindNotify      Kind = "notify"
)

// Scope is what an action applies to; the first six are [event.ControlScope] values.
type Scope string

const (
	ScopeSubject       = Scope(event.ScopeSubject)
	ScopeToken         = Scope(event.ScopeToken)
	ScopeClient        = Scope(event.ScopeClient)
	ScopeSandbox       = Scope(event.ScopeSandbox)
	ScopeServer        = Scope(event.ScopeServer)
	ScopeTool          = Scope(event.ScopeTool)
	ScopeChannel Scope = "channel" // a notify action's channel name
)

// maxEscalateAfter bounds escalate.after, and so the finding times [State] keeps per principal.
const maxEscalateAfter = 100

// Set is a loaded playbook file.
type Set struct {
	Playbooks     []*Playbook
	name          string
	dryRun        bool
	defaultExpire time.Duration
	defaultDedup  time.Duration
	approval      *ApprovalSpec
}

// Approval returns the file's approval section; nil when it has none.
func (s *Set) Approval() *ApprovalSpec { return s.approval }

// ApprovalSpec is who must approve the actions that wait for approval, and how long they wait.
type ApprovalSpec struct {
	Approvers []string // key ids in the approvers' keyring
	Required  int      // approvals needed (M of len(Approvers))
	Timeout   time.Duration
	OnTimeout string // "deny" (default) or "approve"
	// AboveImpact makes every action of at least this impact wait for approval; 0: only actions
	// with `approval: true`.
	AboveImpact Impact
}

// Impact ranks how much an action disrupts: who it shuts out and for how long.
type Impact int

const (
	ImpactLow    Impact = iota + 1 // a step-up demand or a notification: nobody is shut out
	ImpactMedium                   // one principal, token, sandbox or tool, for a while
	ImpactHigh                     // every user of a client, a whole server, or anything permanent
)

func (i Impact) String() string {
	switch i {
	case ImpactLow:
		return "low"
	case ImpactMedium:
		return "medium"
	case ImpactHigh:
		return "high"
	}
	return "none"
}

func parseImpact(s string) (Impact, bool) {
	for _, i := range []Impact{ImpactLow, ImpactMedium, ImpactHigh} {
		if i.String() == s {
			return i, true
		}
	}
	return 0, false
}

// Impact is the action's impact: high for a client revocation, a server quarantine or anything
// permanent; low for a step-up demand or a notification; medium otherwise.
func (a *Action) Impact() Impact {
	switch {
	case a.Kind == KindNotify || a.Kind == KindStepUp && !a.Permanent:
		return ImpactLow
	case a.Permanent || a.Scope == ScopeClient || a.Scope == ScopeServer:
		return ImpactHigh
	}
	return ImpactMedium
}

// Name is the file name the set was loaded from.
func (s *Set) Name() string { return s.name }

// Playbook is one named rule: a match and its actions.
type Playbook struct {
	Name    string
	DryRun  bool // the file's or the playbook's dry_run
	Actions []Action
	match   match
}

// Action is one configured action.
type Action struct {
	Kind    Kind
	Scope   Scope
	Channel string // notify only
	// ExpireAfter is how long the action lasts from the finding's time; 0 with Permanent, and
	// for notifications.
	ExpireAfter time.Duration
	Permanent   bool
	// DedupWindow suppresses the same action on the same target within it; 0 never suppresses.
	DedupWindow time.Duration
	Escalate    *Escalation
	// NeedsApproval: the action waits for the file's approval ([Set.Approval]) before it acts.
	NeedsApproval bool
}

// Escalation adds a stronger action once After findings of the same principal matched the
// playbook within Within (the current finding included).
type Escalation struct {
	After  int
	Within time.Duration
	To     Action
}

// Decision is what a playbook decided for one finding: one action on one target.
type Decision struct {
	Playbook string
	Kind     Kind
	Scope    Scope
	Target   string    // subject, token id, client id, sandbox, server, tool or channel
	Expires  time.Time // zero: permanent (or a notification)
	Reason   string    // the matched conditions, in words
	DryRun   bool
	// Suppressed is set when the same kind, scope and target was decided within the action's
	// dedup window: the decision is reported but should not be carried out.
	Suppressed bool
	// Escalated is set on the stronger action of an [Escalation].
	Escalated bool
	// Approval, when set, is who must approve the decision before it acts.
	Approval *ApprovalSpec
}

// Source is what a playbook matches: findings, or threat scores.
type Source string

const (
	SourceFinding Source = "finding"
	// SourceScore matches the threat score records of the scores topic, seen as findings of
	// detector "score" and check "threat_score" ([FromScore]).
	SourceScore Source = "score"
)

// Score findings' detector and check ([FromScore]).
const (
	ScoreDetector = "score"
	ScoreCheck    = "threat_score"
)

// FromScore returns a threat score as the finding a playbook judges: detector "score", check
// "threat_score", the score and its evidence, a severity of score/10, and the principal's subject.
// A score names no roles, department or peer group, so playbooks matching on them never match a
// score. Its id is derived from tenant, subject and time, so a score read twice is one finding.
func FromScore(s *event.Score) *event.Finding {
	sev := int(s.Score / 10)
	return &event.Finding{
		Schema: s.Schema, ID: uuid.NewSHA1(scoreNamespace, []byte(s.Tenant+"\x00"+s.Subject+"\x00"+s.Time.UTC().Format(time.RFC3339Nano))).String(),
		Time: s.Time, Tenant: s.Tenant, Principal: event.Principal{Subject: s.Subject},
		Detector: ScoreDetector, Check: ScoreCheck, Score: s.Score, Severity: min(max(sev, 0), 10),
		Summary: s.Explanation, Explanation: s.Explanation, Evidence: s.Evidence,
	}
}

var scoreNamespace = uuid.MustParse("4f0c6f5e-8a39-4b8e-9a55-3d2f1c7e0b61")

type match struct {
	source                                                              Source
	detector, check, role, department, peerGroup, server, tool, sandbox *glob.Pattern
	minScore                                                            float64
	hasScore                                                            bool
	minSeverity                                                         int
	hasSeverity                                                         bool
}

// Resources returns the server, tool and sandbox a finding names: a finding carries them as
// evidence whose Feature is "server", "tool" or "sandbox" and whose ObservedText is the name
// (the first such evidence wins). Empty when the finding names none.
func Resources(f *event.Finding) (server, tool, sandbox string) {
	for _, e := range f.Evidence {
		switch {
		case e.Feature == "server" && server == "":
			server = e.ObservedText
		case e.Feature == "tool" && tool == "":
			tool = e.ObservedText
		case e.Feature == "sandbox" && sandbox == "":
			sandbox = e.ObservedText
		}
	}
	return server, tool, sandbox
}

// test returns the matched conditions in words, or the first failed one. A finding of detector
// "score" and check "threat_score" is a score ([FromScore]).
func (m *match) test(f *event.Finding) (matched []string, failed string) {
	src := SourceFinding
	if f.Detector == ScoreDetector && f.Check == ScoreCheck {
		src = SourceScore
	}
	if src != m.source {
		return nil, fmt.Sprintf("a %s, and the playbook matches %ss (source)", src, m.source)
	}
	server, tool, sandbox := Resources(f)
	str := func(name string, g *glob.Pattern, v string) bool {
		if g == nil {
			return true
		}
		if !g.Match(v) {
			failed = fmt.Sprintf("%s %q does not match %q", name, v, g.String())
			return false
		}
		matched = append(matched, fmt.Sprintf("%s %s matches %s", name, v, g.String()))
		return true
	}
	if !str("detector", m.detector, f.Detector) || !str("check", m.check, f.Check) {
		return nil, failed
	}
	if m.hasScore {
		if f.Score < m.minScore {
			return nil, fmt.Sprintf("score %g is below min_score %g", f.Score, m.minScore)
		}
		matched = append(matched, fmt.Sprintf("score %g >= %g", f.Score, m.minScore))
	}
	if m.hasSeverity {
		if f.Severity < m.minSeverity {
			return nil, fmt.Sprintf("severity %d is below min_severity %d", f.Severity, m.minSeverity)
		}
		matched = append(matched, fmt.Sprintf("severity %d >= %d", f.Severity, m.minSeverity))
	}
	if m.role != nil {
		ok := false
		for _, r := range f.Principal.Roles {
			if m.role.Match(r) {
				matched, ok = append(matched, fmt.Sprintf("role %s matches %s", r, m.role.String())), true
				break
			}
		}
		if !ok {
			return nil, fmt.Sprintf("no role of [%s] matches %q", strings.Join(f.Principal.Roles, ", "), m.role.String())
		}
	}
	if !str("department", m.department, f.Principal.Department) || !str("peer_group", m.peerGroup, f.Principal.PeerGroup) ||
		!str("server", m.server, server) || !str("tool", m.tool, tool) || !str("sandbox", m.sandbox, sandbox) {
		return nil, failed
	}
	if len(matched) == 0 {
		matched = []string{"any finding"}
	}
	return matched, ""
}

// target resolves an action's target from the finding; "" when the finding lacks it.
func target(a *Action, f *event.Finding) string {
	server, tool, sandbox := Resources(f)
	switch a.Scope {
	case ScopeSubject:
		return f.Principal.Subject
	case ScopeToken:
		return f.Principal.TokenID
	case ScopeClient:
		return f.Principal.ClientID
	case ScopeServer:
		return server
	case ScopeTool:
		return tool
	case ScopeSandbox:
		return sandbox
	case ScopeChannel:
		return a.Channel
	}
	return ""
}

// maxLookback caps [Set.Lookback].
const maxLookback = 7 * 24 * time.Hour

// Lookback is how far back in finding time the set's memory reaches: the longest dedup window or
// escalation window of any action (capped at a week). A [State] rebuilt by evaluating the findings
// of the last Lookback decides like one that saw every finding.
func (s *Set) Lookback() time.Duration {
	var lb time.Duration
	for _, p := range s.Playbooks {
		for i := range p.Actions {
			a := &p.Actions[i]
			lb = max(lb, a.DedupWindow)
			if e := a.Escalate; e != nil {
				lb = max(lb, e.Within, e.To.DedupWindow)
			}
		}
	}
	return min(lb, maxLookback)
}

// Evaluate returns the decisions of every playbook that matches f, in file order, each
// playbook's actions in order and an escalation right after the action it escalates. An action
// whose target the finding does not carry (a token revocation for a finding without a token id,
// a sandbox quarantine for a finding on no sandbox) yields no decision. Evaluate records the
// decisions in state for deduplication and escalation; it is deterministic in (f, state, now).
// state may be nil: nothing is suppressed or escalated then.
func (s *Set) Evaluate(f *event.Finding, state *State, now time.Time) []Decision {
	var out []Decision
	principal := f.Tenant + "/" + event.PrincipalID(f.Principal)
	for _, p := range s.Playbooks {
		matched, failed := p.match.test(f)
		if failed != "" {
			continue
		}
		reason := "playbook " + p.Name + ": " + strings.Join(matched, ", ")
		for i := range p.Actions {
			a := &p.Actions[i]
			if d, ok := decide(s.approval, p, a, f, state, now, reason); ok {
				out = append(out, d)
			}
			if e := a.Escalate; e != nil && state != nil {
				key := fmt.Sprintf("%s\x00%s\x00%d", p.Name, principal, i)
				if n := state.count(key, now, e.Within, e.After); n >= e.After {
					why := fmt.Sprintf("%s; escalated: %d findings of %s within %s", reason, n, event.PrincipalID(f.Principal), e.Within)
					if d, ok := decide(s.approval, p, &e.To, f, state, now, why); ok {
						d.Escalated = true
						out = append(out, d)
					}
				}
			}
		}
	}
	return out
}

func decide(spec *ApprovalSpec, p *Playbook, a *Action, f *event.Finding, state *State, now time.Time, reason string) (Decision, bool) {
	t := target(a, f)
	if t == "" {
		return Decision{}, false
	}
	d := Decision{Playbook: p.Name, Kind: a.Kind, Scope: a.Scope, Target: t, Reason: reason, DryRun: p.DryRun}
	if a.NeedsApproval {
		d.Approval = spec
	}
	if a.ExpireAfter > 0 {
		d.Expires = now.Add(a.ExpireAfter)
	}
	if state != nil {
		key := f.Tenant + "\x00" + string(a.Kind) + "\x00" + string(a.Scope) + "\x00" + t
		if a.Kind == KindNotify {
			// A channel is told about each principal: one noisy principal must not silence
			// the notifications about another.
			key += "\x00" + event.PrincipalID(f.Principal)
		}
		var lifted func(last time.Time) bool
		if a.Kind != KindNotify && state.lifted != nil {
			lifted = func(last time.Time) bool { return state.lifted(f.Tenant, a.Kind, a.Scope, t, last, now) }
		}
		d.Suppressed = state.dedup(key, now, a.DedupWindow, lifted)
	}
	return d, true
}

// LiftedFunc reports whether the control that an action of kind and scope on target (of tenant)
// publishes was lifted by an operator after last and no later than now.
type LiftedFunc func(tenant string, kind Kind, scope Scope, target string, last, now time.Time) bool

// DefaultStateSize is the number of entries a [State] from [NewState] holds of each kind.
const DefaultStateSize = 10000

// State is the memory [Set.Evaluate] keeps between findings: when each action was last decided
// on each target (deduplication), and the recent finding times per playbook, principal and
// escalating action (escalation). It is bounded: at most max entries of each kind, and at most
// escalate.after (≤ 100) times per entry; when full, the entry used longest ago is evicted (ties
// broken by key, so eviction is deterministic). Eviction only forgets: a forgotten target can be
// acted on again before its dedup window ends, a forgotten principal restarts its count. Not safe
// for concurrent use.
type State struct {
	max      int
	lastSeen map[string]time.Time   // dedup key → last decision
	findings map[string][]time.Time // escalation key → finding times, oldest first
	lifted   LiftedFunc
}

// WithLifted makes a lift end deduplication: an action whose control an operator lifted after the
// decision that would suppress it is decided again (and remembered from then on), as the lift
// runbook promises. Lifts are judged by their time against finding times, so replaying the same
// findings over the same lifts rebuilds the same memory. It returns s.
func (s *State) WithLifted(fn LiftedFunc) *State {
	s.lifted = fn
	return s
}

// NewState returns an empty state holding at most max entries of each kind (max < 1: the
// default, [DefaultStateSize]).
func NewState(max int) *State {
	if max < 1 {
		max = DefaultStateSize
	}
	return &State{max: max, lastSeen: map[string]time.Time{}, findings: map[string][]time.Time{}}
}

// Len returns the number of dedup and escalation entries held.
func (s *State) Len() (dedup, escalation int) { return len(s.lastSeen), len(s.findings) }

// dedup reports whether key was decided within window before now, unless liftedSince (if not
// nil) says its control was lifted after that decision; it records now when not suppressed.
func (s *State) dedup(key string, now time.Time, window time.Duration, liftedSince func(last time.Time) bool) bool {
	last, ok := s.lastSeen[key]
	suppressed := ok && window > 0 && now.Sub(last) < window && !now.Before(last)
	if suppressed && liftedSince != nil && liftedSince(last) {
		suppressed = false
	}
	if !suppressed {
		if !ok && len(s.lastSeen) >= s.max {
			evict(s.lastSeen, func(t time.Time) time.Time { return t })
		}
		s.lastSeen[key] = now
	}
	return suppressed
}

// count records a finding at now under key and returns how many fall within window.
func (s *State) count(key string, now time.Time, window time.Duration, keep int) int {
	ts, ok := s.findings[key]
	if !ok && len(s.findings) >= s.max {
		evict(s.findings, func(v []time.Time) time.Time { return v[len(v)-1] })
	}
	kept := ts[:0]
	for _, t := range ts {
		if now.Sub(t) < window && !t.After(now) {
			kept = append(kept, t)
		}
	}
	kept = append(kept, now)
	if len(kept) > keep {
		kept = kept[len(kept)-keep:]
	}
	s.findings[key] = kept
	return len(kept)
}

// evict removes the entry of m with the oldest time, the smallest key among equals.
func evict[V any](m map[string]V, at func(V) time.Time) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var oldest string
	var ot time.Time
	for i, k := range keys {
		if t := at(m[k]); i == 0 || t.Before(ot) {
			oldest, ot = k, t
		}
	}
	delete(m, oldest)
}
