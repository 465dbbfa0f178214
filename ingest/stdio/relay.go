// Package stdio audits MCP over the stdio transport: [Wrap] runs a local MCP server as a child
// process and sits between it and the client, passing every newline-delimited JSON-RPC message
// through byte for byte while publishing one audit event per message in either direction, the
// same events the Streamable HTTP gateway of ingest/mcp publishes.
//
// The wrapper is transparent: it never rewrites a message and forwards even those it cannot read
// (audited as errors, or as uninspected when longer than [Config.MaxLineBytes]). The exception is
// enforcement, as in the gateway: revocations and quarantines ([Config.Check]), tool pins
// ([Config.ToolPins]), the access policy ([Config.Policy]) and a failing audit trail (a publisher
// whose Healthy method reports an error, such as a full spool in fail-closed mode). A refused
// request is answered by the wrapper with a JSON-RPC error and not forwarded, and, since a check
// needs a readable message, client lines that cannot be read or are too long to read are then
// refused too instead of forwarded unchecked. Allowed traffic passes byte for byte.
//
// Events go to an [mcp.Publisher], so the gateway's Kafka and durable publishers serve here too.
package stdio

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/internal/mask"
	"github.com/mcpwatch/mcpwatch/policy"
)

// Reasons and attributes of events the wrapper publishes.
const (
	ReasonMalformed   = "malformed JSON-RPC"
	ReasonUnanswered  = "server ended without answering"
	attrSender        = "mcp.sender"
	attrUninspected   = "mcp.uninspected"
	attrUnmatched     = "mcp.unmatched"
	attrArgumentBytes = "mcp.tool.arguments_bytes"
)

// Relay audits the MCP traffic between a client (clientIn, clientOut) and a server already
// running (serverIn, serverOut), forwarding each line unchanged. When clientIn ends, serverIn is
// closed; Relay returns when serverOut ends, after auditing the client's requests left
// unanswered. It does not wait for clientIn to end: a read from it may still be in flight. ctx
// carries values to pub; log may be nil.
func Relay(ctx context.Context, cfg Config, clientIn io.Reader, clientOut io.Writer, serverIn io.WriteCloser, serverOut io.Reader, pub mcp.Publisher, log *slog.Logger) error {
	r, err := newRelay(cfg, clientOut, pub, log)
	if err != nil {
		return err
	}
	return r.run(context.WithoutCancel(ctx), clientIn, serverIn, serverOut)
}

type relay struct {
	cfg    Config
	pub    mcp.Publisher
	log    *slog.Logger
	masker *mask.Masker
	// toClient is shared: the server's messages and the wrapper's own refusals go to the client.
	toClient *lineWriter

	mu            sync.Mutex
	principal     event.Principal
	clientName    string
	clientVersion string
	protoVersion  string
	pending       map[pendingKey]pendingReq

	observed []*event.Event // pin changes seen in the server message being handled (its goroutine only)
}

type pendingKey struct {
	fromServer bool // a server→client request, answered by the client
	id         string
}

type pendingReq struct {
	method, tool    string
	resourceURI     string
	prompt          string
	start           time.Time
	traceID, spanID string
}

func newRelay(cfg Config, clientOut io.Writer, pub mcp.Publisher, log *slog.Logger) (*relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("stdio config: %w", err)
	}
	if pub == nil {
		return nil, errors.New("stdio: a publisher is required")
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	masker, err := mcp.NewMasker(cfg.NoMasking, cfg.Mask)
	if err != nil {
		return nil, fmt.Errorf("stdio config: %w", err)
	}
	return &relay{
		cfg: cfg, pub: pub, masker: masker,
		log:       log.With("component", "mcp-stdio", "server", cfg.ServerName),
		toClient:  &lineWriter{w: clientOut},
		principal: cfg.Principal,
		pending:   make(map[pendingKey]pendingReq),
	}, nil
}

