package storage

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

// column is one named column of a batch, holding a typed slice the driver appends column-wise.
type column struct {
	name string
	data any
}

// columns is the single source of truth for a table's INSERT: the column names and the values,
// in the same order.
type columns interface {
	columns() []column
	len() int
}

func insertSQL(database, table string, c columns) string {
	cols := c.columns()
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	// 18.16 needs the columns named in a batch INSERT.
	return "INSERT INTO " + database + "." + table + " (" + strings.Join(names, ", ") + ")"
}

// ClickHouse's DateTime is unsigned 32-bit Unix seconds: anything outside wraps silently (1969
// becomes 2106). Times are checked, never wrapped.
var (
	minTime = time.Unix(0, 0)
	maxTime = time.Unix(math.MaxUint32, 0)
)

// rowError is a record that cannot be stored faithfully; the sink dead-letters it.
func rowError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", event.ErrMalformed, fmt.Sprintf(format, args...))
}

// conv converts event values to column values, checking each fits its column. It keeps the
// first failure and returns zero values after it, so a row is converted in full and then either
// appended or refused.
type conv struct{ err error }

func (c *conv) fail(format string, args ...any) {
	if c.err == nil {
		c.err = rowError(format, args...)
	}
}

// dateTime checks t fits DateTime. The zero time of an optional field is stored as 1970-01-01.
func (c *conv) dateTime(field string, t time.Time, required bool) time.Time {
	switch {
	case t.IsZero() && !required:
		return minTime
	case t.Before(minTime) || !t.Before(maxTime):
		c.fail("%s %s outside ClickHouse DateTime (1970..2106)", field, t.Format(time.RFC3339))
		return minTime
	}
	return t
}

func (c *conv) u16(field string, v int) uint16 {
	if v < 0 || v > math.MaxUint16 {
		c.fail("%s %d out of range 0..65535", field, v)
		return 0
	}
	return uint16(v)
}

func (c *conv) u32(field string, v int) uint32 {
	if v < 0 || int64(v) > math.MaxUint32 {
		c.fail("%s %d out of range 0..4294967295", field, v)
		return 0
	}
	return uint32(v)
}

func (c *conv) u64(field string, v int) uint64 {
	if v < 0 {
		c.fail("%s %d is negative", field, v)
		return 0
	}
	return uint64(v)
}

func (c *conv) i32(field string, v int) int32 {
	if v < math.MinInt32 || v > math.MaxInt32 {
		c.fail("%s %d out of Int32 range", field, v)
		return 0
	}
	return int32(v)
}

func (c *conv) finite(field string, v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		c.fail("%s is %v", field, v)
		return 0
	}
	return v
}

func unixMilli(t time.Time) uint64 { return uint64(t.UnixMilli()) }

func schemaVersion(v int) uint16 { return uint16(min(max(v, 0), math.MaxUint16)) }

// severity clamps to the CEF scale; a judgement out of range is not worth losing the record.
func severity(s int) uint8 { return uint8(min(max(s, 0), 10)) }

