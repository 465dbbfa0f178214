package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mcpwatch/mcpwatch/ingest/mcpwire"
)

// Defaults for [BridgeConfig].
const (
	DefaultIdleTimeout     = 30 * time.Minute
	DefaultMaxSessions     = 64
	DefaultMaxMessageBytes = 4 << 20
	// DefaultBacklog bounds the server messages kept for a session while no stream is open to
	// deliver them.
	DefaultBacklog = 256
)

// JSON-RPC error codes the bridge answers with.
const (
	// CodeServerExited answers the requests still pending when the server process ends.
	CodeServerExited = -32000
	// CodeQuarantined answers requests to a frozen (quarantined) sandbox.
	CodeQuarantined = -32001
	// CodeStartFailed answers an initialize whose server could not be started.
	CodeStartFailed = -32002
)

const headerSessionID = "Mcp-Session-Id"

// BridgeConfig configures a [Bridge].
type BridgeConfig struct {
	// Spec is the command each session runs in its own sandbox.
	Spec Spec
	// IdleTimeout ends a session (and its sandbox) when no request has arrived for that long and
	// none is in flight; an open GET stream does not keep it alive. Default [DefaultIdleTimeout].
	IdleTimeout time.Duration
	// MaxSessions bounds the sessions (server processes) at once; beyond it initialize gets 503.
	// Default [DefaultMaxSessions].
	MaxSessions int
	// MaxMessageBytes bounds a POST body and a line from the server (longer lines are dropped
	// and logged). Default [DefaultMaxMessageBytes].
	MaxMessageBytes int
	// WriteTimeout bounds a write to a server's stdin (a server that stops reading). Default 30s.
	WriteTimeout time.Duration
	// Log may be nil.
	Log *slog.Logger
}

// SessionEnd reports the end of a session and its sandbox, for auditing.
type SessionEnd struct {
	Session  string
	Sandbox  string
	CgroupID uint64
	// Reason: "exited" (the server ended by itself, or was killed), "deleted" (the client's
	// DELETE), "idle", "closed" (the bridge shut down) or "initialize_failed".
	Reason string
	// Exit is the process's exit status ("exit status 1", "signal: killed"), set for "exited".
	Exit string
	// Stderr is the tail of the server's stderr when it exited by itself.
	Stderr string
	// Pending is the number of client requests left unanswered.
	Pending int
}

// Bridge serves MCP Streamable HTTP for a stdio MCP server: every MCP session gets its own server
// process in its own sandbox, started by the session's initialize request and ended by DELETE,
// idleness or the process's exit (after which the session is unknown: 404).
//
// It relays JSON-RPC messages as they are, without interpreting the protocol beyond pairing
// responses with requests by id, so unknown methods, notifications and server-to-client requests
// (sampling, elicitation, roots) all pass. A POST's responses come back as one JSON body, or as an
// event stream when the client accepts one and the server sends other messages (progress,
// logging, its own requests) before the last response. Messages the server sends outside any
// request go to the session's GET stream, or wait (bounded) for one to open. Event ids and
// stream resumption are not offered.
type Bridge struct {
	m   *Manager
	cfg BridgeConfig
	log *slog.Logger

	mu       sync.Mutex
	sessions map[string]*session
	// recent remembers the sandbox of sessions that ended a moment ago: the last messages of a
	// session (the errors for its pending requests, its DELETE) are audited after it ended.
	recent map[string]recentSession
	closed bool
	onEnd  []func(SessionEnd)

	stopReaper chan struct{}
	reaperDone chan struct{}
	bg         sync.WaitGroup // session-end work still running; Close waits for it
}

