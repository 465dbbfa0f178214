package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mcpwatch/mcpwatch/event"
)

// Effect is what a rule does when it matches, and what a [Decision] says.
type Effect string

const (
	Allow  Effect = "allow"
	Deny   Effect = "deny"
	StepUp Effect = "step_up" // allowed once the principal re-authenticates (see [StepUpHint])
)

// DefaultDenyRule is [Decision.Rule] when no rule decided.
const DefaultDenyRule = "default-deny"

// Action is the verb an MCP method maps to; rules name actions, not methods.
type Action string

const (
	ActionCall Action = "call" // tools/call
	ActionRead Action = "read" // resources/read, resources/subscribe, resources/unsubscribe
	ActionGet  Action = "get"  // prompts/get
	ActionList Action = "list" // tools/list, resources/list, resources/templates/list, prompts/list
)

type actionSet uint8

const (
	bitCall actionSet = 1 << iota
	bitRead
	bitGet
	bitList
	allActions = bitCall | bitRead | bitGet | bitList
)

var actionBits = map[Action]actionSet{ActionCall: bitCall, ActionRead: bitRead, ActionGet: bitGet, ActionList: bitList}

func (s actionSet) String() string {
	if s == allActions {
		return "*"
	}
	var out []string
	for _, a := range []Action{ActionCall, ActionRead, ActionGet, ActionList} {
		if s&actionBits[a] != 0 {
			out = append(out, string(a))
		}
	}
	return strings.Join(out, ",")
}

// targetKind is the first part of a target string.
type targetKind uint8

const (
	kindTool targetKind = iota + 1
	kindResource
	kindPrompt
)

var kindPrefix = [...]string{kindTool: "tool:", kindResource: "resource:", kindPrompt: "prompt:"}

type methodInfo struct {
	action Action
	bit    actionSet
	kind   targetKind
	list   bool // the target is the server's catalogue, "<kind>:<server>/"
}

var methods = map[string]methodInfo{
	"tools/call":               {ActionCall, bitCall, kindTool, false},
	"tools/list":               {ActionList, bitList, kindTool, true},
	"resources/read":           {ActionRead, bitRead, kindResource, false},
	"resources/subscribe":      {ActionRead, bitRead, kindResource, false},
	"resources/unsubscribe":    {ActionRead, bitRead, kindResource, false},
	"resources/list":           {ActionList, bitList, kindResource, true},
	"resources/templates/list": {ActionList, bitList, kindResource, true},
	"prompts/get":              {ActionGet, bitGet, kindPrompt, false},
	"prompts/list":             {ActionList, bitList, kindPrompt, true},
}

// ActionOf returns the action an MCP method maps to, and false for methods the policy does not
// govern (initialize, ping, notifications, completion/complete, ...): the gateway decides those
// itself; [Policy.Evaluate] denies them.
func ActionOf(method string) (Action, bool) {
	m, ok := methods[method]
	return m.action, ok
}

// Request is what a policy decides on: one MCP request with its context.
type Request struct {
	Tenant    string
	Principal event.Principal
	// Groups of the principal, from a groups claim if the gateway maps one; matched by "group:".
	Groups []string
	// DeviceHealth as attested for the client device, e.g. "compliant"; "" is unknown.
	DeviceHealth string
	// SourceIP of the client; the zero Addr is unknown. IPv4-mapped IPv6 is unmapped before matching.
	SourceIP netip.Addr
	// Time of the request; the zero Time is unknown.
	Time time.Time
	// AuthTime is when the principal last authenticated (the auth_time claim); zero is unknown.
	// A step-up is satisfied only by a recent enough authentication.
	AuthTime time.Time

	Method      string // MCP method, e.g. "tools/call"
	Server      string // upstream MCP server name from gateway config
	Tool        string // tools/call
	ResourceURI string // resources/read, subscribe, unsubscribe
	Prompt      string // prompts/get

	// DataClasses are labels of the data involved ("pii", "finance"); compared case-insensitively.
	// An empty list means no class was attached: policies cannot tell it from unclassified data.
	DataClasses []string
	// Risk is the principal's current threat score (0–100) when RiskKnown.
	Risk      float64
	RiskKnown bool
}

// FromEvent builds a Request from an audit event, for explaining past decisions. Device health,
// groups, auth time and risk are not in events and stay unknown.
func FromEvent(e *event.Event) Request {
	r := Request{
		Tenant:      e.Tenant,
		Principal:   e.Principal,
		Time:        e.Time,
		Server:      e.Target.Server,
		DataClasses: e.DataClasses,
	}
	if ip, err := netip.ParseAddr(e.Network.SrcIP); err == nil {
		r.SourceIP = ip
	}
	if e.MCP != nil {
		r.Method, r.Tool, r.ResourceURI, r.Prompt = e.MCP.Method, e.MCP.Tool, e.MCP.ResourceURI, e.MCP.Prompt
	}
	return r
}

