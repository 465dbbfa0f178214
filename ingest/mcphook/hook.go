package mcphook

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"weak"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpwatch/mcpwatch/event"
)

// Publisher takes the hook's audit events; it has the shape of ingest/mcp's Publisher, so the
// gateway's Kafka publisher serves here too. Publish is called on the request path, before the
// server handles a request and after it answers, and must not block on I/O: a slow Publish
// delays the MCP call by as much. It owns e after the call. A panic in Publish is recovered and
// logged, and the call goes on.
type Publisher interface {
	Publish(ctx context.Context, e *Event)
}

// PublisherFunc adapts a function to [Publisher].
type PublisherFunc func(ctx context.Context, e *Event)

// Publish calls f.
func (f PublisherFunc) Publish(ctx context.Context, e *Event) { f(ctx, e) }

// Limits on what events copy from messages, as the gateway's.
const (
	maxIDLen      = 256
	maxMethodLen  = 256
	maxFieldLen   = 1024
	maxVersionLen = 64
	maxClientLen  = 256
)

// Hook audits an MCP server built on the official Go SDK from inside: [Hook.Middleware] and
// [Hook.SendingMiddleware] publish, for every message the server receives and sends, the audit
// events the gateway of ingest/mcp publishes for the same message on the wire. Auditing never
// changes what the server does: the hook reads requests and results, never alters them, and
// recovers from its own failures and the publisher's.
type Hook struct {
	cfg Config
	pub Publisher
	log *slog.Logger

	// idPrefix and seq make the request ids of events (see [Hook.Middleware]).
	idPrefix string
	seq      atomic.Uint64
	// sessions remembers the last principal seen on each session, for the messages the server
	// sends outside any request.
	sessions sessionTable
	// lastWarn is when each kind of failure (a constant message) was last logged.
	lastWarn sync.Map // string → *atomic.Int64
}

// New returns a hook publishing to pub. log may be nil.
func New(cfg Config, pub Publisher, log *slog.Logger) (*Hook, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("mcphook config: %w", err)
	}
	if pub == nil {
		return nil, errors.New("mcphook: a publisher is required")
	}
	if log == nil {
		log = slog.Default()
	}
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	cfg = cfg.withDefaults()
	return &Hook{
		cfg: cfg, pub: pub,
		log:      log.With("component", "mcp-hook", "server", cfg.ServerName),
		idPrefix: "hook:" + hex.EncodeToString(b[:]) + ":",
	}, nil
}

// call is what the hook keeps of a message between its event and its answer's.
type call struct {
	method, tool    string
	requestID       string
	traceID, spanID string
	session         string
	protocolVersion string
	clientName      string
	clientVersion   string
	principal       Principal
	start           time.Time
	fromServer      bool // a request the server sent, answered by the client
}

type callKey struct{}

// Middleware returns the receiving middleware, for [sdk.Server.AddReceivingMiddleware]. For each
// request from the client it publishes a request event before the server handles it and a
// response event once it has answered; for each notification, a notification event. Add it
// after any other receiving middleware: the SDK runs the last added first, and the hook should
// see what the client sent and what the client is answered, refusals by other middleware
// included.
//
// The SDK gives middleware neither the JSON-RPC request id nor the messages' wire bytes, so:
//   - [event.Correlation.RequestID] is an id the hook makes, "hook:<instance>:<n>" with a random
//     instance per hook and a counter, the same on a request's event and on its answer's. It is
//     not JSON text, so it never equals a JSON-RPC id in the gateway's events;
//   - [event.Size] is the length of the params or result as the SDK encodes them, without the
//     JSON-RPC envelope;
//   - messages the SDK refuses before middleware runs (unknown methods, params that do not
//     decode, requests before initialize) are not audited by the hook.
func (h *Hook) Middleware() sdk.Middleware {
	return func(next sdk.MethodHandler) sdk.MethodHandler {
		return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
			if isNotification(method) {
				h.notification(ctx, method, req, false)
				return next(ctx, method, req)
			}
			c := h.request(ctx, method, req)
			if c == nil {
				return next(ctx, method, req)
			}
			// Messages the server sends while handling the request are the same principal's.
			ctx = context.WithValue(ctx, callKey{}, c)
			answered := false
			defer func() {
				if !answered { // the handler panicked: audit the call, and let the panic go on
					h.answer(ctx, c, nil, errHandlerPanicked)
				}
			}()
			res, err := next(ctx, method, req)
			answered = true
			h.answer(ctx, c, res, err)
			return res, err
		}
	}
}

