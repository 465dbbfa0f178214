package normalize

import (
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"

	json "github.com/goccy/go-json"

	"github.com/mcpwatch/mcpwatch/event"
)

// OCSFVersion is the OCSF schema version mcpwatch writes (metadata.version). Output is checked
// against the official schema export of this version (processors/ocsf_schema_test.go).
const OCSFVersion = "1.5.0"

// OCSF class, category and activity numbers used here (OCSF 1.5.0).
const (
	ocsfClassBase       = 0    // Base Event (uncategorized)
	ocsfClassFile       = 1001 // File System Activity
	ocsfClassProcess    = 1007 // Process Activity
	ocsfClassFinding    = 2004 // Detection Finding
	ocsfClassAuth       = 3002 // Authentication
	ocsfClassNetwork    = 4001 // Network Activity
	ocsfClassAPI        = 6003 // API Activity
	ocsfActivityUnknown = 0
	ocsfActivityOther   = 99
)

var ocsfClasses = map[int]struct{ name, category string }{
	ocsfClassBase:    {"Base Event", "Uncategorized"},
	ocsfClassFile:    {"File System Activity", "System Activity"},
	ocsfClassProcess: {"Process Activity", "System Activity"},
	ocsfClassFinding: {"Detection Finding", "Findings"},
	ocsfClassAuth:    {"Authentication", "Identity & Access Management"},
	ocsfClassNetwork: {"Network Activity", "Network Activity"},
	ocsfClassAPI:     {"API Activity", "Application Activity"},
}

// The JSON shapes below carry only the OCSF attributes mcpwatch fills. Field order is fixed and
// maps are encoded with sorted keys, so equal events give byte-equal output.

type ocsfObject struct {
	ActivityID    int    `json:"activity_id"`
	ActivityName  string `json:"activity_name,omitempty"`
	CategoryUID   int    `json:"category_uid"`
	CategoryName  string `json:"category_name,omitempty"`
	ClassUID      int    `json:"class_uid"`
	ClassName     string `json:"class_name,omitempty"`
	TypeUID       int    `json:"type_uid"`
	TypeName      string `json:"type_name,omitempty"`
	Time          int64  `json:"time"`
	SeverityID    int    `json:"severity_id"`
	Severity      string `json:"severity,omitempty"`
	StatusID      int    `json:"status_id,omitempty"`
	Status        string `json:"status,omitempty"`
	StatusCode    string `json:"status_code,omitempty"`
	StatusDetail  string `json:"status_detail,omitempty"`
	ActionID      int    `json:"action_id,omitempty"`
	Action        string `json:"action,omitempty"`
	DispositionID int    `json:"disposition_id,omitempty"`
	Disposition   string `json:"disposition,omitempty"`
	Message       string `json:"message,omitempty"`
	Duration      int64  `json:"duration,omitempty"`
	StartTime     int64  `json:"start_time,omitempty"`
	EndTime       int64  `json:"end_time,omitempty"`

	Metadata       ocsfMetadata        `json:"metadata"`
	Actor          *ocsfActor          `json:"actor,omitempty"`
	User           *ocsfUser           `json:"user,omitempty"`
	API            *ocsfAPI            `json:"api,omitempty"`
	HTTPRequest    *ocsfHTTPRequest    `json:"http_request,omitempty"`
	Service        *ocsfService        `json:"service,omitempty"`
	Session        *ocsfSession        `json:"session,omitempty"`
	AuthProtocolID int                 `json:"auth_protocol_id,omitempty"`
	AuthProtocol   string              `json:"auth_protocol,omitempty"`
	SrcEndpoint    *ocsfEndpoint       `json:"src_endpoint,omitempty"`
	DstEndpoint    *ocsfEndpoint       `json:"dst_endpoint,omitempty"`
	ConnectionInfo *ocsfConnectionInfo `json:"connection_info,omitempty"`
	Device         *ocsfDevice         `json:"device,omitempty"`
	Process        *ocsfProcess        `json:"process,omitempty"`
	File           *ocsfFile           `json:"file,omitempty"`
	Resources      []ocsfResource      `json:"resources,omitempty"`
	Trace          *ocsfTrace          `json:"trace,omitempty"`
	FindingInfo    *ocsfFindingInfo    `json:"finding_info,omitempty"`
	Evidences      []ocsfEvidence      `json:"evidences,omitempty"`
	RiskScore      *int                `json:"risk_score,omitempty"`
	RiskLevelID    *int                `json:"risk_level_id,omitempty"`
	RiskLevel      string              `json:"risk_level,omitempty"`
	Observables    []ocsfObservable    `json:"observables,omitempty"`
	Unmapped       any                 `json:"unmapped,omitempty"` // *ocsfUnmapped, or a map for findings
}

