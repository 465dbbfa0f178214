package mcpwire

import (
	"slices"
	"strconv"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/mask"
)

// Data classes masking attaches to an event whose message held what it found.
const (
	ClassPII    = "pii"
	ClassSecret = "secret"
)

// MaxArgumentsMasked bounds [event.MCP.ArgumentsMasked]. Arguments are cut after masking, never
// before, so that no finding is split by the cut and escapes its detector.
const MaxArgumentsMasked = 2 << 10

// Attributes the builder sets.
const (
	AttrSender        = "mcp.sender"               // "client" or "server", on notifications and on client answers
	AttrArgumentBytes = "mcp.tool.arguments_bytes" // tools/call requests: bytes of params.arguments
	AttrArgumentsCut  = "mcp.arguments_truncated"  // "true" when the masked arguments were cut
	// AttrUnmatched is "true" on the event of a response that answers no pending request.
	AttrUnmatched = "mcp.unmatched"
	// AttrUninspected is "true" on the event of a message too large to read, passed on unread.
	AttrUninspected = "mcp.uninspected"
)

// NewMasker returns the masker of a source's configuration: nil when noMasking, else one for cfg
// (nil: the default kinds).
func NewMasker(noMasking bool, cfg *mask.Config) (*mask.Masker, error) {
	if noMasking {
		return nil, nil
	}
	var mc mask.Config
	if cfg != nil {
		mc = *cfg
	}
	return mask.New(mc)
}

// Builder builds the audit events of one audit point: a gateway route, a stdio wrapper, an
// embedded hook. Its fields are fixed at construction; it is safe for concurrent use.
//
// What clients and servers write is masked before it is recorded, with Masker (the same masker,
// kinds and counts for every field): tool and prompt arguments ([mask.Masker.JSON]), resource
// URIs ([mask.Masker.URI]: secret query parameters and user information removed, personal data
// anywhere replaced, the URI's shape kept), prompt names, and client names and versions
// ([mask.Masker.String]). Findings in arguments, URIs and prompt names are counted in
// [event.Event.PII] and add [ClassPII] or [ClassSecret] to [event.Event.DataClasses]; the
// client's name is context repeated on every event of a session, so it is masked but not
// counted. Enforcement reads the [Message], never the event, so policies and data-class rules
// still see what was sent.
//
// Not masked, on purpose:
//   - tool names: they key quarantines, tool pins, policies and detector profiles, and a
//     response action taken on a masked name would miss the tool; MCP tool names are
//     identifiers (letters, digits, "_", "-", ".") and the gateway refuses those over
//     [MaxFieldLen];
//   - request ids and session ids: they are correlation keys (masking could make two distinct
//     ids one), and clients and servers make them from counters and random bytes;
//   - methods and protocol versions: bounded protocol identifiers;
//   - error messages of JSON-RPC errors: never copied into events, only their code.
type Builder struct {
	Tenant    string
	Observer  string
	Server    string // [event.Target.Server]
	Route     string // [event.Target.Route]
	Transport string // [event.MCP.Transport]
	// Masker masks what messages carry; nil turns masking off: arguments are then left out of
	// events entirely, and URIs, prompt names and client names recorded as sent (clipped).
	Masker *mask.Masker
	// DataClasses are configured classes by target: "tool:<name>", "resource:<uri>" or
	// "prompt:<name>", matched against the message as sent, added to client requests' events.
	DataClasses map[string][]string
}

// Context is where and from whom a message was seen.
type Context struct {
	Principal event.Principal // copied into the event as it is: clone slices the caller mutates
	Session   string
	Sandbox   string
	// TraceID and SpanID are the transport's trace context (an HTTP traceparent header); a
	// message's own _meta.traceparent wins.
	TraceID, SpanID string
	// ProtocolVersion, ClientName and ClientVersion are what the session negotiated; a message
	// that names its own (initialize, or _meta in 2026-07-28) wins.
	ProtocolVersion           string
	ClientName, ClientVersion string
	Network                   event.Network
}