// SendingMiddleware returns the sending middleware, for [sdk.Server.AddSendingMiddleware]. For
// each request the server sends the client (sampling, elicitation, roots, ping) it publishes a
// server_request event and, once the client has answered, a response event; for each
// notification, a notification event. Add it before any other sending middleware, so that it
// runs last and sees the messages as they go to the client. Their principal is that of the
// client request being
// handled when the server sent them (when the server passes the handler's context on), else the
// last principal seen on the session.
func (h *Hook) SendingMiddleware() sdk.Middleware {
	return func(next sdk.MethodHandler) sdk.MethodHandler {
		return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
			if isNotification(method) {
				h.notification(ctx, method, req, true)
				return next(ctx, method, req)
			}
			c := h.serverRequest(ctx, method, req)
			res, err := next(ctx, method, req)
			if c != nil {
				h.answer(ctx, c, res, err)
			}
			return res, err
		}
	}
}

// isNotification follows the SDK, which tells notifications from requests by name.
func isNotification(method string) bool { return strings.HasPrefix(method, "notifications/") }

var errHandlerPanicked = errors.New("handler panicked")

// request publishes the event of a request from the client and returns what its answer's event
// needs, or nil if the hook failed.
func (h *Hook) request(ctx context.Context, method string, req sdk.Request) (c *call) {
	defer h.recoverInternal("request event")
	c = h.newCall(ctx, method, req)
	c.principal = h.principal(ctx, req)
	if ss, ok := req.GetSession().(*sdk.ServerSession); ok && ss != nil {
		h.sessions.remember(ss, c.principal)
	}
	c.requestID = h.idPrefix + strconv.FormatUint(h.seq.Add(1), 10)
	e := h.event(c, event.DirRequest)
	e.Correlation.RequestID = c.requestID
	params := req.GetParams()
	e.Size.Request = encodedLen(params)
	fillParams(e, params)
	if p, ok := params.(*sdk.CallToolParamsRaw); ok && !isNil(params) {
		h.arguments(e, p.Arguments)
	}
	h.publish(ctx, e)
	return c
}

// serverRequest publishes the event of a request the server sends the client.
func (h *Hook) serverRequest(ctx context.Context, method string, req sdk.Request) (c *call) {
	defer h.recoverInternal("server request event")
	c = h.newCall(ctx, method, req)
	c.principal = h.sendingPrincipal(ctx, req)
	c.fromServer = true
	c.requestID = h.idPrefix + strconv.FormatUint(h.seq.Add(1), 10)
	e := h.event(c, event.DirServerRequest)
	e.Correlation.RequestID = c.requestID
	e.Size.Response = encodedLen(req.GetParams())
	h.publish(ctx, e)
	return c
}

// notification publishes the event of a notification, from the client or (sent) from the server.
func (h *Hook) notification(ctx context.Context, method string, req sdk.Request, sent bool) {
	defer h.recoverInternal("notification event")
	c := h.newCall(ctx, method, req)
	sender := "client"
	if sent {
		sender = "server"
		c.principal = h.sendingPrincipal(ctx, req)
	} else {
		c.principal = h.principal(ctx, req)
	}
	e := h.event(c, event.DirNotification)
	params := req.GetParams()
	if sent {
		e.Size.Response = encodedLen(params)
	} else {
		e.Size.Request = encodedLen(params)
		fillParams(e, params)
	}
	e.Attributes = map[string]string{"mcp.sender": sender}
	h.publish(ctx, e)
}