// NewBridge returns a bridge that runs cfg.Spec in sandboxes of m.
func NewBridge(m *Manager, cfg BridgeConfig) (*Bridge, error) {
	if m == nil {
		return nil, errors.New("bridge: no sandbox manager")
	}
	if cfg.Spec.Path == "" {
		return nil, errors.New("bridge: no command")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	b := &Bridge{
		m: m, cfg: cfg, log: log.With("component", "sandbox-bridge", "server", cfg.Spec.Server),
		sessions: map[string]*session{}, recent: map[string]recentSession{}, stopReaper: make(chan struct{}), reaperDone: make(chan struct{}),
	}
	go b.reapIdle()
	return b, nil
}

// OnSessionEnd registers fn to be called (on its own goroutine) whenever a session ends.
func (b *Bridge) OnSessionEnd(fn func(SessionEnd)) {
	b.mu.Lock()
	b.onEnd = append(b.onEnd, fn)
	b.mu.Unlock()
}

// SandboxOf returns the id of the sandbox serving an MCP session, "" for an unknown session.
func (b *Bridge) SandboxOf(sessionID string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s := b.sessions[sessionID]; s != nil {
		return s.sb.ID()
	}
	return b.recent[sessionID].sandbox
}

type recentSession struct {
	sandbox string
	ended   time.Time
}

// recentFor is how long [Bridge.SandboxOf] still answers for an ended session.
const recentFor = time.Minute

// Sandboxes returns the sandboxes of the live sessions.
func (b *Bridge) Sandboxes() []*Sandbox {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*Sandbox, 0, len(b.sessions))
	for _, s := range b.sessions {
		out = append(out, s.sb)
	}
	return out
}

// QuarantineChange is a sandbox [Bridge.ApplyQuarantine] froze or thawed.
type QuarantineChange struct {
	Session, Sandbox string
	CgroupID         uint64
	Frozen           bool  // frozen now (false: thawed)
	Err              error // the kernel refused: the state did not change
	// At is when the change was confirmed by cgroup.events (or failed).
	At time.Time
}

// ApplyQuarantine brings every session's sandbox in line with quarantined: those it names are
// frozen (their traffic refused from that moment), those it no longer names are thawed. It returns
// what changed, or was tried and failed. A freeze or thaw that failed (or was not confirmed by
// cgroup.events) is tried again by the next call, the frozen sandbox's traffic refused meanwhile.
// The bridge's frozen state belongs to this reconciliation: a sandbox frozen by other means is
// thawed by the next call that does not name it.
func (b *Bridge) ApplyQuarantine(ctx context.Context, quarantined func(sandbox string) bool) []QuarantineChange {
	b.mu.Lock()
	all := make([]*session, 0, len(b.sessions))
	for _, s := range b.sessions {
		all = append(all, s)
	}
	b.mu.Unlock()
	var out []QuarantineChange
	for _, s := range all {
		want := quarantined(s.sb.ID())
		if want == s.sb.Frozen() && s.sb.Settled() {
			continue
		}
		qc := QuarantineChange{Session: s.id, Sandbox: s.sb.ID(), CgroupID: s.sb.CgroupID(), Frozen: want}
		if want {
			qc.Err = s.sb.Freeze(ctx)
		} else {
			qc.Err = s.sb.Thaw(ctx)
		}
		qc.At = time.Now()
		if qc.Err != nil {
			b.log.Error("sandbox quarantine not applied", "sandbox", qc.Sandbox, "freeze", want, "err", qc.Err)
		} else {
			b.log.Warn("sandbox quarantine applied", "sandbox", qc.Sandbox, "frozen", want)
		}
		out = append(out, qc)
	}
	return out
}

// Close ends every session and stops its sandbox; later requests get 503.
func (b *Bridge) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	all := make([]*session, 0, len(b.sessions))
	for _, s := range b.sessions {
		all = append(all, s)
	}
	b.mu.Unlock()
	close(b.stopReaper)
	<-b.reaperDone
	var wg sync.WaitGroup
	errs := make([]error, len(all))
	for i, s := range all {
		wg.Go(func() { errs[i] = s.end(ctx, "closed") })
	}
	wg.Wait()
	b.bg.Wait()
	return errors.Join(errs...)
}

