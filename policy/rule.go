package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mcpwatch/mcpwatch/internal/glob"
)

// rule is one compiled rule.
type rule struct {
	id          string
	description string
	effect      Effect
	line, col   int
	order       int // position in the file
	actions     actionSet
	tenants     []string
	principals  []principalSel // empty: any principal (allow rules: any authenticated one)
	patterns    []*glob.Pattern
	conds       []cond // all must hold, in file order
	risk        riskTiers
	// maxAuthAge, when set, allows only principals who authenticated at most this long ago; an
	// older or unknown authentication gets step_up (an allow rule's, applied after it matched).
	maxAuthAge time.Duration
	// approval, when set, holds the calls the rule allows until approved (see [ApprovalHint]).
	approval *ApprovalHint
}

// riskTiers are an allow rule's risk thresholds, applied after it matched.
type riskTiers struct {
	hasMax, hasStepUp bool
	max, stepUp       float64
	stepUpAuth        []string
	stepUpMaxAge      time.Duration
}

const (
	defaultStepUpMaxAge = 5 * time.Minute
)

var defaultStepUpAuth = []string{"mfa"}

type selKind uint8

const (
	selSub selKind = iota + 1
	selClient
	selRole
	selGroup
	selAnonymous
)

var selPrefix = map[string]selKind{"sub:": selSub, "client:": selClient, "role:": selRole, "group:": selGroup}

type principalSel struct {
	kind  selKind
	value string
	src   string
}

func (s principalSel) match(t *target) bool {
	p := &t.req.Principal
	switch s.kind {
	case selSub:
		return p.Subject == s.value
	case selClient:
		return p.ClientID == s.value
	case selRole:
		return slices.Contains(p.Roles, s.value)
	case selGroup:
		return slices.Contains(t.req.Groups, s.value)
	case selAnonymous:
		return t.anon
	}
	return false
}

// miss says which part of a rule's scope did not match.
type miss uint8

const (
	missNone miss = iota
	missAction
	missResource
	missTenant
	missPrincipal
	missAnonymous
)

func (r *rule) scopeTarget(t *target) bool {
	if r.actions&t.m.bit == 0 {
		return false
	}
	for _, g := range r.patterns {
		if g.Match(t.str) {
			return true
		}
	}
	return false
}

// scopePrincipal checks tenant and principal.
func (r *rule) scopePrincipal(t *target) *missInfo {
	if len(r.tenants) > 0 && !slices.Contains(r.tenants, t.req.Tenant) {
		return &missTenantInfo
	}
	if len(r.principals) == 0 {
		if t.anon && r.effect == Allow {
			return &missAnonymousInfo
		}
		return nil
	}
	for _, s := range r.principals {
		if s.match(t) {
			return nil
		}
	}
	return &missPrincipalInfo
}

// scope is scopeTarget and scopePrincipal together.
func (r *rule) scope(t *target) *missInfo {
	if r.actions&t.m.bit == 0 {
		return &missActionInfo
	}
	if !r.scopeTarget(t) {
		return &missResourceInfo
	}
	return r.scopePrincipal(t)
}

// missInfo describes a scope miss; the package-level values keep the hot path free of allocation.
type missInfo struct{ m miss }

var (
	missActionInfo    = missInfo{missAction}
	missResourceInfo  = missInfo{missResource}
	missTenantInfo    = missInfo{missTenant}
	missPrincipalInfo = missInfo{missPrincipal}
	missAnonymousInfo = missInfo{missAnonymous}
)

// whyRule renders the miss for rule r.
func (m *missInfo) whyRule(r *rule, t *target) string {
	switch m.m {
	case missAction:
		return fmt.Sprintf("action %s not in [%s]", t.m.action, r.actions)
	case missResource:
		return fmt.Sprintf("target %s matches none of [%s]", t.str, r.patternList())
	case missTenant:
		return fmt.Sprintf("applies to tenants [%s], not %q", strings.Join(r.tenants, ", "), t.req.Tenant)
	case missPrincipal:
		return fmt.Sprintf("applies to principals [%s], not %s", r.principalList(), principalString(t))
	case missAnonymous:
		return "allow rules without principals apply only to authenticated principals"
	}
	return "matched"
}

func (r *rule) patternList() string {
	s := make([]string, len(r.patterns))
	for i, g := range r.patterns {
		s[i] = g.String()
	}
	return strings.Join(s, ", ")
}

func (r *rule) principalList() string {
	s := make([]string, len(r.principals))
	for i, p := range r.principals {
		s[i] = p.src
	}
	return strings.Join(s, ", ")
}

// conditions returns the index of the first condition that keeps the rule from matching, or -1.
// An unknown attribute fails closed: it fails an allow rule's condition and satisfies a deny
// rule's, so missing context never allows more and never denies less.
func (r *rule) conditions(t *target) int {
	for i, c := range r.conds {
		switch c.eval(t) {
		case no:
			return i
		case unknown:
			if r.effect == Allow {
				return i
			}
		}
	}
	return -1
}

