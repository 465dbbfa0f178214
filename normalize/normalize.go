// Package normalize turns raw events into normalized ones: it validates them, classifies each
// under a stable signature id, settles its severity and renders it as a CEF line and an OCSF
// object (docs/events.md has the field maps); it also renders detector findings for SIEMs.
// Everything here is a pure function of the event, a library for the stages: the process stage
// (package processors) wraps [Normalize] from the raw topic to the normalized events topic, the
// forward stage renders findings with [FindingCEF].
package normalize

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

// Vendor and Product name mcpwatch in CEF headers.
const (
	Vendor  = "mcpwatch"
	Product = "mcpwatch"
)

// ProductVersion is the Device Version written in CEF headers. Release builds set it with
// `-ldflags "-X github.com/mcpwatch/mcpwatch/normalize.ProductVersion=v1.2.3"`.
var ProductVersion = "0.1.0-dev"

// Signature is a stable event class: SIEM rules and dashboards key on its ID, so an ID is never
// reused for another meaning.
type Signature struct {
	ID   string
	Name string
	// Floor is the lowest severity (0–10) an event of this class gets; the source may judge it
	// higher, never lower.
	Floor int
}

// The signature table. The first match wins, in this order:
//
//	outcome denied, HTTP 401        MCP-4002  Authentication failed              floor 6
//	outcome denied                  MCP-4001  Request denied by policy           floor 5
//	outcome error                   MCP-5001  Request failed                     floor 3
//	MCP (source mcp, or otel with an MCP part), by method:
//	  initialize                    MCP-1000  Session initialized                floor 1
//	  tools/call                    MCP-1001  Tool call                          floor 1
//	  resources/read                MCP-1002  Resource read                      floor 1
//	  prompts/get                   MCP-1003  Prompt retrieved                   floor 1
//	  tools/list                    MCP-1004  Tools listed                       floor 0
//	  resources/list,
//	  resources/templates/list      MCP-1005  Resources listed                   floor 0
//	  prompts/list                  MCP-1006  Prompts listed                     floor 0
//	  resources/subscribe,
//	  resources/unsubscribe         MCP-1007  Resource subscription              floor 1
//	  completion/complete           MCP-1008  Completion requested               floor 0
//	  sampling/createMessage        MCP-1010  Sampling requested by server       floor 2
//	  elicitation/create            MCP-1011  Elicitation requested by server    floor 2
//	  ping                          MCP-1020  Ping                               floor 0
//	  logging/setLevel              MCP-1021  Log level set                      floor 0
//	  notifications/*               MCP-1090  Notification                       floor 0
//	  anything else                 MCP-1099  Other MCP message                  floor 1
//	kernel (eBPF), by syscall:
//	  execve, execveat              MCP-3001  Process executed in sandbox        floor 3
//	  connect                       MCP-3002  Network connection from sandbox    floor 3
//	  open, openat, openat2         MCP-3003  File opened in sandbox             floor 2
//	  anything else                 MCP-3099  Other kernel event                 floor 2
//	otel without an MCP part        MCP-2001  Telemetry span                     floor 0
//	any other source                MCP-9999  Unclassified event                 floor 1
//
// Denials and errors are classified before the method because a SOC triages "denied" across all
// methods; the method stays in the CEF `act` field.
var (
	SigAuthFailed   = Signature{"MCP-4002", "Authentication failed", 6}
	SigDenied       = Signature{"MCP-4001", "Request denied by policy", 5}
	SigError        = Signature{"MCP-5001", "Request failed", 3}
	SigInitialize   = Signature{"MCP-1000", "Session initialized", 1}
	SigToolCall     = Signature{"MCP-1001", "Tool call", 1}
	SigResourceRead = Signature{"MCP-1002", "Resource read", 1}
	SigPromptGet    = Signature{"MCP-1003", "Prompt retrieved", 1}
	SigToolsList    = Signature{"MCP-1004", "Tools listed", 0}
	SigResourceList = Signature{"MCP-1005", "Resources listed", 0}
	SigPromptsList  = Signature{"MCP-1006", "Prompts listed", 0}
	SigSubscribe    = Signature{"MCP-1007", "Resource subscription", 1}
	SigComplete     = Signature{"MCP-1008", "Completion requested", 0}
	SigSampling     = Signature{"MCP-1010", "Sampling requested by server", 2}
	SigElicitation  = Signature{"MCP-1011", "Elicitation requested by server", 2}
	SigPing         = Signature{"MCP-1020", "Ping", 0}
	SigSetLevel     = Signature{"MCP-1021", "Log level set", 0}
	SigNotification = Signature{"MCP-1090", "Notification", 0}
	SigOtherMCP     = Signature{"MCP-1099", "Other MCP message", 1}
	SigExec         = Signature{"MCP-3001", "Process executed in sandbox", 3}
	SigConnect      = Signature{"MCP-3002", "Network connection from sandbox", 3}
	SigFileOpen     = Signature{"MCP-3003", "File opened in sandbox", 2}
	SigOtherKernel  = Signature{"MCP-3099", "Other kernel event", 2}
	SigSpan         = Signature{"MCP-2001", "Telemetry span", 0}
	SigUnclassified = Signature{"MCP-9999", "Unclassified event", 1}
)

