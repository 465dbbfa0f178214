package mcp

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

type exchangeKey struct{}

// exchange is one forwarded HTTP request and its response. All its methods run on the handler's
// goroutine (the reverse proxy copies the response there), so it needs no lock.
type exchange struct {
	g         *Gateway
	c         *call
	forwarded time.Time
	batch     bool
	// reqs are this POST's requests still waiting for their response, by id.
	reqs map[string]pendingReq
	// tool is the tool of a single tools/call, for re-checking quarantines while it streams.
	tool       string
	initClient sessionInfo // the client an initialize request named, for its session
	// redacting: a result on this exchange may have to be redacted ([Config.Redact]); listing: a
	// tools/list result must be filtered. Either makes the gateway hold a JSON response whole.
	redacting, listing bool
	status             int
	sse                bool
	cut                bool // a control ended the stream
	done               bool
}

// track records a forwarded request so its response can be paired with it.
func (x *exchange) track(m *message) {
	if x.reqs == nil {
		x.reqs = make(map[string]pendingReq, 1)
	}
	pr := pendingReq{method: m.method, tool: m.tool, resourceURI: clip(m.resourceURI, 2*maxFieldLen),
		prompt: clip(m.prompt, maxFieldLen), start: x.forwarded, traceID: m.traceID, spanID: m.spanID}
	x.reqs[m.id] = pr
	// With a session the response may come on a later, resumed stream; without one it cannot.
	if x.c.session != "" {
		if x.g.pending.Put(pendingKey{x.c.pkey, x.c.session, false, m.id}, pr) {
			x.g.m.evicted.Inc()
		}
	}
}

// take removes and returns the pending request a response with id answers.
func (x *exchange) take(id string) (pendingReq, bool) {
	pr, ok := x.reqs[id]
	delete(x.reqs, id)
	if x.c.session != "" {
		if gp, gok := x.g.pending.Take(pendingKey{x.c.pkey, x.c.session, false, id}); gok && !ok {
			pr, ok = gp, true
		}
	}
	return pr, ok
}

func (g *Gateway) modifyResponse(resp *http.Response) error {
	x, _ := resp.Request.Context().Value(exchangeKey{}).(*exchange)
	if x == nil {
		return nil
	}
	x.status = resp.StatusCode
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if sid := resp.Header.Get(headerSessionID); sid != "" && x.c.session == "" && ok {
		x.c.session = clip(sid, maxIDLen)
		info := x.initClient
		info.owner = x.c.pkey
		x.c.client = info
		if g.sessions.Put(x.c.session, info) {
			g.m.evicted.Inc()
		}
	}
	if x.c.r.Method == http.MethodDelete && ok && x.c.session != "" {
		g.sessions.Take(x.c.session)
	}
	limit := int(g.cfg.MaxBodyBytes)
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch ct {
	case "text/event-stream":
		x.sse = true
		// The tap may end a stream early or answer in it, so the upstream's length (if it sent
		// one) would be wrong: stream it chunked.
		resp.Header.Del("Content-Length")
		resp.ContentLength = -1
		resp.Body = &sseTap{body: resp.Body, x: x, p: newSSEParser(limit), limit: limit, scratch: make([]byte, 32<<10)}
	case "application/json":
		if x.redacting || x.listing {
			return x.holdJSON(resp, limit)
		}
		resp.Body = &jsonTap{body: resp.Body, x: x, limit: limit}
	default:
		resp.Body = &endTap{body: resp.Body, x: x}
	}
	return nil
}