// Decision is the answer for one request.
type Decision struct {
	Effect Effect `json:"effect"`
	// Rule is the id of the deciding rule, or [DefaultDenyRule].
	Rule string `json:"rule"`
	// Reason is for humans and the audit log, e.g.
	// "rule finance-read requires ip in 192.168.1.0/24, got 10.0.0.5".
	Reason string `json:"reason"`
	// StepUp says how to re-authenticate when Effect is [StepUp].
	StepUp *StepUpHint `json:"step_up,omitempty"`
	// Approval, on an allow, says the call may proceed only once approved: the gateway holds it
	// until Required of Approvers have signed (shared by every decision of the rule: read only).
	Approval *ApprovalHint `json:"approval,omitempty"`
}

// ApprovalHint is a rule's `approval:` terms: M (Required) of N (Approvers, key ids of the
// approvals keyring) must approve within Timeout; undecided, OnTimeout ("deny" unless set to
// "approve") applies.
type ApprovalHint struct {
	Approvers []string      `json:"approvers"`
	Required  int           `json:"required"`
	Timeout   time.Duration `json:"timeout"`
	OnTimeout string        `json:"on_timeout"`
}

// StepUpHint tells the gateway what a step-up must achieve, for its challenge (RFC 9470:
// insufficient_user_authentication with acr_values / max_age; or 403 insufficient_scope).
type StepUpHint struct {
	// AuthMethods: the new authentication's amr must include one of these.
	AuthMethods []string `json:"auth_methods"`
	// MaxAge: the authentication must be at most this old.
	MaxAge time.Duration `json:"max_age"`
}

// Allowed reports whether the request may proceed now: allowed, and not held for approval.
func (d Decision) Allowed() bool { return d.Effect == Allow && d.Approval == nil }

// Outcome converts the decision to the audit event's outcome (step-up is a denial until done).
func (d Decision) Outcome() event.Outcome {
	r := event.ResultDenied
	if d.Effect == Allow {
		r = event.ResultAllowed
	}
	return event.Outcome{Result: r, PolicyRule: d.Rule, Reason: d.Reason}
}

// Policy is a compiled, immutable policy; safe for concurrent use.
type Policy struct {
	name  string
	rules []*rule
	deny  ruleIndex // deny rules
	allow ruleIndex // allow rules
}

// ruleIndex finds the rules that can match a target without trying them all. A pattern whose
// literal prefix (the text before its first '*') contains the target's key (see [targetKey])
// can only match targets with that key; a rule whose patterns all have keys is filed under each
// of them, any other rule is "wild" and always a candidate. Candidates come out in file order.
type ruleIndex struct {
	byKey map[string][]*rule
	wild  []*rule
}

// targetKey is s up to and including its first '/' that follows neither ':' nor '/' — the
// server ("tool:sales-db/") or the URI authority ("resource:s3://finance-data/"). It depends
// only on the bytes up to that '/', so a pattern's literal prefix and every target the pattern
// matches share it.
func targetKey(s string) (string, bool) {
	for i := 1; i < len(s); i++ {
		if s[i] == '/' && s[i-1] != ':' && s[i-1] != '/' {
			return s[:i+1], true
		}
	}
	return "", false
}

func newRuleIndex(rules []*rule) ruleIndex {
	x := ruleIndex{byKey: map[string][]*rule{}}
	for _, r := range rules {
		keys := map[string]bool{}
		for _, g := range r.patterns {
			lit := g.Prefix()
			k, ok := targetKey(lit)
			if !ok {
				keys = nil
				break
			}
			keys[k] = true
		}
		if keys == nil {
			x.wild = append(x.wild, r)
			continue
		}
		for k := range keys {
			x.byKey[k] = append(x.byKey[k], r)
		}
	}
	return x
}

// candidates merges the target's bucket with the wild rules, in file order.
type candidates struct{ a, b []*rule }

func (x *ruleIndex) candidates(key string, hasKey bool) candidates {
	c := candidates{b: x.wild}
	if hasKey {
		c.a = x.byKey[key]
	}
	return c
}

func (c *candidates) next() *rule {
	var r *rule
	switch {
	case len(c.a) == 0 && len(c.b) == 0:
		return nil
	case len(c.b) == 0 || len(c.a) > 0 && c.a[0].order < c.b[0].order:
		r, c.a = c.a[0], c.a[1:]
	default:
		r, c.b = c.b[0], c.b[1:]
	}
	return r
}

// Name is the file name the policy was loaded from.
func (p *Policy) Name() string { return p.name }

// Len is the number of rules.
func (p *Policy) Len() int { return len(p.rules) }

// target is a request reduced to what rules match on.
type target struct {
	req    *Request
	m      methodInfo
	str    string // "tool:sales-db/db_query"
	ip     netip.Addr
	anon   bool
	locLoc *time.Location // cache of the last local time computed
	locT   time.Time
}

func (t *target) localTime(loc *time.Location) time.Time {
	if t.locLoc != loc {
		t.locLoc, t.locT = loc, t.req.Time.In(loc)
	}
	return t.locT
}

// maxTargetLen bounds target strings; longer requests are refused.
const maxTargetLen = 4096

