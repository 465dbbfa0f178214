// Package mcp is mcpwatch's MCP gateway: a Streamable HTTP reverse proxy in front of one upstream
// MCP server that authenticates every client, enforces the revocations and quarantines of the
// control topic on every call, and publishes one audit event per JSON-RPC message in either
// direction.
//
// The gateway never forwards what it could not parse, never forwards the client's credentials
// (no token passthrough), and streams server-sent events through as they arrive, holding back
// only the event being parsed so that a revocation can stop a stream before its next message.
package mcp

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth"
	"github.com/mcpwatch/mcpwatch/ingest/mcpwire"
	"github.com/mcpwatch/mcpwatch/internal/control"
)

// Transport is the value of [event.MCP.Transport] for this gateway.
const Transport = "streamable-http"

// MCP Streamable HTTP headers.
const (
	headerSessionID       = "Mcp-Session-Id"
	headerProtocolVersion = "Mcp-Protocol-Version"
	headerMethod          = "Mcp-Method"
	headerName            = "Mcp-Name"
)

// Gateway is the audit and enforcement proxy. It is an [http.Handler] for the MCP endpoint.
type Gateway struct {
	cfg      Config
	upstream *url.URL
	auth     Authenticator
	authz    Authorizer              // nil: the credential carries no grant to check per call
	chal     Challenger              // nil: the gateway's own Bearer challenge
	public   map[string]http.Handler // paths served without authentication (RFC 9728 metadata)
	pub      Publisher
	ctl      *control.Store
	b        *mcpwire.Builder // builds the audit events; masking off when b.Masker is nil ([Config.NoMasking])
	redact   *redactor        // nil: no result redaction ([Config.Redact])
	unauth   *unauthLimiter
	proxies  trustedProxies // whose forwarding headers name the client
	log      *slog.Logger
	m        *metrics
	proxy    *httputil.ReverseProxy

	// pending pairs responses that arrive on another HTTP exchange (a resumed GET stream) with
	// their requests, and client responses with the server requests they answer.
	pending *boundedMap[pendingKey, mcpwire.Pending]
	// sessions remembers who opened each stateful session and with which client (which only
	// initialize names).
	sessions *boundedMap[string, sessionInfo]
}

type pendingKey struct {
	principal  string
	session    string
	fromServer bool // a server→client request, answered by the client
	id         string
}

type sessionInfo struct {
	owner                     string // event.PrincipalKey of the principal that opened it
	clientName, clientVersion string
	urlElicitation            bool // the client declared URL-mode elicitation
}

// New returns a gateway for cfg. Every request is authenticated by auth, checked against ctl and
// audited to pub. If auth is also an [Authorizer], every message is authorized with it; if a
// [Challenger], it answers the refusals; if a [WellKnown], its documents are served without
// authentication. reg and log may be nil.
func New(cfg Config, auth Authenticator, pub Publisher, ctl *control.Store, reg prometheus.Registerer, log *slog.Logger) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("mcp gateway config: %w", err)
	}
	if auth == nil || pub == nil || ctl == nil {
		return nil, errors.New("mcp gateway: authenticator, publisher and control store are required")
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	u, _ := url.Parse(cfg.Upstream) // validated above
	masker, err := mcpwire.NewMasker(cfg.NoMasking, cfg.Mask)
	if err != nil {
		return nil, fmt.Errorf("mcp gateway config: %w", err)
	}
	g := &Gateway{
		cfg: cfg, upstream: u, auth: auth, pub: pub, ctl: ctl, redact: newRedactor(cfg),
		b: &mcpwire.Builder{Tenant: cfg.Tenant, Observer: cfg.Observer, Server: cfg.ServerName, Route: cfg.Route,
			Transport: Transport, Masker: masker, DataClasses: cfg.DataClasses},
		unauth:   newUnauthLimiter(cfg.Unauthenticated),
		proxies:  trustedProxies(cfg.TrustedProxies),
		log:      log.With("component", "mcp-gateway", "server", cfg.ServerName),
		m:        newMetrics(reg),
		pending:  newBoundedMap[pendingKey, mcpwire.Pending](cfg.MaxPending),
		sessions: newBoundedMap[string, sessionInfo](cfg.MaxPending),
	}
	g.authz, _ = auth.(Authorizer)
	g.chal, _ = auth.(Challenger)
	if wk, ok := auth.(WellKnown); ok {
		g.public = wk.WellKnown()
	}
	if reg != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mcpwatch_gateway_pending",
			Help: "Requests forwarded on stateful sessions and still awaiting their response."},
			func() float64 { return float64(g.pending.Len()) }))
	}
	transport := cfg.Transport
	if transport == nil {
		transport = &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   256, // one upstream host takes them all
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
			// No ResponseHeaderTimeout: a tool call answered as JSON sends its headers only when
			// the tool finishes, which may take minutes. Client cancellation ends it instead.
		}
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite:        g.rewrite,
		Transport:      transport,
		ModifyResponse: g.modifyResponse,
		ErrorHandler:   g.proxyError,
		// Copy errors (mostly clients going away mid-stream) are routine for a proxy of streams.
		ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
		// Without a pool every response allocates a fresh 32 KiB copy buffer (measured with
		// `mcpwatch bench gateway --cpuprofile`).
		BufferPool: copyBuffers{},
	}
	return g, nil
}