// onMessage audits what the upstream sent in one response body or event: a JSON-RPC message or,
// from servers of the 2025-03-26 revision, a batch of them. It returns what to relay instead of
// raw when the gateway rewrote a message (a redacted result, a filtered tool list), else nil.
func (x *exchange) onMessage(raw []byte) []byte {
	msgs, batch, err := parseBody(raw)
	if err != nil {
		x.g.publish(x.c.r.Context(), x.unparseable(len(raw), err.msg))
		return nil
	}
	changed := false
	for i := range msgs {
		x.g.publish(x.c.r.Context(), x.upstreamEvent(&msgs[i]))
		changed = changed || msgs[i].out != nil
	}
	switch {
	case !changed:
		return nil
	case !batch:
		return msgs[0].out
	}
	parts := make([][]byte, len(msgs))
	for i, m := range msgs {
		parts[i] = m.raw
		if m.out != nil {
			parts[i] = m.out
		}
	}
	return append(append([]byte{'['}, bytes.Join(parts, []byte{','})...), ']')
}

func (x *exchange) unparseable(size int, why string) *event.Event {
	e := x.g.event(x.c, event.DirResponse, nil)
	e.Size.Response = size
	e.Outcome = event.Outcome{Result: event.ResultError, HTTPStatus: x.status, Reason: "unreadable message from upstream: " + why}
	return e
}

// uninspected is the event for a message from the upstream too large to read, passed on unread.
func (x *exchange) uninspected(size int) *event.Event {
	e := x.g.event(x.c, event.DirResponse, nil)
	e.Size.Response = size
	e.Outcome = event.Outcome{Result: event.ResultAllowed, HTTPStatus: x.status,
		Reason: fmt.Sprintf("not inspected: larger than %d bytes", x.g.cfg.MaxBodyBytes)}
	e.Attributes = map[string]string{"mcp.uninspected": "true"}
	return e
}

// paired fills in a response event from the request it answers.
func paired(e *event.Event, pr pendingReq) {
	e.MCP.Method, e.MCP.Tool, e.MCP.LatencyMS = pr.method, pr.tool, ms(time.Since(pr.start))
	e.MCP.ResourceURI, e.MCP.Prompt = pr.resourceURI, pr.prompt
	if e.Correlation.TraceID == "" {
		e.Correlation.TraceID, e.Correlation.SpanID = pr.traceID, pr.spanID
	}
}

// upstreamEvent builds the event of a message from the upstream, pairing a response with its
// request (which it removes from the pending ones).
func (x *exchange) upstreamEvent(m *message) *event.Event {
	g, c := x.g, x.c
	switch m.kind {
	case kindRequest:
		// Sampling, elicitation, roots: remember it to name the method of the client's answer.
		if g.pending.Put(pendingKey{c.pkey, c.session, true, m.id}, pendingReq{method: m.method, start: time.Now()}) {
			g.m.evicted.Inc()
		}
		e := g.event(c, event.DirServerRequest, m)
		e.Size = event.Size{Response: m.size}
		return e
	case kindNotification:
		e := g.event(c, event.DirNotification, m)
		e.Size = event.Size{Response: m.size}
		e.Attributes = map[string]string{"mcp.sender": "server"}
		return e
	}
	e := g.event(c, event.DirResponse, m)
	e.Outcome.HTTPStatus = x.status
	pr, ok := x.take(m.id)
	if ok {
		paired(e, pr)
		g.m.upstream.WithLabelValues(methodLabel(pr.method)).Observe(time.Since(pr.start).Seconds())
	} else {
		e.Attributes = map[string]string{"mcp.unmatched": "true"}
	}
	if pr.method == "tools/call" {
		// An error's message and data may quote the data as much as a result does.
		member, body := "result", m.result
		if m.isError {
			member, body = "error", nil
			if f, err := members(m.raw, "error"); err == nil {
				body = f[0]
			}
		}
		if mk := g.redact.forTool(g.cfg.ServerName, pr.tool); mk != nil && body != nil {
			if red := redactResult(mk, e, body); red != nil {
				m.out, _ = replaceMember(m.raw, member, red)
			}
		}
	}
	if m.isError {
		e.Outcome.Result, e.Outcome.ErrorCode = event.ResultError, m.errorCode
		return e
	}
	ri := inspectResult(pr.method, m.result)
	if ri.toolError {
		e.Outcome.Result, e.Outcome.Reason = event.ResultError, "tool reported an error"
	}
	if ri.protocolVersion != "" {
		e.MCP.ProtocolVersion = ri.protocolVersion
	}
	e.MCP.ToolsHash = ri.toolsHash
	if pr.method == "tools/list" && g.cfg.ToolPins != nil {
		x.observeTools(e, m.result)
	}
	if pr.method == "tools/list" && !g.cfg.ShowDeniedTools {
		// After the pins have seen the whole list: a tool they just blocked is hidden at once.
		if res := x.filterTools(e, m.result); res != nil {
			m.out, _ = replaceMember(m.raw, "result", res)
		}
	}
	return e
}

