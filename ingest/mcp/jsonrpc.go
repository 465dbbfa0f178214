package mcp

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/mcpwatch/mcpwatch/event"
)

// JSON-RPC error codes the gateway answers with. The standard ones come from JSON-RPC 2.0;
// CodeHeaderMismatch is the MCP code for Mcp-Method/Mcp-Name headers that contradict the body.
// mcpwatch's own codes sit in -32080..-32089 of the implementation-defined server range, clear of
// the codes MCP and its SDKs use (-32000/-32001 are the TypeScript SDK's connection-closed and
// request-timeout, -32002 resource-not-found, -32020..-32022 and -32042 the MCP protocol errors),
// so a client never mistakes a gateway refusal for an upstream failure.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeInvalidParams  = -32602
	CodeHeaderMismatch = -32020

	// CodeDenied answers a call refused by an active revocation or quarantine (HTTP 403).
	CodeDenied = -32081
	// CodeUnauthenticated answers a request without a valid bearer token (HTTP 401).
	CodeUnauthenticated = -32082
	// CodeUpstreamUnavailable answers a call the upstream server could not be reached for (HTTP 502).
	CodeUpstreamUnavailable = -32084
	// CodeAuditUnavailable: the audit trail cannot take the call (Kafka unreachable and the spool
	// full) and the gateway fails closed rather than serve unaudited.
	CodeAuditUnavailable = -32083
)

// Limits on identifiers. Ids are kept per pending request and methods become metric labels, so an
// unbounded one is a memory lever for the client; names and URIs are only shortened for the event.
const (
	maxIDLen     = 256
	maxMethodLen = 256
	maxFieldLen  = 1024
)

// kind is the JSON-RPC role of a message.
type kind uint8

const (
	kindRequest      kind = iota + 1 // method and id
	kindNotification                 // method, no id
	kindResponse                     // result or error, and id
)

// message is what the gateway learns from one JSON-RPC message. Strings are as sent (the tool name
// is bounded by maxFieldLen); events clip the rest.
type message struct {
	kind   kind
	id     string // the id as canonical JSON text; empty for notifications
	method string
	size   int // bytes of the message on the wire

	// Requests and notifications.
	tool            string          // tools/call params.name
	argBytes        int             // tools/call params.arguments, bytes
	args            json.RawMessage // tools/call and prompts/get params.arguments; aliases the input
	resourceURI     string          // resources/read, resources/subscribe, resources/unsubscribe params.uri
	prompt          string          // prompts/get params.name
	protocolVersion string          // initialize params.protocolVersion or _meta (2026-07-28)
	clientName      string
	clientVersion   string
	traceID         string // from _meta.traceparent
	spanID          string

	// Responses.
	isError   bool // a JSON-RPC error
	errorCode int
	result    json.RawMessage // inspected once the answered method is known; aliases the input

	raw []byte // the message as received; aliases the input
	out []byte // the message as the gateway relays it, when it rewrote it (redaction, filtering)
}

// rpcError is why a message was refused, as the JSON-RPC error the gateway answers with.
type rpcError struct {
	code int
	msg  string
}

func (e *rpcError) Error() string { return fmt.Sprintf("%d %s", e.code, e.msg) }

func parseErr(format string, a ...any) *rpcError {
	return &rpcError{code: CodeParseError, msg: "parse error: " + fmt.Sprintf(format, a...)}
}

func invalid(format string, a ...any) *rpcError {
	return &rpcError{code: CodeInvalidRequest, msg: "invalid request: " + fmt.Sprintf(format, a...)}
}

