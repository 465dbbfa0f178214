package mcpwire

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/mcpwatch/mcpwatch/event"
)

// The JSON-RPC 2.0 error codes of a message [Parse] refuses.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeInvalidParams  = -32602
)

// Limits on what a message may carry and what events keep of it. Ids are kept per pending
// request and methods become metric labels, so an unbounded one is a memory lever for the client:
// [Parse] refuses longer ones. Names, URIs and client details are only shortened for the event.
const (
	MaxIDLen      = 256      // bytes of a request id as sent; longer ids are refused
	MaxMethodLen  = 256      // bytes of a method name; longer ones are refused
	MaxFieldLen   = 1024     // bytes of a tool name (longer ones refused) and of a prompt name in events
	MaxURILen     = 2 * 1024 // bytes of a resource URI in events
	MaxVersionLen = 64       // bytes of a protocol version in events
	MaxClientLen  = 256      // bytes of a client name or version in events
)

// Kind is the JSON-RPC role of a [Message].
type Kind uint8

// Message kinds.
const (
	KindRequest      Kind = iota + 1 // method and id
	KindNotification                 // method, no id
	KindResponse                     // result or error, and id
)

// Message is what the parser learns from one JSON-RPC message. Strings are as sent: the id,
// method and tool name are bounded ([MaxIDLen], [MaxMethodLen], [MaxFieldLen]) since the parser
// refuses longer ones; the rest only by the message's size, and the [Builder] clips them for
// events. Arguments, Result and Raw alias the parsed input.
type Message struct {
	Kind   Kind
	ID     string // the id in its canonical form ([CanonicalID]); empty for notifications
	Method string
	Size   int // bytes of the message as received

	// Requests and notifications.
	Tool            string          // tools/call params.name
	ArgumentBytes   int             // tools/call params.arguments, bytes
	Arguments       json.RawMessage // tools/call and prompts/get params.arguments
	ResourceURI     string          // resources/read, resources/subscribe, resources/unsubscribe params.uri
	Prompt          string          // prompts/get params.name
	ProtocolVersion string          // initialize params.protocolVersion, or _meta (2026-07-28)
	ClientName      string          // initialize params.clientInfo, or _meta (2026-07-28)
	ClientVersion   string
	TraceID, SpanID string // from params._meta.traceparent
	// ProgressToken is the progress token in its canonical form ([CanonicalID]): that a request
	// asks for (params._meta.progressToken) or that a notifications/progress reports on
	// (params.progressToken); empty when there is none or it is not a string or number.
	ProgressToken string

	// Responses.
	IsError   bool // a JSON-RPC error
	ErrorCode int
	Result    json.RawMessage // the result, to read once the answered method is known ([InspectResult])

	Raw []byte // the message as received
}

// Error is why [Parse] refused a message, as the JSON-RPC error to answer it with: Code is
// [CodeParseError], [CodeInvalidRequest] or [CodeInvalidParams].
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return e.Message }

func parseErr(format string, a ...any) *Error {
	return &Error{Code: CodeParseError, Message: "parse error: " + fmt.Sprintf(format, a...)}
}

func invalid(format string, a ...any) *Error {
	return &Error{Code: CodeInvalidRequest, Message: "invalid request: " + fmt.Sprintf(format, a...)}
}