// pendingEvent is the event for a request that gets no response from the upstream.
func (x *exchange) pendingEvent(id string, pr pendingReq, o event.Outcome) *event.Event {
	e := x.g.event(x.c, event.DirResponse, nil)
	e.Correlation.RequestID = id
	paired(e, pr)
	e.Outcome = o
	return e
}

// finish audits the requests of the exchange left unanswered when the response ends. On a stateful
// session's event stream they stay pending: the client may resume the stream and get them later.
func (x *exchange) finish(eof bool) {
	if x.done {
		return
	}
	x.done = true
	ok := x.status >= 200 && x.status < 300
	if len(x.reqs) == 0 || (x.sse && ok && x.c.session != "" && !x.cut) {
		return
	}
	reason := "response stream ended before the answer"
	switch {
	case !ok:
		reason = fmt.Sprintf("upstream answered HTTP %d without a JSON-RPC response", x.status)
	case eof:
		reason = "upstream ended the response without answering"
	}
	for id := range x.reqs {
		pr, _ := x.take(id)
		x.g.publish(x.c.r.Context(), x.pendingEvent(id, pr, event.Outcome{Result: event.ResultError, HTTPStatus: x.status, Reason: reason}))
	}
}

// cutStream ends an event stream because ctl now refuses the principal, server or tool. The message
// that was about to be delivered is withheld and audited as denied; every request of the exchange
// still waiting is answered with a JSON-RPC error (returned as SSE bytes to append when inject) so
// the client's call fails at once instead of hanging.
func (x *exchange) cutStream(ctl event.Control, withheld []byte, inject bool) []byte {
	g, c := x.g, x.c
	x.cut = true
	g.m.denied.WithLabelValues(denyControl).Inc()
	text := "access revoked by mcpwatch: " + ctl.Reason
	denied := event.Outcome{Result: event.ResultDenied, PolicyRule: "control:" + ctl.Key(), Reason: text,
		ErrorCode: CodeDenied, HTTPStatus: x.status}
	var ids []string
	var events []*event.Event
	if msgs, _, err := parseBody(withheld); err != nil {
		events = append(events, x.unparseable(len(withheld), err.msg))
	} else {
		for i := range msgs {
			m := &msgs[i]
			if _, waiting := x.reqs[m.id]; m.kind == kindResponse && waiting {
				ids = append(ids, m.id)
			}
			events = append(events, x.upstreamEvent(m))
			if m.kind == kindRequest { // never delivered, so never answered
				g.pending.Take(pendingKey{c.pkey, c.session, true, m.id})
			}
		}
	}
	for _, e := range events {
		e.Outcome = denied
		g.publish(c.r.Context(), e)
	}
	for id := range x.reqs {
		pr, _ := x.take(id)
		ids = append(ids, id)
		g.publish(c.r.Context(), x.pendingEvent(id, pr, denied))
	}
	if !inject {
		return nil
	}
	var out []byte
	for _, id := range ids {
		out = append(out, "event: message\ndata: "...)
		out = append(out, errorBody(id, CodeDenied, text)...)
		out = append(out, "\n\n"...)
	}
	return out
}

// gate re-checks the controls while a stream runs: a revocation stops messages that would
// otherwise keep flowing on a stream opened before it.
func (x *exchange) gate() (event.Control, bool) {
	return x.g.ctl.Check(x.g.cfg.Tenant, x.c.principal, x.g.cfg.ServerName, x.tool, time.Now())
}

