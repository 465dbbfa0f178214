package mcp

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth"
	"github.com/mcpwatch/mcpwatch/ingest/mcpwire"
	"github.com/mcpwatch/mcpwatch/policy"
)

// Decider decides a request by policy; [*policy.Store] (hot-reloaded) and [*policy.Policy] are
// Deciders.
type Decider interface {
	Evaluate(policy.Request) policy.Decision
}

// RiskLookup gives the live threat score (0–100) of a principal, false when none is known;
// [*scores.Store] is one.
//
// [*scores.Store]: github.com/mcpwatch/mcpwatch/internal/scores.Store
type RiskLookup interface {
	Risk(tenant, subject string) (float64, bool)
}

// AttrPolicyEffect is the attribute of request events that says what the policy decided: allow,
// deny, step_up, ungoverned (a method the policy does not govern) or not_evaluated.
const AttrPolicyEffect = attrPolicyEffect

// attrPolicyEffect is the attribute key of the policy decision on request events: allow, deny,
// step_up, or ungoverned (the gateway decides).
const attrPolicyEffect = "policy.effect"

// policyRequest is what the policy decides a client message on. It reads the message as the
// client sent it (the resource URI and prompt name unmasked, as rules' patterns expect), never
// the event, which records them masked. Only what the gateway can vouch for is filled in: the
// source address is the TCP peer, or the client a configured trusted proxy forwarded (see
// [Config.TrustedProxies]), device health only from the configured trusted header, risk only
// from the scores store.
func (g *Gateway) policyRequest(c *call, m *mcpwire.Message, e *event.Event) policy.Request {
	req := policy.Request{
		Tenant: g.cfg.Tenant, Principal: c.principal, Time: time.Now(), AuthTime: c.authTime,
		Method: m.Method, Server: g.cfg.ServerName, Tool: m.Tool, ResourceURI: m.ResourceURI, Prompt: m.Prompt,
		DataClasses: e.DataClasses,
	}
	if ip, err := netip.ParseAddr(c.net.SrcIP); err == nil {
		req.SourceIP = ip
	}
	if h := g.cfg.DeviceHealthHeader; h != "" {
		req.DeviceHealth = strings.ToLower(strings.TrimSpace(mcpwire.Clip(c.r.Header.Get(h), 64)))
	}
	if g.cfg.Scores != nil {
		req.Risk, req.RiskKnown = g.cfg.Scores.Risk(g.cfg.Tenant, event.PrincipalID(c.principal))
	}
	return req
}

// enforce decides every message a client sent by policy, after authentication, revocations and
// scopes. Methods the policy does not govern (initialize, ping, notifications, ...) pass, marked
// "ungoverned"; a governed one passes only if allowed, and its event names the allowing rule. One
// refusal refuses the whole body: deny is 403, step-up a 401 insufficient_user_authentication
// challenge (RFC 9470) when the authenticator can issue one, else 403 "step-up required". It
// returns false, having answered, on refusal.
func (g *Gateway) enforce(w http.ResponseWriter, c *call, events []*event.Event, msgs []mcpwire.Message, batch bool) bool {
	if g.cfg.Policy == nil {
		return true
	}
	for i := range msgs {
		m, e := &msgs[i], events[i]
		if m.Kind == mcpwire.KindResponse {
			continue
		}
		if _, governed := policy.ActionOf(m.Method); !governed {
			mcpwire.SetAttr(e, attrPolicyEffect, "ungoverned")
			continue
		}
		d := g.cfg.Policy.Evaluate(g.policyRequest(c, m, e))
		mcpwire.SetAttr(e, attrPolicyEffect, string(d.Effect))
		e.Outcome.PolicyRule = d.Rule
		if d.Effect == policy.Allow && d.Approval != nil && m.Method == "tools/call" {
			if !g.hold(w, c, events, msgs, batch, i, d) {
				markNotEvaluated(events, e)
				return false
			}
			continue
		}
		if d.Effect == policy.Allow {
			continue
		}
		e.Outcome.Reason = d.Reason
		markNotEvaluated(events, e)
		if d.Effect == policy.StepUp {
			g.stepUp(w, c, events, msgs, batch, d)
			return false
		}
		g.refuse(w, c, events, msgs, batch, http.StatusForbidden, denyPolicy, CodeDenied,
			"denied by mcpwatch policy (rule "+d.Rule+")", d.Rule)
		return false
	}
	return true
}

// markNotEvaluated marks the events after a refused one, which the policy never judged.
func markNotEvaluated(events []*event.Event, refused *event.Event) {
	for _, o := range events {
		if o != refused && o.Attributes[attrPolicyEffect] == "" {
			mcpwire.SetAttr(o, attrPolicyEffect, "not_evaluated")
		}
	}
}

func (g *Gateway) stepUp(w http.ResponseWriter, c *call, events []*event.Event, msgs []mcpwire.Message, batch bool, d policy.Decision) {
	status, text := http.StatusForbidden, "step-up required"
	if g.chal != nil {
		// RFC 9470: insufficient_user_authentication, with max_age so that the client asks the
		// authorization server for a fresh login (max_age, prompt=login).
		var hint policy.StepUpHint
		if d.StepUp != nil {
			hint = *d.StepUp
		}
		amr := slices.Clone(hint.AuthMethods)
		status, _ = g.chal.Challenge(w, &oauth.MFAError{AnyAMR: amr, MaxAge: hint.MaxAge})
		text = "step-up authentication required"
		if len(amr) > 0 {
			text += " (" + strings.Join(amr, " or ") + ")"
		}
		if hint.MaxAge > 0 {
			text += " within " + hint.MaxAge.String()
		}
	}
	g.refuse(w, c, events, msgs, batch, status, denyStepUp, CodeDenied, text+" by mcpwatch policy (rule "+d.Rule+")", d.Rule)
}