type ocsfMetadata struct {
	UID            string      `json:"uid"`
	Version        string      `json:"version"`
	Product        ocsfProduct `json:"product"`
	EventCode      string      `json:"event_code,omitempty"`
	TenantUID      string      `json:"tenant_uid,omitempty"`
	CorrelationUID string      `json:"correlation_uid,omitempty"`
	LogProvider    string      `json:"log_provider,omitempty"`
	ProcessedTime  int64       `json:"processed_time,omitempty"`
	Profiles       []string    `json:"profiles,omitempty"`
}

type ocsfProduct struct {
	Name       string `json:"name"`
	VendorName string `json:"vendor_name"`
	Version    string `json:"version"`
}

type ocsfActor struct {
	AppName        string              `json:"app_name,omitempty"`
	AppUID         string              `json:"app_uid,omitempty"`
	Authorizations []ocsfAuthorization `json:"authorizations,omitempty"`
	Process        *ocsfProcess        `json:"process,omitempty"`
	Session        *ocsfSession        `json:"session,omitempty"`
	User           *ocsfUser           `json:"user,omitempty"`
}

type ocsfAuthorization struct {
	Decision string      `json:"decision,omitempty"`
	Policy   *ocsfPolicy `json:"policy,omitempty"`
}

type ocsfPolicy struct {
	Name string `json:"name"`
}

type ocsfUser struct {
	UID           string      `json:"uid,omitempty"`
	Name          string      `json:"name,omitempty"`
	CredentialUID string      `json:"credential_uid,omitempty"`
	Groups        []ocsfGroup `json:"groups,omitempty"`
}

type ocsfGroup struct {
	Name string `json:"name"`
}

type ocsfAPI struct {
	Operation string       `json:"operation"`
	Request   *ocsfRequest `json:"request,omitempty"`
	Service   *ocsfService `json:"service,omitempty"`
	Version   string       `json:"version,omitempty"`
}

type ocsfRequest struct {
	UID string `json:"uid"`
}

type ocsfService struct {
	Name string `json:"name"`
}

type ocsfSession struct {
	UID    string `json:"uid"`
	Issuer string `json:"issuer,omitempty"`
}

type ocsfEndpoint struct {
	IP      string `json:"ip,omitempty"`
	Port    int    `json:"port,omitempty"`
	Name    string `json:"name,omitempty"`
	SvcName string `json:"svc_name,omitempty"`
	// ProxyEndpoint is the trusted proxy the source connected through.
	ProxyEndpoint *ocsfEndpoint `json:"proxy_endpoint,omitempty"`
}

type ocsfHTTPRequest struct {
	UserAgent string `json:"user_agent,omitempty"`
}

type ocsfConnectionInfo struct {
	DirectionID int    `json:"direction_id"`
	Direction   string `json:"direction,omitempty"`
}

type ocsfDevice struct {
	Name   string `json:"name"`
	TypeID int    `json:"type_id"`
	Type   string `json:"type,omitempty"`
}

type ocsfProcess struct {
	PID           *int         `json:"pid,omitempty"`
	Name          string       `json:"name,omitempty"`
	CmdLine       string       `json:"cmd_line,omitempty"`
	File          *ocsfFile    `json:"file,omitempty"`
	ParentProcess *ocsfProcess `json:"parent_process,omitempty"`
	User          *ocsfUser    `json:"user,omitempty"`
}

type ocsfFile struct {
	Name   string `json:"name"`
	Path   string `json:"path,omitempty"`
	TypeID int    `json:"type_id"`
	Type   string `json:"type,omitempty"`
}

