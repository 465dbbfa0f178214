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
	"weak"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcpwire"
	"github.com/mcpwatch/mcpwatch/internal/mask"
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

// Hook audits an MCP server built on the official Go SDK from inside: [Hook.Middleware] and
// [Hook.SendingMiddleware] publish, for every message the server receives and sends, the audit
// events the gateway of ingest/mcp publishes for the same message on the wire. Auditing never
// changes what the server does: the hook reads requests and results, never alters them, and
// recovers from its own failures and the publisher's.
type Hook struct {
	cfg Config
	pub Publisher
	log *slog.Logger
	// b builds the events as the gateway's builder does; its masker (the default kinds) masks
	// resource URIs, prompt names and client names. Arguments go through [Config.MaskArguments].
	b *mcpwire.Builder

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
	masker, err := mask.New(mask.Config{})
	if err != nil { // the default configuration is valid
		return nil, fmt.Errorf("mcphook: %w", err)
	}
	return &Hook{
		cfg: cfg, pub: pub,
		b: &mcpwire.Builder{Tenant: cfg.Tenant, Observer: cfg.Observer, Server: cfg.ServerName, Transport: Transport,
			Masker: masker},
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
	// resourceURI and prompt are as the request's event recorded them (masked), for its answer's.
	resourceURI, prompt string
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
	params := req.GetParams()
	e := h.b.FromClient(h.context(c), clientMessage(mcpwire.KindRequest, c, params))
	if p, ok := params.(*sdk.CallToolParamsRaw); ok && !isNil(params) {
		h.arguments(e, p.Arguments)
	}
	c.resourceURI, c.prompt = e.MCP.ResourceURI, e.MCP.Prompt
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
	h.publish(ctx, h.b.FromServer(h.context(c), &mcpwire.Message{Kind: mcpwire.KindRequest, ID: c.requestID,
		Method: c.method, Tool: c.tool, Size: encodedLen(req.GetParams())}))
	return c
}

// notification publishes the event of a notification, from the client or (sent) from the server.
func (h *Hook) notification(ctx context.Context, method string, req sdk.Request, sent bool) {
	defer h.recoverInternal("notification event")
	c := h.newCall(ctx, method, req)
	params := req.GetParams()
	if sent {
		c.principal = h.sendingPrincipal(ctx, req)
		h.publish(ctx, h.b.FromServer(h.context(c), &mcpwire.Message{Kind: mcpwire.KindNotification, Method: c.method,
			Size: encodedLen(params)}))
		return
	}
	c.principal = h.principal(ctx, req)
	h.publish(ctx, h.b.FromClient(h.context(c), clientMessage(mcpwire.KindNotification, c, params)))
}

// newCall reads what every event of a message carries: method, session, client, trace context.
func (h *Hook) newCall(ctx context.Context, method string, req sdk.Request) *call {
	c := &call{method: mcpwire.Clip(method, mcpwire.MaxMethodLen), start: time.Now()}
	if ss, ok := req.GetSession().(*sdk.ServerSession); ok && ss != nil {
		c.session = mcpwire.Clip(ss.ID(), mcpwire.MaxIDLen)
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
			c.tool = mcpwire.Clip(p.Name, mcpwire.MaxFieldLen)
		}
	}
	c.protocolVersion = mcpwire.Clip(c.protocolVersion, mcpwire.MaxVersionLen)
	c.clientName = mcpwire.Clip(c.clientName, mcpwire.MaxClientLen)
	c.clientVersion = mcpwire.Clip(c.clientVersion, mcpwire.MaxClientLen)
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

// context is where c's messages are seen, for their events.
func (h *Hook) context(c *call) *mcpwire.Context {
	return &mcpwire.Context{
		Principal: clonePrincipal(c.principal), Session: c.session, TraceID: c.traceID, SpanID: c.spanID,
		ProtocolVersion: c.protocolVersion, ClientName: c.clientName, ClientVersion: c.clientVersion,
	}
}

// clientMessage is what a message from the client says, as the gateway's parser would read it off
// the wire: the builder records and masks it as the gateway does. Its arguments are left out: they
// reach the event only through [Config.MaskArguments] ([Hook.arguments]).
func clientMessage(kind mcpwire.Kind, c *call, params sdk.Params) *mcpwire.Message {
	m := &mcpwire.Message{Kind: kind, ID: c.requestID, Method: c.method, Tool: c.tool, Size: encodedLen(params)}
	if isNil(params) {
		return m
	}
	switch p := params.(type) {
	case *sdk.ReadResourceParams:
		m.ResourceURI = p.URI
	case *sdk.SubscribeParams:
		m.ResourceURI = p.URI
	case *sdk.UnsubscribeParams:
		m.ResourceURI = p.URI
	case *sdk.GetPromptParams:
		m.Prompt = p.Name
	case *sdk.CallToolParamsRaw:
		m.ArgumentBytes = len(p.Arguments)
	}
	return m
}

// arguments records, if the server gave a masker and a tool call's arguments are small enough,
// their masked text and what the masking found (counted and classed as the gateway does).
func (h *Hook) arguments(e *event.Event, args json.RawMessage) {
	if h.cfg.MaskArguments == nil || len(args) == 0 {
		return
	}
	if len(args) > h.cfg.MaxArgumentBytes {
		mcpwire.SetAttr(e, "mcp.tool.arguments_omitted", "too large to mask")
		return
	}
	masked, pii, ok := h.mask(args)
	if !ok {
		mcpwire.SetAttr(e, "mcp.tool.arguments_omitted", "masking failed")
		return
	}
	e.MCP.ArgumentsMasked = mcpwire.Clip(masked, h.cfg.MaxArgumentBytes)
	mcpwire.AddFindings(e, pii)
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
	e := h.b.Event(h.context(c), event.DirResponse, &mcpwire.Message{Kind: mcpwire.KindResponse, ID: c.requestID})
	mcpwire.Pair(e, mcpwire.Pending{Method: c.method, Tool: c.tool, ResourceURI: c.resourceURI, Prompt: c.prompt,
		Start: c.start, TraceID: c.traceID, SpanID: c.spanID})
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
				e.MCP.ProtocolVersion = mcpwire.Clip(r.ProtocolVersion, mcpwire.MaxVersionLen)
			}
		case *sdk.ListToolsResult:
			e.MCP.ToolsHash = ToolsHash(r.Tools)
		}
	}
	if c.fromServer {
		// The client answering a server request: a request-sized message from the client, as
		// the gateway records it.
		e.Size.Request = size
		mcpwire.SetAttr(e, mcpwire.AttrSender, "client")
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
		return mcpwire.Clip(v, 256)
	case runtime.Error:
		return mcpwire.Clip(v.Error(), 256)
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
