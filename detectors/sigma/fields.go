package sigma

import (
	"sort"
	"strconv"
	"strings"

	"github.com/mcpwatch/mcpwatch/event"
)

// Logsource is a rule's logsource: which events it applies to.
type Logsource struct {
	Product  string
	Category string
	Service  string
}

// The logsources this engine maps: product mcpwatch with one of these categories.
const (
	Product     = "mcpwatch"
	CategoryMCP = "mcp_call"
	// The kernel categories cover the kernel events (source kernel) of sandboxed MCP servers,
	// by system call (docs/ebpf.md).
	CategoryProcessCreation   = "process_creation"   // execve, execveat
	CategoryFileAccess        = "file_access"        // open, openat, openat2 (attempts)
	CategoryNetworkConnection = "network_connection" // connect (IPv4, IPv6 attempts); sendmsg refused by egress rules
)

// categories says which events each mapped logsource category covers.
var categories = map[string]func(*event.Event) bool{
	CategoryMCP:               func(e *event.Event) bool { return e.Source == event.SourceMCP && e.MCP != nil },
	CategoryProcessCreation:   kernelSyscall("execve", "execveat"),
	CategoryFileAccess:        kernelSyscall("open", "openat", "openat2"),
	CategoryNetworkConnection: kernelSyscall("connect", "sendmsg"),
}

func kernelSyscall(names ...string) func(*event.Event) bool {
	return func(e *event.Event) bool {
		if e.Source != event.SourceKernel || e.Process == nil {
			return false
		}
		for _, n := range names {
			if e.Process.Syscall == n {
				return true
			}
		}
		return false
	}
}

// unmappedCategories are Sigma categories near the mapped ones that mcpwatch cannot honour, with
// the reason a rule using one is refused.
var unmappedCategories = map[string]string{
	"file_event": "Sigma's file_event is files created or modified; the probes see open attempts without their outcome, " +
		"so mcpwatch maps them to file_access (match the open flags in attributes.kernel.open_flags if needed)",
	"process_termination": "process exits are stored but not mapped to a Sigma category yet",
}

// fieldKind is how a mapped field's value is read from an event.
type fieldKind uint8

const (
	kString fieldKind = iota // one string; "" means absent
	kList                    // a list of strings; empty means absent
	kNumber                  // a number; 0 means absent (the event omits zero values)
)

// fieldDef maps one Sigma field name onto [event.Event].
type fieldDef struct {
	name string
	kind fieldKind
	str  func(*event.Event) string
	list func(*event.Event) []string
	num  func(*event.Event) float64
	// text fields are searched by keyword lists.
	text bool
	// slot indexes the per-event cache of the field's lowered value (kString only); set by the
	// registry.
	slot int
}

func mcp(e *event.Event) *event.MCP {
	if e.MCP == nil {
		return &noMCP
	}
	return e.MCP
}

var noMCP event.MCP

func s(name string, text bool, f func(*event.Event) string) *fieldDef {
	return &fieldDef{name: name, kind: kString, str: f, text: text}
}

func l(name string, f func(*event.Event) []string) *fieldDef {
	return &fieldDef{name: name, kind: kList, list: f}
}

func n(name string, f func(*event.Event) float64) *fieldDef {
	return &fieldDef{name: name, kind: kNumber, num: f}
}