func (b *Bridge) reapIdle() {
	defer close(b.reaperDone)
	every := min(b.cfg.IdleTimeout/4, 30*time.Second)
	t := time.NewTicker(max(every, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-b.stopReaper:
			return
		case <-t.C:
		}
		b.mu.Lock()
		for id, rs := range b.recent {
			if time.Since(rs.ended) > recentFor {
				delete(b.recent, id)
			}
		}
		var idle []*session
		for _, s := range b.sessions {
			if s.idleSince(time.Now()) > b.cfg.IdleTimeout {
				idle = append(idle, s)
			}
		}
		b.mu.Unlock()
		for _, s := range idle {
			b.log.Info("ending idle session", "session_sandbox", s.sb.ID(), "idle_timeout", b.cfg.IdleTimeout)
			ctx, cancel := context.WithTimeout(context.Background(), 4*b.m.opts.StopGrace)
			_ = s.end(ctx, "idle")
			cancel()
		}
	}
}

// ServeHTTP serves the MCP endpoint: POST, GET and DELETE on any path.
func (b *Bridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		b.servePost(w, r)
	case http.MethodGet:
		b.serveGet(w, r)
	case http.MethodDelete:
		b.serveDelete(w, r)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		httpError(w, http.StatusMethodNotAllowed, "method not allowed")
	}
}

func httpError(w http.ResponseWriter, status int, text string) {
	writeJSONRPCError(w, status, nil, mcpwire.CodeInvalidRequest, text)
}

// writeJSONRPCError answers with a JSON-RPC error: one per request id (canonical), or a single one
// with a null id when there are none.
func writeJSONRPCError(w http.ResponseWriter, status int, ids []string, code int, text string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(mcpwire.ErrorResponse(ids, len(ids) > 1, code, text))
}

// lookup returns the session a request names, answering 400/404 itself when there is none.
func (b *Bridge) lookup(w http.ResponseWriter, r *http.Request) *session {
	id := r.Header.Get(headerSessionID)
	if id == "" {
		httpError(w, http.StatusBadRequest, "Bad Request: Mcp-Session-Id header required")
		return nil
	}
	b.mu.Lock()
	s := b.sessions[id]
	b.mu.Unlock()
	if s == nil {
		httpError(w, http.StatusNotFound, "session not found")
		return nil
	}
	return s
}

func (b *Bridge) refuseFrozen(w http.ResponseWriter, s *session, ids []string) bool {
	if !s.sb.Frozen() {
		return false
	}
	writeJSONRPCError(w, http.StatusForbidden, ids, CodeQuarantined, "MCP server sandbox "+s.sb.ID()+" is quarantined by mcpwatch")
	return true
}

// inMsg is a client message, parsed as far as routing needs.
type inMsg struct {
	line   []byte // compact: one line on the server's stdin
	id     string // canonical id ([mcpwire.CanonicalID]) of a request; "" for other messages
	method string
	token  string // params._meta.progressToken of a request, canonical
}

// readClientBody parses a POST body with the gateway's parser ([mcpwire.Parse]), so that the
// bridge pairs and refuses exactly as the gateway in front of it does, and compacts each message
// to the single line the server's stdin takes.
func readClientBody(body []byte) ([]inMsg, bool, *mcpwire.Error) {
	msgs, batch, perr := mcpwire.Parse(body)
	if perr != nil {
		return nil, batch, perr
	}
	out := make([]inMsg, len(msgs))
	for i, m := range msgs {
		var buf bytes.Buffer
		_ = json.Compact(&buf, m.Raw) // cannot fail: the body parsed
		out[i] = inMsg{line: buf.Bytes(), method: m.Method}
		if m.Kind == mcpwire.KindRequest {
			out[i].id, out[i].token = m.ID, m.ProgressToken
		}
	}
	return out, batch, nil
}