// newCall reads what every event of a message carries: method, session, client, trace context.
func (h *Hook) newCall(ctx context.Context, method string, req sdk.Request) *call {
	c := &call{method: clip(method, maxMethodLen), start: time.Now()}
	if ss, ok := req.GetSession().(*sdk.ServerSession); ok && ss != nil {
		c.session = clip(ss.ID(), maxIDLen)
		if ip := ss.InitializeParams(); ip != nil {
			c.protocolVersion = ip.ProtocolVersion
			if ip.ClientInfo != nil {
				c.clientName, c.clientVersion = ip.ClientInfo.Name, ip.ClientInfo.Version
			}
		}
	}
	// Stateless (2026-07-28) requests name their protocol version and client in _meta; requests
	// over HTTP carry the negotiated version in a header.
	if r, ok := req.(interface {
		ProtocolVersion() string
		ClientInfo() *sdk.Implementation
	}); ok && !isNil(req.GetParams()) {
		if v := r.ProtocolVersion(); v != "" {
			c.protocolVersion = v
		}
		if ci := r.ClientInfo(); ci != nil {
			c.clientName, c.clientVersion = ci.Name, ci.Version
		}
	}
	var header string
	if ex := req.GetExtra(); ex != nil && ex.Header != nil {
		if v := ex.Header.Get("Mcp-Protocol-Version"); v != "" {
			c.protocolVersion = v
		}
		header = ex.Header.Get("Traceparent")
	}
	params := req.GetParams()
	switch p := params.(type) {
	case *sdk.InitializeParams: // the session has none yet
		if !isNil(params) {
			c.protocolVersion = p.ProtocolVersion
			if p.ClientInfo != nil {
				c.clientName, c.clientVersion = p.ClientInfo.Name, p.ClientInfo.Version
			}
		}
	case *sdk.CallToolParamsRaw:
		if !isNil(params) {
			c.tool = clip(p.Name, maxFieldLen)
		}
	}
	c.protocolVersion = clip(c.protocolVersion, maxVersionLen)
	c.clientName, c.clientVersion = clip(c.clientName, maxClientLen), clip(c.clientVersion, maxClientLen)
	// As the gateway: the HTTP header, overridden by the message's own _meta.traceparent.
	c.traceID, c.spanID = event.ParseTraceparent(header)
	if !isNil(params) {
		if tp, ok := params.GetMeta()["traceparent"].(string); ok {
			if t, s := event.ParseTraceparent(tp); t != "" {
				c.traceID, c.spanID = t, s
			}
		}
	}
	if c.traceID == "" {
		// A message the server sends while handling a request belongs to that request's trace.
		if parent, ok := ctx.Value(callKey{}).(*call); ok {
			c.traceID, c.spanID = parent.traceID, parent.spanID
		}
	}
	return c
}

// principal runs the configured principal function, which is the server's code: its panic must
// not fail the request either.
func (h *Hook) principal(ctx context.Context, req sdk.Request) (p Principal) {
	defer func() {
		if r := recover(); r != nil {
			p = Principal{}
			h.warn("principal function panicked", "panic", panicText(r))
		}
	}()
	return h.cfg.Principal(ctx, req)
}

// sendingPrincipal is the principal of a message the server sends: that of the request being
// handled, else the last one seen on the session.
func (h *Hook) sendingPrincipal(ctx context.Context, req sdk.Request) Principal {
	if parent, ok := ctx.Value(callKey{}).(*call); ok {
		return clonePrincipal(parent.principal)
	}
	if ss, ok := req.GetSession().(*sdk.ServerSession); ok && ss != nil {
		if p, ok := h.sessions.principal(ss); ok {
			return p
		}
	}
	return Principal{}
}

// event starts an audit event of c.
func (h *Hook) event(c *call, dir event.Direction) *event.Event {
	return &event.Event{
		ID:        event.NewID(),
		Time:      time.Now(),
		Source:    event.SourceMCP,
		Observer:  h.cfg.Observer,
		Tenant:    h.cfg.Tenant,
		Principal: clonePrincipal(c.principal),
		Correlation: event.Correlation{
			TraceID: c.traceID, SpanID: c.spanID, SessionID: c.session,
		},
		MCP: &event.MCP{
			Direction: dir, Method: c.method, Tool: c.tool, Transport: Transport,
			ProtocolVersion: c.protocolVersion, ClientName: c.clientName, ClientVersion: c.clientVersion,
		},
		Target:  event.Target{Server: h.cfg.ServerName},
		Outcome: event.Outcome{Result: event.ResultAllowed},
	}
}

