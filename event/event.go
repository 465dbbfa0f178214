// Package event is mcpwatch's canonical event model: the records that flow between stages on Kafka
// and land in ClickHouse. Every record carries [SchemaVersion]; fields are only ever added, never
// renamed or re-typed within a major version, so old readers keep working on new records.
//
// Raw data from personal or secret values never appears here: sources mask before they build an
// [Event] and report only counts per PII kind.
package event

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// SchemaVersion is the major version of the wire schema written by this build. A reader refuses a
// record with a higher major version instead of misreading it (see [Decode]).
const SchemaVersion = 1

// Source names where an event was observed.
type Source string

const (
	SourceMCP    Source = "mcp"    // the gateway or an embedded server hook
	SourceOTel   Source = "otel"   // the OpenTelemetry collector component
	SourceKernel Source = "kernel" // eBPF probes
)

// Direction of an MCP message relative to the client.
type Direction string

const (
	DirRequest       Direction = "request"        // client → server
	DirResponse      Direction = "response"       // server → client, answering a request
	DirNotification  Direction = "notification"   // either way, no id
	DirServerRequest Direction = "server_request" // server → client (sampling, elicitation)
)

// Result is the outcome of the observed action.
type Result string

const (
	ResultAllowed Result = "allowed" // passed policy and succeeded (or is still in flight)
	ResultDenied  Result = "denied"  // refused by mcpwatch (policy, revocation, auth)
	ResultError   Result = "error"   // passed policy, failed upstream or in transport
)

// Event is one observation from any source: an MCP message, a span, a kernel event. Sources fill
// the fields they know; processors add [Normalized].
type Event struct {
	Schema int       `json:"schema"`
	ID     string    `json:"id"`   // UUIDv7 assigned at the source; the idempotency key downstream
	Time   time.Time `json:"time"` // when the source observed it
	Source Source    `json:"source"`
	// Observer identifies the instance that saw the event: gateway replica, collector, node.
	Observer string `json:"observer,omitempty"`
	Tenant   string `json:"tenant"`

	Principal   Principal   `json:"principal"`
	Correlation Correlation `json:"correlation"`
	MCP         *MCP        `json:"mcp,omitempty"`
	Target      Target      `json:"target"`
	Network     Network     `json:"network"`
	Outcome     Outcome     `json:"outcome"`
	Size        Size        `json:"size"`
	// DataClasses are labels such as "pii", "finance", "phi" attached by sources or enrichment.
	DataClasses []string `json:"data_classes,omitempty"`
	// PII counts masked findings per kind ("email", "phone_kr", ...); never the values.
	PII     map[string]int `json:"pii,omitempty"`
	Process *Process       `json:"process,omitempty"`
	Span    *Span          `json:"span,omitempty"`
	// Severity on the CEF scale 0–10, as judged by the source; processors may raise it.
	Severity   int               `json:"severity"`
	Attributes map[string]string `json:"attributes,omitempty"`

	Normalized *Normalized `json:"normalized,omitempty"`
}

// Principal is who acted. Subject is the stable identity; the rest is what the credential said.
type Principal struct {
	Subject     string   `json:"sub,omitempty"`
	ClientID    string   `json:"client_id,omitempty"`
	Issuer      string   `json:"iss,omitempty"`
	Roles       []string `json:"roles,omitempty"`
	TokenID     string   `json:"jti,omitempty"` // never the token itself
	AuthMethods []string `json:"amr,omitempty"`
	// Scopes are the OAuth scopes the credential granted (the token's "scope"), as presented on
	// this request; empty for credentials without scopes (static tokens).
	Scopes []string `json:"scope,omitempty"`
	// ACR is the OAuth/OpenID authentication context class the credential states ("acr").
	ACR string `json:"acr,omitempty"`
	// Department and PeerGroup come from the directory during enrichment (never from the
	// credential), so detectors can compare a principal with its peers.
	Department string `json:"department,omitempty"`
	PeerGroup  string `json:"peer_group,omitempty"`
}