// parseBody parses a POST body: one JSON-RPC message, or a batch (a JSON array, allowed by the
// 2025-03-26 revision). Any unparseable or invalid element refuses the whole body, since
// forwarding part of a batch the gateway could not read would forward what it could not audit.
func parseBody(b []byte) (msgs []message, batch bool, err *rpcError) {
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
		m, err := classify(b)
		if err != nil {
			return nil, false, err
		}
		return []message{m}, false, nil
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(b, &elems); err != nil {
		return nil, true, parseErr("%v", err)
	}
	if len(elems) == 0 {
		return nil, true, invalid("empty batch")
	}
	msgs = make([]message, 0, len(elems))
	ids := make(map[string]bool, len(elems))
	for i, e := range elems {
		m, err := classify(e)
		if err != nil {
			err.msg = fmt.Sprintf("batch element %d: %s", i, err.msg)
			return nil, true, err
		}
		// Two requests under one id cannot both be answered unambiguously.
		if m.kind == kindRequest {
			if ids[m.id] {
				return nil, true, invalid("batch element %d: request id %s used twice", i, clip(m.id, 64))
			}
			ids[m.id] = true
		}
		msgs = append(msgs, m)
	}
	return msgs, true, nil
}

// classify parses one JSON-RPC 2.0 message and extracts what the audit event and the enforcement
// check need. It is strict where parsers differ, because the upstream must act on exactly what the
// gateway saw: duplicate members and members differing from a known one only in case (which Go's
// encoding/json would silently match) are refused.
func classify(raw []byte) (message, *rpcError) {
	m := message{size: len(raw), raw: raw}
	f, err := members(raw, "jsonrpc", "id", "method", "params", "result", "error")
	if err != nil {
		return m, err
	}
	version, id, method, params, result, rerr := f[0], f[1], f[2], f[3], f[4], f[5]
	if string(version) != `"2.0"` {
		return m, invalid(`"jsonrpc" must be "2.0"`)
	}
	if id != nil {
		if m.id, err = canonicalID(id); err != nil {
			return m, err
		}
	}
	switch {
	case method != nil:
		if result != nil || rerr != nil {
			return m, invalid("a message has either a method or a result/error")
		}
		if err := jsonString(method, &m.method); err != nil || m.method == "" {
			return m, invalid(`"method" must be a non-empty string`)
		}
		if len(m.method) > maxMethodLen {
			return m, invalid("method longer than %d bytes", maxMethodLen)
		}
		m.kind = kindNotification
		if id != nil {
			if m.id == "null" {
				return m, invalid("a request id must not be null")
			}
			m.kind = kindRequest
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
		m.kind = kindResponse
		m.result = result
		if rerr != nil {
			m.isError = true
			m.errorCode = errorCode(rerr)
		}
	default:
		return m, invalid("neither a method nor a result or error")
	}
	return m, nil
}

// readParams extracts the method-specific fields the audit event carries.
func (m *message) readParams(params json.RawMessage) *rpcError {
	if params == nil || string(params) == "null" {
		if m.method == "tools/call" {
			return &rpcError{code: CodeInvalidParams, msg: "invalid params: tools/call needs params.name"}
		}
		return nil
	}
	if params[0] != '{' {
		return invalid(`MCP "params" must be an object`)
	}
	f, err := members(params, "name", "arguments", "uri", "protocolVersion", "clientInfo", "_meta")
	if err != nil {
		return err
	}
	name, args, uri, pv, ci, meta := f[0], f[1], f[2], f[3], f[4], f[5]
	switch m.method {
	case "tools/call":
		// The tool name decides quarantines: a call whose name the gateway cannot read is refused
		// rather than forwarded unchecked.
		if jsonString(name, &m.tool) != nil || m.tool == "" {
			return &rpcError{code: CodeInvalidParams, msg: "invalid params: tools/call needs a string params.name"}
		}
		if len(m.tool) > maxFieldLen {
			return &rpcError{code: CodeInvalidParams, msg: fmt.Sprintf("invalid params: tool name longer than %d bytes", maxFieldLen)}
		}
		m.argBytes = len(args)
		m.args = args
	case "prompts/get":
		_ = jsonString(name, &m.prompt)
		m.args = args
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		_ = jsonString(uri, &m.resourceURI)
	case "initialize":
		_ = jsonString(pv, &m.protocolVersion)
		m.readClientInfo(ci)
	}
	if meta != nil && meta[0] == '{' {
		// Nothing in _meta decides enforcement, so an ambiguous one only goes unread.
		mf, err := members(meta, "traceparent", metaProtocolVersion, metaClientInfo)
		if err != nil {
			return nil
		}
		var tp string
		if jsonString(mf[0], &tp) == nil {
			m.traceID, m.spanID = event.ParseTraceparent(tp)
		}
		if m.protocolVersion == "" {
			_ = jsonString(mf[1], &m.protocolVersion)
		}
		if m.clientName == "" {
			m.readClientInfo(mf[2])
		}
	}
	return nil
}

// Per-request _meta keys of the 2026-07-28 revision, where the initialize handshake is gone.
const (
	metaProtocolVersion = "io.modelcontextprotocol/protocolVersion"
	metaClientInfo      = "io.modelcontextprotocol/clientInfo"
)

func (m *message) readClientInfo(raw json.RawMessage) {
	if raw == nil || raw[0] != '{' {
		return
	}
	f, err := members(raw, "name", "version")
	if err != nil {
		return
	}
	_ = jsonString(f[0], &m.clientName)
	_ = jsonString(f[1], &m.clientVersion)
}

// resultInfo is what a result says that the audit event keeps, once the answered method is known.
type resultInfo struct {
	toolError       bool   // tools/call result with isError: the tool failed
	protocolVersion string // initialize: the negotiated version
	toolsHash       string // tools/list: SHA-256 of the tool definitions, to spot them changing
}

func inspectResult(method string, result json.RawMessage) resultInfo {
	var ri resultInfo
	if len(result) == 0 || result[0] != '{' {
		return ri
	}
	switch method {
	case "tools/call":
		if f, err := members(result, "isError"); err == nil {
			ri.toolError = string(f[0]) == "true"
		}
	case "initialize":
		if f, err := members(result, "protocolVersion"); err == nil {
			_ = jsonString(f[0], &ri.protocolVersion)
			ri.protocolVersion = clip(ri.protocolVersion, 64)
		}
	case "tools/list":
		if f, err := members(result, "tools"); err == nil && f[0] != nil {
			var buf bytes.Buffer
			if json.Compact(&buf, f[0]) == nil {
				sum := sha256.Sum256(buf.Bytes())
				ri.toolsHash = hex.EncodeToString(sum[:])
			}
		}
	}
	return ri
}

// members returns the raw values of the named members of a JSON object, nil where absent. It
// refuses anything but one object, a wanted name given twice, and a name equal to a wanted one
// under case folding: JSON parsers resolve those differently (Go's encoding/json matches
// case-insensitively and keeps the last duplicate), and the upstream must not act on another
// member than the one the gateway checked. raw must be valid JSON ([json.Valid]); the scan below
// only tracks structure, which keeps classification allocation-light on every message.
func members(raw []byte, names ...string) ([]json.RawMessage, *rpcError) {
	s := scan{b: raw}
	s.ws()
	if !s.eat('{') {
		return nil, invalid("expected a JSON object")
	}
	out := make([]json.RawMessage, len(names))
	s.ws()
	if !s.eat('}') {
		for {
			s.ws()
			key, ok := s.key()
			if !ok {
				return nil, parseErr("bad object key")
			}
			s.ws()
			if !s.eat(':') {
				return nil, parseErr("expected ':'")
			}
			s.ws()
			start := s.i
			if !s.value() {
				return nil, parseErr("bad value")
			}
			for i, n := range names {
				if key == n {
					if out[i] != nil {
						return nil, invalid("member %q given twice", n)
					}
					out[i] = raw[start:s.i]
					break
				}
				if foldEqual(key, n) {
					return nil, invalid("member %q differs from %q only in case", clip(key, 64), n)
				}
			}
			s.ws()
			if s.eat(',') {
				continue
			}
			if s.eat('}') {
				break
			}
			return nil, parseErr("expected ',' or '}'")
		}
	}
	s.ws()
	if s.i != len(raw) {
		return nil, parseErr("data after the JSON value")
	}
	return out, nil
}

// foldEqual reports whether a and b are equal under Unicode case folding, without allocating for
// the common all-ASCII case.
func foldEqual(a, b string) bool {
	if len(a) == len(b) {
		ascii := true
		for i := 0; i < len(a); i++ {
			ca, cb := a[i], b[i]
			if ca >= utf8.RuneSelf || cb >= utf8.RuneSelf {
				ascii = false
				break
			}
			if lc := ca | 0x20; ca != cb && (lc < 'a' || lc > 'z' || lc != cb|0x20) {
				return false
			}
		}
		if ascii {
			return true
		}
	}
	return strings.EqualFold(a, b)
}

// scan walks valid JSON structurally.
type scan struct {
	b []byte
	i int
}

func (s *scan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

func (s *scan) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str skips a string and reports whether it had escapes.
func (s *scan) str() (escaped, ok bool) {
	if !s.eat('"') {
		return false, false
	}
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '"':
			s.i++
			return escaped, true
		case '\\':
			escaped = true
			s.i += 2
		default:
			s.i++
		}
	}
	return escaped, false
}