// decide is the decision of a rule that matched.
func (r *rule) decide(t *target) Decision {
	d := Decision{Rule: r.id}
	if r.effect == Deny {
		d.Effect = Deny
		d.Reason = "rule " + r.id + " denies " + string(t.m.action) + " on " + t.str
		if r.description != "" {
			d.Reason += ": " + r.description
		}
		return d
	}
	req := t.req
	if r.risk.hasMax {
		if !req.RiskKnown {
			d.Effect, d.Reason = Deny, fmt.Sprintf("rule %s requires a known risk score (max_risk %g), none is known for %s", r.id, r.risk.max, principalString(t))
			return d
		}
		if req.Risk > r.risk.max {
			d.Effect, d.Reason = Deny, fmt.Sprintf("rule %s allows risk up to %g, %s has %g", r.id, r.risk.max, principalString(t), req.Risk)
			return d
		}
	}
	if r.risk.hasStepUp && (!req.RiskKnown || req.Risk > r.risk.stepUp) {
		risk := "unknown"
		if req.RiskKnown {
			risk = fmt.Sprintf("%g", req.Risk)
		}
		if r.stepUpDone(req) && (r.maxAuthAge == 0 || authWithin(req, r.maxAuthAge)) {
			d.Effect, d.Reason = Allow, fmt.Sprintf("rule %s allows %s on %s (risk %s above step_up_risk %g, recent step-up authentication)", r.id, t.m.action, t.str, risk, r.risk.stepUp)
			d.Approval = r.approval
			return d
		}
		maxAge := r.risk.stepUpMaxAge
		if r.maxAuthAge > 0 {
			maxAge = min(maxAge, r.maxAuthAge)
		}
		d.Effect = StepUp
		d.Reason = fmt.Sprintf("rule %s requires step-up authentication (%s) within %s: risk %s above step_up_risk %g", r.id, strings.Join(r.risk.stepUpAuth, " or "), maxAge, risk, r.risk.stepUp)
		d.StepUp = &StepUpHint{AuthMethods: slices.Clone(r.risk.stepUpAuth), MaxAge: maxAge}
		return d
	}
	if r.maxAuthAge > 0 && !authWithin(req, r.maxAuthAge) {
		d.Effect = StepUp
		d.Reason = fmt.Sprintf("rule %s requires an authentication within %s, %s", r.id, r.maxAuthAge, authAge(req))
		d.StepUp = &StepUpHint{MaxAge: r.maxAuthAge}
		return d
	}
	d.Effect, d.Reason = Allow, "rule "+r.id+" allows "+string(t.m.action)+" on "+t.str
	if r.approval != nil {
		d.Approval = r.approval
		d.Reason += fmt.Sprintf(" once %d of [%s] approve", r.approval.Required, strings.Join(r.approval.Approvers, ", "))
	}
	return d
}

// authWithin: the principal authenticated at most maxAge before the request (a minute of clock
// skew the other way is tolerated).
func authWithin(req *Request, maxAge time.Duration) bool {
	if req.AuthTime.IsZero() || req.Time.IsZero() {
		return false
	}
	age := req.Time.Sub(req.AuthTime)
	return age >= -time.Minute && age <= maxAge
}

// authAge describes how long ago the principal authenticated, for reasons.
func authAge(req *Request) string {
	if req.AuthTime.IsZero() || req.Time.IsZero() {
		return "the principal's authentication time is unknown"
	}
	return "the principal authenticated " + req.Time.Sub(req.AuthTime).Round(time.Second).String() + " ago"
}

// stepUpDone: the principal authenticated with a step-up method recently enough.
func (r *rule) stepUpDone(req *Request) bool {
	return authWithin(req, r.risk.stepUpMaxAge) && anyFold(req.Principal.AuthMethods, r.risk.stepUpAuth)
}

// anyFold reports whether have and want share an element, ignoring case.
func anyFold(have, want []string) bool {
	for _, h := range have {
		for _, w := range want {
			if strings.EqualFold(h, w) {
				return true
			}
		}
	}
	return false
}

// tri is a condition's value: known true, known false, or unknown (attribute missing).
type tri int8

const (
	no tri = iota
	yes
	unknown
)

func (v tri) String() string {
	switch v {
	case yes:
		return "holds"
	case no:
		return "fails"
	}
	return "unknown"
}

func triOf(b bool) tri {
	if b {
		return yes
	}
	return no
}

// cond is one compiled condition.
type cond interface {
	name() string
	eval(t *target) tri
	// why describes the requirement and the request's value: "ip in 192.168.1.0/24, got 10.0.0.5".
	why(t *target) string
}

type ipCond struct {
	prefixes []netip.Prefix
}