// mcpFields is the field mapping of logsource product mcpwatch, category mcp_call. Names follow
// the event's JSON names (docs/events.md), so a field is where the JSON puts it.
var mcpFields = []*fieldDef{
	s("id", false, func(e *event.Event) string { return e.ID }),
	s("source", false, func(e *event.Event) string { return string(e.Source) }),
	s("observer", false, func(e *event.Event) string { return e.Observer }),
	s("tenant", false, func(e *event.Event) string { return e.Tenant }),
	n("severity", func(e *event.Event) float64 { return float64(e.Severity) }),

	s("principal.id", true, func(e *event.Event) string { return event.PrincipalID(e.Principal) }),
	s("principal.sub", true, func(e *event.Event) string { return e.Principal.Subject }),
	s("principal.client_id", true, func(e *event.Event) string { return e.Principal.ClientID }),
	s("principal.iss", false, func(e *event.Event) string { return e.Principal.Issuer }),
	l("principal.roles", func(e *event.Event) []string { return e.Principal.Roles }),
	s("principal.jti", false, func(e *event.Event) string { return e.Principal.TokenID }),
	l("principal.amr", func(e *event.Event) []string { return e.Principal.AuthMethods }),
	l("principal.scope", func(e *event.Event) []string { return e.Principal.Scopes }),
	s("principal.acr", false, func(e *event.Event) string { return e.Principal.ACR }),
	s("principal.department", false, func(e *event.Event) string { return e.Principal.Department }),
	s("principal.peer_group", false, func(e *event.Event) string { return e.Principal.PeerGroup }),

	s("correlation.trace_id", false, func(e *event.Event) string { return e.Correlation.TraceID }),
	s("correlation.span_id", false, func(e *event.Event) string { return e.Correlation.SpanID }),
	s("correlation.session_id", false, func(e *event.Event) string { return e.Correlation.SessionID }),
	s("correlation.request_id", false, func(e *event.Event) string { return e.Correlation.RequestID }),

	s("mcp.direction", false, func(e *event.Event) string { return string(mcp(e).Direction) }),
	s("mcp.method", true, func(e *event.Event) string { return mcp(e).Method }),
	s("mcp.tool", true, func(e *event.Event) string { return mcp(e).Tool }),
	s("mcp.resource_uri", true, func(e *event.Event) string { return mcp(e).ResourceURI }),
	s("mcp.prompt", true, func(e *event.Event) string { return mcp(e).Prompt }),
	s("mcp.protocol_version", false, func(e *event.Event) string { return mcp(e).ProtocolVersion }),
	s("mcp.transport", false, func(e *event.Event) string { return mcp(e).Transport }),
	s("mcp.arguments_masked", true, func(e *event.Event) string { return mcp(e).ArgumentsMasked }),
	s("mcp.client_name", true, func(e *event.Event) string { return mcp(e).ClientName }),
	s("mcp.client_version", false, func(e *event.Event) string { return mcp(e).ClientVersion }),
	n("mcp.latency_ms", func(e *event.Event) float64 { return mcp(e).LatencyMS }),
	s("mcp.tools_hash", false, func(e *event.Event) string { return mcp(e).ToolsHash }),

	s("target.server", true, func(e *event.Event) string { return e.Target.Server }),
	s("target.route", false, func(e *event.Event) string { return e.Target.Route }),
	s("target.sandbox", false, func(e *event.Event) string { return e.Target.Sandbox }),

	s("network.src_ip", false, func(e *event.Event) string { return e.Network.SrcIP }),
	n("network.src_port", func(e *event.Event) float64 { return float64(e.Network.SrcPort) }),
	s("network.dst_ip", false, func(e *event.Event) string { return e.Network.DstIP }),
	n("network.dst_port", func(e *event.Event) float64 { return float64(e.Network.DstPort) }),
	s("network.user_agent", true, func(e *event.Event) string { return e.Network.UserAgent }),
	s("network.proxy", false, func(e *event.Event) string { return e.Network.Proxy }),

	s("outcome.result", false, func(e *event.Event) string { return string(e.Outcome.Result) }),
	s("outcome.policy_rule", false, func(e *event.Event) string { return e.Outcome.PolicyRule }),
	s("outcome.reason", true, func(e *event.Event) string { return e.Outcome.Reason }),
	n("outcome.error_code", func(e *event.Event) float64 { return float64(e.Outcome.ErrorCode) }),
	n("outcome.http_status", func(e *event.Event) float64 { return float64(e.Outcome.HTTPStatus) }),

	n("size.request", func(e *event.Event) float64 { return float64(e.Size.Request) }),
	n("size.response", func(e *event.Event) float64 { return float64(e.Size.Response) }),

	l("data_classes", func(e *event.Event) []string { return e.DataClasses }),

	s("normalized.signature", false, func(e *event.Event) string {
		if e.Normalized == nil {
			return ""
		}
		return e.Normalized.Signature
	}),
	s("normalized.name", false, func(e *event.Event) string {
		if e.Normalized == nil {
			return ""
		}
		return e.Normalized.Name
	}),
	n("normalized.sensitivity", func(e *event.Event) float64 {
		if e.Normalized == nil {
			return 0
		}
		return e.Normalized.Sensitivity
	}),
}

