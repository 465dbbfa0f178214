package mcp

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth"
	"github.com/mcpwatch/mcpwatch/internal/mask"
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

// MaxArgumentsMasked bounds [event.MCP.ArgumentsMasked]. Arguments are cut after masking, never
// before, so that no finding is split by the cut and escapes its detector.
const MaxArgumentsMasked = 2 << 10

// AttrPolicyEffect is the attribute of request events that says what the policy decided: allow,
// deny, step_up, ungoverned (a method the policy does not govern) or not_evaluated.
const AttrPolicyEffect = attrPolicyEffect

// Attribute keys of the policy decision on request events.
const (
	attrPolicyEffect = "policy.effect" // allow, deny, step_up, or ungoverned (the gateway decides)
	attrArgsCut      = "mcp.arguments_truncated"
)

// Data classes masking attaches to a request whose arguments held what it found.
const (
	ClassPII    = "pii"
	ClassSecret = "secret"
)

var secretKinds = map[string]bool{
	mask.KindAPIKey: true, mask.KindBearer: true, mask.KindPrivateKey: true, mask.KindAWSAccessKey: true,
	mask.KindAWSSecret: true, mask.KindJWT: true, mask.KindField: true,
}

// classOf is the data class of a masking finding kind, "" for none (truncation).
func classOf(kind string) string {
	switch {
	case kind == mask.KindTruncated:
		return ""
	case secretKinds[kind]:
		return ClassSecret
	}
	return ClassPII
}

// newMasker builds the gateway's masker; nil when masking is off.
func newMasker(cfg Config) (*mask.Masker, error) {
	if cfg.NoMasking {
		return nil, nil
	}
	var mc mask.Config
	if cfg.Mask != nil {
		mc = *cfg.Mask
	}
	return mask.New(mc)
}

// classify fills in the data classes and masked arguments of a client message's event: the
// configured classes of its target, then the masking of its arguments (tools/call, prompts/get),
// whose finding counts go to [event.Event.PII] and whose kinds add the "pii" or "secret" class.
// With masking off the event carries no arguments at all.
func (g *Gateway) classify(e *event.Event, m *message) {
	if m.kind == kindResponse {
		return
	}
	var classes []string
	if len(g.cfg.DataClasses) > 0 {
		if t := targetName(m); t != "" {
			classes = append(classes, g.cfg.DataClasses[t]...)
		}
	}
	if g.masker != nil && len(m.args) > 0 && string(m.args) != "null" {
		out, counts, err := g.masker.JSON(m.args)
		if err != nil { // cannot happen: the message parsed; fail closed all the same
			var s string
			s, counts = g.masker.String(string(m.args))
			out = []byte(s)
		}
		s := string(out)
		if len(s) > MaxArgumentsMasked {
			s = cutUTF8(s, MaxArgumentsMasked)
			setAttr(e, attrArgsCut, "true")
		}
		e.MCP.ArgumentsMasked = s
		if len(counts) > 0 {
			e.PII = counts
			for k := range counts {
				if c := classOf(k); c != "" {
					classes = append(classes, c)
				}
			}
		}
	}
	if len(classes) > 0 {
		slices.Sort(classes)
		e.DataClasses = slices.Compact(classes)
	}
}

// targetName is the key of [Config.DataClasses] for a message, "" for methods without a target.
func targetName(m *message) string {
	switch {
	case m.tool != "":
		return "tool:" + m.tool
	case m.resourceURI != "":
		return "resource:" + m.resourceURI
	case m.prompt != "":
		return "prompt:" + m.prompt
	}
	return ""
}

func cutUTF8(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func setAttr(e *event.Event, k, v string) {
	if e.Attributes == nil {
		e.Attributes = map[string]string{}
	}
	e.Attributes[k] = v
}

// maskReason masks an audit reason, which may quote client input (a resource URI, an id).
func (g *Gateway) maskReason(e *event.Event) {
	if g.masker != nil && e.Outcome.Reason != "" {
		e.Outcome.Reason, _ = g.masker.String(e.Outcome.Reason)
	}
}

// policyRequest is what the policy decides a client message on. Only what the gateway can vouch
// for is filled in: the source address is the TCP peer (X-Forwarded-For is not trusted), device
// health only from the configured trusted header, risk only from the scores store.
func (g *Gateway) policyRequest(c *call, m *message, e *event.Event) policy.Request {
	req := policy.Request{
		Tenant: g.cfg.Tenant, Principal: c.principal, Time: time.Now(), AuthTime: c.authTime,
		Method: m.method, Server: g.cfg.ServerName, Tool: m.tool, ResourceURI: m.resourceURI, Prompt: m.prompt,
		DataClasses: e.DataClasses,
	}
	if ip, err := netip.ParseAddr(c.net.SrcIP); err == nil {
		req.SourceIP = ip
	}
	if h := g.cfg.DeviceHealthHeader; h != "" {
		req.DeviceHealth = strings.ToLower(strings.TrimSpace(clip(c.r.Header.Get(h), 64)))
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
func (g *Gateway) enforce(w http.ResponseWriter, c *call, events []*event.Event, msgs []message, batch bool) bool {
	if g.cfg.Policy == nil {
		return true
	}
	for i := range msgs {
		m, e := &msgs[i], events[i]
		if m.kind == kindResponse {
			continue
		}
		if _, governed := policy.ActionOf(m.method); !governed {
			setAttr(e, attrPolicyEffect, "ungoverned")
			continue
		}
		d := g.cfg.Policy.Evaluate(g.policyRequest(c, m, e))
		setAttr(e, attrPolicyEffect, string(d.Effect))
		e.Outcome.PolicyRule = d.Rule
		if d.Effect == policy.Allow {
			continue
		}
		e.Outcome.Reason = d.Reason
		for _, o := range events {
			if o != e && o.Attributes[attrPolicyEffect] == "" {
				setAttr(o, attrPolicyEffect, "not_evaluated")
			}
		}
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

func (g *Gateway) stepUp(w http.ResponseWriter, c *call, events []*event.Event, msgs []message, batch bool, d policy.Decision) {
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