// call is what the gateway knows about one HTTP request.
type call struct {
	r               *http.Request
	principal       event.Principal
	pkey            string // event.PrincipalKey of the principal
	session         string // Mcp-Session-Id, from the request or assigned by the upstream's answer
	protocolVersion string // Mcp-Protocol-Version header
	client          sessionInfo
	// foreign: the session was opened by another principal. Session ids are bearer capabilities
	// upstream; binding them to the principal stops a leaked id being used with other credentials.
	foreign         bool
	traceID, spanID string // traceparent header
	net             event.Network
	authTime        time.Time // when the principal last authenticated; zero: unknown
}

func (g *Gateway) newCall(r *http.Request, p event.Principal) *call {
	c := &call{
		r: r, principal: p, pkey: event.PrincipalKey(g.cfg.Tenant, p),
		session:         mcpwire.Clip(r.Header.Get(headerSessionID), mcpwire.MaxIDLen),
		protocolVersion: mcpwire.Clip(r.Header.Get(headerProtocolVersion), mcpwire.MaxVersionLen),
	}
	c.traceID, c.spanID = event.ParseTraceparent(r.Header.Get("Traceparent"))
	c.net.SrcIP, c.net.SrcPort = splitAddr(r.RemoteAddr)
	g.forwarded(c)
	c.net.UserAgent = userAgent(r.Header)
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && a != nil {
		c.net.DstIP, c.net.DstPort = splitAddr(a.String())
	}
	if c.session != "" {
		if info, ok := g.sessions.Get(c.session); ok {
			c.foreign = info.owner != c.pkey
			if !c.foreign {
				c.client = info
			}
		}
	}
	return c
}

// forwarded makes the client behind a trusted proxy c's source: its address is what policy
// conditions, the unauthenticated limit and events see, the proxy is kept beside it. A header
// that names no usable client leaves the peer as the source, never fails the request.
func (g *Gateway) forwarded(c *call) {
	if len(g.proxies) == 0 {
		return
	}
	peer, err := netip.ParseAddr(c.net.SrcIP)
	if err != nil {
		return
	}
	ap, res := g.proxies.client(peer, c.r.Header)
	if res == fwdNone {
		return
	}
	g.m.forwarded.WithLabelValues(string(res)).Inc()
	switch res {
	case fwdForwarded, fwdXFF:
		c.net.Proxy = c.net.SrcIP
		c.net.SrcIP, c.net.SrcPort = ap.Addr().String(), int(ap.Port())
	case fwdMalformed, fwdObfuscated:
		g.log.Debug("forwarded client address unusable, the proxy stands as the source", "result", string(res), "proxy", c.net.SrcIP)
	}
}