// processFields are the fields of kernel events (categories process_creation, file_access,
// network_connection) besides the common ones: the process that acted.
var processFields = []*fieldDef{
	n("process.pid", func(e *event.Event) float64 { return float64(proc(e).PID) }),
	n("process.ppid", func(e *event.Event) float64 { return float64(proc(e).PPID) }),
	n("process.uid", func(e *event.Event) float64 { return float64(proc(e).UID) }),
	s("process.comm", false, func(e *event.Event) string { return proc(e).Comm }),
	s("process.exe", true, func(e *event.Event) string { return proc(e).Exe }),
	l("process.args", func(e *event.Event) []string { return proc(e).Args }),
	s("process.command_line", true, func(e *event.Event) string { return strings.Join(proc(e).Args, " ") }),
	s("process.syscall", false, func(e *event.Event) string { return proc(e).Syscall }),
	s("process.path", true, func(e *event.Event) string { return proc(e).Path }),
	n("process.cgroup_id", func(e *event.Event) float64 { return float64(proc(e).CgroupID) }),
}

func proc(e *event.Event) *event.Process {
	if e.Process == nil {
		return &noProcess
	}
	return e.Process
}

var noProcess event.Process

// mcpOnly reports whether a field of [mcpFields] describes an MCP message, and so is not mapped
// for kernel events.
func mcpOnly(name string) bool {
	return strings.HasPrefix(name, "mcp.") || strings.HasPrefix(name, "size.") || name == "network.user_agent" ||
		name == "network.proxy" || name == "data_classes" || name == "normalized.sensitivity"
}

// kernelAliases are Sigma's taxonomy names (Sysmon's) for the kernel categories' fields, so rules
// written for process_creation, file_access and network_connection elsewhere read the same here.
var kernelAliases = map[string]string{
	"Image":           "process.exe",
	"CommandLine":     "process.command_line",
	"ProcessId":       "process.pid",
	"ParentProcessId": "process.ppid",
	"TargetFilename":  "process.path",
	"DestinationIp":   "network.dst_ip",
	"DestinationPort": "network.dst_port",
	"SourceIp":        "network.src_ip",
}

// aliases are shorter names a SOC is likely to guess, each for one field of [mcpFields].
var aliases = map[string]string{
	"mcp.server":     "target.server",
	"arguments":      "mcp.arguments_masked",
	"client.name":    "mcp.client_name",
	"client.version": "mcp.client_version",
	"decision":       "outcome.result",
	"principal.role": "principal.roles",
	"src_ip":         "network.src_ip",
	"user_agent":     "network.user_agent",
	"sensitivity":    "normalized.sensitivity",
}

// Prefixes of dynamic fields: "attributes.<key>" reads the event's attribute key, "pii.<kind>"
// the count of masked findings of that kind.
const (
	attrPrefix = "attributes."
	piiPrefix  = "pii."
)

var mcpFieldIndex = func() map[string]*fieldDef {
	m := make(map[string]*fieldDef, len(mcpFields))
	for _, f := range mcpFields {
		m[f.name] = f
	}
	return m
}()

// kernelFieldIndex holds the fields of the kernel categories: those of [mcpFields] that are not
// about an MCP message, and [processFields].
var kernelFieldIndex = func() map[string]*fieldDef {
	m := map[string]*fieldDef{}
	for _, f := range mcpFields {
		if !mcpOnly(f.name) {
			m[f.name] = f
		}
	}
	for _, f := range processFields {
		m[f.name] = f
	}
	return m
}()

// mapping is one logsource's field names: its fields and aliases.
type mapping struct {
	fields  map[string]*fieldDef
	aliases map[string]string
	name    string // for errors: "mcpwatch/mcp_call"
}