// key reads an object key, decoding escapes ("n\u0061me" is "name" to every parser).
func (s *scan) key() (string, bool) {
	start := s.i
	escaped, ok := s.str()
	if !ok {
		return "", false
	}
	raw := s.b[start:s.i]
	if !escaped {
		return string(raw[1 : len(raw)-1]), true
	}
	var k string
	if json.Unmarshal(raw, &k) != nil {
		return "", false
	}
	return k, true
}

func (s *scan) value() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		_, ok := s.str()
		return ok
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				if _, ok := s.str(); !ok {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return true
				}
			}
			s.i++
		}
		return false
	}
	start := s.i
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return s.i > start
		}
		s.i++
	}
	return s.i > start
}

// canonicalID returns the id as JSON text that compares equal for equal ids: strings re-encoded
// (so "\u0061" and "a" match), numbers as written. Ids must be strings, numbers or null.
func canonicalID(raw json.RawMessage) (string, *rpcError) {
	if len(raw) > maxIDLen {
		return "", invalid("id longer than %d bytes", maxIDLen)
	}
	switch c := raw[0]; {
	case c == '"' && plainID(raw):
		return string(raw), nil
	case c == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", invalid("bad id: %v", err)
		}
		b, _ := json.Marshal(s)
		return string(b), nil
	case c == '-' || (c >= '0' && c <= '9'):
		return string(raw), nil
	case string(raw) == "null":
		return "null", nil
	}
	return "", invalid("id must be a string or a number")
}