// Correlation ties an event to its trace, MCP session and JSON-RPC request.
type Correlation struct {
	TraceID   string `json:"trace_id,omitempty"`
	SpanID    string `json:"span_id,omitempty"`
	SessionID string `json:"session_id,omitempty"` // Mcp-Session-Id (stateful revisions)
	RequestID string `json:"request_id,omitempty"` // JSON-RPC id, as its JSON text
}

// MCP is the protocol-level view of an MCP message.
type MCP struct {
	Direction       Direction `json:"direction"`
	Method          string    `json:"method,omitempty"` // for responses: the method answered
	Tool            string    `json:"tool,omitempty"`
	ResourceURI     string    `json:"resource_uri,omitempty"`
	Prompt          string    `json:"prompt,omitempty"`
	ProtocolVersion string    `json:"protocol_version,omitempty"`
	Transport       string    `json:"transport,omitempty"` // "streamable-http", "stdio"
	// ArgumentsMasked is the tool arguments after masking, possibly truncated.
	ArgumentsMasked string  `json:"arguments_masked,omitempty"`
	ClientName      string  `json:"client_name,omitempty"`
	ClientVersion   string  `json:"client_version,omitempty"`
	LatencyMS       float64 `json:"latency_ms,omitempty"` // responses: time since the request
	ToolsHash       string  `json:"tools_hash,omitempty"` // tools/list: hash of the definitions
}

// Target is where the action was aimed.
type Target struct {
	Server  string `json:"server,omitempty"`  // upstream MCP server name from config
	Route   string `json:"route,omitempty"`   // gateway route that matched
	Sandbox string `json:"sandbox,omitempty"` // sandbox (cgroup) id running the server
}

// Network addresses of the observed connection.
type Network struct {
	// SrcIP is the client's address: the TCP peer, or the address a configured trusted proxy
	// forwarded (Forwarded / X-Forwarded-For) when the peer is one.
	SrcIP   string `json:"src_ip,omitempty"`
	SrcPort int    `json:"src_port,omitempty"`
	DstIP   string `json:"dst_ip,omitempty"`
	DstPort int    `json:"dst_port,omitempty"`
	// UserAgent is the HTTP client's User-Agent header, clipped.
	UserAgent string `json:"user_agent,omitempty"`
	// Proxy is the TCP peer when it was a trusted proxy and SrcIP came from its headers.
	Proxy string `json:"proxy,omitempty"`
}

// Outcome says what happened and, for decisions, which rule made them.
type Outcome struct {
	Result     Result `json:"result"`
	PolicyRule string `json:"policy_rule,omitempty"`
	Reason     string `json:"reason,omitempty"`
	ErrorCode  int    `json:"error_code,omitempty"` // JSON-RPC error code
	HTTPStatus int    `json:"http_status,omitempty"`
}

// Size of the observed message, in bytes.
type Size struct {
	Request  int `json:"request,omitempty"`
	Response int `json:"response,omitempty"`
}

// Process describes the process behind a kernel event.
type Process struct {
	PID      int      `json:"pid"`
	PPID     int      `json:"ppid,omitempty"`
	UID      int      `json:"uid"`
	Comm     string   `json:"comm,omitempty"`
	Exe      string   `json:"exe,omitempty"`
	Args     []string `json:"args,omitempty"`
	CgroupID uint64   `json:"cgroup_id,omitempty"`
	Syscall  string   `json:"syscall,omitempty"` // what the probe saw: execve, connect, openat, ...
	Path     string   `json:"path,omitempty"`
}

// Span carries the OpenTelemetry view of an operation.
type Span struct {
	Name       string  `json:"name"`
	Kind       string  `json:"kind,omitempty"`
	DurationMS float64 `json:"duration_ms,omitempty"`
	Status     string  `json:"status,omitempty"`
	Service    string  `json:"service,omitempty"`
}