// Event starts the audit event of a message seen in c going in direction dir; m, when not nil,
// fills in what the message says (see [Builder] for what is masked), but not its size, sender or
// outcome: [Builder.FromClient] and [Builder.FromServer] add those.
func (b *Builder) Event(c *Context, dir event.Direction, m *Message) *event.Event {
	e := &event.Event{
		ID:        event.NewID(),
		Time:      time.Now(),
		Source:    event.SourceMCP,
		Observer:  b.Observer,
		Tenant:    b.Tenant,
		Principal: c.Principal,
		Correlation: event.Correlation{
			TraceID: c.TraceID, SpanID: c.SpanID, SessionID: c.Session,
		},
		MCP: &event.MCP{
			Direction: dir, Transport: b.Transport, ProtocolVersion: Clip(c.ProtocolVersion, MaxVersionLen),
		},
		Target:  event.Target{Server: b.Server, Route: b.Route, Sandbox: c.Sandbox},
		Network: c.Network,
		Outcome: event.Outcome{Result: event.ResultAllowed},
	}
	clientName, clientVersion := c.ClientName, c.ClientVersion
	if m != nil {
		e.Correlation.RequestID = m.ID
		if m.TraceID != "" {
			e.Correlation.TraceID, e.Correlation.SpanID = m.TraceID, m.SpanID
		}
		mc := e.MCP
		mc.Method, mc.Tool = m.Method, m.Tool
		if m.ResourceURI != "" {
			uri, counts := m.ResourceURI, map[string]int(nil)
			if b.Masker != nil {
				uri, counts = b.Masker.URI(uri)
			}
			mc.ResourceURI = Clip(uri, MaxURILen)
			AddFindings(e, counts)
		}
		if m.Prompt != "" {
			name, counts := m.Prompt, map[string]int(nil)
			if b.Masker != nil {
				name, counts = b.Masker.String(name)
			}
			mc.Prompt = Clip(name, MaxFieldLen)
			AddFindings(e, counts)
		}
		if m.ProtocolVersion != "" {
			mc.ProtocolVersion = Clip(m.ProtocolVersion, MaxVersionLen)
		}
		if m.ClientName != "" {
			clientName, clientVersion = m.ClientName, m.ClientVersion
		}
	}
	e.MCP.ClientName, e.MCP.ClientVersion = b.MaskText(clientName, MaxClientLen), b.MaskText(clientVersion, MaxClientLen)
	return e
}

// FromClient builds the event of a message the client sent: a request, a notification, or the
// client's answer to a server request (audited as what it is, a request-sized message from the
// client, with the "mcp.sender" attribute). Requests and notifications get the configured data
// classes of their target and their arguments masked into [event.MCP.ArgumentsMasked] (cut at
// [MaxArgumentsMasked]); with masking off they carry no arguments at all.
func (b *Builder) FromClient(c *Context, m *Message) *event.Event {
	dir := event.DirRequest
	switch m.Kind {
	case KindNotification:
		dir = event.DirNotification
	case KindResponse:
		dir = event.DirResponse
	}
	e := b.Event(c, dir, m)
	e.Size = event.Size{Request: m.Size}
	switch m.Kind {
	case KindRequest:
		if m.Method == "tools/call" {
			SetAttr(e, AttrArgumentBytes, strconv.Itoa(m.ArgumentBytes))
		}
	case KindNotification:
		SetAttr(e, AttrSender, "client")
	case KindResponse:
		SetAttr(e, AttrSender, "client")
		if m.IsError {
			e.Outcome = event.Outcome{Result: event.ResultError, ErrorCode: m.ErrorCode}
		}
		return e
	}
	b.classify(e, m)
	return e
}

// FromServer builds the event of a message the server sent: a request to the client (sampling,
// elicitation, roots), a notification, or a response. A response's event is not paired: give it
// the request it answers with [Pair] and its outcome with [Answer].
func (b *Builder) FromServer(c *Context, m *Message) *event.Event {
	dir := event.DirResponse
	switch m.Kind {
	case KindRequest:
		dir = event.DirServerRequest
	case KindNotification:
		dir = event.DirNotification
	}
	e := b.Event(c, dir, m)
	e.Size = event.Size{Response: m.Size}
	if m.Kind == KindNotification {
		SetAttr(e, AttrSender, "server")
	}
	return e
}

// Unread starts the event of a message that was not read: malformed, or too large to inspect.
// size counts as the client's (dir [event.DirRequest]) or the server's (any other direction).
// The caller sets the outcome.
func (b *Builder) Unread(c *Context, dir event.Direction, size int) *event.Event {
	e := b.Event(c, dir, nil)
	if dir == event.DirRequest {
		e.Size.Request = size
	} else {
		e.Size.Response = size
	}
	return e
}

// Unanswered is the event of the request p with id (canonical) that gets no response: a response
// event paired with it, with outcome o.
func (b *Builder) Unanswered(c *Context, id string, p Pending, o event.Outcome) *event.Event {
	e := b.Event(c, event.DirResponse, nil)
	e.Correlation.RequestID = id
	Pair(e, p)
	e.Outcome = o
	return e
}

// Answer sets the outcome of the event e of a response m to a request for method ("" when it
// answers none known) and returns what the result said: an error's code, a tool's failure, the
// negotiated protocol version, the tools hash.
func Answer(e *event.Event, m *Message, method string) ResultInfo {
	if m.IsError {
		e.Outcome.Result, e.Outcome.ErrorCode = event.ResultError, m.ErrorCode
		return ResultInfo{}
	}
	ri := InspectResult(method, m.Result)
	if ri.ToolError {
		e.Outcome.Result, e.Outcome.Reason = event.ResultError, "tool reported an error"
	}
	if ri.ProtocolVersion != "" {
		e.MCP.ProtocolVersion = ri.ProtocolVersion
	}
	e.MCP.ToolsHash = ri.ToolsHash
	return ri
}

// Pending is what the event of a response needs from the request it answers, kept from when the
// request was seen until its answer comes.
type Pending struct {
	Method, Tool, ResourceURI, Prompt string // as the request's event recorded them: masked, clipped
	Start                             time.Time
	TraceID, SpanID                   string // the request's own trace context (_meta.traceparent)
}

