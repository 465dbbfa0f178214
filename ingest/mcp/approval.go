package mcp

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcpwire"
	"github.com/mcpwatch/mcpwatch/internal/approval"
	"github.com/mcpwatch/mcpwatch/policy"
)

// CodeApprovalPending answers a tools/call a policy rule holds for approval while it waits: the
// error's data carries the request id and where its status can be read. Retrying the identical
// call once approved lets it through, once.
const CodeApprovalPending = -32087

// CodeURLElicitationRequired is MCP's URLElicitationRequiredError (2025-11-25): the gateway
// answers a held call with it, pointing at the approval's status page, when the client declared
// URL-mode elicitation.
const CodeURLElicitationRequired = -32042

// Audit attributes of a held call.
const (
	attrApprovalRequest = "approval.request"
	attrApprovalState   = "approval.state"
)

// approvalData is the data of an approval-pending error.
type approvalData struct {
	RequestID string    `json:"request_id"`
	State     string    `json:"state"`
	Approvals int       `json:"approvals"`
	Required  int       `json:"required"`
	Deadline  time.Time `json:"deadline"`
	StatusURL string    `json:"status_url,omitempty"`
}

// urlElicitation is one entry of URLElicitationRequiredError's data.elicitations.
type urlElicitation struct {
	Mode          string `json:"mode"`
	ElicitationID string `json:"elicitationId"`
	URL           string `json:"url"`
	Message       string `json:"message"`
}

// hold decides a tools/call that rule d allows only once approved. It returns true when this
// gateway's claim on the approved call won and the call may go upstream, once; otherwise it has
// answered: pending (a JSON-RPC error with the request id, or URLElicitationRequiredError for a
// client that supports it), refused (denied, expired, used by another gateway: 403) or, when the
// approvals topic cannot be reached, 503. Batches are refused: a held call is approved alone.
func (g *Gateway) hold(w http.ResponseWriter, c *call, events []*event.Event, msgs []mcpwire.Message, batch bool, i int, d policy.Decision) bool {
	m, e := &msgs[i], events[i]
	if g.cfg.Approvals == nil {
		g.refuse(w, c, events, msgs, batch, http.StatusForbidden, denyApproval, CodeDenied,
			"rule "+d.Rule+" requires approval, but this gateway has no approvals configured: call refused", d.Rule)
		return false
	}
	if batch {
		g.refuse(w, c, events, msgs, batch, http.StatusForbidden, denyApproval, CodeDenied,
			"rule "+d.Rule+" requires approval: send this call on its own, not in a batch", d.Rule)
		return false
	}
	a := d.Approval
	v := g.cfg.Approvals.Check(c.r.Context(), approval.Hold{
		Tenant: g.cfg.Tenant, Principal: c.principal, Server: g.cfg.ServerName, Tool: m.Tool,
		Arguments: m.Arguments, MaskedArguments: e.MCP.ArgumentsMasked,
		Rule: d.Rule, Approvers: a.Approvers, Required: a.Required, Timeout: a.Timeout, OnTimeout: approval.Decision(a.OnTimeout),
	})
	if id := v.Status.Request.ID; id != "" {
		mcpwire.SetAttr(e, attrApprovalRequest, id)
		mcpwire.SetAttr(e, attrApprovalState, string(v.Status.State))
	}
	switch v.Outcome {
	case approval.Forward:
		e.Outcome.Reason = d.Reason + "; " + v.Status.Reason
		return true
	case approval.Wait:
		g.pendingAnswer(w, c, events, m, d, v)
	case approval.Unavailable:
		g.refuse(w, c, events, msgs, batch, http.StatusServiceUnavailable, denyApproval, CodeDenied, v.Message, d.Rule)
	default:
		g.refuse(w, c, events, msgs, batch, http.StatusForbidden, denyApproval, CodeDenied, v.Message, d.Rule)
	}
	return false
}

// pendingAnswer answers a held call that waits. It is a protocol answer, not a transport
// refusal: HTTP 200 with a JSON-RPC error, as MCP servers answer URLElicitationRequiredError.
func (g *Gateway) pendingAnswer(w http.ResponseWriter, c *call, events []*event.Event, m *mcpwire.Message, d policy.Decision, v approval.Verdict) {
	g.m.denied.WithLabelValues(denyApproval).Inc()
	st := v.Status
	code := CodeApprovalPending
	var data any = approvalData{RequestID: st.Request.ID, State: string(st.State), Approvals: len(st.Approvals),
		Required: st.Request.Required, Deadline: st.Request.Deadline, StatusURL: v.URL}
	// URL-mode elicitation is MCP 2025-11-25's; revision strings are dates, so they order as text.
	if v.URL != "" && c.client.urlElicitation && c.protocolVersion >= "2025-11-25" {
		code = CodeURLElicitationRequired
		data = map[string]any{"elicitations": []urlElicitation{{Mode: "url", ElicitationID: st.Request.ID, URL: v.URL,
			Message: "This call waits for approval (request " + st.Request.ID + "). Open the page to follow it, then retry the call."}}}
	}
	for _, e := range events {
		e.Outcome = event.Outcome{Result: event.ResultDenied, Reason: v.Message, PolicyRule: d.Rule, ErrorCode: code, HTTPStatus: http.StatusOK}
		g.publish(c.r.Context(), e)
	}
	msg, _ := json.Marshal(v.Message)
	body, _ := json.Marshal(data)
	id := m.ID
	if id == "" {
		id = "null"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":` + id + `,"error":{"code":` + itoa(code) + `,"message":` + string(msg) + `,"data":` + string(body) + `}}`))
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// declaresURLElicitation reports whether an initialize request's client capabilities include
// URL-mode elicitation (capabilities.elicitation.url, MCP 2025-11-25).
func declaresURLElicitation(raw []byte) bool {
	var init struct {
		Params struct {
			Capabilities struct {
				Elicitation struct {
					URL json.RawMessage `json:"url"`
				} `json:"elicitation"`
			} `json:"capabilities"`
		} `json:"params"`
	}
	if json.Unmarshal(raw, &init) != nil {
		return false
	}
	u := init.Params.Capabilities.Elicitation.URL
	return len(u) > 0 && string(u) != "null"
}