type ocsfResource struct {
	UID  string `json:"uid,omitempty"`
	Name string `json:"name,omitempty"`
	Type string `json:"type,omitempty"`
}

type ocsfTrace struct {
	UID string `json:"uid"`
}

type ocsfFindingInfo struct {
	UID                string             `json:"uid"`
	Title              string             `json:"title,omitempty"`
	Desc               string             `json:"desc,omitempty"`
	Types              []string           `json:"types,omitempty"`
	Analytic           *ocsfAnalytic      `json:"analytic,omitempty"`
	FirstSeenTime      int64              `json:"first_seen_time,omitempty"`
	LastSeenTime       int64              `json:"last_seen_time,omitempty"`
	RelatedEvents      []ocsfRelatedEvent `json:"related_events,omitempty"`
	RelatedEventsCount int                `json:"related_events_count,omitempty"`
}

type ocsfAnalytic struct {
	UID    string `json:"uid,omitempty"`
	Name   string `json:"name,omitempty"`
	TypeID int    `json:"type_id"`
	Type   string `json:"type,omitempty"`
}

type ocsfRelatedEvent struct {
	UID string `json:"uid"`
}

type ocsfEvidence struct {
	User *ocsfUser `json:"user,omitempty"`
}

type ocsfObservable struct {
	Name   string `json:"name"`
	TypeID int    `json:"type_id"`
	Type   string `json:"type,omitempty"`
	Value  string `json:"value"`
}

// OCSFSeverity maps a CEF severity (0–10) to an OCSF severity_id and its caption. The bands are
// the ArcSight ones also used by [Risk]: 0–1 Informational, 2–3 Low, 4–6 Medium, 7–8 High,
// 9–10 Critical. OCSF's Fatal (6) means a failure of the reporting system, never a threat, so
// mcpwatch does not use it.
func OCSFSeverity(cef int) (id int, caption string) {
	switch s := clampSeverity(cef); {
	case s <= 1:
		return 1, "Informational"
	case s <= 3:
		return 2, "Low"
	case s <= 6:
		return 3, "Medium"
	case s <= 8:
		return 4, "High"
	default:
		return 5, "Critical"
	}
}

func newOCSF(class, activity int, activityName string, timeMS int64, cefSeverity int, meta ocsfMetadata) *ocsfObject {
	c := ocsfClasses[class]
	sevID, sev := OCSFSeverity(cefSeverity)
	meta.Version = OCSFVersion
	meta.Product = ocsfProduct{Name: Product, VendorName: Vendor, Version: ProductVersion}
	return &ocsfObject{
		ActivityID: activity, ActivityName: activityName,
		CategoryUID: class / 1000, CategoryName: c.category,
		ClassUID: class, ClassName: c.name,
		TypeUID: class*100 + activity, TypeName: c.name + ": " + activityName,
		Time: timeMS, SeverityID: sevID, Severity: sev, Metadata: meta,
	}
}

// ocsfClassOf picks the OCSF class and activity of a classified event.
func ocsfClassOf(e *event.Event) (class, activity int, name string) {
	if isAuthEvent(e) {
		return ocsfClassAuth, 1, "Logon"
	}
	switch e.Source {
	case event.SourceKernel:
		syscall := ""
		if e.Process != nil {
			syscall = e.Process.Syscall
		}
		switch bySyscall[syscall] {
		case SigExec:
			return ocsfClassProcess, 1, "Launch"
		case SigConnect:
			switch e.Outcome.Result {
			case event.ResultDenied:
				return ocsfClassNetwork, 5, "Refuse"
			case event.ResultError:
				return ocsfClassNetwork, 4, "Fail"
			}
			return ocsfClassNetwork, 1, "Open"
		case SigFileOpen:
			return ocsfClassFile, 14, "Open"
		}
		return ocsfClassProcess, ocsfActivityOther, "Other"
	case event.SourceMCP, event.SourceOTel:
		if e.MCP == nil {
			if e.Source == event.SourceOTel {
				return ocsfClassAPI, ocsfActivityOther, "Other"
			}
			return ocsfClassAPI, ocsfActivityUnknown, "Unknown"
		}
		a, n := mcpActivity(e.MCP.Method)
		return ocsfClassAPI, a, n
	}
	return ocsfClassBase, ocsfActivityOther, "Other"
}