// fillParams copies the method-specific fields of a request's params into its event.
func fillParams(e *event.Event, params sdk.Params) {
	if isNil(params) {
		return
	}
	switch p := params.(type) {
	case *sdk.ReadResourceParams:
		e.MCP.ResourceURI = clip(p.URI, 2*maxFieldLen)
	case *sdk.SubscribeParams:
		e.MCP.ResourceURI = clip(p.URI, 2*maxFieldLen)
	case *sdk.UnsubscribeParams:
		e.MCP.ResourceURI = clip(p.URI, 2*maxFieldLen)
	case *sdk.GetPromptParams:
		e.MCP.Prompt = clip(p.Name, maxFieldLen)
	}
}

// arguments records the size of a tool call's arguments and, if the server gave a masker and
// they are small enough, their masked text and what the masking found.
func (h *Hook) arguments(e *event.Event, args json.RawMessage) {
	e.Attributes = map[string]string{"mcp.tool.arguments_bytes": strconv.Itoa(len(args))}
	if h.cfg.MaskArguments == nil || len(args) == 0 {
		return
	}
	if len(args) > h.cfg.MaxArgumentBytes {
		e.Attributes["mcp.tool.arguments_omitted"] = "too large to mask"
		return
	}
	masked, pii, ok := h.mask(args)
	if !ok {
		e.Attributes["mcp.tool.arguments_omitted"] = "masking failed"
		return
	}
	e.MCP.ArgumentsMasked = clip(masked, h.cfg.MaxArgumentBytes)
	if len(pii) > 0 {
		e.PII = pii
	}
}

func (h *Hook) mask(args []byte) (masked string, pii map[string]int, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			masked, pii, ok = "", nil, false
			// Never the arguments, nor the panic value, which may quote them.
			h.warn("argument masking panicked")
		}
	}()
	// The masker gets its own copy: the SDK's handler reads args after the hook.
	masked, pii = h.cfg.MaskArguments(bytes.Clone(args))
	return masked, pii, true
}

// answer publishes the event of the answer to c: the server's to a client request, or the
// client's to a server request.
func (h *Hook) answer(ctx context.Context, c *call, res sdk.Result, err error) {
	defer h.recoverInternal("response event")
	e := h.event(c, event.DirResponse)
	e.Correlation.RequestID = c.requestID
	e.MCP.LatencyMS = ms(time.Since(c.start))
	var size int
	if err != nil {
		e.Outcome.Result = event.ResultError
		var we *jsonrpc.Error
		if errors.As(err, &we) {
			e.Outcome.ErrorCode = int(we.Code)
		}
		switch {
		case errors.Is(err, errHandlerPanicked):
			e.Outcome.Reason = "handler panicked"
		case errors.Is(err, context.Canceled):
			e.Outcome.Reason = "request cancelled"
		case errors.Is(err, context.DeadlineExceeded):
			e.Outcome.Reason = "request deadline exceeded"
		}
		// The error's text is never copied into the event: the SDK's own errors quote the
		// request's params, tool arguments included.
		size = encodedLen(&jsonrpc.Error{Code: int64(e.Outcome.ErrorCode), Message: err.Error()})
	} else if !isNil(res) {
		size = encodedLen(res)
		switch r := res.(type) {
		case *sdk.CallToolResult:
			if r.IsError {
				e.Outcome.Result, e.Outcome.Reason = event.ResultError, "tool reported an error"
			}
		case *sdk.InitializeResult:
			if r.ProtocolVersion != "" {
				e.MCP.ProtocolVersion = clip(r.ProtocolVersion, maxVersionLen)
			}
		case *sdk.ListToolsResult:
			e.MCP.ToolsHash = ToolsHash(r.Tools)
		}
	}
	if c.fromServer {
		// The client answering a server request: a request-sized message from the client, as
		// the gateway records it.
		e.Size.Request = size
		e.Attributes = map[string]string{"mcp.sender": "client"}
	} else {
		e.Size.Response = size
	}
	h.publish(ctx, e)
}

// ToolsHash is the [event.MCP.ToolsHash] of a tools/list result: the hex SHA-256 of the "tools"
// array as the SDK writes it on the wire (compact JSON, no HTML escaping), which is what the
// gateway of ingest/mcp hashes for the same answer, so the two agree. Every field of every tool
// counts (name, title, description, schemas, annotations, _meta), in the order the server lists
// them (the SDK's is by name): any change in what a client is told about the tools changes it.
// A paginated list has a hash per page. It returns "" if the tools cannot be encoded.
func ToolsHash(tools []*sdk.Tool) string {
	if tools == nil {
		tools = []*sdk.Tool{} // the SDK never sends null
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if enc.Encode(tools) != nil {
		return ""
	}
	sum := sha256.Sum256(bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}))
	return hex.EncodeToString(sum[:])
}