// plainID reports whether a string id is already in the form json.Marshal gives it: printable
// ASCII without escapes or the characters Go escapes for HTML.
func plainID(raw []byte) bool {
	for _, c := range raw[1 : len(raw)-1] {
		if c < 0x20 || c >= 0x7f || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

func jsonString(raw json.RawMessage, dst *string) error {
	if raw == nil {
		return errors.New("absent")
	}
	if n := len(raw); n >= 2 && raw[0] == '"' && bytes.IndexByte(raw, '\\') < 0 {
		*dst = string(raw[1 : n-1])
		return nil
	}
	return json.Unmarshal(raw, dst)
}

func errorCode(raw json.RawMessage) int {
	f, err := members(raw, "code")
	if err != nil || f[0] == nil {
		return 0
	}
	var code int
	if json.Unmarshal(f[0], &code) != nil {
		return 0
	}
	return code
}

// clip shortens s to at most n bytes without splitting a UTF-8 sequence.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// errorBody encodes a JSON-RPC error response; id is canonical JSON text, empty meaning null.
func errorBody(id string, code int, msg string) []byte {
	if id == "" {
		id = "null"
	}
	m, _ := json.Marshal(msg)
	return fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%s,"error":{"code":%d,"message":%s}}`, id, code, m)
}