// PendingOf returns what the answer to request m needs, from m and its event e (built by
// [Builder.FromClient]), the request having been sent at start.
func PendingOf(e *event.Event, m *Message, start time.Time) Pending {
	return Pending{Method: e.MCP.Method, Tool: e.MCP.Tool, ResourceURI: e.MCP.ResourceURI, Prompt: e.MCP.Prompt,
		Start: start, TraceID: m.TraceID, SpanID: m.SpanID}
}

// Pair fills in the event of a response from the request p it answers: the method, tool, resource
// and prompt, the latency, and the request's trace context when the response has none.
func Pair(e *event.Event, p Pending) {
	e.MCP.Method, e.MCP.Tool, e.MCP.LatencyMS = p.Method, p.Tool, ms(time.Since(p.Start))
	e.MCP.ResourceURI, e.MCP.Prompt = p.ResourceURI, p.Prompt
	if e.Correlation.TraceID == "" {
		e.Correlation.TraceID, e.Correlation.SpanID = p.TraceID, p.SpanID
	}
}

// MaskReason masks an event's audit reason, which may quote client input (a resource URI, an
// id). Sources call it on every event they publish.
func (b *Builder) MaskReason(e *event.Event) {
	if b.Masker != nil && e.Outcome.Reason != "" {
		e.Outcome.Reason, _ = b.Masker.String(e.Outcome.Reason)
	}
}

// MaskText masks free text for recording and clips it to n bytes; findings are not counted.
func (b *Builder) MaskText(s string, n int) string {
	if b.Masker != nil && s != "" {
		s, _ = b.Masker.String(s)
	}
	return Clip(s, n)
}

// MaskURI masks a URI or path for recording (see [mask.Masker.URI]) and clips it to n bytes;
// findings are not counted.
func (b *Builder) MaskURI(s string, n int) string {
	if b.Masker != nil && s != "" {
		s, _ = b.Masker.URI(s)
	}
	return Clip(s, n)
}

// classify adds the configured data classes of a client message's target, then masks its
// arguments (tools/call, prompts/get), whose finding counts go to [event.Event.PII] and whose
// kinds add the "pii" or "secret" class.
func (b *Builder) classify(e *event.Event, m *Message) {
	if len(b.DataClasses) > 0 {
		if t := target(m); t != "" {
			addClasses(e, b.DataClasses[t]...)
		}
	}
	if b.Masker == nil || len(m.Arguments) == 0 || string(m.Arguments) == "null" {
		return
	}
	out, counts, err := b.Masker.JSON(m.Arguments)
	if err != nil { // cannot happen: the message parsed; fail closed all the same
		var s string
		s, counts = b.Masker.String(string(m.Arguments))
		out = []byte(s)
	}
	s := string(out)
	if len(s) > MaxArgumentsMasked {
		s = Clip(s, MaxArgumentsMasked)
		SetAttr(e, AttrArgumentsCut, "true")
	}
	e.MCP.ArgumentsMasked = s
	AddFindings(e, counts)
}

// target is the key of [Builder.DataClasses] for a message, "" for methods without a target.
func target(m *Message) string {
	switch {
	case m.Tool != "":
		return "tool:" + m.Tool
	case m.ResourceURI != "":
		return "resource:" + m.ResourceURI
	case m.Prompt != "":
		return "prompt:" + m.Prompt
	}
	return ""
}

var secretKinds = map[string]bool{
	mask.KindAPIKey: true, mask.KindBearer: true, mask.KindPrivateKey: true, mask.KindAWSAccessKey: true,
	mask.KindAWSSecret: true, mask.KindJWT: true, mask.KindField: true,
}

// ClassOf is the data class a masking finding of kind implies: [ClassSecret] for credentials
// (and values redacted by a field rule), [ClassPII] for personal data, "" for truncation.
func ClassOf(kind string) string {
	switch {
	case kind == mask.KindTruncated:
		return ""
	case secretKinds[kind]:
		return ClassSecret
	}
	return ClassPII
}

// AddFindings adds masking finding counts (per kind) to an event: to [event.Event.PII], and the
// classes they imply ([ClassOf]) to [event.Event.DataClasses].
func AddFindings(e *event.Event, counts map[string]int) {
	if len(counts) == 0 {
		return
	}
	if e.PII == nil {
		e.PII = make(map[string]int, len(counts))
	}
	var classes []string
	for k, n := range counts {
		e.PII[k] += n
		if c := ClassOf(k); c != "" {
			classes = append(classes, c)
		}
	}
	addClasses(e, classes...)
}

// addClasses adds classes to the event's data classes, kept sorted and without duplicates.
func addClasses(e *event.Event, classes ...string) {
	if len(classes) == 0 {
		return
	}
	all := append(slices.Clone(e.DataClasses), classes...)
	slices.Sort(all)
	e.DataClasses = slices.Compact(all)
}

// SetAttr sets an attribute of e, making the map if needed.
func SetAttr(e *event.Event, k, v string) {
	if e.Attributes == nil {
		e.Attributes = map[string]string{}
	}
	e.Attributes[k] = v
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