// Parse parses a body: one JSON-RPC message, or a batch (a JSON array, allowed by the 2025-03-26
// revision). Any unparseable or invalid element refuses the whole body, since forwarding part of a
// batch an auditor could not read would forward what it could not audit. It returns a nil *Error
// on success.
func Parse(b []byte) (msgs []Message, batch bool, err *Error) {
	// JSON is UTF-8 (RFC 8259). Parsers disagree on invalid bytes (replace, reject, pass through),
	// and a tool name the gateway reads differently from the upstream could slip a quarantine.
	if !utf8.Valid(b) {
		return nil, false, parseErr("body is not valid UTF-8")
	}
	trimmed := bytes.TrimLeft(b, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, false, parseErr("empty body")
	}
	if !json.Valid(b) {
		return nil, false, parseErr("not valid JSON")
	}
	if trimmed[0] != '[' {
		m, err := ParseMessage(b)
		if err != nil {
			return nil, false, err
		}
		return []Message{m}, false, nil
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(b, &elems); err != nil {
		return nil, true, parseErr("%v", err)
	}
	if len(elems) == 0 {
		return nil, true, invalid("empty batch")
	}
	msgs = make([]Message, 0, len(elems))
	ids := make(map[string]bool, len(elems))
	for i, e := range elems {
		m, err := ParseMessage(e)
		if err != nil {
			err.Message = fmt.Sprintf("batch element %d: %s", i, err.Message)
			return nil, true, err
		}
		// Two requests under one id cannot both be answered unambiguously.
		if m.Kind == KindRequest {
			if ids[m.ID] {
				return nil, true, invalid("batch element %d: request id %s used twice", i, Clip(m.ID, 64))
			}
			ids[m.ID] = true
		}
		msgs = append(msgs, m)
	}
	return msgs, true, nil
}

// ParseMessage parses one JSON-RPC 2.0 message (not a batch) and extracts what audit events and
// enforcement need. It is strict where parsers differ, because the upstream must act on exactly
// what the auditor saw: duplicate members and members differing from a known one only in case
// (which Go's encoding/json would silently match) are refused. raw must be valid UTF-8 JSON, as
// [Parse] checks; given anything else it refuses or misreads, but never panics.
func ParseMessage(raw []byte) (Message, *Error) {
	m := Message{Size: len(raw), Raw: raw}
	f, err := Members(raw, "jsonrpc", "id", "method", "params", "result", "error")
	if err != nil {
		return m, err
	}
	version, id, method, params, result, rerr := f[0], f[1], f[2], f[3], f[4], f[5]
	if string(version) != `"2.0"` {
		return m, invalid(`"jsonrpc" must be "2.0"`)
	}
	if id != nil {
		if m.ID, err = CanonicalID(id); err != nil {
			return m, err
		}
	}
	switch {
	case method != nil:
		if result != nil || rerr != nil {
			return m, invalid("a message has either a method or a result/error")
		}
		var ok bool
		if m.Method, ok = StringValue(method); !ok || m.Method == "" {
			return m, invalid(`"method" must be a non-empty string`)
		}
		if len(m.Method) > MaxMethodLen {
			return m, invalid("method longer than %d bytes", MaxMethodLen)
		}
		m.Kind = KindNotification
		if id != nil {
			if m.ID == "null" {
				return m, invalid("a request id must not be null")
			}
			m.Kind = KindRequest
		}
		if err := m.readParams(params); err != nil {
			return m, err
		}
	case result != nil || rerr != nil:
		if result != nil && rerr != nil {
			return m, invalid("a response has a result or an error, not both")
		}
		if id == nil {
			return m, invalid("a response needs an id")
		}
		if params != nil {
			return m, invalid("a response has no params")
		}
		m.Kind = KindResponse
		m.Result = result
		if rerr != nil {
			m.IsError = true
			m.ErrorCode = errorCode(rerr)
		}
	default:
		return m, invalid("neither a method nor a result or error")
	}
	return m, nil
}

// readParams extracts the method-specific fields the audit event carries.
func (m *Message) readParams(params json.RawMessage) *Error {
	if params == nil || string(params) == "null" {
		if m.Method == "tools/call" {
			return &Error{Code: CodeInvalidParams, Message: "invalid params: tools/call needs params.name"}
		}
		return nil
	}
	if params[0] != '{' {
		return invalid(`MCP "params" must be an object`)
	}
	f, err := Members(params, "name", "arguments", "uri", "protocolVersion", "clientInfo", "_meta")
	if err != nil {
		return err
	}
	name, args, uri, pv, ci, meta := f[0], f[1], f[2], f[3], f[4], f[5]
	switch m.Method {
	case "tools/call":
		// The tool name decides quarantines: a call whose name cannot be read is refused rather
		// than forwarded unchecked.
		tool, ok := StringValue(name)
		if !ok || tool == "" {
			return &Error{Code: CodeInvalidParams, Message: "invalid params: tools/call needs a string params.name"}
		}
		if len(tool) > MaxFieldLen {
			return &Error{Code: CodeInvalidParams, Message: fmt.Sprintf("invalid params: tool name longer than %d bytes", MaxFieldLen)}
		}
		m.Tool = tool
		m.ArgumentBytes = len(args)
		m.Arguments = args
	case "prompts/get":
		m.Prompt, _ = StringValue(name)
		m.Arguments = args
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		m.ResourceURI, _ = StringValue(uri)
	case "initialize":
		m.ProtocolVersion, _ = StringValue(pv)
		m.readClientInfo(ci)
	case "notifications/progress":
		// Only here, so that the member does not make other methods' params stricter. Nothing
		// enforced depends on it: an ambiguous one only goes unread.
		if pf, err := Members(params, "progressToken"); err == nil && pf[0] != nil {
			m.ProgressToken, _ = CanonicalID(pf[0])
		}
	}
	if meta != nil && meta[0] == '{' {
		// Nothing in _meta decides enforcement, so an ambiguous one only goes unread.
		mf, err := Members(meta, "traceparent", metaProtocolVersion, metaClientInfo, "progressToken")
		if err != nil {
			return nil
		}
		if tp, ok := StringValue(mf[0]); ok {
			m.TraceID, m.SpanID = event.ParseTraceparent(tp)
		}
		if m.ProtocolVersion == "" {
			m.ProtocolVersion, _ = StringValue(mf[1])
		}
		if m.ClientName == "" {
			m.readClientInfo(mf[2])
		}
		if mf[3] != nil && m.Kind == KindRequest {
			m.ProgressToken, _ = CanonicalID(mf[3])
		}
	}
	return nil
}

// Per-request _meta keys of the 2026-07-28 revision, where the initialize handshake is gone.
const (
	metaProtocolVersion = "io.modelcontextprotocol/protocolVersion"
	metaClientInfo      = "io.modelcontextprotocol/clientInfo"
)

func (m *Message) readClientInfo(raw json.RawMessage) {
	if raw == nil || raw[0] != '{' {
		return
	}
	f, err := Members(raw, "name", "version")
	if err != nil {
		return
	}
	m.ClientName, _ = StringValue(f[0])
	m.ClientVersion, _ = StringValue(f[1])
}

// ResultInfo is what a result says that an audit event keeps, once the answered method is known
// (see [InspectResult]).
type ResultInfo struct {
	ToolError       bool   // a tools/call result with isError: the tool failed
	ProtocolVersion string // initialize: the negotiated version, clipped to [MaxVersionLen]
	ToolsHash       string // tools/list: SHA-256 of the tool definitions, to spot them changing
}

// InspectResult reads the result of a response to method.
func InspectResult(method string, result json.RawMessage) ResultInfo {
	var ri ResultInfo
	if len(result) == 0 || result[0] != '{' {
		return ri
	}
	switch method {
	case "tools/call":
		if f, err := Members(result, "isError"); err == nil {
			ri.ToolError = string(f[0]) == "true"
		}
	case "initialize":
		if f, err := Members(result, "protocolVersion"); err == nil {
			v, _ := StringValue(f[0])
			ri.ProtocolVersion = Clip(v, MaxVersionLen)
		}
	case "tools/list":
		if f, err := Members(result, "tools"); err == nil && f[0] != nil {
			var buf bytes.Buffer
			if json.Compact(&buf, f[0]) == nil {
				sum := sha256.Sum256(buf.Bytes())
				ri.ToolsHash = hex.EncodeToString(sum[:])
			}
		}
	}
	return ri
}

// StringValue decodes raw as a JSON string; false when raw is absent or not a string.
func StringValue(raw json.RawMessage) (string, bool) {
	if n := len(raw); n >= 2 && raw[0] == '"' && raw[n-1] == '"' && bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : n-1]), true
	}
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

func errorCode(raw json.RawMessage) int {
	f, err := Members(raw, "code")
	if err != nil || f[0] == nil {
		return 0
	}
	var code int
	if json.Unmarshal(f[0], &code) != nil {
		return 0
	}
	return code
}

// Clip shortens s to at most n bytes without splitting a UTF-8 sequence.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
