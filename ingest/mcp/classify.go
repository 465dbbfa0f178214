package mcp

import (
	"encoding/json"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/mask"
)

// MessageKind is the JSON-RPC role of a [Message].
type MessageKind uint8

// Message kinds.
const (
	KindRequest      = MessageKind(kindRequest)      // method and id
	KindNotification = MessageKind(kindNotification) // method, no id
	KindResponse     = MessageKind(kindResponse)     // result or error, and id
)

// Message is what the gateway's classifier learns from one JSON-RPC message, for other sources
// (the stdio wrapper of ingest/stdio) that audit MCP messages the same way. Strings are clipped to
// the lengths the gateway's events carry; Arguments and Result alias the classified input.
type Message struct {
	Kind   MessageKind
	ID     string // canonical JSON text of the id; empty for notifications
	Method string
	Size   int // bytes of the message

	// Requests and notifications.
	Tool            string
	ArgumentBytes   int             // tools/call params.arguments
	Arguments       json.RawMessage // tools/call and prompts/get params.arguments
	ResourceURI     string
	Prompt          string
	ProtocolVersion string
	ClientName      string
	ClientVersion   string
	TraceID, SpanID string // from params._meta.traceparent

	// Responses.
	IsError   bool
	ErrorCode int
	Result    json.RawMessage
}

// MessageError is why [Classify] refused a message, as the JSON-RPC error code the gateway would
// answer with ([CodeParseError], [CodeInvalidRequest], [CodeInvalidParams]).
type MessageError struct {
	Code int
	Text string
}

func (e *MessageError) Error() string { return e.Text }

// Classify parses one JSON-RPC message, or a batch (a JSON array), with the gateway's strict
// rules (see the gateway's parser): invalid UTF-8, duplicate or case-variant members and invalid
// elements refuse the whole input with a [*MessageError].
func Classify(raw []byte) (msgs []Message, batch bool, err error) {
	ms, batch, perr := parseBody(raw)
	if perr != nil {
		return nil, batch, &MessageError{Code: perr.code, Text: perr.msg}
	}
	out := make([]Message, len(ms))
	for i := range ms {
		m := &ms[i]
		out[i] = Message{
			Kind: MessageKind(m.kind), ID: m.id, Method: m.method, Size: m.size,
			Tool: m.tool, ArgumentBytes: m.argBytes, Arguments: m.args,
			ResourceURI:     clip(m.resourceURI, 2*maxFieldLen),
			Prompt:          clip(m.prompt, maxFieldLen),
			ProtocolVersion: clip(m.protocolVersion, 64),
			ClientName:      clip(m.clientName, 256),
			ClientVersion:   clip(m.clientVersion, 256),
			TraceID:         m.traceID, SpanID: m.spanID,
			IsError: m.isError, ErrorCode: m.errorCode, Result: m.result,
		}
	}
	return out, batch, nil
}

// ResultInfo is what a result says that an audit event keeps (see [InspectResult]).
type ResultInfo struct {
	ToolError       bool   // a tools/call result with isError: the tool failed
	ProtocolVersion string // initialize: the negotiated version
	ToolsHash       string // tools/list: SHA-256 of the tool definitions
}

// InspectResult reads the result of a response to method, as the gateway does.
func InspectResult(method string, result json.RawMessage) ResultInfo {
	ri := inspectResult(method, result)
	return ResultInfo{ToolError: ri.toolError, ProtocolVersion: ri.protocolVersion, ToolsHash: ri.toolsHash}
}

// NewMasker returns the masker the gateway builds: nil when noMasking, else one for cfg (nil: the
// default kinds).
func NewMasker(noMasking bool, cfg *mask.Config) (*mask.Masker, error) {
	return newMasker(Config{NoMasking: noMasking, Mask: cfg})
}

// MaskArguments masks a client message's arguments into e as the gateway does: the masked text
// (cut at [MaxArgumentsMasked]) in [event.MCP.ArgumentsMasked], the finding counts in
// [event.Event.PII] and the "pii"/"secret" classes they imply added to [event.Event.DataClasses].
// A nil masker (masking off) leaves e without arguments. DataClasses set before are replaced.
func MaskArguments(mk *mask.Masker, e *event.Event, args json.RawMessage) {
	if mk == nil || e.MCP == nil || len(args) == 0 || string(args) == "null" {
		return
	}
	// The gateway's own classification, with no configured data classes: the same masking, cut
	// and classes on every source.
	g := &Gateway{masker: mk}
	g.classify(e, &message{kind: kindRequest, args: args})
}