// encodedLen is the length of v encoded as the SDK encodes it, 0 if it cannot be.
func encodedLen(v any) int {
	if isNil(v) {
		return 0
	}
	var n countWriter
	enc := json.NewEncoder(&n)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) != nil {
		return 0
	}
	return int(n) - 1 // the encoder's newline
}

type countWriter int

func (w *countWriter) Write(b []byte) (int, error) {
	*w += countWriter(len(b))
	return len(b), nil
}

var _ io.Writer = (*countWriter)(nil)

// isNil reports whether v is nil or a nil pointer in an interface: the SDK passes typed nil
// params (notifications/initialized has none) and results.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

func (h *Hook) publish(ctx context.Context, e *event.Event) {
	defer func() {
		if r := recover(); r != nil {
			h.warn("audit publisher panicked; event lost", "event_id", e.ID, "panic", panicText(r))
		}
	}()
	// The event outlives the request: a cancelled call is audited all the same.
	h.pub.Publish(context.WithoutCancel(ctx), e)
}

// recoverInternal keeps a failure of the hook itself (an encoding panic in a server's result
// type, say) from failing the call. Deferred directly.
func (h *Hook) recoverInternal(what string) {
	if r := recover(); r != nil {
		h.warn("audit hook failed; event lost", "event", what, "panic", panicText(r))
	}
}

// warn logs each kind of failure at most once every 10 seconds: a failing publisher fails on
// every message. msg must be a constant.
func (h *Hook) warn(msg string, args ...any) {
	v, _ := h.lastWarn.LoadOrStore(msg, new(atomic.Int64))
	lastWarn := v.(*atomic.Int64)
	now := time.Now().UnixNano()
	last := lastWarn.Load()
	if (last != 0 && now-last < int64(10*time.Second)) || !lastWarn.CompareAndSwap(last, now) {
		return
	}
	h.log.Warn(msg+" (further failures logged at most every 10s)", args...)
}

// panicText describes a panic value without formatting arbitrary values (whose String method
// could panic again, or print a message's content).
func panicText(r any) string {
	switch v := r.(type) {
	case string:
		return clip(v, 256)
	case runtime.Error:
		return clip(v.Error(), 256)
	}
	return fmt.Sprintf("%T", r)
}

func clonePrincipal(p Principal) Principal {
	p.Roles = append([]string(nil), p.Roles...)
	p.AuthMethods = append([]string(nil), p.AuthMethods...)
	p.Scopes = append([]string(nil), p.Scopes...)
	return p
}

// sessionTable maps live sessions to the last principal seen on them. Entries go when the
// session is garbage collected, so the table holds no session alive and needs no close hook.
type sessionTable struct {
	m sync.Map // weak.Pointer[sdk.ServerSession] → *atomic.Pointer[Principal]
}

func (t *sessionTable) remember(ss *sdk.ServerSession, p Principal) {
	if p.Subject == "" && p.ClientID == "" {
		return
	}
	k := weak.Make(ss)
	v, ok := t.m.Load(k)
	if !ok {
		var loaded bool
		v, loaded = t.m.LoadOrStore(k, new(atomic.Pointer[Principal]))
		if !loaded {
			runtime.AddCleanup(ss, t.forget, k)
		}
	}
	p = clonePrincipal(p)
	v.(*atomic.Pointer[Principal]).Store(&p)
}

func (t *sessionTable) forget(k weak.Pointer[sdk.ServerSession]) { t.m.Delete(k) }

func (t *sessionTable) principal(ss *sdk.ServerSession) (Principal, bool) {
	v, ok := t.m.Load(weak.Make(ss))
	if !ok {
		return Principal{}, false
	}
	p := v.(*atomic.Pointer[Principal]).Load()
	if p == nil {
		return Principal{}, false
	}
	return clonePrincipal(*p), true
}

func (t *sessionTable) len() int {
	n := 0
	t.m.Range(func(any, any) bool { n++; return true })
	return n
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

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