// mcpActivity maps an MCP method onto API Activity's create/read/update/delete verbs; what is
// none of them (a tool call may do anything) is Other.
func mcpActivity(method string) (int, string) {
	switch method {
	case "initialize", "resources/subscribe", "sampling/createMessage", "elicitation/create":
		return 1, "Create"
	case "resources/read", "prompts/get", "tools/list", "resources/list", "resources/templates/list",
		"prompts/list", "completion/complete", "ping":
		return 2, "Read"
	case "logging/setLevel":
		return 3, "Update"
	case "resources/unsubscribe":
		return 4, "Delete"
	}
	return ocsfActivityOther, "Other"
}

// isAuthEvent reports whether e is about a credential: an authentication failure (HTTP 401) or a
// request refused because its token, subject or client was revoked.
func isAuthEvent(e *event.Event) bool {
	if e.Outcome.Result != event.ResultDenied || (e.Source != event.SourceMCP && e.Source != event.SourceOTel) {
		return false
	}
	if e.Outcome.HTTPStatus == 401 {
		return true
	}
	rule, ok := strings.CutPrefix(e.Outcome.PolicyRule, "control:"+string(event.ControlRevoke)+"/")
	if !ok {
		return false
	}
	for _, s := range []event.ControlScope{event.ScopeToken, event.ScopeSubject, event.ScopeClient} {
		if strings.HasPrefix(rule, string(s)+"/") {
			return true
		}
	}
	return false
}