var byMethod = map[string]Signature{
	"initialize":               SigInitialize,
	"tools/call":               SigToolCall,
	"resources/read":           SigResourceRead,
	"prompts/get":              SigPromptGet,
	"tools/list":               SigToolsList,
	"resources/list":           SigResourceList,
	"resources/templates/list": SigResourceList,
	"prompts/list":             SigPromptsList,
	"resources/subscribe":      SigSubscribe,
	"resources/unsubscribe":    SigSubscribe,
	"completion/complete":      SigComplete,
	"sampling/createMessage":   SigSampling,
	"elicitation/create":       SigElicitation,
	"ping":                     SigPing,
	"logging/setLevel":         SigSetLevel,
}

var bySyscall = map[string]Signature{
	"execve": SigExec, "execveat": SigExec,
	"connect": SigConnect,
	"open":    SigFileOpen, "openat": SigFileOpen, "openat2": SigFileOpen,
}

// Classify returns the signature of e (see the table above).
func Classify(e *event.Event) Signature {
	switch e.Outcome.Result {
	case event.ResultDenied:
		if e.Outcome.HTTPStatus == 401 {
			return SigAuthFailed
		}
		return SigDenied
	case event.ResultError:
		return SigError
	}
	switch {
	case e.MCP != nil && (e.Source == event.SourceMCP || e.Source == event.SourceOTel):
		if s, ok := byMethod[e.MCP.Method]; ok {
			return s
		}
		if strings.HasPrefix(e.MCP.Method, "notifications/") {
			return SigNotification
		}
		return SigOtherMCP
	case e.Source == event.SourceMCP:
		return SigOtherMCP
	case e.Source == event.SourceKernel:
		if e.Process != nil {
			if s, ok := bySyscall[e.Process.Syscall]; ok {
				return s
			}
		}
		return SigOtherKernel
	case e.Source == event.SourceOTel:
		return SigSpan
	}
	return SigUnclassified
}

// Time bounds every store in the pipeline can represent: ClickHouse's DateTime is unsigned 32-bit
// Unix seconds. An event outside them is a broken clock or a forged record, not an audit fact.
var (
	MinTime = time.Unix(1, 0).UTC()
	MaxTime = time.Unix(math.MaxUint32, 0).UTC()
)