func splitAddr(addr string) (string, int) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0
	}
	n, _ := strconv.Atoi(port)
	return host, n
}

// ServeHTTP authenticates, checks, audits and forwards one request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h, ok := g.public[r.URL.Path]; ok {
		h.ServeHTTP(w, r)
		return
	}
	var (
		p        event.Principal
		authTime time.Time
		err      error
	)
	if ta, ok := g.auth.(TimedAuthenticator); ok {
		p, authTime, err = ta.AuthenticateTimed(r)
	} else {
		p, err = g.auth.Authenticate(r)
	}
	c := g.newCall(r, p)
	c.authTime = authTime
	if err != nil {
		g.unauthenticated(w, c, err)
		return
	}
	if c.foreign {
		// 404 is what the upstream says of an unknown session: the caller learns nothing, the
		// audit record says what happened.
		e := g.event(c, event.DirRequest)
		e.Attributes = map[string]string{"http.method": mcpwire.Clip(r.Method, 32)}
		e.Outcome.Reason = "session belongs to another principal"
		g.refuse(w, c, []*event.Event{e}, nil, false, http.StatusNotFound, denySession, CodeInvalidRequest,
			"session not found", "")
		return
	}
	switch r.Method {
	case http.MethodPost:
		g.servePost(w, c)
	case http.MethodGet, http.MethodDelete:
		g.serveStream(w, c)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		e := g.event(c, event.DirRequest)
		e.Attributes = map[string]string{"http.method": mcpwire.Clip(r.Method, 32)}
		g.refuse(w, c, []*event.Event{e}, nil, false, http.StatusMethodNotAllowed, denyMethod, CodeInvalidRequest,
			"method "+mcpwire.Clip(r.Method, 32)+" not allowed", "")
	}
}

// context is where the messages of c are seen, for their events.
func (g *Gateway) context(c *call) *mcpwire.Context {
	return &mcpwire.Context{
		Principal: c.principal, Session: c.session, Sandbox: g.sandboxOf(c.session),
		TraceID: c.traceID, SpanID: c.spanID, ProtocolVersion: c.protocolVersion,
		ClientName: c.client.clientName, ClientVersion: c.client.clientVersion, Network: c.net,
	}
}

// event starts an audit event for c that no message fills in.
func (g *Gateway) event(c *call, dir event.Direction) *event.Event {
	return g.b.Event(g.context(c), dir, nil)
}

func (g *Gateway) publish(ctx context.Context, e *event.Event) {
	g.b.MaskReason(e)
	g.m.count(e)
	g.pub.Publish(ctx, e)
}