// newTarget validates the request's target and builds its string. A target the policy cannot
// judge safely is refused: an unknown method, a missing name, or a name or URI that upstream
// could resolve to something other than what the patterns see (dot segments, encoded '.', '/'
// or '\', backslashes, control bytes, invalid UTF-8).
func newTarget(req *Request) (target, string) {
	m, ok := methods[req.Method]
	if !ok {
		return target{}, fmt.Sprintf("method %q is not governed by policy", req.Method)
	}
	t := target{req: req, m: m, ip: req.SourceIP.Unmap().WithZone("")}
	t.anon = req.Principal.Subject == "" && req.Principal.ClientID == ""
	var name string
	switch {
	case m.list && m.kind == kindResource:
		// resources/list has no URI; its catalogue is the server's, like tools and prompts.
	case m.kind == kindTool:
		name = req.Tool
	case m.kind == kindResource:
		name = req.ResourceURI
	case m.kind == kindPrompt:
		name = req.Prompt
	}
	if m.list || m.kind != kindResource {
		if req.Server == "" || strings.ContainsAny(req.Server, "/:") {
			return target{}, fmt.Sprintf("invalid server name %q", req.Server)
		}
	}
	if !m.list && name == "" {
		return target{}, fmt.Sprintf("%s names no %s", req.Method, strings.TrimSuffix(kindPrefix[m.kind], ":"))
	}
	switch {
	case m.list:
		t.str = kindPrefix[m.kind] + req.Server + "/"
	case m.kind == kindResource:
		t.str = kindPrefix[m.kind] + name
	default:
		t.str = kindPrefix[m.kind] + req.Server + "/" + name
	}
	if why := uncanonical(t.str); why != "" {
		return target{}, fmt.Sprintf("target %q refused: %s", truncate(t.str, 200), why)
	}
	return t, ""
}

// uncanonical says why s is not a target patterns can judge, or "".
func uncanonical(s string) string {
	if len(s) > maxTargetLen {
		return "too long"
	}
	if !utf8.ValidString(s) {
		return "invalid UTF-8"
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c == 0x7f:
			return "control character"
		case c == '\\':
			return "backslash"
		case c == '%' && i+2 < len(s):
			switch strings.ToLower(s[i+1 : i+3]) {
			case "2e", "2f", "5c":
				return "percent-encoded '.', '/' or '\\'"
			}
		}
	}
	for seg := range strings.SplitSeq(s, "/") {
		if seg == "." || seg == ".." {
			return "dot segment"
		}
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Evaluate decides a request. Order: a request whose target cannot be judged is denied; then the
// first deny rule (file order) whose scope and conditions match denies; then the first allow rule
// whose scope and conditions match decides — allow, or step_up / deny by its risk thresholds;
// otherwise the default deny. Evaluate never panics; it allocates only the target and reason text
// (and the request copy), about 4 small allocations.
func (p *Policy) Evaluate(req Request) Decision {
	t, bad := newTarget(&req)
	if bad != "" {
		return Decision{Effect: Deny, Rule: DefaultDenyRule, Reason: bad}
	}
	key, hasKey := targetKey(t.str)
	for c := p.deny.candidates(key, hasKey); ; {
		r := c.next()
		if r == nil {
			break
		}
		if r.scope(&t) == nil && r.conditions(&t) < 0 {
			return r.decide(&t)
		}
	}
	var near *rule // first allow rule whose action and resource matched: the default deny explains it
	for c := p.allow.candidates(key, hasKey); ; {
		r := c.next()
		if r == nil {
			break
		}
		if !r.scopeTarget(&t) {
			continue
		}
		if near == nil {
			near = r
		}
		if r.scopePrincipal(&t) != nil {
			continue
		}
		if r.conditions(&t) < 0 {
			return r.decide(&t)
		}
	}
	return p.defaultDeny(&t, near)
}

func (p *Policy) defaultDeny(t *target, near *rule) Decision {
	d := Decision{Effect: Deny, Rule: DefaultDenyRule}
	if near == nil {
		d.Reason = fmt.Sprintf("no rule allows %s on %s", t.m.action, t.str)
		return d
	}
	if f := near.scopePrincipal(t); f != nil {
		d.Reason = fmt.Sprintf("no rule allows %s on %s for %s (rule %s %s)", t.m.action, t.str, principalString(t), near.id, f.whyRule(near, t))
		return d
	}
	i := near.conditions(t)
	if i < 0 {
		// Unreachable: near would have decided. Keep the plain reason rather than panic.
		d.Reason = fmt.Sprintf("no rule allows %s on %s", t.m.action, t.str)
		return d
	}
	d.Reason = fmt.Sprintf("rule %s requires %s", near.id, near.conds[i].why(t))
	return d
}

func principalString(t *target) string {
	p := t.req.Principal
	switch {
	case p.Subject != "":
		return "sub " + p.Subject
	case p.ClientID != "":
		return "client " + p.ClientID
	}
	return "anonymous principal"
}
