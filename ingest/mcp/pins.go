package mcp

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcpwire"
	"github.com/mcpwatch/mcpwatch/internal/pins"
)

// Tool integrity: with [Config.ToolPins] the gateway hashes every tool definition of every
// tools/list result it relays ([pins.Hash]) and checks it against the pin file. A definition that
// differs from its pin (or, in strict mode, a tool without an approved pin) is audited once per
// distinct definition as a high-severity event, and calls to the tool are refused (403, rule
// "pin:<server>/<tool>") until `mcpwatch tools approve` pins the new hash. A blocked tool is also
// removed from the tools/list results the client gets (toolfilter.go), unless
// [Config.ShowDeniedTools].

// Attribute keys of tool-pinning events.
const (
	attrToolChanged    = "mcp.tool.changed"    // the tool whose definition differs from its pin
	attrToolUnapproved = "mcp.tool.unapproved" // strict mode: the tool has no approved pin
	attrPinnedSHA256   = "mcp.tool.pinned_sha256"
	attrSeenSHA256     = "mcp.tool.seen_sha256"
	attrPinning        = "mcp.tool.pinning" // the pinning mode
)

// SeverityToolChanged is the CEF severity of a changed or unapproved tool definition: a tool
// rewritten under a client that trusted it is how tool poisoning ("rug pull") attacks work.
const SeverityToolChanged = 8

// toolHashes returns the [pins.Hash] of each tool in a tools/list result, by name. A name listed
// twice gets one hash over both definitions, which matches no pin. Tools without a readable name
// cannot be called by name either and are left out.
func toolHashes(result json.RawMessage) map[string]string {
	if len(result) == 0 || result[0] != '{' {
		return nil
	}
	f, err := mcpwire.Members(result, "tools")
	if err != nil || f[0] == nil {
		return nil
	}
	var defs []json.RawMessage
	if json.Unmarshal(f[0], &defs) != nil {
		return nil
	}
	out := make(map[string]string, len(defs))
	for _, def := range defs {
		if len(def) == 0 || def[0] != '{' {
			continue
		}
		nf, err := mcpwire.Members(def, "name")
		if err != nil {
			continue
		}
		name, ok := mcpwire.StringValue(nf[0])
		if !ok || name == "" {
			continue
		}
		h, herr := pins.Hash(def)
		if herr != nil {
			continue
		}
		if prev, dup := out[name]; dup {
			sum := sha256.Sum256([]byte(prev + h))
			h = hex.EncodeToString(sum[:])
		}
		out[name] = h
	}
	return out
}

// observeTools checks the tool definitions of a tools/list result against the pins and audits
// the changes, each as its own event next to the response's (e).
func (x *exchange) observeTools(e *event.Event, result json.RawMessage) {
	g := x.g
	base := func() *event.Event {
		ce := g.event(x.c, event.DirResponse)
		ce.Correlation = e.Correlation
		ce.Outcome.HTTPStatus = x.status
		return ce
	}
	for _, ce := range ObservePins(g.cfg.ToolPins, g.cfg.ServerName, result, base) {
		g.log.Warn("tool definition not approved", "tool", ce.MCP.Tool, "pinned_sha256", ce.Attributes[attrPinnedSHA256],
			"seen_sha256", ce.Attributes[attrSeenSHA256], "blocked", ce.Outcome.Result == event.ResultDenied)
		g.publish(x.c.r.Context(), ce)
	}
}

// ObservePins checks the tool definitions of a tools/list result from server against st, as the
// gateway does, and returns the event of each change to publish: base() filled in with method
// tools/list, the tool, severity [SeverityToolChanged], the hashes and, when the pins block the
// tool, a denied outcome under rule "pin:<server>/<tool>". For other sources of the same events
// (the stdio wrapper).
func ObservePins(st *pins.Store, server string, result json.RawMessage, base func() *event.Event) []*event.Event {
	var out []*event.Event
	for _, ch := range st.Observe(server, toolHashes(result)) {
		ce := base()
		ce.MCP.Method, ce.MCP.Tool = "tools/list", mcpwire.Clip(ch.Tool, mcpwire.MaxFieldLen)
		ce.Severity = SeverityToolChanged
		key, reason := attrToolChanged, pins.ReasonChanged
		if ch.Pinned == "" {
			key, reason = attrToolUnapproved, pins.ReasonNotApprove
		}
		ce.Attributes = map[string]string{key: ce.MCP.Tool, attrPinnedSHA256: ch.Pinned, attrSeenSHA256: ch.Seen,
			attrPinning: string(st.Mode())}
		ce.Outcome.Result, ce.Outcome.Reason = event.ResultAllowed, reason
		if ch.Blocked {
			ce.Outcome.Result, ce.Outcome.PolicyRule = event.ResultDenied, PinRule(server, ch.Tool)
		}
		out = append(out, ce)
	}
	return out
}

// PinRule is the rule that names a tool blocked by its pin: "pin:<server>/<tool>".
func PinRule(server, tool string) string { return pinRule(server, tool) }

func pinRule(server, tool string) string {
	return "pin:" + server + "/" + mcpwire.Clip(tool, mcpwire.MaxFieldLen)
}

// checkPins refuses a body with a tools/call of a tool the pins block. It returns false, having
// answered, on refusal.
func (g *Gateway) checkPins(w http.ResponseWriter, c *call, events []*event.Event, msgs []mcpwire.Message, batch bool) bool {
	if g.cfg.ToolPins == nil {
		return true
	}
	for i := range msgs {
		m := &msgs[i]
		if m.Kind != mcpwire.KindRequest || m.Method != "tools/call" {
			continue
		}
		pin, reason, blocked := g.cfg.ToolPins.Blocked(g.cfg.ServerName, m.Tool)
		if !blocked {
			continue
		}
		e := events[i]
		mcpwire.SetAttr(e, attrPinnedSHA256, pin.SHA256)
		mcpwire.SetAttr(e, attrSeenSHA256, pin.SeenSHA256)
		mcpwire.SetAttr(e, attrPinning, string(g.cfg.ToolPins.Mode()))
		rule := pinRule(g.cfg.ServerName, m.Tool)
		g.refuse(w, c, events, msgs, batch, http.StatusForbidden, denyPin, CodeDenied,
			"tool blocked by mcpwatch: "+reason+", awaiting approval (rule "+rule+")", rule)
		return false
	}
	return true
}