// resultEnum maps a result to the events.result Enum8. An unknown value (a newer source) is
// stored as 'other' rather than failing the batch; the raw column keeps the original.
func resultEnum(r event.Result) string {
	switch r {
	case "", event.ResultAllowed, event.ResultDenied, event.ResultError:
		return string(r)
	}
	return "other"
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// eventRows buffers rows of the events table column by column.
type eventRows struct {
	id, tenant, principal, source, observer, subject, clientID, issuer, tokenID          []string
	time, ingest, normalized                                                             []time.Time
	timeMS                                                                               []uint64
	schema                                                                               []uint16
	roles, authMethods, scopes, dataClasses, piiKinds, procArgs, attrKeys, attrValues    [][]string
	acr, department, peerGroup                                                           []string
	sessionID, requestID, traceID, spanID                                                []string
	direction, method, tool, resourceURI, prompt, protoVersion, transport                []string
	clientName, clientVersion, toolsHash, arguments, server, route, sandbox              []string
	srcIP, dstIP, userAgent, proxy                                                       []string
	srcPort, dstPort, httpStatus                                                         []uint16
	result, policyRule, reason                                                           []string
	errorCode                                                                            []int32
	reqBytes, respBytes, cgroup                                                          []uint64
	latency, spanDuration                                                                []float64
	piiCounts                                                                            [][]uint32
	pid, ppid, uid                                                                       []uint32
	comm, exe, syscall, procPath, spanName, spanKind, spanService, spanStatus, sig, name []string
	sev                                                                                  []uint8
	sensitivity                                                                          []float32
	cef, raw                                                                             []string
}

func (r *eventRows) columns() []column {
	return []column{
		{"id", r.id}, {"time", r.time}, {"time_ms", r.timeMS}, {"ingest_time", r.ingest},
		{"normalized_time", r.normalized}, {"schema", r.schema}, {"tenant", r.tenant},
		{"principal", r.principal}, {"source", r.source}, {"observer", r.observer},
		{"subject", r.subject}, {"client_id", r.clientID}, {"issuer", r.issuer}, {"token_id", r.tokenID},
		{"roles", r.roles}, {"auth_methods", r.authMethods}, {"scopes", r.scopes}, {"acr", r.acr},
		{"department", r.department}, {"peer_group", r.peerGroup}, {"session_id", r.sessionID},
		{"request_id", r.requestID}, {"trace_id", r.traceID}, {"span_id", r.spanID},
		{"direction", r.direction}, {"method", r.method}, {"tool", r.tool}, {"resource_uri", r.resourceURI},
		{"prompt", r.prompt}, {"protocol_version", r.protoVersion}, {"transport", r.transport},
		{"client_name", r.clientName}, {"client_version", r.clientVersion}, {"tools_hash", r.toolsHash},
		{"arguments_masked", r.arguments}, {"server", r.server}, {"route", r.route}, {"sandbox", r.sandbox},
		{"src_ip", r.srcIP}, {"src_port", r.srcPort}, {"dst_ip", r.dstIP}, {"dst_port", r.dstPort},
		{"user_agent", r.userAgent}, {"proxy", r.proxy},
		{"result", r.result}, {"policy_rule", r.policyRule}, {"reason", r.reason},
		{"error_code", r.errorCode}, {"http_status", r.httpStatus},
		{"request_bytes", r.reqBytes}, {"response_bytes", r.respBytes}, {"latency_ms", r.latency},
		{"data_classes", r.dataClasses}, {"pii_kinds", r.piiKinds}, {"pii_counts", r.piiCounts},
		{"proc_pid", r.pid}, {"proc_ppid", r.ppid}, {"proc_uid", r.uid}, {"proc_comm", r.comm},
		{"proc_exe", r.exe}, {"proc_args", r.procArgs}, {"proc_cgroup_id", r.cgroup},
		{"proc_syscall", r.syscall}, {"proc_path", r.procPath},
		{"span_name", r.spanName}, {"span_kind", r.spanKind}, {"span_service", r.spanService},
		{"span_status", r.spanStatus}, {"span_duration_ms", r.spanDuration},
		{"attr_keys", r.attrKeys}, {"attr_values", r.attrValues},
		{"severity", r.sev}, {"signature", r.sig}, {"name", r.name}, {"sensitivity", r.sensitivity},
		{"cef", r.cef}, {"raw", r.raw},
	}
}

func (r *eventRows) len() int { return len(r.id) }

// add appends one event, or returns a permanent error and appends nothing: every conversion that
// can fail runs before the first append, so the columns always stay the same length.
func (r *eventRows) add(e *event.Event, raw []byte, ingest time.Time) error {
	var (
		m    event.MCP
		n    event.Normalized
		p    event.Process
		span event.Span
	)
	if e.MCP != nil {
		m = *e.MCP
	}
	if e.Normalized != nil {
		n = *e.Normalized
	}
	if e.Process != nil {
		p = *e.Process
	}
	if e.Span != nil {
		span = *e.Span
	}
	var c conv
	t := c.dateTime("time", e.Time, true)
	nt := c.dateTime("normalized time", n.Time, false)
	srcPort, dstPort := c.u16("src port", e.Network.SrcPort), c.u16("dst port", e.Network.DstPort)
	status := c.u16("http status", e.Outcome.HTTPStatus)
	code := c.i32("error code", e.Outcome.ErrorCode)
	reqB, respB := c.u64("request size", e.Size.Request), c.u64("response size", e.Size.Response)
	pid, ppid, uid := c.u32("pid", p.PID), c.u32("ppid", p.PPID), c.u32("uid", p.UID)
	lat, spanDur := c.finite("latency", m.LatencyMS), c.finite("span duration", span.DurationMS)
	sens := c.finite("sensitivity", n.Sensitivity)
	kinds := slices.Sorted(maps.Keys(e.PII))
	counts := make([]uint32, len(kinds))
	for i, k := range kinds {
		counts[i] = c.u32("pii count "+k, e.PII[k])
	}
	if c.err != nil {
		return fmt.Errorf("event %s: %w", e.ID, c.err)
	}
	keys := slices.Sorted(maps.Keys(e.Attributes))
	values := make([]string, len(keys))
	for i, k := range keys {
		values[i] = e.Attributes[k]
	}

	r.id = append(r.id, e.ID)
	r.time = append(r.time, t)
	r.timeMS = append(r.timeMS, unixMilli(e.Time))
	r.ingest = append(r.ingest, ingest)
	r.normalized = append(r.normalized, nt)
	r.schema = append(r.schema, schemaVersion(e.Schema))
	r.tenant = append(r.tenant, e.Tenant)
	r.principal = append(r.principal, event.PrincipalID(e.Principal))
	r.source = append(r.source, string(e.Source))
	r.observer = append(r.observer, e.Observer)
	r.subject = append(r.subject, e.Principal.Subject)
	r.clientID = append(r.clientID, e.Principal.ClientID)
	r.issuer = append(r.issuer, e.Principal.Issuer)
	r.tokenID = append(r.tokenID, e.Principal.TokenID)
	r.roles = append(r.roles, orEmpty(e.Principal.Roles))
	r.authMethods = append(r.authMethods, orEmpty(e.Principal.AuthMethods))
	r.scopes = append(r.scopes, orEmpty(e.Principal.Scopes))
	r.acr = append(r.acr, e.Principal.ACR)
	r.department = append(r.department, e.Principal.Department)
	r.peerGroup = append(r.peerGroup, e.Principal.PeerGroup)
	r.sessionID = append(r.sessionID, e.Correlation.SessionID)
	r.requestID = append(r.requestID, e.Correlation.RequestID)
	r.traceID = append(r.traceID, e.Correlation.TraceID)
	r.spanID = append(r.spanID, e.Correlation.SpanID)
	r.direction = append(r.direction, string(m.Direction))
	r.method = append(r.method, m.Method)
	r.tool = append(r.tool, m.Tool)
	r.resourceURI = append(r.resourceURI, m.ResourceURI)
	r.prompt = append(r.prompt, m.Prompt)
	r.protoVersion = append(r.protoVersion, m.ProtocolVersion)
	r.transport = append(r.transport, m.Transport)
	r.clientName = append(r.clientName, m.ClientName)
	r.clientVersion = append(r.clientVersion, m.ClientVersion)
	r.toolsHash = append(r.toolsHash, m.ToolsHash)
	r.arguments = append(r.arguments, m.ArgumentsMasked)
	r.server = append(r.server, e.Target.Server)
	r.route = append(r.route, e.Target.Route)
	r.sandbox = append(r.sandbox, e.Target.Sandbox)
	r.srcIP = append(r.srcIP, e.Network.SrcIP)
	r.srcPort = append(r.srcPort, srcPort)
	r.dstIP = append(r.dstIP, e.Network.DstIP)
	r.dstPort = append(r.dstPort, dstPort)
	r.userAgent = append(r.userAgent, e.Network.UserAgent)
	r.proxy = append(r.proxy, e.Network.Proxy)
	r.result = append(r.result, resultEnum(e.Outcome.Result))
	r.policyRule = append(r.policyRule, e.Outcome.PolicyRule)
	r.reason = append(r.reason, e.Outcome.Reason)
	r.errorCode = append(r.errorCode, code)
	r.httpStatus = append(r.httpStatus, status)
	r.reqBytes = append(r.reqBytes, reqB)
	r.respBytes = append(r.respBytes, respB)
	r.latency = append(r.latency, lat)
	r.dataClasses = append(r.dataClasses, orEmpty(e.DataClasses))
	r.piiKinds = append(r.piiKinds, kinds)
	r.piiCounts = append(r.piiCounts, counts)
	r.pid = append(r.pid, pid)
	r.ppid = append(r.ppid, ppid)
	r.uid = append(r.uid, uid)
	r.comm = append(r.comm, p.Comm)
	r.exe = append(r.exe, p.Exe)
	r.procArgs = append(r.procArgs, orEmpty(p.Args))
	r.cgroup = append(r.cgroup, p.CgroupID)
	r.syscall = append(r.syscall, p.Syscall)
	r.procPath = append(r.procPath, p.Path)
	r.spanName = append(r.spanName, span.Name)
	r.spanKind = append(r.spanKind, span.Kind)
	r.spanService = append(r.spanService, span.Service)
	r.spanStatus = append(r.spanStatus, span.Status)
	r.spanDuration = append(r.spanDuration, spanDur)
	r.attrKeys = append(r.attrKeys, keys)
	r.attrValues = append(r.attrValues, values)
	r.sev = append(r.sev, severity(e.Severity))
	r.sig = append(r.sig, n.Signature)
	r.name = append(r.name, n.Name)
	r.sensitivity = append(r.sensitivity, float32(sens))
	r.cef = append(r.cef, n.CEF)
	stored, _ := event.WithoutCEF(raw, e.Normalized) // the cef column holds it
	r.raw = append(r.raw, string(stored))
	return nil
}

// findingRows buffers rows of the findings table.
type findingRows struct {
	id, tenant, principal, subject, clientID, detector, summary, raw []string
	department, peerGroup, check, explanation                        []string
	tags                                                             [][]string
	evidence                                                         evidenceRows
	time, ingest, windowStart, windowEnd                             []time.Time
	timeMS                                                           []uint64
	schema                                                           []uint16
	score                                                            []float64
	sev                                                              []uint8
	featureNames, eventIDs                                           [][]string
	featureValues                                                    [][]float64
}

func (r *findingRows) columns() []column {
	return append([]column{
		{"id", r.id}, {"time", r.time}, {"time_ms", r.timeMS}, {"ingest_time", r.ingest},
		{"schema", r.schema}, {"tenant", r.tenant}, {"principal", r.principal}, {"subject", r.subject},
		{"client_id", r.clientID}, {"department", r.department}, {"peer_group", r.peerGroup}, {"detector", r.detector},
		{"check", r.check}, {"tags", r.tags}, {"score", r.score}, {"severity", r.sev},
		{"summary", r.summary}, {"explanation", r.explanation}, {"window_start", r.windowStart}, {"window_end", r.windowEnd},
		{"feature_names", r.featureNames}, {"feature_values", r.featureValues}, {"event_ids", r.eventIDs},
		{"raw", r.raw},
	}, r.evidence.columns()...)
}

func (r *findingRows) len() int { return len(r.id) }

func (r *findingRows) add(f *event.Finding, raw []byte, ingest time.Time) error {
	var c conv
	t := c.dateTime("time", f.Time, true)
	ws, we := c.dateTime("window start", f.WindowStart, false), c.dateTime("window end", f.WindowEnd, false)
	score := c.finite("score", f.Score)
	names := slices.Sorted(maps.Keys(f.Features))
	values := make([]float64, len(names))
	for i, k := range names {
		values[i] = c.finite("feature "+k, f.Features[k])
	}
	ev := evidenceOf(&c, f.Evidence)
	if c.err != nil {
		return fmt.Errorf("finding %s: %w", f.ID, c.err)
	}
	r.id = append(r.id, f.ID)
	r.time = append(r.time, t)
	r.timeMS = append(r.timeMS, unixMilli(f.Time))
	r.ingest = append(r.ingest, ingest)
	r.schema = append(r.schema, schemaVersion(f.Schema))
	r.tenant = append(r.tenant, f.Tenant)
	r.principal = append(r.principal, event.PrincipalID(f.Principal))
	r.subject = append(r.subject, f.Principal.Subject)
	r.clientID = append(r.clientID, f.Principal.ClientID)
	r.department = append(r.department, f.Principal.Department)
	r.peerGroup = append(r.peerGroup, f.Principal.PeerGroup)
	r.detector = append(r.detector, f.Detector)
	r.check = append(r.check, f.Check)
	r.tags = append(r.tags, orEmpty(f.Tags))
	r.evidence.add(ev)
	r.score = append(r.score, score)
	r.sev = append(r.sev, severity(f.Severity))
	r.summary = append(r.summary, f.Summary)
	r.explanation = append(r.explanation, f.Explanation)
	r.windowStart = append(r.windowStart, ws)
	r.windowEnd = append(r.windowEnd, we)
	r.featureNames = append(r.featureNames, names)
	r.featureValues = append(r.featureValues, values)
	r.eventIDs = append(r.eventIDs, orEmpty(f.EventIDs))
	r.raw = append(r.raw, string(raw))
	return nil
}

// actionRows buffers rows of the actions table.
type actionRows struct {
	id, tenant, subject, findingID, kind, target, status, detail, raw []string
	scope, actor, playbook, reason, controlID                         []string
	time, ingest                                                      []time.Time
	timeMS, expiresMS                                                 []uint64
	schema                                                            []uint16
	attempts                                                          []uint32
	latency                                                           []float64
	dryRun                                                            []uint8
}

func (r *actionRows) columns() []column {
	return []column{
		{"id", r.id}, {"time", r.time}, {"time_ms", r.timeMS}, {"ingest_time", r.ingest},
		{"schema", r.schema}, {"tenant", r.tenant}, {"subject", r.subject}, {"finding_id", r.findingID},
		{"kind", r.kind}, {"target", r.target}, {"status", r.status}, {"detail", r.detail},
		{"attempts", r.attempts}, {"latency_ms", r.latency}, {"scope", r.scope}, {"actor", r.actor},
		{"playbook", r.playbook}, {"reason", r.reason}, {"control_id", r.controlID},
		{"expires_ms", r.expiresMS}, {"dry_run", r.dryRun}, {"raw", r.raw},
	}
}

func (r *actionRows) len() int { return len(r.id) }

func (r *actionRows) add(a *event.Action, raw []byte, ingest time.Time) error {
	var c conv
	t := c.dateTime("time", a.Time, true)
	attempts := c.u32("attempts", a.Attempts)
	lat := c.finite("latency", a.LatencyMS)
	if c.err != nil {
		return fmt.Errorf("action %s: %w", a.ID, c.err)
	}
	r.id = append(r.id, a.ID)
	r.time = append(r.time, t)
	r.timeMS = append(r.timeMS, unixMilli(a.Time))
	r.ingest = append(r.ingest, ingest)
	r.schema = append(r.schema, schemaVersion(a.Schema))
	r.tenant = append(r.tenant, a.Tenant)
	r.subject = append(r.subject, a.Subject)
	r.findingID = append(r.findingID, a.FindingID)
	r.kind = append(r.kind, string(a.Kind))
	r.target = append(r.target, a.Target)
	r.status = append(r.status, a.Status)
	r.detail = append(r.detail, a.Detail)
	r.attempts = append(r.attempts, attempts)
	r.latency = append(r.latency, lat)
	r.scope = append(r.scope, string(a.Scope))
	r.actor = append(r.actor, a.Actor)
	r.playbook = append(r.playbook, a.Playbook)
	r.reason = append(r.reason, a.Reason)
	r.controlID = append(r.controlID, a.ControlID)
	var exp uint64
	if a.Expires != nil {
		exp = unixMilli(*a.Expires)
	}
	r.expiresMS = append(r.expiresMS, exp)
	var dry uint8
	if a.DryRun {
		dry = 1
	}
	r.dryRun = append(r.dryRun, dry)
	r.raw = append(r.raw, string(raw))
	return nil
}

// ScoreID is the id of a score row: a score record has none of its own, and a principal has at
// most one score per millisecond, so tenant, subject and time identify it (and a replayed score
// gets the same id).
func ScoreID(s *event.Score) string {
	return fmt.Sprintf("%s/%s/%d", s.Tenant, s.Subject, s.Time.UnixMilli())
}

// scoreRows buffers rows of the scores table.
type scoreRows struct {
	id, tenant, subject, raw, explanation []string
	time, ingest                          []time.Time
	timeMS                                []uint64
	schema                                []uint16
	score                                 []float64
	names, contribNames                   [][]string
	values, contribValues                 [][]float64
	evidence                              evidenceRows
}

func (r *scoreRows) columns() []column {
	return append([]column{
		{"id", r.id}, {"time", r.time}, {"time_ms", r.timeMS}, {"ingest_time", r.ingest},
		{"schema", r.schema}, {"tenant", r.tenant}, {"subject", r.subject}, {"score", r.score},
		{"component_names", r.names}, {"component_values", r.values}, {"explanation", r.explanation},
		{"contribution_names", r.contribNames}, {"contribution_values", r.contribValues}, {"raw", r.raw},
	}, r.evidence.columns()...)
}

func (r *scoreRows) len() int { return len(r.id) }

func (r *scoreRows) add(sc *event.Score, raw []byte, ingest time.Time) error {
	var c conv
	t := c.dateTime("time", sc.Time, true)
	score := c.finite("score", sc.Score)
	names := slices.Sorted(maps.Keys(sc.Components))
	values := make([]float64, len(names))
	for i, k := range names {
		values[i] = c.finite("component "+k, sc.Components[k])
	}
	cnames := slices.Sorted(maps.Keys(sc.Contributions))
	cvalues := make([]float64, len(cnames))
	for i, k := range cnames {
		cvalues[i] = c.finite("contribution "+k, sc.Contributions[k])
	}
	ev := evidenceOf(&c, sc.Evidence)
	if c.err != nil {
		return fmt.Errorf("score %s: %w", ScoreID(sc), c.err)
	}
	r.id = append(r.id, ScoreID(sc))
	r.time = append(r.time, t)
	r.timeMS = append(r.timeMS, unixMilli(sc.Time))
	r.ingest = append(r.ingest, ingest)
	r.schema = append(r.schema, schemaVersion(sc.Schema))
	r.tenant = append(r.tenant, sc.Tenant)
	r.subject = append(r.subject, sc.Subject)
	r.score = append(r.score, score)
	r.names = append(r.names, names)
	r.values = append(r.values, values)
	r.explanation = append(r.explanation, sc.Explanation)
	r.contribNames = append(r.contribNames, cnames)
	r.contribValues = append(r.contribValues, cvalues)
	r.evidence.add(ev)
	r.raw = append(r.raw, string(raw))
	return nil
}