// Normalized is what the processor adds: the CEF rendering and the signature id it chose.
type Normalized struct {
	Time      time.Time `json:"time"`      // when the processor normalized it
	Signature string    `json:"signature"` // e.g. MCP-1001
	Name      string    `json:"name"`
	CEF       string    `json:"cef"`
	// Sensitivity of the data touched, 0–1, from enrichment.
	Sensitivity float64 `json:"sensitivity,omitempty"`
	// OCSF is the same event as an OCSF 1.x object (API Activity, Authentication, Process or
	// Network Activity), for consumers that speak OCSF rather than CEF. The normalizer stage
	// publishes it as a record of its own on the OCSF topic and leaves it out of the event
	// record, which every later stage decodes: it is the largest part of a rendering.
	OCSF json.RawMessage `json:"ocsf,omitempty"`
}

// Finding is a detector's conclusion about one principal over a window of events.
type Finding struct {
	Schema    int       `json:"schema"`
	ID        string    `json:"id"`
	Time      time.Time `json:"time"` // event time at which the detector concluded
	Tenant    string    `json:"tenant"`
	Principal Principal `json:"principal"`
	Detector  string    `json:"detector"` // e.g. "rate"
	// Score is the threat score 0–100; Severity the same on the CEF 0–10 scale.
	Score       float64            `json:"score"`
	Severity    int                `json:"severity"`
	Summary     string             `json:"summary"`
	WindowStart time.Time          `json:"window_start"`
	WindowEnd   time.Time          `json:"window_end"`
	Features    map[string]float64 `json:"features,omitempty"`  // the numbers behind the score
	EventIDs    []string           `json:"event_ids,omitempty"` // a sample of the evidence
	// Check names the detector's check that concluded ("new_tool", "denial_spree", ...); empty
	// for a detector with a single check.
	Check string `json:"check,omitempty"`
	// Evidence explains the finding, most telling first: the check's own evidence, then the
	// evidence behind the principal's threat score when the finding was concluded.
	Evidence []Evidence `json:"evidence,omitempty"`
	// Tags classify the finding (MITRE ATT&CK / ATLAS technique ids, "ueba", ...).
	Tags []string `json:"tags,omitempty"`
	// Explanation is the finding in one line with its evidence, for webhooks and logs.
	Explanation string `json:"explanation,omitempty"`
}

// Evidence is one reason behind a score or a finding, complete enough for an analyst to answer
// "why?" from it alone: which detector and feature, the value observed, what is normal for this
// principal, where the value ranks among its peers, and over which window of event time.
type Evidence struct {
	Detector  string `json:"detector"`
	Check     string `json:"check,omitempty"`
	Component string `json:"component,omitempty"` // the score component it feeds
	Feature   string `json:"feature"`             // e.g. "calls_per_min", "tool"
	// Value is the signal's value 0–100; Contribution what it added to the score (its
	// component's weight times Value, when it is the component's highest signal).
	Value        float64 `json:"value"`
	Contribution float64 `json:"contribution,omitempty"`
	Observed     float64 `json:"observed"`
	// ObservedText is the feature's value when it is text, not a number: what a Sigma rule's
	// field matched ("/etc/shadow"). ClickHouse keeps it in Detail.
	ObservedText string  `json:"observed_text,omitempty"`
	Baseline     float64 `json:"baseline"`
	// BaselineSource says whose history Baseline comes from: "self", "peers" (the principal's
	// own history was too thin to trust) or "rule" (a fixed threshold).
	BaselineSource string `json:"baseline_source,omitempty"`
	// PeerPercentile ranks Observed among the principal's peer group, 0–100; nil when the peer
	// group is unknown or too small.
	PeerPercentile *float64 `json:"peer_percentile,omitempty"`
	// Detail says it in words: "first call of payments/transfer; used by 0 of 12 peers".
	Detail      string    `json:"detail,omitempty"`
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	EventIDs    []string  `json:"event_ids,omitempty"`
}

// Score is the current threat score of a principal, published so gateways can use it in policy.
type Score struct {
	Schema     int                `json:"schema"`
	Time       time.Time          `json:"time"`
	Tenant     string             `json:"tenant"`
	Subject    string             `json:"sub"`
	Score      float64            `json:"score"`
	Components map[string]float64 `json:"components,omitempty"`
	// Contributions are each component's share of Score: its weight times its value.
	Contributions map[string]float64 `json:"contributions,omitempty"`
	// Evidence are the live signals behind Score, the largest contribution first (at most a few).
	Evidence []Evidence `json:"evidence,omitempty"`
	// Explanation is the score in one line, for webhooks and logs.
	Explanation string `json:"explanation,omitempty"`
}