// Normalize validates e, classifies it and returns it with [event.Normalized] filled in: the
// signature, its name, the CEF line, the OCSF object ([OCSFVersion]), and now as the
// normalization time. The severity is raised to
// the signature's floor and clamped to 0–10.
//
// An event that cannot be normalized — no id, tenant, source or time, a time outside
// [MinTime, MaxTime), a negative size or an impossible port — yields an error wrapping
// [event.ErrMalformed], which [Handler] dead-letters: retrying cannot fix it. Normalize never
// modifies the maps and slices it shares with e.
func Normalize(e event.Event, now time.Time) (event.Event, error) {
	if err := check(&e); err != nil {
		return event.Event{}, err
	}
	sig := Classify(&e)
	e.Severity = clampSeverity(max(e.Severity, sig.Floor))
	n := &event.Normalized{Time: now.UTC(), Signature: sig.ID, Name: sig.Name}
	if e.Normalized != nil {
		n.Sensitivity = e.Normalized.Sensitivity // set by enrichment; a re-run keeps it
	}
	e.Normalized = n
	n.CEF = renderCEF(&e, sig)
	ocsf, err := renderOCSF(&e, sig)
	if err != nil {
		return event.Event{}, fmt.Errorf("%w: %w", event.ErrMalformed, err)
	}
	n.OCSF = ocsf
	return e, nil
}

// ErrInvalid is wrapped, together with [event.ErrMalformed], by every validation error of
// [Normalize].
var ErrInvalid = errors.New("cannot normalize event")

func check(e *event.Event) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %w: event %q: %s", event.ErrMalformed, ErrInvalid, e.ID, fmt.Sprintf(format, args...))
	}
	switch {
	case e.ID == "":
		return bad("no id")
	case strings.TrimSpace(e.Tenant) == "":
		return bad("no tenant")
	case e.Source == "":
		return bad("no source")
	case e.Time.IsZero():
		return bad("no time")
	case e.Time.Before(MinTime) || !e.Time.Before(MaxTime):
		return bad("time %s outside %s..%s", e.Time.Format(time.RFC3339), MinTime.Format(time.RFC3339), MaxTime.Format(time.RFC3339))
	case e.Size.Request < 0 || e.Size.Response < 0:
		return bad("negative size (request %d, response %d)", e.Size.Request, e.Size.Response)
	case !validPort(e.Network.SrcPort) || !validPort(e.Network.DstPort):
		return bad("port out of range (src %d, dst %d)", e.Network.SrcPort, e.Network.DstPort)
	case e.Outcome.ErrorCode < math.MinInt32 || e.Outcome.ErrorCode > math.MaxInt32:
		return bad("JSON-RPC error code %d out of range", e.Outcome.ErrorCode)
	case e.Outcome.HTTPStatus < 0 || e.Outcome.HTTPStatus > 999:
		return bad("HTTP status %d out of range", e.Outcome.HTTPStatus)
	}
	for k, n := range e.PII {
		if n < 0 || int64(n) > math.MaxUint32 {
			return bad("PII count %d for %q out of range", n, k)
		}
	}
	if e.MCP != nil && (e.MCP.LatencyMS < 0 || math.IsNaN(e.MCP.LatencyMS) || math.IsInf(e.MCP.LatencyMS, 0)) {
		return bad("latency %v invalid", e.MCP.LatencyMS)
	}
	if p := e.Process; p != nil && (!validID(p.PID) || !validID(p.PPID) || !validID(p.UID)) {
		return bad("process ids out of range (pid %d, ppid %d, uid %d)", p.PID, p.PPID, p.UID)
	}
	return nil
}

func validPort(p int) bool { return p >= 0 && p <= 65535 }

func validID(n int) bool { return n >= 0 && int64(n) <= math.MaxUint32 }

// CEF labels of the custom fields, fixed so that SIEM field mappings stay stable.
const (
	LabelTool        = "tool"             // cs1
	LabelSession     = "mcpSessionId"     // cs2
	LabelTenant      = "tenant"           // cs3
	LabelPolicyRule  = "policyRule"       // cs4
	LabelTrace       = "traceId"          // cs5
	LabelSandbox     = "sandbox"          // cs6
	LabelErrorCode   = "jsonrpcErrorCode" // cn1
	LabelPIIFindings = "piiFindings"      // cn2
	LabelLatency     = "latencyMs"        // cn3
	LabelSensitivity = "dataSensitivity"  // cfp1
	LabelToken       = "tokenId"          // flexString1
	LabelPrompt      = "prompt"           // flexString2
)