func (g *Gateway) unauthenticated(w http.ResponseWriter, c *call, err error) {
	if g.chal == nil {
		challenge := `Bearer realm="mcpwatch"`
		if !errors.Is(err, ErrNoCredentials) {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
		g.refuseUnauthenticated(w, c, http.StatusUnauthorized, denyUnauthenticated, "authentication required: "+err.Error())
		return
	}
	// The underlying error may describe the authorization server: logs only, never the client.
	g.log.Debug("authentication refused", "err", err, "src", c.net.SrcIP)
	status, text := g.chal.Challenge(w, err)
	reason := denyUnauthenticated
	switch {
	case status == http.StatusServiceUnavailable:
		reason = denyAuthUnavailable
	case errors.Is(err, oauth.ErrInvalidToken):
		// A genuine token the authorization server no longer vouches for (JWT introspection):
		// audited under its principal, refused as any invalid token.
	case c.principal.Subject != "" || c.principal.ClientID != "":
		// A genuine credential refused for how its holder authenticated (MFA).
		reason = denyWeakAuth
	}
	g.refuseUnauthenticated(w, c, status, reason, "authentication required: "+text)
}

// authorize checks each message a client sent against its credential's grant (OAuth scopes).
// It returns false, having answered, when one is refused: 403 insufficient_scope with the scopes
// the call needs, so that the client can step up, and every message audited as denied under the
// rule "scope:<required scopes>".
func (g *Gateway) authorize(w http.ResponseWriter, c *call, events []*event.Event, msgs []mcpwire.Message, batch bool) bool {
	if g.authz == nil {
		return true
	}
	for i := range msgs {
		m := &msgs[i]
		if m.Kind == mcpwire.KindResponse {
			continue // answers a server request: no method of its own
		}
		err := g.authz.Authorize(c.principal, m.Method, m.Tool)
		if err == nil {
			continue
		}
		g.forbidden(w, c, events, msgs, batch, err)
		return false
	}
	return true
}

func (g *Gateway) forbidden(w http.ResponseWriter, c *call, events []*event.Event, msgs []mcpwire.Message, batch bool, err error) {
	status, text := http.StatusForbidden, "forbidden: "+err.Error()
	if g.chal != nil {
		status, text = g.chal.Challenge(w, err)
	}
	rule := ""
	if se := (*oauth.ErrInsufficientScope)(nil); errors.As(err, &se) {
		rule = "scope:" + strings.Join(se.Required, " ")
	}
	g.refuse(w, c, events, msgs, batch, status, denyScope, CodeDenied, text, rule)
}

// refuse answers a request the gateway will not forward, with a JSON-RPC error for each request
// among msgs (see [mcpwire.ErrorResponse]), and publishes its events as denied. The audit reason
// is text unless an event already carries one meant for the audit only.
func (g *Gateway) refuse(w http.ResponseWriter, c *call, events []*event.Event, msgs []mcpwire.Message, batch bool, status int, reason string, code int, text, rule string) {
	g.m.denied.WithLabelValues(reason).Inc()
	for _, e := range events {
		why := text
		if e.Outcome.Reason != "" {
			why = e.Outcome.Reason
		}
		e.Outcome = event.Outcome{Result: event.ResultDenied, Reason: why, PolicyRule: rule, ErrorCode: code, HTTPStatus: status}
		g.publish(c.r.Context(), e)
	}
	var ids []string
	for _, m := range msgs {
		if m.Kind == mcpwire.KindRequest {
			ids = append(ids, m.ID)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(mcpwire.ErrorResponse(ids, batch, code, text))
}

func (g *Gateway) servePost(w http.ResponseWriter, c *call) {
	r := c.r
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes))
	if err != nil {
		e := g.b.Unread(g.context(c), event.DirRequest, len(body))
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			g.refuse(w, c, []*event.Event{e}, nil, false, http.StatusRequestEntityTooLarge, denyTooLarge, CodeInvalidRequest,
				fmt.Sprintf("request body exceeds %d bytes", mbe.Limit), "")
			return
		}
		g.refuse(w, c, []*event.Event{e}, nil, false, http.StatusBadRequest, denyParse, CodeParseError,
			"reading request body: "+err.Error(), "")
		return
	}
	msgs, batch, perr := mcpwire.Parse(body)
	if perr != nil {
		e := g.b.Unread(g.context(c), event.DirRequest, len(body))
		reason := denyInvalid
		if perr.Code == CodeParseError {
			reason = denyParse
		}
		g.refuse(w, c, []*event.Event{e}, nil, false, http.StatusBadRequest, reason, perr.Code, perr.Message, "")
		return
	}

	ctx := g.context(c)
	events := make([]*event.Event, len(msgs))
	for i := range msgs {
		events[i] = g.b.FromClient(ctx, &msgs[i])
	}
	if !batch {
		if text := headerMismatch(r.Header, &msgs[0]); text != "" {
			g.refuse(w, c, events, msgs, batch, http.StatusBadRequest, denyHeaderMismatch, CodeHeaderMismatch, text, "")
			return
		}
	}
	// Enforcement: every message is checked, on every request, so a control applies from the
	// next call on. One refused message refuses the whole body.
	for i := range msgs {
		if ctl, ok := g.controlled(c, msgs[i].Tool); ok {
			g.refuse(w, c, events, msgs, batch, http.StatusForbidden, denyControl, CodeDenied,
				"access revoked by mcpwatch: "+ctl.Reason, "control:"+ctl.Key())
			return
		}
	}
	if ctl, ok := g.stepUpControl(c); ok {
		g.refuseStepUp(w, c, events, msgs, batch, ctl)
		return
	}
	if !g.checkPins(w, c, events, msgs, batch) {
		return
	}
	if !g.authorize(w, c, events, msgs, batch) {
		return
	}
	if !g.enforce(w, c, events, msgs, batch) {
		return
	}
	// Fail closed when the audit trail cannot take the call: a call that cannot be audited is
	// not served. The refusal itself is still handed to the publisher (it may yet spool it).
	if h, ok := g.pub.(interface{ Healthy() error }); ok {
		if err := h.Healthy(); err != nil {
			g.refuse(w, c, events, msgs, batch, http.StatusServiceUnavailable, denyAuditDown, CodeAuditUnavailable,
				"audit trail unavailable, call refused: "+err.Error(), "audit:fail_closed")
			return
		}
	}

	x := &exchange{g: g, c: c, forwarded: time.Now(), batch: batch}
	for i := range msgs {
		m := &msgs[i]
		switch m.Kind {
		case mcpwire.KindRequest:
			x.track(m, events[i])
			if m.Method == "initialize" && m.ClientName != "" {
				x.initClient = sessionInfo{clientName: mcpwire.Clip(m.ClientName, mcpwire.MaxClientLen),
					clientVersion: mcpwire.Clip(m.ClientVersion, mcpwire.MaxClientLen), urlElicitation: declaresURLElicitation(m.Raw)}
			}
		case mcpwire.KindResponse:
			// The client answering a server request (sampling, elicitation, roots).
			if sr, ok := g.pending.Take(pendingKey{c.pkey, c.session, true, m.ID}); ok {
				mcpwire.Pair(events[i], sr) // the method of the server request it answers
			}
		}
		// Audit before the upstream acts on it.
		g.publish(r.Context(), events[i])
	}
	if len(x.reqs) == 1 && msgs[0].Kind == mcpwire.KindRequest && msgs[0].Method == "tools/call" {
		x.tool = msgs[0].Tool
	}
	for i := range msgs {
		if m := &msgs[i]; m.Kind == mcpwire.KindRequest {
			x.redacting = x.redacting || m.Method == "tools/call" && g.redact.forTool(g.cfg.ServerName, m.Tool) != nil
			x.listing = x.listing || m.Method == "tools/list" && !g.cfg.ShowDeniedTools
		}
	}
	r2 := r.WithContext(context.WithValue(r.Context(), exchangeKey{}, x))
	r2.Body = io.NopCloser(bytes.NewReader(body))
	r2.ContentLength = int64(len(body))
	r2.TransferEncoding = nil
	g.proxy.ServeHTTP(w, r2)
}