// renderOCSF maps e onto the OCSF class of its kind (see docs/events.md for the table). Anything
// without an OCSF attribute goes to unmapped, so nothing the event says is lost.
func renderOCSF(e *event.Event, sig Signature) ([]byte, error) {
	class, activity, activityName := ocsfClassOf(e)
	o := newOCSF(class, activity, activityName, e.Time.UnixMilli(), e.Severity, ocsfMetadata{
		UID: e.ID, EventCode: sig.ID, TenantUID: e.Tenant, CorrelationUID: e.Correlation.TraceID,
		LogProvider: e.Observer,
	})
	if e.Normalized != nil && !e.Normalized.Time.IsZero() {
		o.Metadata.ProcessedTime = e.Normalized.Time.UnixMilli()
	}
	o.Message = sig.Name
	setOutcome(o, e)
	um := unmapped(e)

	user := principalUser(&e.Principal)
	src := endpoint(e.Network.SrcIP, e.Network.SrcPort)
	if src != nil && e.Network.Proxy != "" {
		src.ProxyEndpoint = &ocsfEndpoint{IP: e.Network.Proxy}
	}
	dst := endpoint(e.Network.DstIP, e.Network.DstPort)
	var httpReq *ocsfHTTPRequest
	if e.Network.UserAgent != "" {
		httpReq = &ocsfHTTPRequest{UserAgent: e.Network.UserAgent}
	}

	switch class {
	case ocsfClassAPI:
		o.Actor = &ocsfActor{User: user, Session: session(e.Correlation.SessionID, "")}
		if e.Principal.ClientID != "" {
			o.Actor.AppUID = e.Principal.ClientID
		}
		if e.MCP != nil && e.MCP.ClientName != "" {
			o.Actor.AppName = strings.TrimSuffix(e.MCP.ClientName+"/"+e.MCP.ClientVersion, "/")
		}
		if e.Outcome.PolicyRule != "" {
			o.Actor.Authorizations = []ocsfAuthorization{{Decision: string(e.Outcome.Result), Policy: &ocsfPolicy{Name: e.Outcome.PolicyRule}}}
		}
		if o.Actor.User == nil && o.Actor.Session == nil && o.Actor.AppUID == "" && o.Actor.AppName == "" {
			o.Actor.User = &ocsfUser{Name: "anonymous"} // the class requires an actor
		}
		op, svc := "", e.Target.Server
		switch {
		case e.MCP != nil:
			op = e.MCP.Method
		case e.Span != nil:
			op = e.Span.Name
		}
		if svc == "" && e.Span != nil {
			svc = e.Span.Service
		}
		if op == "" {
			op = "unknown"
		}
		o.API = &ocsfAPI{Operation: op}
		o.HTTPRequest = httpReq
		if e.Correlation.RequestID != "" {
			o.API.Request = &ocsfRequest{UID: e.Correlation.RequestID}
		}
		if svc != "" {
			o.API.Service = &ocsfService{Name: svc}
		}
		if e.MCP != nil {
			o.API.Version = e.MCP.ProtocolVersion
			o.Resources = mcpResources(e.MCP)
			if e.MCP.LatencyMS > 0 {
				o.Duration = int64(math.Round(e.MCP.LatencyMS))
			}
		} else if e.Span != nil && finite(e.Span.DurationMS) && e.Span.DurationMS > 0 {
			o.Duration = int64(math.Round(e.Span.DurationMS))
		}
		if src == nil {
			// The class requires a source endpoint; stdio clients have no address.
			name := "unknown"
			if e.MCP != nil && e.MCP.ClientName != "" {
				name = e.MCP.ClientName
			}
			src = &ocsfEndpoint{Name: name}
		}
		o.SrcEndpoint, o.DstEndpoint = src, dst
		if e.Correlation.TraceID != "" {
			o.Trace = &ocsfTrace{UID: e.Correlation.TraceID}
		}

	case ocsfClassAuth:
		if user == nil {
			user = &ocsfUser{Name: "anonymous"}
		}
		o.User = user
		svc := e.Target.Server
		if svc == "" {
			svc = "mcp"
		}
		o.Service = &ocsfService{Name: svc}
		o.Session = session(e.Correlation.SessionID, e.Principal.Issuer)
		o.HTTPRequest = httpReq
		if e.Principal.Issuer != "" {
			o.AuthProtocolID, o.AuthProtocol = 6, "OAUTH 2.0"
		}
		if e.Principal.ClientID != "" || (e.MCP != nil && e.MCP.ClientName != "") {
			o.Actor = &ocsfActor{AppUID: e.Principal.ClientID}
			if e.MCP != nil {
				o.Actor.AppName = e.MCP.ClientName
			}
		}
		o.SrcEndpoint, o.DstEndpoint = src, dst

	case ocsfClassProcess, ocsfClassFile, ocsfClassNetwork:
		o.Device = &ocsfDevice{Name: orUnknown(e.Observer), TypeID: 0, Type: "Unknown"}
		p := e.Process
		if p == nil {
			p = &event.Process{}
		}
		proc := &ocsfProcess{PID: intPtr(p.PID), Name: p.Comm, CmdLine: strings.Join(p.Args, " ")}
		if p.Exe != "" {
			proc.File = &ocsfFile{Name: path.Base(p.Exe), Path: p.Exe, TypeID: 1, Type: "Regular File"}
		}
		uid := &ocsfUser{UID: strconv.Itoa(p.UID)}
		proc.User = uid
		if p.PPID != 0 {
			proc.ParentProcess = &ocsfProcess{PID: intPtr(p.PPID)}
		}
		switch class {
		case ocsfClassProcess:
			o.Process = proc
			o.Actor = &ocsfActor{User: uid}
			if p.PPID != 0 {
				o.Actor.Process = &ocsfProcess{PID: intPtr(p.PPID)}
			}
		case ocsfClassFile:
			o.Actor = &ocsfActor{Process: proc, User: uid}
			name := path.Base(p.Path)
			if p.Path == "" {
				name = "unknown"
			}
			o.File = &ocsfFile{Name: name, Path: p.Path, TypeID: 0, Type: "Unknown"}
		case ocsfClassNetwork:
			o.Actor = &ocsfActor{Process: proc, User: uid}
			o.ConnectionInfo = &ocsfConnectionInfo{DirectionID: 2, Direction: "Outbound"}
			if src == nil && dst == nil {
				dst = &ocsfEndpoint{Name: orUnknown(p.Path)}
			}
			o.SrcEndpoint, o.DstEndpoint = src, dst
		}
	}
	o.Observables = observables(e, o)
	// Attributes that OCSF defines in profiles are valid only with the profile declared.
	if o.ActionID != 0 {
		o.Metadata.Profiles = append(o.Metadata.Profiles, "security_control")
	}
	if class == ocsfClassNetwork {
		o.Metadata.Profiles = append(o.Metadata.Profiles, "host") // actor and device
	}
	if o.Trace != nil {
		o.Metadata.Profiles = append(o.Metadata.Profiles, "trace")
	}
	o.Unmapped = um
	b, err := json.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("encode OCSF for event %q: %w", e.ID, err)
	}
	return b, nil
}