// renderCEF maps the event onto standard CEF keys where they exist and labeled custom fields
// where they do not (docs/events.md has the field map). Field order is fixed, so equal events
// render to equal lines.
func renderCEF(e *event.Event, sig Signature) string {
	c := NewCEF(Vendor, Product, ProductVersion, sig.ID, sig.Name, e.Severity)
	c.Int("rt", e.Time.UnixMilli())
	cat := string(e.Source)
	if e.MCP != nil && e.MCP.Direction != "" {
		cat += "/" + string(e.MCP.Direction)
	}
	c.Ext("cat", cat)
	c.Ext("externalId", e.ID)
	c.Ext("dvchost", e.Observer)
	c.Ext("suser", e.Principal.Subject)
	c.Ext("spriv", strings.Join(e.Principal.Roles, ","))
	// The key's CEF meaning is the request's User-Agent; events without one (stdio, spans) name
	// the client application instead.
	app := e.Network.UserAgent
	if app == "" {
		app = e.Principal.ClientID
	}
	if app == "" && e.MCP != nil {
		app = e.MCP.ClientName
		if app != "" && e.MCP.ClientVersion != "" {
			app += "/" + e.MCP.ClientVersion
		}
	}
	c.Ext("requestClientApplication", app)
	c.Ext("src", e.Network.SrcIP)
	c.Int("spt", int64(e.Network.SrcPort))
	c.Ext("sourceTranslatedAddress", e.Network.Proxy) // the trusted proxy src came through
	c.Ext("dst", e.Network.DstIP)
	c.Int("dpt", int64(e.Network.DstPort))
	service := e.Target.Server
	if service == "" && e.Span != nil {
		service = e.Span.Service
	}
	c.Ext("destinationServiceName", service)
	var tool, prompt string
	latency := 0.0
	if m := e.MCP; m != nil {
		c.Ext("app", m.Transport)
		c.Ext("act", m.Method)
		c.Ext("request", m.ResourceURI)
		tool, prompt, latency = m.Tool, m.Prompt, m.LatencyMS
	} else if s := e.Span; s != nil {
		c.Ext("act", s.Name)
		latency = s.DurationMS
	}
	c.Ext("outcome", string(e.Outcome.Result))
	c.Ext("reason", e.Outcome.Reason)
	c.Int("in", int64(e.Size.Request))
	c.Int("out", int64(e.Size.Response))
	if p := e.Process; p != nil {
		c.Int("spid", int64(p.PID))
		c.Ext("sproc", p.Comm)
		c.Ext("suid", strconv.Itoa(p.UID)) // uid 0 is root, not "unknown"
		path := p.Path
		if path == "" {
			path = p.Exe
		}
		c.Ext("filePath", path)
		if p.Path != "" {
			c.Ext("fname", filepath.Base(p.Path))
		}
		c.Ext("msg", strings.Join(p.Args, " "))
	}
	c.Labeled("cs1", LabelTool, tool)
	c.Labeled("cs2", LabelSession, e.Correlation.SessionID)
	c.Labeled("cs3", LabelTenant, e.Tenant)
	c.Labeled("cs4", LabelPolicyRule, e.Outcome.PolicyRule)
	c.Labeled("cs5", LabelTrace, e.Correlation.TraceID)
	c.Labeled("cs6", LabelSandbox, e.Target.Sandbox)
	c.LabeledInt("cn1", LabelErrorCode, int64(e.Outcome.ErrorCode))
	pii := 0
	for _, n := range e.PII {
		pii += n
	}
	c.LabeledInt("cn2", LabelPIIFindings, int64(pii))
	if finite(latency) {
		c.LabeledInt("cn3", LabelLatency, int64(math.Round(latency)))
	}
	if e.Normalized != nil {
		c.LabeledFloat("cfp1", LabelSensitivity, e.Normalized.Sensitivity)
	}
	c.Labeled("flexString1", LabelToken, e.Principal.TokenID)
	c.Labeled("flexString2", LabelPrompt, prompt)
	return c.String()
}