// Profile is a detector's behaviour profile of one principal (or of a peer group) at a point of
// event time: the baseline an investigator compares "now" with, and the state the detector
// resumes from after a restart or a rebalance. It travels on the compacted profiles topic keyed
// like the principal's events ([PrincipalKey]), so it lands in the partition of the events it
// summarises.
type Profile struct {
	Schema int       `json:"schema"`
	Time   time.Time `json:"time"` // event time of the newest event profiled
	Tenant string    `json:"tenant"`
	// Subject is the principal's [PrincipalID], or "peer:" and the group for a peer profile.
	Subject  string `json:"sub"`
	Detector string `json:"detector"`
	// Version orders the profile's records (its Time in milliseconds, made strictly increasing).
	Version      uint64    `json:"version"`
	FirstSeen    time.Time `json:"first_seen"`
	Observations uint64    `json:"observations"`
	// Confidence 0–1 is how far the principal's own history can be trusted as its baseline;
	// below the detector's gate its peers' baseline is used.
	Confidence float64 `json:"confidence"`
	Department string  `json:"department,omitempty"`
	PeerGroup  string  `json:"peer_group,omitempty"`
	// Features summarise numeric features (rates, volumes, ratios).
	Features []ProfileFeature `json:"features,omitempty"`
	// Categories are the categorical distributions (tools, servers, clients, networks, ...).
	Categories []ProfileCategory `json:"categories,omitempty"`
	// WeekHours is the time-of-week histogram: 168 hourly bins from Monday 00:00 UTC.
	WeekHours []float64 `json:"week_hours,omitempty"`
	// State is the detector's own encoding of the profile, to resume from; opaque to others.
	State []byte `json:"state,omitempty"`
}

// ProfileFeature is one numeric feature of a [Profile].
type ProfileFeature struct {
	Name   string  `json:"name"`
	Mean   float64 `json:"mean"`
	Stddev float64 `json:"stddev"`
	P50    float64 `json:"p50"`
	P95    float64 `json:"p95"`
}

// ProfileCategory is one categorical distribution of a [Profile]: values with their (decayed)
// counts and when each was first seen.
type ProfileCategory struct {
	Name   string         `json:"name"` // "tool", "server", "client", "network", ...
	Values []ProfileValue `json:"values"`
}

// ProfileValue is one value of a [ProfileCategory].
type ProfileValue struct {
	Value     string    `json:"value"`
	Count     float64   `json:"count"`
	FirstSeen time.Time `json:"first_seen"`
}

// ActionKind names a response.
type ActionKind string

const (
	ActionWebhook     ActionKind = "webhook"
	ActionRevoke      ActionKind = "revoke"
	ActionQuarantine  ActionKind = "quarantine"
	ActionBlockEgress ActionKind = "block_egress"
	ActionStepUp      ActionKind = "step_up"
	ActionNotify      ActionKind = "notify"       // a notifier channel (Slack, PagerDuty, Teams, ...)
	ActionOAuthRevoke ActionKind = "oauth_revoke" // RFC 7009 revocation at the authorization server
	ActionLift        ActionKind = "lift"         // a control ended by an operator or on expiry
	ActionApproval    ActionKind = "approval"     // an approval request, vote or outcome
)