func (b *Bridge) servePost(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(b.cfg.MaxMessageBytes)))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", mbe.Limit))
			return
		}
		httpError(w, http.StatusBadRequest, "reading request body: "+err.Error())
		return
	}
	msgs, batch, perr := readClientBody(body)
	if perr != nil {
		writeJSONRPCError(w, http.StatusBadRequest, nil, perr.Code, perr.Message)
		return
	}
	var ids []string
	init := false
	for _, m := range msgs {
		if m.id != "" {
			ids = append(ids, m.id)
		}
		init = init || m.method == "initialize"
	}
	var s *session
	created := false
	if r.Header.Get(headerSessionID) == "" {
		if !init || len(ids) == 0 {
			writeJSONRPCError(w, http.StatusBadRequest, ids, mcpwire.CodeInvalidRequest,
				"Bad Request: no valid session ID provided; a session starts with initialize")
			return
		}
		s, err = b.newSession()
		if err != nil {
			status := http.StatusBadGateway
			if errors.Is(err, errTooManySessions) || errors.Is(err, errClosed) {
				status = http.StatusServiceUnavailable
			}
			writeJSONRPCError(w, status, ids, CodeStartFailed, err.Error())
			return
		}
		created = true
	} else if s = b.lookup(w, r); s == nil {
		return
	}
	if b.refuseFrozen(w, s, ids) {
		return
	}
	s.post(w, r, msgs, batch, created)
}

func (b *Bridge) serveGet(w http.ResponseWriter, r *http.Request) {
	s := b.lookup(w, r)
	if s == nil || b.refuseFrozen(w, s, nil) {
		return
	}
	if r.Header.Get("Last-Event-ID") != "" {
		httpError(w, http.StatusBadRequest, "stream resumption is not supported")
		return
	}
	s.serveGet(w, r)
}

func (b *Bridge) serveDelete(w http.ResponseWriter, r *http.Request) {
	s := b.lookup(w, r)
	if s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 4*b.m.opts.StopGrace)
	defer cancel()
	if err := s.end(ctx, "deleted"); err != nil {
		b.log.Warn("session end", "err", err)
	}
	w.WriteHeader(http.StatusNoContent)
}

var (
	errTooManySessions = errors.New("too many MCP sessions for this server")
	errClosed          = errors.New("gateway shutting down")
)

func (b *Bridge) newSession() (*session, error) {
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return nil, errClosed
	case len(b.sessions) >= b.cfg.MaxSessions:
		b.mu.Unlock()
		return nil, fmt.Errorf("%w (%d)", errTooManySessions, b.cfg.MaxSessions)
	}
	b.mu.Unlock()
	sb, err := b.m.Start(b.cfg.Spec)
	if err != nil {
		b.log.Error("cannot start MCP server", "err", err)
		return nil, fmt.Errorf("cannot start MCP server %q: %w", b.cfg.Spec.Server, err)
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	s := &session{
		b: b, id: hex.EncodeToString(raw[:]), sb: sb,
		waiters: map[string]*waiter{}, lastActive: time.Now(),
		gone: make(chan struct{}), streamsEnd: make(chan struct{}), readerDone: make(chan struct{}),
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 4*b.m.opts.StopGrace)
		_ = sb.Stop(ctx)
		cancel()
		return nil, errClosed
	}
	b.sessions[s.id] = s
	b.mu.Unlock()
	go s.read()
	return s, nil
}

// session is one MCP session and its server process.
type session struct {
	b  *Bridge
	id string
	sb *Sandbox

	writeMu sync.Mutex // one line at a time on stdin

	mu         sync.Mutex
	waiters    map[string]*waiter // by request key: the POST waiting for its response
	posts      []*waiter          // POSTs in flight, oldest first
	get        *waiter            // the open GET stream
	backlog    [][]byte           // server messages with no stream to go to
	inflight   int
	lastActive time.Time
	ended      bool
	endReason  string

	gone chan struct{} // closed when the session ends
	// streamsEnd is closed once the POSTs in flight at the end have been answered: the GET
	// stream closes only then, so that a client sees why its calls failed before it sees its
	// stream end.
	streamsEnd chan struct{}
	readerDone chan struct{}
	endOnce    sync.Once
	endErr     error
}