func (c *ipCond) name() string { return "ip_range" }

func (c *ipCond) eval(t *target) tri {
	if !t.ip.IsValid() {
		return unknown
	}
	for _, p := range c.prefixes {
		if p.Contains(t.ip) {
			return yes
		}
	}
	return no
}

func (c *ipCond) why(t *target) string {
	ps := make([]string, len(c.prefixes))
	for i, p := range c.prefixes {
		ps[i] = p.String()
	}
	want := strings.Join(ps, ", ")
	if len(ps) > 1 {
		want = "[" + want + "]"
	}
	got := "unknown"
	if t.ip.IsValid() {
		got = t.ip.String()
	}
	return fmt.Sprintf("ip in %s, got %s", want, got)
}

type timeCond struct {
	window     bool // false: days only
	start, end int  // minutes since local midnight, [start, end); start > end wraps midnight
	loc        *time.Location
	days       uint8 // bit per time.Weekday; 0: every day
	src        string
}

func (c *timeCond) name() string { return "time" }

func (c *timeCond) eval(t *target) tri {
	if t.req.Time.IsZero() {
		return unknown
	}
	lt := t.localTime(c.loc)
	m := lt.Hour()*60 + lt.Minute()
	day := lt.Weekday()
	if c.window {
		switch {
		case c.start < c.end:
			if m < c.start || m >= c.end {
				return no
			}
		case c.start > c.end: // wraps midnight: after midnight belongs to the previous day's window
			if m < c.end {
				day = (day + 6) % 7
			} else if m < c.start {
				return no
			}
		default:
			return no // empty window; Check warns
		}
	}
	return triOf(c.days == 0 || c.days&(1<<day) != 0)
}

func (c *timeCond) why(t *target) string {
	got := "unknown"
	if !t.req.Time.IsZero() {
		got = t.localTime(c.loc).Format("Mon 15:04 MST")
	}
	return fmt.Sprintf("time %s, got %s", c.src, got)
}

type listCond struct {
	key    string
	values []string
	fold   bool
	get    func(t *target) (have []string, known bool)
}

func (c *listCond) name() string { return c.key }

func (c *listCond) eval(t *target) tri {
	have, known := c.get(t)
	if !known {
		return unknown
	}
	for _, h := range have {
		for _, v := range c.values {
			if h == v || c.fold && strings.EqualFold(h, v) {
				return yes
			}
		}
	}
	return no
}

func (c *listCond) why(t *target) string {
	have, known := c.get(t)
	got := "unknown"
	if known {
		got = "[" + strings.Join(have, ", ") + "]"
	}
	return fmt.Sprintf("%s any of [%s], got %s", c.key, strings.Join(c.values, ", "), got)
}

// setCond is data_class and auth_methods: the request's set must intersect anyOf (if given),
// include all of allOf, and avoid noneOf. Values compare case-insensitively.
type setCond struct {
	key                  string
	anyOf, allOf, noneOf []string
	get                  func(t *target) []string
}

func (c *setCond) name() string { return c.key }

func (c *setCond) eval(t *target) tri {
	have := c.get(t)
	if len(c.anyOf) > 0 && !anyFold(have, c.anyOf) {
		return no
	}
	for _, w := range c.allOf {
		if !anyFold(have, []string{w}) {
			return no
		}
	}
	return triOf(!anyFold(have, c.noneOf))
}

func (c *setCond) why(t *target) string {
	var req []string
	if len(c.anyOf) > 0 {
		req = append(req, "any of ["+strings.Join(c.anyOf, ", ")+"]")
	}
	if len(c.allOf) > 0 {
		req = append(req, "all of ["+strings.Join(c.allOf, ", ")+"]")
	}
	if len(c.noneOf) > 0 {
		req = append(req, "none of ["+strings.Join(c.noneOf, ", ")+"]")
	}
	return fmt.Sprintf("%s %s, got [%s]", c.key, strings.Join(req, " and "), strings.Join(c.get(t), ", "))
}

func getRoles(t *target) ([]string, bool) { return t.req.Principal.Roles, true }
func getClasses(t *target) []string       { return t.req.DataClasses }
func getAMR(t *target) []string           { return t.req.Principal.AuthMethods }

// deviceCond: the device health must be one of values (case-insensitive); "" is unknown.
type deviceCond struct{ values []string }

func (c *deviceCond) name() string { return "device_health" }

func (c *deviceCond) eval(t *target) tri {
	h := t.req.DeviceHealth
	if h == "" {
		return unknown
	}
	for _, v := range c.values {
		if strings.EqualFold(h, v) {
			return yes
		}
	}
	return no
}

func (c *deviceCond) why(t *target) string {
	got := t.req.DeviceHealth
	if got == "" {
		got = "unknown"
	}
	return fmt.Sprintf("device_health any of [%s], got %s", strings.Join(c.values, ", "), got)
}