func (r *relay) run(ctx context.Context, clientIn io.Reader, serverIn io.WriteCloser, serverOut io.Reader) error {
	toServer := &lineWriter{w: serverIn}
	// With enforcement on, a line too long to check is not forwarded: padding a request must not
	// get it past the check.
	bigToServer := toServer
	if r.enforcing() {
		bigToServer = nil
	}
	go func() {
		err := r.copyLines(clientIn, bigToServer, func(line []byte) { r.fromClient(ctx, line, toServer) },
			func(n int) { r.uninspected(ctx, event.DirRequest, n, bigToServer == nil) })
		if err != nil {
			r.log.Warn("reading from the client", "err", err)
		}
		// The client is done: end of input tells a stdio server to shut down.
		if err := serverIn.Close(); err != nil {
			r.log.Debug("closing the server's stdin", "err", err)
		}
	}()
	err := r.copyLines(serverOut, r.toClient, func(line []byte) { r.fromServer(ctx, line) },
		func(n int) { r.uninspected(ctx, event.DirResponse, n, false) })
	r.unanswered(ctx)
	if err != nil {
		return fmt.Errorf("reading from the server: %w", err)
	}
	return nil
}

// copyLines reads newline-delimited lines from src until it ends. Lines up to MaxLineBytes go to
// handle, which forwards them; longer ones are forwarded to bigDst (nil: dropped) as they are
// read, unbuffered, and reported to big with their size. A last line without a newline counts.
func (r *relay) copyLines(src io.Reader, bigDst *lineWriter, handle func([]byte), big func(int)) error {
	br := bufio.NewReaderSize(src, 64<<10)
	var line []byte
	over := 0 // bytes of an oversized line forwarded so far
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			if over == 0 && len(line)+len(chunk) <= r.cfg.MaxLineBytes {
				line = append(line, chunk...)
			} else {
				if over == 0 && bigDst != nil {
					// Hold the destination for the whole line, so nothing interleaves with it.
					bigDst.mu.Lock()
					bigDst.writeLocked(line)
				}
				if over == 0 {
					over, line = len(line), line[:0]
				}
				if bigDst != nil {
					bigDst.writeLocked(chunk)
				}
				over += len(chunk)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if over > 0 {
			if bigDst != nil {
				bigDst.mu.Unlock()
			}
			big(over)
			over = 0
		} else if len(line) > 0 {
			handle(line)
		}
		if cap(line) > 1<<20 {
			line = nil // keep no huge buffer after a huge message
		}
		line = line[:0]
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// fromClient audits and forwards one line from the client, unless Check refuses it.
func (r *relay) fromClient(ctx context.Context, line []byte, toServer *lineWriter) {
	raw := bytes.TrimRight(line, "\r\n")
	if len(bytes.TrimSpace(raw)) == 0 {
		toServer.write(line)
		return
	}
	msgs, batch, err := mcp.Classify(raw)
	if err != nil {
		e := r.malformed(event.DirRequest, len(raw), err)
		if !r.enforcing() {
			r.publish(ctx, e)
			toServer.write(line)
			return
		}
		// With enforcement on, what could not be read is not forwarded: the server might read it
		// otherwise than the check did.
		e.Outcome.Result = event.ResultDenied
		r.publish(ctx, e)
		r.toClient.write(append(errorBody("null", e.Outcome.ErrorCode, ReasonMalformed), '\n'))
		return
	}
	events := make([]*event.Event, len(msgs))
	for i := range msgs {
		events[i] = r.clientEvent(&msgs[i])
	}
	if cerr := r.admit(events, msgs); cerr != nil {
		r.refuse(ctx, events, msgs, batch, cerr)
		return
	}
	r.mu.Lock()
	for i := range msgs {
		m := &msgs[i]
		switch m.Kind {
		case mcp.KindRequest:
			r.track(pendingKey{false, m.ID}, pendingReq{method: m.Method, tool: m.Tool, resourceURI: m.ResourceURI,
				prompt: m.Prompt, start: time.Now(),
				traceID: m.TraceID, spanID: m.SpanID})
		case mcp.KindResponse:
			if sr, ok := r.take(pendingKey{true, m.ID}); ok {
				events[i].MCP.Method = sr.method
				events[i].MCP.LatencyMS = ms(time.Since(sr.start))
			}
		}
	}
	r.mu.Unlock()
	// Audit before the server acts on it.
	for _, e := range events {
		r.publish(ctx, e)
	}
	toServer.write(line)
}

// clientEvent builds the event of one message from the client, learning the client's identity
// from initialize (or, in the 2026-07-28 revision without a handshake, the first request whose
// _meta names it).
func (r *relay) clientEvent(m *mcp.Message) *event.Event {
	if m.Kind == mcp.KindRequest && (m.ClientName != "" || m.ProtocolVersion != "") {
		r.mu.Lock()
		if m.ClientName != "" && (m.Method == "initialize" || r.clientName == "") {
			r.clientName, r.clientVersion = m.ClientName, m.ClientVersion
			if r.cfg.Principal.ClientID == "" {
				r.principal.ClientID = m.ClientName
			}
		}
		if m.ProtocolVersion != "" && (m.Method == "initialize" || r.protoVersion == "") {
			r.protoVersion = m.ProtocolVersion
		}
		r.mu.Unlock()
	}
	dir := event.DirRequest
	switch m.Kind {
	case mcp.KindNotification:
		dir = event.DirNotification
	case mcp.KindResponse:
		dir = event.DirResponse
	}
	e := r.event(dir, m)
	e.Size = event.Size{Request: m.Size}
	switch m.Kind {
	case mcp.KindRequest:
		if m.Method == "tools/call" {
			setAttr(e, attrArgumentBytes, strconv.Itoa(m.ArgumentBytes))
		}
		mcp.MaskArguments(r.masker, e, m.Arguments)
		r.classes(e, m)
	case mcp.KindNotification:
		setAttr(e, attrSender, "client")
	case mcp.KindResponse:
		setAttr(e, attrSender, "client")
		if m.IsError {
			e.Outcome = event.Outcome{Result: event.ResultError, ErrorCode: m.ErrorCode}
		}
	}
	return e
}

// enforcing reports whether client messages are checked before they are forwarded; then what
// cannot be read cannot be checked and is refused.
func (r *relay) enforcing() bool {
	return r.cfg.Check != nil || r.cfg.Policy != nil || r.cfg.ToolPins != nil
}

// admit runs the checks a client line must pass before it is forwarded, in the gateway's order:
// revocations and quarantines (Check), tool pins, the policy, and the audit trail's health. It
// returns the refusal of the first message refused, nil when all pass.
func (r *relay) admit(events []*event.Event, msgs []mcp.Message) error {
	for i := range msgs {
		m := &msgs[i]
		if m.Kind == mcp.KindResponse {
			continue
		}
		if r.cfg.Check != nil {
			if cerr := r.cfg.Check(events[i].Principal, m.Method, m.Tool); cerr != nil {
				return cerr
			}
		}
		if st := r.cfg.ToolPins; st != nil && m.Kind == mcp.KindRequest && m.Method == "tools/call" {
			if _, why, blocked := st.Blocked(r.cfg.ServerName, m.Tool); blocked {
				rule := mcp.PinRule(r.cfg.ServerName, m.Tool)
				return &Refusal{Rule: rule, Reason: "tool blocked: " + why + ", awaiting approval (rule " + rule + ")"}
			}
		}
	}
	if err := r.decide(events, msgs); err != nil {
		return err
	}
	// Fail closed, as the gateway: a call that cannot be audited is not served.
	if h, ok := r.pub.(interface{ Healthy() error }); ok {
		if err := h.Healthy(); err != nil {
			for i := range msgs {
				if msgs[i].Kind != mcp.KindResponse {
					return &Refusal{Rule: "audit:fail_closed", Code: mcp.CodeAuditUnavailable,
						Reason: "audit trail unavailable, call refused: " + err.Error()}
				}
			}
		}
	}
	return nil
}

// decide evaluates every governed client message by the policy and records the decision on its
// event; the first one not allowed refuses the line.
func (r *relay) decide(events []*event.Event, msgs []mcp.Message) error {
	if r.cfg.Policy == nil {
		return nil
	}
	for i := range msgs {
		m, e := &msgs[i], events[i]
		if m.Kind == mcp.KindResponse {
			continue
		}
		if _, governed := policy.ActionOf(m.Method); !governed {
			setAttr(e, mcp.AttrPolicyEffect, "ungoverned")
			continue
		}
		req := policy.Request{Tenant: r.cfg.Tenant, Principal: e.Principal, Time: time.Now(), Method: m.Method,
			Server: r.cfg.ServerName, Tool: m.Tool, ResourceURI: m.ResourceURI, Prompt: m.Prompt, DataClasses: e.DataClasses}
		if r.cfg.Scores != nil {
			subject := e.Principal.Subject
			if subject == "" {
				subject = e.Principal.ClientID
			}
			req.Risk, req.RiskKnown = r.cfg.Scores.Risk(r.cfg.Tenant, subject)
		}
		d := r.cfg.Policy.Evaluate(req)
		setAttr(e, mcp.AttrPolicyEffect, string(d.Effect))
		e.Outcome.PolicyRule = d.Rule
		if d.Effect == policy.Allow {
			continue
		}
		for _, o := range events {
			if o.Attributes[mcp.AttrPolicyEffect] == "" {
				setAttr(o, mcp.AttrPolicyEffect, "not_evaluated")
			}
		}
		text := "denied by mcpwatch policy (rule " + d.Rule + ")"
		if d.Effect == policy.StepUp {
			text = "step-up authentication required by mcpwatch policy (rule " + d.Rule + "); a stdio client cannot step up"
		}
		// The client sees the rule; the audit keeps the whole reason.
		return &Refusal{Rule: d.Rule, Reason: text, audit: d.Reason}
	}
	return nil
}

// classes adds the configured data classes of the message's target to its event.
func (r *relay) classes(e *event.Event, m *mcp.Message) {
	var key string
	switch {
	case m.Tool != "":
		key = "tool:" + m.Tool
	case m.ResourceURI != "":
		key = "resource:" + m.ResourceURI
	case m.Prompt != "":
		key = "prompt:" + m.Prompt
	}
	if cs := r.cfg.DataClasses[key]; key != "" && len(cs) > 0 {
		all := append(slices.Clone(e.DataClasses), cs...)
		slices.Sort(all)
		e.DataClasses = slices.Compact(all)
	}
}

// refuse answers the client's refused line itself (a JSON-RPC error per request, as a batch if
// the line was one) and audits every message of it as denied.
func (r *relay) refuse(ctx context.Context, events []*event.Event, msgs []mcp.Message, batch bool, cerr error) {
	text := "refused by mcpwatch: " + cerr.Error()
	rule, why, code := "", text, mcp.CodeDenied
	if rf := (*Refusal)(nil); errors.As(cerr, &rf) {
		rule = rf.Rule
		if rf.audit != "" {
			why = rf.audit
		}
		if rf.Code != 0 {
			code = rf.Code
		}
	}
	for _, e := range events {
		e.Outcome = event.Outcome{Result: event.ResultDenied, Reason: why, PolicyRule: rule, ErrorCode: code}
		r.publish(ctx, e)
	}
	var answers []json.RawMessage
	for _, m := range msgs {
		if m.Kind == mcp.KindRequest {
			answers = append(answers, errorBody(m.ID, code, text))
		}
	}
	switch {
	case len(answers) == 0: // notifications only: nothing to answer
	case !batch:
		r.toClient.write(append(answers[0], '\n'))
	default:
		b, _ := json.Marshal(answers)
		r.toClient.write(append(b, '\n'))
	}
}

// fromServer audits and forwards one line from the server.
func (r *relay) fromServer(ctx context.Context, line []byte) {
	raw := bytes.TrimRight(line, "\r\n")
	if len(bytes.TrimSpace(raw)) == 0 {
		r.toClient.write(line)
		return
	}
	msgs, _, err := mcp.Classify(raw)
	if err != nil {
		r.publish(ctx, r.malformed(event.DirResponse, len(raw), err))
		r.toClient.write(line)
		return
	}
	for i := range msgs {
		r.publish(ctx, r.serverEvent(&msgs[i]))
		for _, ce := range r.observed {
			r.log.Warn("tool definition not approved", "tool", ce.MCP.Tool, "blocked", ce.Outcome.Result == event.ResultDenied)
			r.publish(ctx, ce)
		}
		r.observed = nil
	}
	r.toClient.write(line)
}

func (r *relay) serverEvent(m *mcp.Message) *event.Event {
	switch m.Kind {
	case mcp.KindRequest:
		// Sampling, elicitation, roots: remember it to name the method of the client's answer.
		r.mu.Lock()
		r.track(pendingKey{true, m.ID}, pendingReq{method: m.Method, start: time.Now()})
		r.mu.Unlock()
		e := r.event(event.DirServerRequest, m)
		e.Size = event.Size{Response: m.Size}
		return e
	case mcp.KindNotification:
		e := r.event(event.DirNotification, m)
		e.Size = event.Size{Response: m.Size}
		setAttr(e, attrSender, "server")
		return e
	}
	r.mu.Lock()
	pr, ok := r.take(pendingKey{false, m.ID})
	r.mu.Unlock()
	ri := mcp.InspectResult(pr.method, m.Result)
	if ri.ProtocolVersion != "" {
		r.mu.Lock()
		r.protoVersion = ri.ProtocolVersion
		r.mu.Unlock()
	}
	e := r.event(event.DirResponse, m)
	e.Size = event.Size{Response: m.Size}
	if ok {
		paired(e, pr)
	} else {
		setAttr(e, attrUnmatched, "true")
	}
	switch {
	case m.IsError:
		e.Outcome.Result, e.Outcome.ErrorCode = event.ResultError, m.ErrorCode
	case ri.ToolError:
		e.Outcome.Result, e.Outcome.Reason = event.ResultError, "tool reported an error"
	}
	e.MCP.ToolsHash = ri.ToolsHash
	if ok && pr.method == "tools/list" && r.cfg.ToolPins != nil && !m.IsError {
		r.observed = mcp.ObservePins(r.cfg.ToolPins, r.cfg.ServerName, m.Result, func() *event.Event {
			ce := r.event(event.DirResponse, nil)
			ce.Correlation = e.Correlation
			return ce
		})
	}
	return e
}

// event starts the audit event of one message (m may be nil for one that could not be read).
func (r *relay) event(dir event.Direction, m *mcp.Message) *event.Event {
	r.mu.Lock()
	p := r.principal
	p.Roles, p.AuthMethods, p.Scopes = cloneStrings(p.Roles), cloneStrings(p.AuthMethods), cloneStrings(p.Scopes)
	mc := &event.MCP{Direction: dir, Transport: Transport, ProtocolVersion: r.protoVersion,
		ClientName: r.clientName, ClientVersion: r.clientVersion}
	r.mu.Unlock()
	e := &event.Event{
		ID: event.NewID(), Time: time.Now(), Source: event.SourceMCP,
		Observer: r.cfg.Observer, Tenant: r.cfg.Tenant, Principal: p,
		MCP: mc, Target: event.Target{Server: r.cfg.ServerName},
		Outcome: event.Outcome{Result: event.ResultAllowed},
	}
	if m == nil {
		return e
	}
	e.Correlation = event.Correlation{RequestID: m.ID, TraceID: m.TraceID, SpanID: m.SpanID}
	mc.Method, mc.Tool, mc.ResourceURI, mc.Prompt = m.Method, m.Tool, m.ResourceURI, m.Prompt
	if m.ProtocolVersion != "" {
		mc.ProtocolVersion = m.ProtocolVersion
	}
	if m.ClientName != "" {
		mc.ClientName, mc.ClientVersion = m.ClientName, m.ClientVersion
	}
	return e
}

// malformed is the event of a line that is not valid JSON-RPC, forwarded as it was.
func (r *relay) malformed(dir event.Direction, size int, err error) *event.Event {
	e := r.event(dir, nil)
	if dir == event.DirResponse {
		e.Size.Response = size
	} else {
		e.Size.Request = size
	}
	code := 0
	if me := (*mcp.MessageError)(nil); errors.As(err, &me) {
		code = me.Code
	}
	e.Outcome = event.Outcome{Result: event.ResultError, ErrorCode: code, Reason: ReasonMalformed + ": " + err.Error()}
	return e
}

// uninspected is the event of a line longer than MaxLineBytes, forwarded unread or, when
// dropped, refused.
func (r *relay) uninspected(ctx context.Context, dir event.Direction, size int, dropped bool) {
	e := r.event(dir, nil)
	if dir == event.DirResponse {
		e.Size.Response = size
	} else {
		e.Size.Request = size
	}
	e.Outcome.Reason = fmt.Sprintf("not inspected: longer than %d bytes", r.cfg.MaxLineBytes)
	if dropped {
		e.Outcome = event.Outcome{Result: event.ResultDenied, ErrorCode: mcp.CodeInvalidRequest,
			Reason: fmt.Sprintf("refused: longer than %d bytes, cannot be checked", r.cfg.MaxLineBytes)}
	}
	setAttr(e, attrUninspected, "true")
	r.publish(ctx, e)
}

// unanswered audits the client's requests the server never answered.
func (r *relay) unanswered(ctx context.Context) {
	r.mu.Lock()
	var left []pendingKey
	for k := range r.pending {
		if !k.fromServer {
			left = append(left, k)
		}
	}
	r.mu.Unlock()
	for _, k := range left {
		r.mu.Lock()
		pr, ok := r.take(k)
		r.mu.Unlock()
		if !ok {
			continue
		}
		e := r.event(event.DirResponse, nil)
		e.Correlation.RequestID = k.id
		paired(e, pr)
		e.Outcome = event.Outcome{Result: event.ResultError, Reason: ReasonUnanswered}
		r.publish(ctx, e)
	}
}

// track remembers a request; r.mu must be held. Beyond MaxPending it is not tracked.
func (r *relay) track(k pendingKey, pr pendingReq) {
	if _, dup := r.pending[k]; !dup && len(r.pending) >= r.cfg.MaxPending {
		return
	}
	r.pending[k] = pr
}

// take removes and returns a pending request; r.mu must be held.
func (r *relay) take(k pendingKey) (pendingReq, bool) {
	pr, ok := r.pending[k]
	if ok {
		delete(r.pending, k)
	}
	return pr, ok
}

func (r *relay) publish(ctx context.Context, e *event.Event) {
	if r.masker != nil && e.Outcome.Reason != "" {
		e.Outcome.Reason, _ = r.masker.String(e.Outcome.Reason)
	}
	r.pub.Publish(ctx, e)
}

// paired fills in a response event from the request it answers.
func paired(e *event.Event, pr pendingReq) {
	e.MCP.Method, e.MCP.Tool, e.MCP.LatencyMS = pr.method, pr.tool, ms(time.Since(pr.start))
	e.MCP.ResourceURI, e.MCP.Prompt = pr.resourceURI, pr.prompt
	if e.Correlation.TraceID == "" {
		e.Correlation.TraceID, e.Correlation.SpanID = pr.traceID, pr.spanID
	}
}

// lineWriter serializes whole lines to one destination. After a write fails (the reader went
// away) it discards, so that the other side is still drained and audited.
type lineWriter struct {
	mu     sync.Mutex
	w      io.Writer
	failed bool
}

func (lw *lineWriter) write(b []byte) {
	lw.mu.Lock()
	lw.writeLocked(b)
	lw.mu.Unlock()
}

func (lw *lineWriter) writeLocked(b []byte) {
	if lw.failed || len(b) == 0 {
		return
	}
	if _, err := lw.w.Write(b); err != nil {
		lw.failed = true
	}
}

// errorBody encodes a JSON-RPC error response; id is canonical JSON text.
func errorBody(id string, code int, msg string) []byte {
	m, _ := json.Marshal(msg)
	return fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%s,"error":{"code":%d,"message":%s}}`, id, code, m)
}

func setAttr(e *event.Event, k, v string) {
	if e.Attributes == nil {
		e.Attributes = map[string]string{}
	}
	e.Attributes[k] = v
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string(nil), s...)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