func (s *session) idleSince(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight > 0 {
		return 0
	}
	return now.Sub(s.lastActive)
}

// waiter is an HTTP response a server message can be sent on: a POST (awaiting responses to its
// requests) or the GET stream.
type waiter struct {
	sse     bool            // the client accepts an event stream
	pending map[string]bool // request keys still unanswered (POST only)
	tokens  []string        // progress tokens of its requests
	ch      chan srvMsg
	done    chan struct{} // closed when the HTTP handler stops reading ch
}

// srvMsg is a message for the client: from the server, or the bridge's own error for a request
// the server will not answer.
type srvMsg struct {
	raw     []byte
	id      string // a response's canonical id; "" for requests and notifications
	isError bool   // a JSON-RPC error response
}

func acceptsSSE(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(v, "text/event-stream") {
			return true
		}
	}
	return false
}

// errSessionEnded: the session ended before a request could be registered.
var errSessionEnded = errors.New("session not found")

// register makes wt the waiter of the requests among msgs, so that route delivers their responses
// to it. It returns their ids, or the id of one already awaited on the session (inUse) and then
// registers none.
func (s *session) register(wt *waiter, msgs []inMsg) (ids []string, inUse string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return nil, "", errSessionEnded
	}
	for _, m := range msgs {
		if m.id == "" {
			continue
		}
		if s.waiters[m.id] != nil || wt.pending[m.id] {
			return nil, m.id, nil
		}
		wt.pending[m.id] = true
		ids = append(ids, m.id)
		if m.token != "" {
			wt.tokens = append(wt.tokens, m.token)
		}
	}
	for k := range wt.pending {
		s.waiters[k] = wt
	}
	if len(wt.pending) > 0 {
		s.posts = append(s.posts, wt)
	}
	s.inflight++
	s.lastActive = time.Now()
	return ids, "", nil
}