func mappingOf(category string) mapping {
	switch category {
	case CategoryMCP:
		return mapping{fields: mcpFieldIndex, aliases: aliases, name: Product + "/" + CategoryMCP}
	case "":
		// Correlation rules group by a field of the rules they refer to, of any category.
		all := map[string]*fieldDef{}
		for k, f := range mcpFieldIndex {
			all[k] = f
		}
		for k, f := range kernelFieldIndex {
			all[k] = f
		}
		al := map[string]string{}
		for k, v := range aliases {
			al[k] = v
		}
		for k, v := range kernelAliases {
			al[k] = v
		}
		return mapping{fields: all, aliases: al, name: "mcpwatch (any category)"}
	}
	al := map[string]string{}
	for k, v := range aliases {
		if !mcpOnly(v) {
			al[k] = v
		}
	}
	for k, v := range kernelAliases {
		al[k] = v
	}
	return mapping{fields: kernelFieldIndex, aliases: al, name: Product + "/" + category}
}

// registry resolves field names for a rule set and numbers the string fields it uses, so the
// per-event cache of lowered values is a slice indexed by slot.
type registry struct {
	used map[string]*fieldDef
	n    int
	text []*fieldDef // keyword search fields, in mapping order
}

func newRegistry() *registry {
	r := &registry{used: map[string]*fieldDef{}}
	for _, fs := range [][]*fieldDef{mcpFields, processFields} {
		for _, f := range fs {
			if f.text {
				r.text = append(r.text, r.intern(f))
			}
		}
	}
	return r
}

func (r *registry) intern(f *fieldDef) *fieldDef {
	if g, ok := r.used[f.name]; ok {
		return g
	}
	g := *f
	g.slot = -1
	if g.kind == kString {
		g.slot = r.n
		r.n++
	}
	r.used[g.name] = &g
	return &g
}

// lookup resolves a Sigma field name of a logsource category ("" for any: correlation rules),
// or says why it cannot.
func (r *registry) lookup(name, category string) (*fieldDef, string) {
	m := mappingOf(category)
	if canon, ok := m.aliases[name]; ok {
		name = canon
	}
	if f, ok := m.fields[name]; ok {
		return r.intern(f), ""
	}
	if key, ok := strings.CutPrefix(name, attrPrefix); ok && key != "" {
		return r.intern(s(name, false, func(e *event.Event) string { return e.Attributes[key] })), ""
	}
	if kind, ok := strings.CutPrefix(name, piiPrefix); ok && kind != "" {
		return r.intern(n(name, func(e *event.Event) float64 { return float64(e.PII[kind]) })), ""
	}
	reason := "unknown field " + strconv.Quote(name) + " for logsource " + m.name
	for _, f := range sortedKeys(m.fields) {
		if strings.EqualFold(f, name) {
			return nil, reason + " (field names are case-sensitive: did you mean " + strconv.Quote(f) + "?)"
		}
	}
	for _, a := range sortedKeys(m.aliases) {
		if strings.EqualFold(a, name) {
			return nil, reason + " (field names are case-sensitive: did you mean " + strconv.Quote(a) + "?)"
		}
	}
	if category == CategoryMCP {
		if _, ok := kernelFieldIndex[name]; ok || kernelAliases[name] != "" {
			return nil, reason + "; it is a field of kernel events (logsource categories process_creation, file_access, network_connection)"
		}
	} else if category != "" && (mcpFieldIndex[name] != nil || aliases[name] != "") {
		return nil, reason + "; it is a field of MCP messages (logsource category mcp_call), which kernel events do not have"
	}
	return nil, reason + "; docs/sigma.md lists the mapped fields"
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// FieldNames returns every mapped field name and alias of logsource mcpwatch/mcp_call, sorted;
// "attributes.<key>" and "pii.<kind>" stand for their families.
func FieldNames() []string {
	out := make([]string, 0, len(mcpFields)+len(aliases)+2)
	for _, f := range mcpFields {
		out = append(out, f.name)
	}
	for a := range aliases {
		out = append(out, a)
	}
	out = append(out, attrPrefix+"<key>", piiPrefix+"<kind>")
	sort.Strings(out)
	return out
}
