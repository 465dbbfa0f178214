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
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/ingest/mcpwire"
	"github.com/mcpwatch/mcpwatch/policy"
)

// Reasons of events the wrapper publishes.
const (
	ReasonMalformed  = "malformed JSON-RPC"
	ReasonUnanswered = "server ended without answering"
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
	cfg Config
	pub mcp.Publisher
	log *slog.Logger
	b   *mcpwire.Builder
	// toClient is shared: the server's messages and the wrapper's own refusals go to the client.
	toClient *lineWriter

	mu            sync.Mutex
	principal     event.Principal
	clientName    string
	clientVersion string
	protoVersion  string
	pending       map[pendingKey]mcpwire.Pending

	observed []*event.Event // pin changes seen in the server message being handled (its goroutine only)
}

type pendingKey struct {
	fromServer bool // a server→client request, answered by the client
	id         string
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
	masker, err := mcpwire.NewMasker(cfg.NoMasking, cfg.Mask)
	if err != nil {
		return nil, fmt.Errorf("stdio config: %w", err)
	}
	return &relay{
		cfg: cfg, pub: pub,
		b: &mcpwire.Builder{Tenant: cfg.Tenant, Observer: cfg.Observer, Server: cfg.ServerName, Transport: Transport,
			Masker: masker, DataClasses: cfg.DataClasses},
		log:       log.With("component", "mcp-stdio", "server", cfg.ServerName),
		toClient:  &lineWriter{w: clientOut},
		principal: cfg.Principal,
		pending:   make(map[pendingKey]mcpwire.Pending),
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
	msgs, batch, err := mcpwire.Parse(raw)
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
		r.toClient.write(append(mcpwire.ErrorBody("", e.Outcome.ErrorCode, ReasonMalformed), '\n'))
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
		case mcpwire.KindRequest:
			r.track(pendingKey{false, m.ID}, mcpwire.PendingOf(events[i], m, time.Now()))
		case mcpwire.KindResponse:
			if sr, ok := r.take(pendingKey{true, m.ID}); ok {
				mcpwire.Pair(events[i], sr) // the method of the server request it answers
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
func (r *relay) clientEvent(m *mcpwire.Message) *event.Event {
	if m.Kind == mcpwire.KindRequest && (m.ClientName != "" || m.ProtocolVersion != "") {
		r.mu.Lock()
		if m.ClientName != "" && (m.Method == "initialize" || r.clientName == "") {
			r.clientName = mcpwire.Clip(m.ClientName, mcpwire.MaxClientLen)
			r.clientVersion = mcpwire.Clip(m.ClientVersion, mcpwire.MaxClientLen)
			if r.cfg.Principal.ClientID == "" {
				// Recorded on every event like the client's name, so masked like it.
				r.principal.ClientID = r.b.MaskText(m.ClientName, mcpwire.MaxClientLen)
			}
		}
		if m.ProtocolVersion != "" && (m.Method == "initialize" || r.protoVersion == "") {
			r.protoVersion = mcpwire.Clip(m.ProtocolVersion, mcpwire.MaxVersionLen)
		}
		r.mu.Unlock()
	}
	return r.b.FromClient(r.context(), m)
}

// enforcing reports whether client messages are checked before they are forwarded; then what
// cannot be read cannot be checked and is refused.
func (r *relay) enforcing() bool {
	return r.cfg.Check != nil || r.cfg.Policy != nil || r.cfg.ToolPins != nil
}

// admit runs the checks a client line must pass before it is forwarded, in the gateway's order:
// revocations and quarantines (Check), tool pins, the policy, and the audit trail's health. It
// returns the refusal of the first message refused, nil when all pass.
func (r *relay) admit(events []*event.Event, msgs []mcpwire.Message) error {
	for i := range msgs {
		m := &msgs[i]
		if m.Kind == mcpwire.KindResponse {
			continue
		}
		if r.cfg.Check != nil {
			if cerr := r.cfg.Check(events[i].Principal, m.Method, m.Tool); cerr != nil {
				return cerr
			}
		}
		if st := r.cfg.ToolPins; st != nil && m.Kind == mcpwire.KindRequest && m.Method == "tools/call" {
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
				if msgs[i].Kind != mcpwire.KindResponse {
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
func (r *relay) decide(events []*event.Event, msgs []mcpwire.Message) error {
	if r.cfg.Policy == nil {
		return nil
	}
	for i := range msgs {
		m, e := &msgs[i], events[i]
		if m.Kind == mcpwire.KindResponse {
			continue
		}
		if _, governed := policy.ActionOf(m.Method); !governed {
			mcpwire.SetAttr(e, mcp.AttrPolicyEffect, "ungoverned")
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
		mcpwire.SetAttr(e, mcp.AttrPolicyEffect, string(d.Effect))
		e.Outcome.PolicyRule = d.Rule
		if d.Effect == policy.Allow {
			continue
		}
		for _, o := range events {
			if o.Attributes[mcp.AttrPolicyEffect] == "" {
				mcpwire.SetAttr(o, mcp.AttrPolicyEffect, "not_evaluated")
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

// refuse answers the client's refused line itself (a JSON-RPC error per request, as a batch if
// the line was one) and audits every message of it as denied.
func (r *relay) refuse(ctx context.Context, events []*event.Event, msgs []mcpwire.Message, batch bool, cerr error) {
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
	var ids []string
	for _, m := range msgs {
		if m.Kind == mcpwire.KindRequest {
			ids = append(ids, m.ID)
		}
	}
	if len(ids) > 0 { // notifications only: nothing to answer
		r.toClient.write(append(mcpwire.ErrorResponse(ids, batch, code, text), '\n'))
	}
}

// fromServer audits and forwards one line from the server.
func (r *relay) fromServer(ctx context.Context, line []byte) {
	raw := bytes.TrimRight(line, "\r\n")
	if len(bytes.TrimSpace(raw)) == 0 {
		r.toClient.write(line)
		return
	}
	msgs, _, err := mcpwire.Parse(raw)
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

func (r *relay) serverEvent(m *mcpwire.Message) *event.Event {
	e := r.b.FromServer(r.context(), m)
	switch m.Kind {
	case mcpwire.KindRequest:
		// Sampling, elicitation, roots: remember it to name the method of the client's answer.
		r.mu.Lock()
		r.track(pendingKey{true, m.ID}, mcpwire.Pending{Method: m.Method, Start: time.Now()})
		r.mu.Unlock()
		return e
	case mcpwire.KindNotification:
		return e
	}
	r.mu.Lock()
	pr, ok := r.take(pendingKey{false, m.ID})
	r.mu.Unlock()
	if ok {
		mcpwire.Pair(e, pr)
	} else {
		mcpwire.SetAttr(e, mcpwire.AttrUnmatched, "true")
	}
	if ri := mcpwire.Answer(e, m, pr.Method); ri.ProtocolVersion != "" {
		r.mu.Lock()
		r.protoVersion = ri.ProtocolVersion
		r.mu.Unlock()
	}
	if ok && pr.Method == "tools/list" && r.cfg.ToolPins != nil && !m.IsError {
		r.observed = mcp.ObservePins(r.cfg.ToolPins, r.cfg.ServerName, m.Result, func() *event.Event {
			ce := r.b.Event(r.context(), event.DirResponse, nil)
			ce.Correlation = e.Correlation
			return ce
		})
	}
	return e
}

// context is where the wrapper sees messages now: its principal (the slices cloned, since the
// principal may still learn its client id) and what the client said of itself.
func (r *relay) context() *mcpwire.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.principal
	p.Roles, p.AuthMethods, p.Scopes = cloneStrings(p.Roles), cloneStrings(p.AuthMethods), cloneStrings(p.Scopes)
	return &mcpwire.Context{Principal: p, ProtocolVersion: r.protoVersion, ClientName: r.clientName, ClientVersion: r.clientVersion}
}

// malformed is the event of a line that is not valid JSON-RPC, forwarded as it was.
func (r *relay) malformed(dir event.Direction, size int, err *mcpwire.Error) *event.Event {
	e := r.b.Unread(r.context(), dir, size)
	e.Outcome = event.Outcome{Result: event.ResultError, ErrorCode: err.Code, Reason: ReasonMalformed + ": " + err.Message}
	return e
}

// uninspected is the event of a line longer than MaxLineBytes, forwarded unread or, when
// dropped, refused.
func (r *relay) uninspected(ctx context.Context, dir event.Direction, size int, dropped bool) {
	e := r.b.Unread(r.context(), dir, size)
	e.Outcome.Reason = fmt.Sprintf("not inspected: longer than %d bytes", r.cfg.MaxLineBytes)
	if dropped {
		e.Outcome = event.Outcome{Result: event.ResultDenied, ErrorCode: mcpwire.CodeInvalidRequest,
			Reason: fmt.Sprintf("refused: longer than %d bytes, cannot be checked", r.cfg.MaxLineBytes)}
	}
	mcpwire.SetAttr(e, mcpwire.AttrUninspected, "true")
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
		r.publish(ctx, r.b.Unanswered(r.context(), k.id, pr, event.Outcome{Result: event.ResultError, Reason: ReasonUnanswered}))
	}
}

// track remembers a request; r.mu must be held. Beyond MaxPending it is not tracked.
func (r *relay) track(k pendingKey, pr mcpwire.Pending) {
	if _, dup := r.pending[k]; !dup && len(r.pending) >= r.cfg.MaxPending {
		return
	}
	r.pending[k] = pr
}

// take removes and returns a pending request; r.mu must be held.
func (r *relay) take(k pendingKey) (mcpwire.Pending, bool) {
	pr, ok := r.pending[k]
	if ok {
		delete(r.pending, k)
	}
	return pr, ok
}

func (r *relay) publish(ctx context.Context, e *event.Event) {
	r.b.MaskReason(e)
	r.pub.Publish(ctx, e)
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

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string(nil), s...)
}
