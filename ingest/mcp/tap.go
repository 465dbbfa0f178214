package mcp

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcpwire"
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
	reqs map[string]mcpwire.Pending
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

// track records a forwarded request, whose event is e, so its response can be paired with it.
func (x *exchange) track(m *mcpwire.Message, e *event.Event) {
	if x.reqs == nil {
		x.reqs = make(map[string]mcpwire.Pending, 1)
	}
	pr := mcpwire.PendingOf(e, m, x.forwarded)
	x.reqs[m.ID] = pr
	// With a session the response may come on a later, resumed stream; without one it cannot.
	if x.c.session != "" {
		if x.g.pending.Put(pendingKey{x.c.pkey, x.c.session, false, m.ID}, pr) {
			x.g.m.evicted.Inc()
		}
	}
}

// take removes and returns the pending request a response with id answers.
func (x *exchange) take(id string) (mcpwire.Pending, bool) {
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
		x.c.session = mcpwire.Clip(sid, mcpwire.MaxIDLen)
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
	msgs, batch, err := mcpwire.Parse(raw)
	if err != nil {
		x.g.publish(x.c.r.Context(), x.unparseable(len(raw), err.Message))
		return nil
	}
	outs := make([][]byte, len(msgs))
	changed := false
	for i := range msgs {
		var e *event.Event
		e, outs[i] = x.upstreamEvent(&msgs[i])
		x.g.publish(x.c.r.Context(), e)
		changed = changed || outs[i] != nil
	}
	switch {
	case !changed:
		return nil
	case !batch:
		return outs[0]
	}
	parts := make([][]byte, len(msgs))
	for i, m := range msgs {
		parts[i] = m.Raw
		if outs[i] != nil {
			parts[i] = outs[i]
		}
	}
	return mcpwire.JoinBatch(parts)
}

func (x *exchange) unparseable(size int, why string) *event.Event {
	e := x.g.b.Unread(x.g.context(x.c), event.DirResponse, size)
	e.Outcome = event.Outcome{Result: event.ResultError, HTTPStatus: x.status, Reason: "unreadable message from upstream: " + why}
	return e
}

// uninspected is the event for a message from the upstream too large to read, passed on unread.
func (x *exchange) uninspected(size int) *event.Event {
	e := x.g.b.Unread(x.g.context(x.c), event.DirResponse, size)
	e.Outcome = event.Outcome{Result: event.ResultAllowed, HTTPStatus: x.status,
		Reason: fmt.Sprintf("not inspected: larger than %d bytes", x.g.cfg.MaxBodyBytes)}
	e.Attributes = map[string]string{mcpwire.AttrUninspected: "true"}
	return e
}

// upstreamEvent builds the event of a message from the upstream, pairing a response with its
// request (which it removes from the pending ones). It returns, with the event, the message to
// relay in place of m when the gateway rewrote it (a redacted result, a filtered tool list).
func (x *exchange) upstreamEvent(m *mcpwire.Message) (e *event.Event, out []byte) {
	g, c := x.g, x.c
	e = g.b.FromServer(g.context(c), m)
	if m.Kind == mcpwire.KindRequest {
		// Sampling, elicitation, roots: remember it to name the method of the client's answer.
		if g.pending.Put(pendingKey{c.pkey, c.session, true, m.ID}, mcpwire.Pending{Method: m.Method, Start: time.Now()}) {
			g.m.evicted.Inc()
		}
	}
	if m.Kind != mcpwire.KindResponse {
		return e, nil
	}
	e.Outcome.HTTPStatus = x.status
	pr, ok := x.take(m.ID)
	if ok {
		mcpwire.Pair(e, pr)
		g.m.upstream.WithLabelValues(methodLabel(pr.Method)).Observe(time.Since(pr.Start).Seconds())
	} else {
		mcpwire.SetAttr(e, mcpwire.AttrUnmatched, "true")
	}
	if pr.Method == "tools/call" {
		// An error's message and data may quote the data as much as a result does.
		member, body := "result", m.Result
		if m.IsError {
			member, body = "error", nil
			if f, err := mcpwire.Members(m.Raw, "error"); err == nil {
				body = f[0]
			}
		}
		if mk := g.redact.forTool(g.cfg.ServerName, pr.Tool); mk != nil && body != nil {
			if red := redactResult(mk, e, body); red != nil {
				out, _ = mcpwire.ReplaceMember(m.Raw, member, red)
			}
		}
	}
	mcpwire.Answer(e, m, pr.Method)
	if m.IsError {
		return e, out
	}
	if pr.Method == "tools/list" && g.cfg.ToolPins != nil {
		x.observeTools(e, m.Result)
	}
	if pr.Method == "tools/list" && !g.cfg.ShowDeniedTools {
		// After the pins have seen the whole list: a tool they just blocked is hidden at once.
		if res := x.filterTools(e, m.Result); res != nil {
			out, _ = mcpwire.ReplaceMember(m.Raw, "result", res)
		}
	}
	return e, out
}

// pendingEvent is the event for a request that gets no response from the upstream.
func (x *exchange) pendingEvent(id string, pr mcpwire.Pending, o event.Outcome) *event.Event {
	return x.g.b.Unanswered(x.g.context(x.c), id, pr, o)
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
	if msgs, _, err := mcpwire.Parse(withheld); err != nil {
		events = append(events, x.unparseable(len(withheld), err.Message))
	} else {
		for i := range msgs {
			m := &msgs[i]
			if _, waiting := x.reqs[m.ID]; m.Kind == mcpwire.KindResponse && waiting {
				ids = append(ids, m.ID)
			}
			e, _ := x.upstreamEvent(m)
			events = append(events, e)
			if m.Kind == mcpwire.KindRequest { // never delivered, so never answered
				g.pending.Take(pendingKey{c.pkey, c.session, true, m.ID})
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
		out = append(out, mcpwire.ErrorBody(id, CodeDenied, text)...)
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
			mcpwire.SetAttr(e, attrRedactSkipped, "too large to scan")
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
			mcpwire.SetAttr(e, attrRedactSkipped, "too large to scan")
		}
		if len(x.reqs) == 1 { // the answer of a single request is that request's, read or not
			for id := range x.reqs {
				pr, _ := x.take(id)
				e.Correlation.RequestID = id
				mcpwire.Pair(e, pr)
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
		x.finishWith(text+": "+mcpwire.Clip(err.Error(), 256), CodeUpstreamUnavailable, http.StatusBadGateway)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadGateway)
	_, _ = w.Write(mcpwire.ErrorResponse(ids, x != nil && x.batch, CodeUpstreamUnavailable, text))
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