// headerMismatch checks the 2026-07-28 Mcp-Method and Mcp-Name headers against the body. Proxies,
// load balancers and WAFs route and filter on these headers, so a request whose headers claim one
// call while its body makes another is refused rather than passed on.
func headerMismatch(h http.Header, m *mcpwire.Message) string {
	if m.Kind == mcpwire.KindResponse {
		return ""
	}
	if v := h.Get(headerMethod); v != "" && v != m.Method {
		return "header mismatch: " + headerMethod + " does not match the body's method"
	}
	v := h.Get(headerName)
	if v == "" {
		return ""
	}
	var name string
	switch m.Method {
	case "tools/call":
		name = m.Tool
	case "prompts/get":
		name = m.Prompt
	case "resources/read":
		name = m.ResourceURI
	default:
		return ""
	}
	if decodeHeaderValue(v) != name {
		return "header mismatch: " + headerName + " does not match the body's name"
	}
	return ""
}

// decodeHeaderValue undoes the "=?base64?...?=" form MCP uses for header values that are not
// plain ASCII.
func decodeHeaderValue(v string) string {
	if s, ok := strings.CutPrefix(v, "=?base64?"); ok {
		if s, ok = strings.CutSuffix(s, "?="); ok {
			if b, err := base64.StdEncoding.DecodeString(s); err == nil {
				return string(b)
			}
		}
	}
	return v
}