// setOutcome fills status, action and disposition from the event's outcome.
func setOutcome(o *ocsfObject, e *event.Event) {
	switch e.Outcome.Result {
	case event.ResultAllowed:
		o.StatusID, o.Status = 1, "Success"
		o.ActionID, o.Action = 1, "Allowed"
		o.DispositionID, o.Disposition = 1, "Allowed"
	case event.ResultDenied:
		o.StatusID, o.Status = 2, "Failure"
		o.ActionID, o.Action = 2, "Denied"
		o.DispositionID, o.Disposition = 2, "Blocked"
	case event.ResultError:
		o.StatusID, o.Status = 2, "Failure"
		o.ActionID, o.Action = 1, "Allowed" // policy let it through; it failed afterwards
		o.DispositionID, o.Disposition = 1, "Allowed"
	default:
		o.StatusID, o.Status = 0, "Unknown"
	}
	switch {
	case e.Outcome.ErrorCode != 0:
		o.StatusCode = strconv.Itoa(e.Outcome.ErrorCode)
	case e.Outcome.HTTPStatus != 0:
		o.StatusCode = strconv.Itoa(e.Outcome.HTTPStatus)
	}
	o.StatusDetail = e.Outcome.Reason
}

func principalUser(p *event.Principal) *ocsfUser {
	if p.Subject == "" && p.TokenID == "" {
		return nil
	}
	u := &ocsfUser{UID: p.Subject, Name: p.Subject, CredentialUID: p.TokenID}
	if u.UID == "" {
		u.Name = "anonymous"
	}
	return u
}

func session(uid, issuer string) *ocsfSession {
	if uid == "" {
		return nil
	}
	return &ocsfSession{UID: uid, Issuer: issuer}
}

func endpoint(ip string, port int) *ocsfEndpoint {
	if ip == "" {
		return nil
	}
	return &ocsfEndpoint{IP: ip, Port: port}
}

func mcpResources(m *event.MCP) []ocsfResource {
	var r []ocsfResource
	if m.Tool != "" {
		r = append(r, ocsfResource{Name: m.Tool, Type: "mcp.tool"})
	}
	if m.ResourceURI != "" {
		r = append(r, ocsfResource{UID: m.ResourceURI, Type: "mcp.resource"})
	}
	if m.Prompt != "" {
		r = append(r, ocsfResource{Name: m.Prompt, Type: "mcp.prompt"})
	}
	return r
}

// observables lists the values a SOC pivots on, by OCSF observable type.
func observables(e *event.Event, o *ocsfObject) []ocsfObservable {
	var obs []ocsfObservable
	add := func(name string, typeID int, typ, value string) {
		if value != "" {
			obs = append(obs, ocsfObservable{Name: name, TypeID: typeID, Type: typ, Value: value})
		}
	}
	switch {
	case o.User != nil:
		add("user.name", 4, "User Name", e.Principal.Subject)
	case o.Actor != nil && o.Actor.User != nil:
		add("actor.user.name", 4, "User Name", e.Principal.Subject)
	}
	if o.SrcEndpoint != nil {
		add("src_endpoint.ip", 2, "IP Address", o.SrcEndpoint.IP)
		if p := o.SrcEndpoint.ProxyEndpoint; p != nil {
			add("src_endpoint.proxy_endpoint.ip", 2, "IP Address", p.IP)
		}
	}
	if o.DstEndpoint != nil {
		add("dst_endpoint.ip", 2, "IP Address", o.DstEndpoint.IP)
	}
	if o.HTTPRequest != nil {
		add("http_request.user_agent", 16, "HTTP User-Agent", o.HTTPRequest.UserAgent)
	}
	if o.Process != nil {
		add("process.name", 9, "Process Name", o.Process.Name)
	}
	for i, r := range o.Resources {
		add(fmt.Sprintf("resources[%d].uid", i), 10, "Resource UID", r.UID)
	}
	return obs
}