// post writes a POST's messages to the server and answers with the responses to its requests.
func (s *session) post(w http.ResponseWriter, r *http.Request, msgs []inMsg, batch, created bool) {
	wt := &waiter{sse: acceptsSSE(r), pending: map[string]bool{}, ch: make(chan srvMsg, 16), done: make(chan struct{})}
	defer close(wt.done)
	ids, inUse, err := s.register(wt, msgs)
	switch {
	case err != nil:
		httpError(w, http.StatusNotFound, err.Error())
		return
	case inUse != "":
		writeJSONRPCError(w, http.StatusBadRequest, []string{inUse}, mcpwire.CodeInvalidRequest, "request id "+inUse+" is already in use")
		return
	}
	defer s.unregister(wt)

	for _, m := range msgs {
		if err := s.writeLine(m.line); err != nil {
			s.b.log.Warn("write to MCP server", "sandbox", s.sb.ID(), "err", err)
			writeJSONRPCError(w, http.StatusBadGateway, ids, CodeServerExited, "MCP server did not take the message: "+err.Error())
			if created {
				s.endAsync("initialize_failed")
			}
			return
		}
	}
	if len(wt.pending) == 0 {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if created {
		w.Header().Set(headerSessionID, s.id)
	}
	ok := s.respond(w, r, wt, batch)
	if created && !ok {
		s.endAsync("initialize_failed")
	}
}

// respond relays the server's messages for wt until every request of it is answered. It reports
// whether all got a result (for initialize: whether the session is usable).
func (s *session) respond(w http.ResponseWriter, r *http.Request, wt *waiter, batch bool) bool {
	var collected [][]byte // responses held back while the answer may still be plain JSON
	streaming := false
	flusher, _ := w.(http.Flusher)
	allOK := true
	send := func(msg srvMsg) bool {
		if _, err := fmt.Fprintf(w, "event: message\ndata: %s\n\n", msg.raw); err != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	startStream := func() bool {
		streaming = true
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		for _, c := range collected {
			if !send(srvMsg{raw: c}) {
				return false
			}
		}
		collected = nil
		return true
	}
	// handle relays one message routed to this POST; false when the client is gone.
	handle := func(msg srvMsg) bool {
		if msg.id != "" {
			s.mu.Lock()
			delete(wt.pending, msg.id)
			s.mu.Unlock()
			allOK = allOK && !msg.isError
			if streaming {
				return send(msg)
			}
			collected = append(collected, msg.raw)
			return true
		}
		if !streaming {
			if !wt.sse {
				s.reroute(msg.raw) // the client takes JSON only: the GET stream gets it
				return true
			}
			if !startStream() {
				return false
			}
		}
		return send(msg)
	}
	for {
		s.mu.Lock()
		remaining := len(wt.pending)
		s.mu.Unlock()
		if remaining == 0 {
			break
		}
		select {
		case msg := <-wt.ch:
			if !handle(msg) {
				return false
			}
		case <-s.gone:
			// The session ended: relay what the server did answer, then answer the rest.
			for drained := false; !drained; {
				select {
				case msg := <-wt.ch:
					if !handle(msg) {
						return false
					}
				default:
					drained = true
				}
			}
			s.mu.Lock()
			var keys []string
			for k := range wt.pending {
				keys = append(keys, k)
				delete(s.waiters, k)
			}
			clear(wt.pending)
			why := s.endReason
			s.mu.Unlock()
			slices.Sort(keys)
			for _, k := range keys {
				allOK = false
				if !handle(srvMsg{raw: mcpwire.ErrorBody(k, CodeServerExited, why), id: k, isError: true}) {
					return false
				}
			}
		case <-r.Context().Done():
			return false
		}
	}
	if streaming {
		return allOK
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if batch {
		_, _ = w.Write(mcpwire.JoinBatch(collected))
	} else if len(collected) > 0 {
		_, _ = w.Write(collected[0])
	}
	return allOK
}

// unregister forgets a POST or GET waiter; what was routed to it and not sent goes elsewhere.
func (s *session) unregister(wt *waiter) {
	s.mu.Lock()
	for k, v := range s.waiters {
		if v == wt {
			delete(s.waiters, k)
		}
	}
	if i := slices.Index(s.posts, wt); i >= 0 {
		s.posts = slices.Delete(s.posts, i, i+1)
	}
	if s.get == wt {
		s.get = nil
	}
	if wt.pending != nil {
		s.inflight--
		s.lastActive = time.Now()
	}
	s.mu.Unlock()
	for {
		select {
		case msg := <-wt.ch:
			if msg.id == "" {
				s.reroute(msg.raw)
			}
		default:
			return
		}
	}
}

func (s *session) serveGet(w http.ResponseWriter, r *http.Request) {
	wt := &waiter{sse: true, ch: make(chan srvMsg, 16), done: make(chan struct{})}
	defer close(wt.done)
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		httpError(w, http.StatusNotFound, "session not found")
		return
	}
	old := s.get
	s.get = wt // a new GET replaces one the client may have lost
	backlog := s.backlog
	s.backlog = nil
	s.mu.Unlock()
	if old != nil {
		s.b.log.Debug("GET stream replaced", "sandbox", s.sb.ID())
	}
	defer s.unregister(wt)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	send := func(msg []byte) bool {
		if _, err := fmt.Fprintf(w, "event: message\ndata: %s\n\n", msg); err != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	for _, msg := range backlog {
		if !send(msg) {
			return
		}
	}
	for {
		select {
		case msg := <-wt.ch:
			if !send(msg.raw) {
				return
			}
		case <-s.streamsEnd:
			return
		case <-r.Context().Done():
			return
		}
		s.mu.Lock()
		replaced := s.get != wt
		s.mu.Unlock()
		if replaced {
			return
		}
	}
}

// writeLine writes one message and its newline to the server's stdin.
func (s *session) writeLine(msg []byte) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	in := s.sb.Stdin()
	_ = in.SetWriteDeadline(time.Now().Add(s.b.cfg.WriteTimeout))
	line := make([]byte, 0, len(msg)+1)
	line = append(append(line, msg...), '\n')
	_, err := in.Write(line)
	return err
}

// read routes every line the server writes until its stdout ends, then ends the session.
func (s *session) read() {
	defer close(s.readerDone)
	br := bufio.NewReaderSize(s.sb.Stdout(), 64<<10)
	limit := s.b.cfg.MaxMessageBytes
	var line []byte
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 && !tooLong {
			if len(line)+len(chunk) > limit+2 {
				tooLong = true
				line = line[:0]
			} else {
				line = append(line, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if tooLong {
			if err == nil {
				s.b.log.Warn("dropped a message from the MCP server longer than the limit", "sandbox", s.sb.ID(), "limit", limit)
			}
			tooLong = false
		} else if t := bytes.TrimSpace(line); len(t) > 0 {
			s.route(bytes.Clone(t))
		}
		line = line[:0]
		if err != nil {
			break
		}
	}
	// Stdout ends when every process that held it has gone; the process has exited or is about
	// to (a server that closes stdout and lives on is stopped).
	select {
	case <-s.sb.Done():
	case <-time.After(s.b.m.opts.StopGrace):
	}
	s.mu.Lock()
	ended := s.ended
	s.mu.Unlock()
	if !ended {
		ctx, cancel := context.WithTimeout(context.Background(), 4*s.b.m.opts.StopGrace)
		_ = s.end(ctx, "exited")
		cancel()
	}
}

// route delivers what the server wrote on one line: each message of a batch (from a 2025-03-26
// server) on its own, as if on a line of its own.
func (s *session) route(line []byte) {
	if len(line) > 0 && line[0] == '[' {
		var elems []json.RawMessage
		if json.Unmarshal(line, &elems) == nil {
			for _, e := range elems {
				s.routeMessage(e)
			}
			return
		}
	}
	s.routeMessage(line)
}

// routeMessage delivers one server message, read by the gateway's parser ([mcpwire.Parse]) so
// that a response goes to the request the gateway in front pairs it with: a response to the POST
// awaiting it; a progress notification to the POST whose request carried its token; any other
// message to the newest POST that can stream, else the GET stream, else the backlog. A message the
// parser refuses is relayed as one outside any request, as the gateway relays (and audits) it;
// output that is not JSON is dropped.
func (s *session) routeMessage(raw []byte) {
	msgs, _, perr := mcpwire.Parse(raw)
	var m mcpwire.Message
	switch {
	case perr != nil && !json.Valid(raw):
		s.b.log.Warn("dropped output of the MCP server that is not JSON-RPC", "sandbox", s.sb.ID(), "bytes", len(raw))
		return
	case perr != nil:
		s.b.log.Warn("MCP server message is not valid JSON-RPC; relayed outside any request", "sandbox", s.sb.ID(),
			"err", perr.Message)
	case len(msgs) == 1:
		m = msgs[0]
	default: // a batch nested in a batch: each on its own
		for _, e := range msgs {
			s.routeMessage(e.Raw)
		}
		return
	}
	msg := srvMsg{raw: raw}
	s.mu.Lock()
	var to *waiter
	if m.Kind == mcpwire.KindResponse {
		msg.id, msg.isError = m.ID, m.IsError
		if to = s.waiters[m.ID]; to != nil {
			delete(s.waiters, m.ID) // the POST removes it from its pending set when it relays it
		}
		s.mu.Unlock()
		if to == nil {
			s.b.log.Debug("dropped a response nobody waits for", "sandbox", s.sb.ID(), "id", m.ID)
			return
		}
		s.deliver(to, msg)
		return
	}
	if m.Method == "notifications/progress" && m.ProgressToken != "" {
		for _, p := range s.posts {
			if p.sse && slices.Contains(p.tokens, m.ProgressToken) {
				to = p
			}
		}
	}
	for i := len(s.posts) - 1; to == nil && i >= 0; i-- {
		if s.posts[i].sse {
			to = s.posts[i]
		}
	}
	if to == nil {
		to = s.get
	}
	if to == nil {
		s.keepLocked(raw)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.deliver(to, msg)
}

func (s *session) deliver(to *waiter, msg srvMsg) {
	select {
	case to.ch <- msg:
	case <-to.done:
		if msg.id == "" {
			s.reroute(msg.raw)
		}
	}
}

// reroute sends a server message its first stream could not take to the GET stream or backlog.
func (s *session) reroute(msg []byte) {
	s.mu.Lock()
	g := s.get
	if g == nil {
		s.keepLocked(msg)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	select {
	case g.ch <- srvMsg{raw: msg}:
	case <-g.done:
		s.mu.Lock()
		s.keepLocked(msg)
		s.mu.Unlock()
	}
}

func (s *session) keepLocked(msg []byte) {
	if len(s.backlog) >= DefaultBacklog {
		s.b.log.Warn("dropped a server message: no stream open and the backlog is full", "sandbox", s.sb.ID())
		s.backlog = s.backlog[1:]
	}
	s.backlog = append(s.backlog, msg)
}

// endAsync ends the session without waiting for its sandbox to stop.
func (s *session) endAsync(reason string) {
	s.b.bg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 4*s.b.m.opts.StopGrace)
		defer cancel()
		_ = s.end(ctx, reason)
	})
}

// end ends the session once: it is forgotten (later requests get 404), its streams and pending
// requests are answered, and its sandbox is stopped.
func (s *session) end(ctx context.Context, reason string) error {
	s.endOnce.Do(func() {
		b := s.b
		b.mu.Lock()
		delete(b.sessions, s.id)
		if len(b.recent) < 4*b.cfg.MaxSessions+1024 {
			b.recent[s.id] = recentSession{sandbox: s.sb.ID(), ended: time.Now()}
		}
		hooks := slices.Clone(b.onEnd)
		b.mu.Unlock()
		se := SessionEnd{Session: s.id, Sandbox: s.sb.ID(), CgroupID: s.sb.CgroupID(), Reason: reason}
		why := "MCP session ended (" + reason + ")"
		if reason == "exited" {
			// The process is gone (or closed its stdout): stopping is immediate, and the exit
			// status is what the client and the audit trail need.
			s.endErr = s.sb.Stop(ctx)
			select {
			case <-s.sb.Done():
				se.Exit = exitString(s.sb.ExitErr())
			default:
				se.Exit = "unknown: not stopped in time"
			}
			se.Stderr = s.sb.StderrTail()
			why = "MCP server process exited (" + se.Exit + "); session ended"
		}
		s.mu.Lock()
		s.ended = true
		s.endReason = why
		for _, p := range s.posts {
			se.Pending += len(p.pending)
		}
		s.mu.Unlock()
		close(s.gone)
		b.bg.Add(1)
		go s.endStreams()
		if reason == "exited" {
			b.log.Warn("MCP server exited", "sandbox", s.sb.ID(), "exit", se.Exit, "pending_requests", se.Pending)
		} else {
			s.endErr = s.sb.Stop(ctx)
		}
		for _, h := range hooks {
			b.bg.Go(func() { h(se) })
		}
	})
	return s.endErr
}

// endStreams closes the GET stream once the POSTs in flight have been answered (or after a
// second), and a moment more: a client that gives up on its whole session when its stream ends
// should have read why its calls failed first.
func (s *session) endStreams() {
	defer close(s.streamsEnd)
	defer s.b.bg.Done()
	pause := func(d time.Duration) bool {
		select {
		case <-time.After(d):
			return true
		case <-s.b.stopReaper: // the bridge is closing: no lingering
			return false
		}
	}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		n := len(s.posts)
		s.mu.Unlock()
		if n == 0 || !pause(5*time.Millisecond) {
			break
		}
	}
	pause(endStreamGrace)
}

const endStreamGrace = 500 * time.Millisecond