// serveStream forwards GET (the standalone server stream, or a resumed one) and DELETE (session
// end). Neither carries a message, but both are audited. GET is refused to a revoked principal,
// which must not keep receiving server messages; DELETE is not, since ending a session only takes
// from what a revoked principal holds, and frees the upstream's resources.
func (g *Gateway) serveStream(w http.ResponseWriter, c *call) {
	r := c.r
	e := g.event(c, event.DirRequest)
	e.Attributes = map[string]string{"http.method": r.Method}
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		e.Attributes["sse.last_event_id"] = mcpwire.Clip(id, mcpwire.MaxIDLen)
	}
	if ctl, ok := g.controlled(c, ""); ok && r.Method == http.MethodGet {
		g.refuse(w, c, []*event.Event{e}, nil, false, http.StatusForbidden, denyControl, CodeDenied,
			"access revoked by mcpwatch: "+ctl.Reason, "control:"+ctl.Key())
		return
	}
	// A GET stream delivers server messages: it needs the credential's baseline grant.
	if r.Method == http.MethodGet && g.authz != nil {
		if err := g.authz.Authorize(c.principal, "", ""); err != nil {
			g.forbidden(w, c, []*event.Event{e}, nil, false, err)
			return
		}
	}
	g.publish(r.Context(), e)
	// A stream may carry the answers of requests made on other exchanges: any could need redacting.
	x := &exchange{g: g, c: c, forwarded: time.Now(), redacting: g.redact != nil}
	r2 := r.WithContext(context.WithValue(r.Context(), exchangeKey{}, x))
	r2.Body, r2.ContentLength = http.NoBody, 0
	g.proxy.ServeHTTP(w, r2)
}

// forwardedHeaders are the request headers passed upstream: what Streamable HTTP and tracing
// need. Everything else stays at the gateway, Authorization and cookies above all: the upstream
// gets no client credential (MCP forbids token passthrough).
var forwardedHeaders = map[string]bool{
	"Accept": true, "Content-Type": true, "Last-Event-Id": true, "User-Agent": true,
	headerSessionID: true, headerProtocolVersion: true, headerMethod: true, headerName: true,
	"Traceparent": true, "Tracestate": true, "Baggage": true,
}

func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	u := *g.upstream
	pr.Out.URL = &u
	pr.Out.Host = ""
	h := make(http.Header, len(forwardedHeaders)+3)
	for k, v := range pr.In.Header {
		if forwardedHeaders[k] || strings.HasPrefix(k, "Mcp-Param-") {
			h[k] = v
		}
	}
	// Identity encoding keeps what the gateway inspects byte-identical to what it forwards, and
	// keeps event streams free of compression buffering.
	h.Set("Accept-Encoding", "identity")
	// The client address the gateway vouches for: behind a trusted proxy, the one it forwarded.
	ip, _ := splitAddr(pr.In.RemoteAddr)
	if x, ok := pr.In.Context().Value(exchangeKey{}).(*exchange); ok {
		ip = x.c.net.SrcIP
	}
	if ip != "" {
		h.Set("X-Forwarded-For", ip)
	}
	proto := "http"
	if pr.In.TLS != nil {
		proto = "https"
	}
	h.Set("X-Forwarded-Proto", proto)
	pr.Out.Header = h
}

// Close releases the gateway's idle upstream connections. Stop the HTTP server first: requests in
// flight keep theirs.
func (g *Gateway) Close() {
	if t, ok := g.proxy.Transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

// copyBuffers is the reverse proxy's pool of response copy buffers.
type copyBuffers struct{}

var copyBufferPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (copyBuffers) Get() []byte { return *copyBufferPool.Get().(*[]byte) }

func (copyBuffers) Put(b []byte) {
	if cap(b) == 32<<10 {
		copyBufferPool.Put(&b)
	}
}