// ocsfUnmapped is what the event says that has no OCSF attribute. Its fields are in key order,
// as a map would be encoded, and it costs a fraction of building one per event.
type ocsfUnmapped struct {
	Attributes   map[string]string `json:"attributes,omitempty"`
	CEFSeverity  int               `json:"cef_severity"`
	SpanID       string            `json:"correlation.span_id,omitempty"`
	DataClasses  []string          `json:"data_classes,omitempty"`
	Direction    string            `json:"mcp.direction,omitempty"`
	ToolsHash    string            `json:"mcp.tools_hash,omitempty"`
	Transport    string            `json:"mcp.transport,omitempty"`
	HTTPStatus   int               `json:"outcome.http_status,omitempty"`
	PII          map[string]int    `json:"pii,omitempty"`
	ACR          string            `json:"principal.acr,omitempty"`
	AMR          []string          `json:"principal.amr,omitempty"`
	ClientID     string            `json:"principal.client_id,omitempty"`
	Department   string            `json:"principal.department,omitempty"`
	Issuer       string            `json:"principal.iss,omitempty"`
	PeerGroup    string            `json:"principal.peer_group,omitempty"`
	Roles        []string          `json:"principal.roles,omitempty"`
	Scopes       []string          `json:"principal.scope,omitempty"`
	CgroupID     uint64            `json:"process.cgroup_id,omitempty"`
	Syscall      string            `json:"process.syscall,omitempty"`
	Sensitivity  float64           `json:"sensitivity,omitempty"`
	SizeRequest  int               `json:"size.request,omitempty"`
	SizeResponse int               `json:"size.response,omitempty"`
	Source       string            `json:"source"`
	SpanKind     string            `json:"span.kind,omitempty"`
	SpanStatus   string            `json:"span.status,omitempty"`
	Route        string            `json:"target.route,omitempty"`
	Sandbox      string            `json:"target.sandbox,omitempty"`
}

// unmapped keeps what the event says that has no OCSF attribute.
func unmapped(e *event.Event) *ocsfUnmapped {
	u := &ocsfUnmapped{
		Source: string(e.Source), CEFSeverity: e.Severity,
		ClientID: e.Principal.ClientID, Issuer: e.Principal.Issuer, ACR: e.Principal.ACR,
		Department: e.Principal.Department, PeerGroup: e.Principal.PeerGroup,
		Roles: e.Principal.Roles, Scopes: e.Principal.Scopes, AMR: e.Principal.AuthMethods,
		SpanID: e.Correlation.SpanID, Route: e.Target.Route, Sandbox: e.Target.Sandbox,
		SizeRequest: e.Size.Request, SizeResponse: e.Size.Response,
		DataClasses: e.DataClasses, PII: e.PII, Attributes: e.Attributes,
	}
	if mc := e.MCP; mc != nil {
		u.Direction, u.Transport, u.ToolsHash = string(mc.Direction), mc.Transport, mc.ToolsHash
	}
	if e.Outcome.HTTPStatus != 0 && e.Outcome.ErrorCode != 0 {
		u.HTTPStatus = e.Outcome.HTTPStatus
	}
	if p := e.Process; p != nil {
		u.Syscall, u.CgroupID = p.Syscall, p.CgroupID
	}
	if s := e.Span; s != nil {
		u.SpanKind, u.SpanStatus = s.Kind, s.Status
	}
	if e.Normalized != nil && finite(e.Normalized.Sensitivity) {
		u.Sensitivity = e.Normalized.Sensitivity
	}
	return u
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func intPtr(n int) *int { return &n }

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
