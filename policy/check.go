package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mcpwatch/mcpwatch/internal/glob"
)

// Warning is a finding of [Check]: the policy loads and works, but probably not as meant.
type Warning struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Rule string `json:"rule,omitempty"`
	// Code is stable, for filtering: see [Check].
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (w Warning) String() string {
	rule := ""
	if w.Rule != "" {
		rule = fmt.Sprintf("rule %q: ", w.Rule)
	}
	return fmt.Sprintf("%s:%d: %s%s (%s)", w.File, w.Line, rule, w.Message, w.Code)
}

// SensitiveClasses are the data classes for which Check wants allow rules to carry conditions.
var SensitiveClasses = []string{"pii", "phi", "pci", "finance", "secret", "credentials"}

// Check lints a loaded policy. Codes:
//
//	no-allow       the policy has no allow rule: every request is denied
//	shadowed       a rule can never decide: an unconditional rule with the same tenants,
//	               principals, actions and patterns (compared as written, not by glob
//	               containment) is a deny (deny rules win, wherever they are in the file), or
//	               has the same effect and comes earlier
//	never-matches  a condition can never hold: an empty time window ("09:00-09:00"), or a
//	               data_class / auth_methods whose wanted set is all excluded
//	step-up-unreachable  step_up_risk >= max_risk: the rule denies before it steps up
//	sensitive-unconditional  an allow rule for a sensitive data class (see [SensitiveClasses])
//	               has no ip_range, time, device_health, auth_methods or risk condition
//	allow-all      an allow rule matches every target for every action and principal with no
//	               condition: the policy is allow-by-default in disguise
func Check(p *Policy) []Warning {
	var ws []Warning
	warn := func(r *rule, code, format string, args ...any) {
		w := Warning{File: p.name, Code: code, Message: fmt.Sprintf(format, args...)}
		if r != nil {
			w.Line, w.Rule = r.line, r.id
		}
		ws = append(ws, w)
	}
	if len(p.allow.wild) == 0 && len(p.allow.byKey) == 0 {
		warn(nil, "no-allow", "no allow rule: every request is denied")
	}
	for i, r := range p.rules {
		for j, other := range p.rules {
			if j == i || len(other.conds) > 0 || other.risk.hasMax || other.risk.hasStepUp || !sameScope(other, r) {
				continue
			}
			var how string
			switch {
			case other.effect == Deny && r.effect == Allow:
				how = "denies, and deny rules win"
			case other.effect == r.effect && j < i:
				how = "comes first"
			default:
				continue
			}
			warn(r, "shadowed", "never decides: rule %q (line %d) has the same scope, no conditions, and %s", other.id, other.line, how)
			break
		}
		for _, c := range r.conds {
			switch c := c.(type) {
			case *timeCond:
				if c.window && c.start == c.end {
					warn(r, "never-matches", "time window %s is empty (start equals end)", c.src)
				}
			case *setCond:
				if len(c.anyOf) > 0 && allIn(c.anyOf, c.noneOf) {
					warn(r, "never-matches", "%s: every any_of value is also in none_of", c.key)
				}
				if len(c.allOf) > 0 && anyFold(c.allOf, c.noneOf) {
					warn(r, "never-matches", "%s: an all_of value is also in none_of", c.key)
				}
			}
		}
		if r.risk.hasMax && r.risk.hasStepUp && r.risk.stepUp >= r.risk.max {
			warn(r, "step-up-unreachable", "step_up_risk %g >= max_risk %g: the rule denies before it would step up", r.risk.stepUp, r.risk.max)
		}
		if r.effect != Allow {
			continue
		}
		if sens := sensitiveAllowed(r); sens != "" && !guarded(r) {
			warn(r, "sensitive-unconditional", "allows data class %s with no ip_range, time, device_health, auth_methods or risk condition", sens)
		}
		if r.actions == allActions && len(r.principals) == 0 && len(r.tenants) == 0 && len(r.conds) == 0 && !r.risk.hasMax && !r.risk.hasStepUp && matchesAll(r) {
			warn(r, "allow-all", "allows every action on every target to every principal with no condition: this is allow-by-default")
		}
	}
	return ws
}

func sameScope(a, b *rule) bool {
	return a.actions == b.actions &&
		slices.Equal(sorted(a.tenants), sorted(b.tenants)) &&
		slices.Equal(sorted(selSources(a.principals)), sorted(selSources(b.principals))) &&
		slices.Equal(sorted(globSources(a.patterns)), sorted(globSources(b.patterns)))
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

func selSources(s []principalSel) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = x.src
	}
	return out
}

func globSources(g []*glob.Pattern) []string {
	out := make([]string, len(g))
	for i, x := range g {
		out[i] = x.String()
	}
	return out
}

func allIn(want, excluded []string) bool {
	for _, w := range want {
		if !anyFold([]string{w}, excluded) {
			return false
		}
	}
	return true
}

// sensitiveAllowed returns the first sensitive class an allow rule explicitly allows, or "".
func sensitiveAllowed(r *rule) string {
	for _, c := range r.conds {
		if c, ok := c.(*setCond); ok && c.key == "data_class" {
			for _, v := range append(slices.Clone(c.anyOf), c.allOf...) {
				if anyFold([]string{v}, SensitiveClasses) && !anyFold([]string{v}, c.noneOf) {
					return strings.ToLower(v)
				}
			}
		}
	}
	return ""
}

// guarded: the rule has a contextual condition beyond who and what.
func guarded(r *rule) bool {
	if r.risk.hasMax || r.risk.hasStepUp {
		return true
	}
	for _, c := range r.conds {
		switch c := c.(type) {
		case *ipCond, *timeCond, *deviceCond:
			return true
		case *setCond:
			if c.key == "auth_methods" {
				return true
			}
		}
	}
	return false
}

// matchesAll: some pattern is "**", or the patterns cover every kind with "<kind>:**".
func matchesAll(r *rule) bool {
	kinds := map[string]bool{}
	for _, g := range r.patterns {
		if g.All() {
			return true
		}
		if g.Subtree() {
			kinds[g.Prefix()] = true
		}
	}
	return kinds["tool:"] && kinds["resource:"] && kinds["prompt:"]
}
