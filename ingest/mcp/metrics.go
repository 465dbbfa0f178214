package mcp

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpwatch/mcpwatch/event"
)

type metrics struct {
	messages *prometheus.CounterVec
	denied   *prometheus.CounterVec
	upstream *prometheus.HistogramVec
	evicted  prometheus.Counter
	// unaudited counts refusals of unauthenticated requests not published one by one.
	unaudited prometheus.Counter
	// forwarded counts requests from trusted proxies by where the client address came from.
	forwarded *prometheus.CounterVec
}

// Denial reasons, the values of the denied counter's reason label.
const (
	denyUnauthenticated = "unauthenticated"
	denyControl         = "control"
	denyParse           = "parse_error"
	denyInvalid         = "invalid_request"
	denyTooLarge        = "too_large"
	denyHeaderMismatch  = "header_mismatch"
	denyMethod          = "http_method"
	denySession         = "foreign_session"
	denyScope           = "insufficient_scope"
	denyWeakAuth        = "insufficient_user_authentication"
	denyAuthUnavailable = "auth_unavailable"
	denyPolicy          = "policy"
	denyStepUp          = "step_up"
	denyAuditDown       = "audit_unavailable"
	denyPin             = "tool_pin"
	denyRedact          = "redaction_oversize"
	denyRateLimited     = "rate_limited"
	denyApproval        = "approval"
)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_gateway_messages_total",
			Help: "MCP messages audited, by direction, method and result."}, []string{"direction", "method", "result"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_gateway_denied_total",
			Help: "Requests refused by the gateway, by reason."}, []string{"reason"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mcpwatch_gateway_upstream_seconds",
			Help:    "Time from forwarding a request to the upstream's JSON-RPC response, by method.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 17)}, []string{"method"}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_gateway_pending_evicted_total",
			Help: "Pending requests forgotten before their response because the tracking table was full."}),
		unaudited: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_gateway_unauth_unaudited_total",
			Help: "Refusals of unauthenticated requests beyond the audit budget: counted on the next refusal event instead of published."}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpwatch_gateway_forwarded_total",
			Help: "Requests from trusted proxies, by where the client address came from: forwarded, x_forwarded_for, " +
				"absent, obfuscated or malformed (the last three keep the proxy as the source)."}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.messages, m.denied, m.upstream, m.evicted, m.unaudited, m.forwarded)
	}
	return m
}

func (m *metrics) count(e *event.Event) {
	var dir event.Direction
	var method string
	if e.MCP != nil {
		dir, method = e.MCP.Direction, e.MCP.Method
	}
	m.messages.WithLabelValues(string(dir), methodLabel(method), string(e.Outcome.Result)).Inc()
}

// knownMethods are the MCP methods that get their own metric label. Methods come from clients, so
// anything else is "other": a label per unknown method would let a client grow the metric set
// without bound.
var knownMethods = map[string]bool{}

func init() {
	for _, m := range []string{
		"initialize", "ping", "server/discover", "subscriptions/listen",
		"tools/list", "tools/call", "resources/list", "resources/templates/list", "resources/read",
		"resources/subscribe", "resources/unsubscribe", "prompts/list", "prompts/get",
		"completion/complete", "logging/setLevel", "sampling/createMessage", "elicitation/create",
		"roots/list", "tasks/get", "tasks/list", "tasks/result", "tasks/cancel",
		"notifications/initialized", "notifications/cancelled", "notifications/progress",
		"notifications/message", "notifications/resources/updated",
		"notifications/resources/list_changed", "notifications/tools/list_changed",
		"notifications/prompts/list_changed", "notifications/roots/list_changed",
		"notifications/elicitation/complete", "notifications/tasks/status",
		"notifications/subscriptions/acknowledged",
	} {
		knownMethods[m] = true
	}
}

func methodLabel(m string) string {
	if m == "" || knownMethods[m] {
		return m
	}
	return "other"
}
