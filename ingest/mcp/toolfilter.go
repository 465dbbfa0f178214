package mcp

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcpwire"
	"github.com/mcpwatch/mcpwatch/policy"
)

// Tool filtering: unless [Config.ShowDeniedTools], every tools/list result is rewritten without
// the tools the caller could not call right now — a quarantine of the tool, a pin that blocks it,
// or a policy that denies this principal calling it in this context — so an agent is never offered
// a tool only to be refused. A tool the policy would allow after a step-up stays listed. Each
// tools/list is filtered when it passes, so after notifications/tools/list_changed the client's
// next tools/list is pinned and filtered afresh. The response's event says how many tools were
// hidden and which; the calls themselves are still checked one by one.

// maxHiddenNames bounds the names listed in the "mcp.tools.hidden_names" attribute.
const maxHiddenNames = 1024

// filterTools returns the tools/list result without the tools the caller may not call, and
// records what it hid on e; nil when it hides nothing (or cannot read the list, which is then
// relayed as it came: every call is still checked).
func (x *exchange) filterTools(e *event.Event, result json.RawMessage) []byte {
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
	g, c := x.g, x.c
	now := time.Now()
	var req *policy.Request // built once, for the first tool the policy is asked about
	kept := make([][]byte, 0, len(defs))
	var hidden []string
	for _, def := range defs {
		name := toolName(def)
		if name == "" || g.mayCall(c, name, now, &req) {
			kept = append(kept, def)
			continue
		}
		hidden = append(hidden, name)
	}
	mcpwire.SetAttr(e, attrToolsHidden, strconv.Itoa(len(hidden)))
	if len(hidden) == 0 {
		return nil
	}
	mcpwire.SetAttr(e, attrToolsHiddenWho, mcpwire.Clip(strings.Join(hidden, ","), maxHiddenNames))
	list := append(append([]byte{'['}, bytes.Join(kept, []byte{','})...), ']')
	out, ok := mcpwire.ReplaceMember(result, "tools", list)
	if !ok {
		return nil
	}
	return out
}

// toolName is the name of a tool definition, "" when it has none the gateway can read.
func toolName(def json.RawMessage) string {
	if len(def) == 0 || def[0] != '{' {
		return ""
	}
	nf, err := mcpwire.Members(def, "name")
	if err != nil {
		return ""
	}
	name, _ := mcpwire.StringValue(nf[0])
	return name
}

// mayCall reports whether c's principal could call tool now: no control covers it, no pin blocks
// it, and the policy does not deny it (a step-up counts as callable). *req caches the policy
// request between tools.
func (g *Gateway) mayCall(c *call, tool string, now time.Time, req **policy.Request) bool {
	if _, ok := g.ctl.Check(g.cfg.Tenant, c.principal, g.cfg.ServerName, tool, now); ok {
		return false
	}
	if g.cfg.ToolPins != nil {
		if _, _, blocked := g.cfg.ToolPins.Blocked(g.cfg.ServerName, tool); blocked {
			return false
		}
	}
	if g.cfg.Policy == nil {
		return true
	}
	if *req == nil {
		r := g.policyRequest(c, &mcpwire.Message{Kind: mcpwire.KindRequest, Method: "tools/call"}, &event.Event{})
		*req = &r
	}
	r := **req
	r.Tool = tool
	if len(g.cfg.DataClasses) > 0 {
		r.DataClasses = g.cfg.DataClasses["tool:"+tool]
	}
	return g.cfg.Policy.Evaluate(r).Effect != policy.Deny
}