// sseTap passes an event stream through while parsing it. It holds back the bytes of the event
// being read until the event is complete, then audits it, checks the controls, and releases it
// (or ends the stream). A client acts on an event only when it is complete, so holding adds no
// latency that matters. An event larger than the limit is released unread as it arrives.
type sseTap struct {
	body     io.ReadCloser
	x        *exchange
	p        *sseParser
	limit    int
	scratch  []byte
	hold     []byte // bytes since the last release
	released bool   // part of the current event went out before it was complete
	// discarding: the current event outgrew the limit on an exchange that must redact, so its
	// bytes are dropped instead of released (see [exchange.withhold]).
	discarding bool
	evBytes    int    // bytes of the current event so far
	out        []byte // bytes ready for the reader
	outPos     int
	end        error // set once the stream is over for the reader
	eof        bool
}

func (t *sseTap) Read(b []byte) (int, error) {
	for t.outPos == len(t.out) {
		t.out, t.outPos = t.out[:0], 0
		if t.end != nil {
			return 0, t.end
		}
		t.fill()
	}
	n := copy(b, t.out[t.outPos:])
	t.outPos += n
	return n, nil
}

// fill reads one chunk from the upstream and moves what may be released to t.out.
func (t *sseTap) fill() {
	n, err := t.body.Read(t.scratch)
	chunk := t.scratch[:n]
	for len(chunk) > 0 && t.end == nil {
		k, ev, lineEnd := t.p.next(chunk)
		if !t.discarding {
			t.hold = append(t.hold, chunk[:k]...)
		}
		t.evBytes += k
		chunk = chunk[k:]
		switch {
		case ev != nil:
			t.dispatch(ev)
			t.evBytes, t.discarding = 0, false
		case lineEnd && !t.p.inEvent():
			// Comments, ids, event names, keep-alives: nothing a client acts on alone.
			t.release()
			t.released, t.evBytes = false, 0
		case len(t.hold) > t.limit && t.x.strict():
			t.hold, t.discarding = t.hold[:0], true
		case len(t.hold) > t.limit:
			t.release()
			t.released = true
		}
	}
	if err != nil && t.end == nil {
		// An incomplete event at the end of a stream is discarded by clients; pass its bytes on
		// all the same, they are the upstream's.
		t.release()
		t.eof = err == io.EOF
		t.end = err
	}
}

func (t *sseTap) release() {
	t.out = append(t.out, t.hold...)
	t.hold = t.hold[:0]
}

func (t *sseTap) dispatch(ev *sseEvent) {
	partial := t.released
	t.released = false
	if ev.name != "" && ev.name != "message" {
		t.release() // not a JSON-RPC message
		return
	}
	if ctl, denied := t.x.gate(); denied {
		// Withhold the event (or, if it already went out in part, its dispatching byte) and
		// end the stream; a client discards an incomplete event at the end of a stream.
		t.hold = t.hold[:0]
		t.out = append(t.out, t.x.cutStream(ctl, ev.data, !partial && !ev.overflow)...)
		t.end = io.EOF
		return
	}
	switch {
	case ev.overflow && t.discarding:
		// Too large to redact: withheld, and the stream ends with the exchange's calls failed.
		t.out = append(t.out, t.x.withhold(t.evBytes, true)...)
		t.end = io.EOF
		return
	case ev.overflow || partial:
		e := t.x.uninspected(t.evBytes)
		if t.x.redacting {
			setAttr(e, attrRedactSkipped, "too large to scan")
		}
		t.x.g.publish(t.x.c.r.Context(), e)
	default:
		if out := t.x.onMessage(ev.data); out != nil || t.discarding {
			if out == nil {
				out = ev.data
			}
			t.hold = rewriteEvent(t.hold[:0], ev.id, out)
		}
	}
	t.release()
}

