package policy

import (
	"fmt"
	"strings"
)

// Explanation is [Policy.Explain]'s account of a decision: every rule, in file order, with why it
// matched or the first check that kept it from matching.
type Explanation struct {
	Decision Decision     `json:"decision"`
	Action   Action       `json:"action,omitempty"`
	Target   string       `json:"target,omitempty"`
	Rules    []RuleResult `json:"rules"`
}

// RuleResult is one rule's part in an [Explanation].
type RuleResult struct {
	ID     string `json:"id"`
	Effect Effect `json:"effect"`
	Line   int    `json:"line"`
	// Matched: the rule's scope and all its conditions held (for an allow rule its risk
	// thresholds then gave the decision).
	Matched bool `json:"matched"`
	// Decisive: this rule made the decision.
	Decisive bool `json:"decisive"`
	// Failed names the first check that failed: "action", "resource", "tenant", "principal", or
	// a condition key such as "ip_range"; "" when Matched.
	Failed string `json:"failed,omitempty"`
	// Detail explains Failed, or what the rule decided.
	Detail string `json:"detail"`
}

var missName = [...]string{missAction: "action", missResource: "resource", missTenant: "tenant", missPrincipal: "principal", missAnonymous: "principal"}

// Explain evaluates every rule against req (not stopping at the first match) and reports each;
// its Decision is always the same as [Policy.Evaluate]'s.
func (p *Policy) Explain(req Request) Explanation {
	e := Explanation{Decision: p.Evaluate(req)}
	t, bad := newTarget(&req)
	if bad != "" {
		for _, r := range p.rules {
			e.Rules = append(e.Rules, RuleResult{ID: r.id, Effect: r.effect, Line: r.line, Failed: "request", Detail: bad})
		}
		return e
	}
	e.Action, e.Target = t.m.action, t.str
	for _, r := range p.rules {
		rr := RuleResult{ID: r.id, Effect: r.effect, Line: r.line}
		if m := r.scope(&t); m != nil {
			rr.Failed, rr.Detail = missName[m.m], m.whyRule(r, &t)
		} else if i := r.conditions(&t); i >= 0 {
			c := r.conds[i]
			rr.Failed = c.name()
			rr.Detail = fmt.Sprintf("%s %s: requires %s", c.name(), c.eval(&t), c.why(&t))
		} else {
			rr.Matched = true
			d := r.decide(&t)
			rr.Detail = fmt.Sprintf("matched: %s", d.Effect)
			if d.Effect != Allow || r.effect == Deny {
				rr.Detail += " (" + d.Reason + ")"
			}
		}
		rr.Decisive = rr.Matched && r.id == e.Decision.Rule
		e.Rules = append(e.Rules, rr)
	}
	return e
}

// String renders the explanation for a terminal: the decision, then one line per rule.
func (e Explanation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "decision: %s by %s\nreason:   %s\n", e.Decision.Effect, e.Decision.Rule, e.Decision.Reason)
	if e.Target != "" {
		fmt.Fprintf(&b, "request:  %s %s\n", e.Action, e.Target)
	}
	if len(e.Rules) > 0 {
		b.WriteString("rules (deny rules are checked before allow rules):\n")
	}
	for _, r := range e.Rules {
		mark := " "
		if r.Decisive {
			mark = "*"
		}
		fmt.Fprintf(&b, "%s %-5s %-24s line %-4d %s\n", mark, r.Effect, r.ID, r.Line, r.Detail)
	}
	return b.String()
}