// Action records what the response side did, who or what decided it, and whether it worked.
type Action struct {
	Schema    int        `json:"schema"`
	ID        string     `json:"id"`
	Time      time.Time  `json:"time"`
	Tenant    string     `json:"tenant"`
	FindingID string     `json:"finding_id"`
	Subject   string     `json:"sub,omitempty"`
	Kind      ActionKind `json:"kind"`
	Target    string     `json:"target"` // webhook URL, control key, sandbox id
	Status    string     `json:"status"` // "succeeded", "failed", "skipped", "pending", "dry_run"
	Detail    string     `json:"detail,omitempty"`
	Attempts  int        `json:"attempts"`
	// LatencyMS from the finding's time to the action's completion.
	LatencyMS float64 `json:"latency_ms"`
	// Scope is what a control action applied to (subject, token, sandbox, ...).
	Scope ControlScope `json:"scope,omitempty"`
	// Actor decided the action: "playbook:<name>", "operator:<id>", "gateway:<observer>", ...
	Actor string `json:"actor,omitempty"`
	// Playbook names the playbook whose decision this carries out, if any.
	Playbook string `json:"playbook,omitempty"`
	// Reason is why, in words: the matched conditions or the operator's reason.
	Reason string `json:"reason,omitempty"`
	// ControlID is the id of the control record the action published or lifted.
	ControlID string `json:"control_id,omitempty"`
	// Expires is when the action's control ends by itself; nil: permanent or not a control.
	Expires *time.Time `json:"expires,omitempty"`
	// DryRun marks a decision recorded but not carried out.
	DryRun bool `json:"dry_run,omitempty"`
}

// ControlKind is what a control record asks every enforcement point to do.
type ControlKind string

const (
	ControlRevoke      ControlKind = "revoke"       // refuse the credential or principal
	ControlQuarantine  ControlKind = "quarantine"   // isolate the server, sandbox or tool
	ControlStepUp      ControlKind = "step_up"      // demand a fresh, stronger authentication
	ControlBlockEgress ControlKind = "block_egress" // refuse the sandbox's outbound connections
)

// ControlScope is what a control record applies to.
type ControlScope string

const (
	ScopeSubject ControlScope = "subject"
	ScopeClient  ControlScope = "client"
	ScopeToken   ControlScope = "token"
	ScopeServer  ControlScope = "server"
	ScopeSandbox ControlScope = "sandbox"
	ScopeTool    ControlScope = "tool"
)

// Control is one entry of the compacted control topic. Its record key is [Control.Key]; a
// tombstone (nil value) under that key lifts it.
type Control struct {
	Schema    int          `json:"schema"`
	ID        string       `json:"id"`
	Time      time.Time    `json:"time"`
	Kind      ControlKind  `json:"kind"`
	Scope     ControlScope `json:"scope"`
	Tenant    string       `json:"tenant"`
	Value     string       `json:"value"` // the subject, client id, token id, server, ...
	Reason    string       `json:"reason"`
	FindingID string       `json:"finding_id,omitempty"`
	// Actor decided the control: "playbook:<name>", "operator:<id>", "responder".
	Actor string `json:"actor,omitempty"`
	// Expires, if set, ends the control without a tombstone.
	Expires *time.Time `json:"expires,omitempty"`
}

// Refuses reports whether the control refuses calls outright: a revocation or a quarantine. A
// step-up demand or an egress block is enforced by its own mechanism, not by refusing calls.
func (c Control) Refuses() bool {
	return c.Kind == ControlRevoke || c.Kind == ControlQuarantine
}

// Active reports whether the control is in force at t.
func (c Control) Active(t time.Time) bool {
	return c.Expires == nil || t.Before(*c.Expires)
}

// NewID returns a time-ordered unique id (UUIDv7) for a new record.
func NewID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// ParseTraceparent returns the trace and parent span ids of a W3C traceparent header value, or
// empties when it is malformed (wrong lengths, upper-case or non-hex digits, version ff, all-zero
// ids), so a hostile header never lands in events as a trace id.
func ParseTraceparent(s string) (traceID, spanID string) {
	// version "-" trace-id(32) "-" parent-id(16) "-" flags(2)
	if len(s) < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' || s[:2] == "ff" {
		return "", ""
	}
	tid, sid := s[3:35], s[36:52]
	if !isLowerHex(s[:2]) || !isLowerHex(tid) || !isLowerHex(sid) || !isLowerHex(s[53:55]) ||
		tid == "00000000000000000000000000000000" || sid == "0000000000000000" {
		return "", ""
	}
	return tid, sid
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