// rewriteEvent appends a message event carrying data to b, one data line per line of data. The
// id in force is repeated so that a client resuming the stream names the same position as with
// the original event.
func rewriteEvent(b []byte, id string, data []byte) []byte {
	if id != "" {
		b = append(append(append(b, "id: "...), id...), '\n')
	}
	for line := range bytes.SplitSeq(data, []byte{'\n'}) {
		b = append(append(append(b, "data: "...), line...), '\n')
	}
	return append(b, '\n')
}

func (t *sseTap) Close() error {
	err := t.body.Close()
	t.x.finish(t.eof)
	return err
}

// jsonTap passes an application/json response through and audits it once complete.
type jsonTap struct {
	body  io.ReadCloser
	x     *exchange
	limit int
	buf   []byte
	size  int
	over  bool
	eof   bool
}

func (t *jsonTap) Read(b []byte) (int, error) {
	n, err := t.body.Read(b)
	t.size += n
	if !t.over {
		if len(t.buf)+n > t.limit {
			t.over, t.buf = true, nil
		} else {
			t.buf = append(t.buf, b[:n]...)
		}
	}
	if err == io.EOF && !t.eof {
		t.eof = true
		t.audit()
	}
	return n, err
}

func (t *jsonTap) audit() {
	x := t.x
	switch {
	case t.over:
		e := x.uninspected(t.size)
		if x.redacting {
			setAttr(e, attrRedactSkipped, "too large to scan")
		}
		if len(x.reqs) == 1 { // the answer of a single request is that request's, read or not
			for id := range x.reqs {
				pr, _ := x.take(id)
				e.Correlation.RequestID = id
				paired(e, pr)
			}
		}
		x.g.publish(x.c.r.Context(), e)
	case len(bytes.TrimSpace(t.buf)) > 0:
		x.onMessage(t.buf)
	}
}

func (t *jsonTap) Close() error {
	err := t.body.Close()
	t.x.finish(t.eof)
	return err
}

// endTap passes any other response through and notes its end.
type endTap struct {
	body io.ReadCloser
	x    *exchange
	eof  bool
}

func (t *endTap) Read(b []byte) (int, error) {
	n, err := t.body.Read(b)
	if err == io.EOF {
		t.eof = true
	}
	return n, err
}

func (t *endTap) Close() error {
	err := t.body.Close()
	t.x.finish(t.eof)
	return err
}

// proxyError answers when the upstream could not be reached or failed before its headers.
func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	x, _ := r.Context().Value(exchangeKey{}).(*exchange)
	if r.Context().Err() != nil {
		// The client went away; nobody to answer.
		if x != nil {
			x.status = 0
			x.finishWith("client went away before the upstream answered", 0, 0)
		}
		return
	}
	g.log.Warn("upstream request failed", "upstream", g.upstream.Redacted(), "err", err)
	text := "upstream unavailable"
	var ids []string
	if x != nil {
		for id := range x.reqs {
			ids = append(ids, id)
		}
		x.finishWith(text+": "+clip(err.Error(), 256), CodeUpstreamUnavailable, http.StatusBadGateway)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadGateway)
	_, _ = w.Write(errorResponse(ids, x != nil && x.batch, CodeUpstreamUnavailable, text))
}

// finishWith audits every request of the exchange as failed for reason.
func (x *exchange) finishWith(reason string, code, status int) {
	x.done = true
	for id := range x.reqs {
		pr, _ := x.take(id)
		x.g.publish(x.c.r.Context(), x.pendingEvent(id, pr, event.Outcome{Result: event.ResultError,
			Reason: reason, ErrorCode: code, HTTPStatus: status}))
	}
}

// errorResponse is the JSON-RPC error body answering the requests ids: one object, an array for a
// batch, or one error with a null id when there is no request to answer.
func errorResponse(ids []string, batch bool, code int, text string) []byte {
	switch {
	case len(ids) == 0:
		return errorBody("", code, text)
	case !batch && len(ids) == 1:
		return errorBody(ids[0], code, text)
	}
	parts := make([][]byte, len(ids))
	for i, id := range ids {
		parts[i] = errorBody(id, code, text)
	}
	return append(append([]byte{'['}, bytes.Join(parts, []byte{','})...), ']')
}
