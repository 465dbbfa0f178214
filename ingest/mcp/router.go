package mcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth"
	"github.com/mcpwatch/mcpwatch/ingest/mcpwire"
	"github.com/mcpwatch/mcpwatch/ingest/sandbox"
	"github.com/mcpwatch/mcpwatch/internal/control"
)

// Route is one upstream MCP server behind a [Router]: a remote Streamable HTTP server (URL) or a
// stdio server launched in a sandbox per session (Bridge).
type Route struct {
	// Name names the server in events, policies, pins and quarantines.
	Name string
	// Prefix is the path the server is served under, e.g. "/mcp/files": requests to the prefix
	// itself or below it go to this server. The longest matching prefix wins.
	Prefix string
	// URL is the remote server's Streamable HTTP endpoint. Exclusive with Bridge.
	URL string
	// Bridge serves a sandboxed stdio server in-process: no network hop, nothing listening that
	// could bypass the gateway. Its sessions' events carry their sandbox id, and quarantines of
	// the sandbox or the server freeze it. Closed by [Router.Close].
	Bridge *sandbox.Bridge
}

// Router is the gateway for several upstream servers, chosen by path prefix: one [Gateway] per
// route, sharing the authenticator, publisher, control store and the rest of the base [Config].
// A request no route matches is answered 404 and audited. Sandbox quarantines (scope sandbox, or
// the sandboxed server's name) freeze the sandboxes within moments of the control arriving and
// thaw them when it is lifted or expires.
type Router struct {
	routes []*routed // longest prefix first
	public map[string]http.Handler
	ctl    *control.Store
	pub    *principalTracker
	log    *slog.Logger
	tenant string

	unrouted prometheus.Counter
	// actions records quarantines applied and lifted; nil: not recorded. observer names this
	// replica in them.
	actions  ActionPublisher
	observer string
	// frozenBy remembers the control that froze each sandbox, so that its thaw — after a
	// tombstone that leaves nothing in the store — is recorded against it.
	frozenMu sync.Mutex
	frozenBy map[string]event.Control
	wake     chan struct{}
	stop     chan struct{}
	done     chan struct{}
}

type routed struct {
	Route
	g *Gateway
}

// NewRouter returns a router for routes, each served by a [Gateway] configured from base (its
// Upstream, ServerName, Route, Transport and Sandboxes are set per route). Each gateway's metrics
// carry a server label with the route's name. reg and log may be nil.
func NewRouter(base Config, routes []Route, auth Authenticator, pub Publisher, ctl *control.Store, reg prometheus.Registerer, log *slog.Logger) (*Router, error) {
	if len(routes) == 0 {
		return nil, errors.New("mcp router: no routes")
	}
	if auth == nil || pub == nil || ctl == nil {
		return nil, errors.New("mcp router: authenticator, publisher and control store are required")
	}
	if log == nil {
		log = slog.Default()
	}
	if err := validateRoutes(routes); err != nil {
		return nil, fmt.Errorf("mcp router: %w", err)
	}
	base = base.withDefaults()
	r := &Router{
		ctl: ctl, pub: &principalTracker{Publisher: pub, bySandbox: map[string]event.Principal{}},
		log: log.With("component", "mcp-router"), tenant: base.Tenant,
		actions: base.Actions, observer: base.Observer, frozenBy: map[string]event.Control{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		unrouted: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpwatch_gateway_unrouted_total",
			Help: "Requests to a path no configured MCP server is served under."}),
	}
	if reg != nil {
		reg.MustRegister(r.unrouted)
	}
	for _, rt := range routes {
		cfg := base
		cfg.ServerName, cfg.Route = rt.Name, normalizePrefix(rt.Prefix)
		if rt.Bridge != nil {
			// The URL only satisfies the reverse proxy: the transport hands the request to the
			// bridge in-process.
			cfg.Upstream = "http://sandbox.mcpwatch.invalid/" + url.PathEscape(rt.Name)
			cfg.Transport = handlerTransport{rt.Bridge}
			cfg.Sandboxes = rt.Bridge
		} else {
			cfg.Upstream = rt.URL
		}
		var greg prometheus.Registerer
		if reg != nil {
			greg = prometheus.WrapRegistererWith(prometheus.Labels{"server": rt.Name}, reg)
		}
		g, err := New(cfg, auth, r.pub, ctl, greg, log)
		if err != nil {
			return nil, fmt.Errorf("route %s (%s): %w", rt.Prefix, rt.Name, err)
		}
		rr := &routed{Route: rt, g: g}
		rr.Prefix = cfg.Route
		r.routes = append(r.routes, rr)
		if rt.Bridge != nil {
			rt.Bridge.OnSessionEnd(func(se sandbox.SessionEnd) { r.sessionEnded(rr, se) })
		}
	}
	slices.SortFunc(r.routes, func(a, b *routed) int { return len(b.Prefix) - len(a.Prefix) })
	r.public = r.routes[0].g.public // one authenticator: the same documents on every route
	ctl.OnChange(r.poke)
	go r.watch()
	return r, nil
}

func normalizePrefix(p string) string {
	p = strings.TrimRight(p, "/")
	if p == "" {
		return "/"
	}
	return p
}

func validateRoutes(routes []Route) error {
	var errs []error
	names, prefixes := map[string]bool{}, map[string]bool{}
	for i, rt := range routes {
		at := fmt.Sprintf("route %d", i+1)
		if rt.Name != "" {
			at += " (" + rt.Name + ")"
		}
		switch {
		case rt.Name == "":
			errs = append(errs, fmt.Errorf("%s: name is required", at))
		case names[rt.Name]:
			errs = append(errs, fmt.Errorf("%s: name used twice", at))
		}
		names[rt.Name] = true
		p := normalizePrefix(rt.Prefix)
		switch {
		case !strings.HasPrefix(rt.Prefix, "/"):
			errs = append(errs, fmt.Errorf("%s: prefix %q must start with /", at, rt.Prefix))
		case strings.ContainsAny(rt.Prefix, "?#") || strings.Contains(rt.Prefix, "//") || strings.Contains(rt.Prefix, "/../") || strings.HasSuffix(rt.Prefix, "/.."):
			errs = append(errs, fmt.Errorf("%s: prefix %q is not a clean path", at, rt.Prefix))
		case prefixes[p]:
			errs = append(errs, fmt.Errorf("%s: prefix %q used twice", at, p))
		}
		prefixes[p] = true
		if (rt.URL == "") == (rt.Bridge == nil) {
			errs = append(errs, fmt.Errorf("%s: give exactly one of a URL and a sandboxed command", at))
		}
	}
	return errors.Join(errs...)
}

// match returns the route serving path: the longest prefix equal to it or followed by "/".
func (r *Router) match(path string) *routed {
	for _, rt := range r.routes {
		if rt.Prefix == "/" || path == rt.Prefix || strings.HasPrefix(path, rt.Prefix+"/") {
			return rt
		}
	}
	return nil
}

// ServeHTTP hands the request to the gateway of its route.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if h, ok := r.public[req.URL.Path]; ok {
		h.ServeHTTP(w, req)
		return
	}
	if rt := r.match(req.URL.Path); rt != nil {
		rt.g.ServeHTTP(w, req)
		return
	}
	r.noRoute(w, req)
}

// noRoute answers 404 and audits the request, with its principal when it authenticates: probing
// for servers is worth seeing.
func (r *Router) noRoute(w http.ResponseWriter, req *http.Request) {
	g := r.routes[0].g
	p, _ := g.auth.Authenticate(req)
	c := g.newCall(req, p)
	e := g.event(c, event.DirRequest)
	e.Target = event.Target{}
	e.Correlation.SessionID = "" // a session id names a session of some server, not of this path
	// The path is the client's to write, so it is masked like a resource URI.
	e.Attributes = map[string]string{"http.method": mcpwire.Clip(req.Method, 32), "http.path": g.b.MaskURI(req.URL.Path, 256)}
	e.Outcome = event.Outcome{Result: event.ResultDenied, Reason: "no MCP server is served at this path",
		ErrorCode: CodeInvalidRequest, HTTPStatus: http.StatusNotFound}
	g.b.MaskReason(e)
	r.unrouted.Inc()
	r.pub.Publish(req.Context(), e)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write(mcpwire.ErrorResponse(nil, false, CodeInvalidRequest, "no MCP server at this path"))
}

// controlled is the control in force that refuses c's call to tool ("" for none): the
// revocations and quarantines of [control.Store.Check], then a quarantine of the session's
// sandbox.
func (g *Gateway) controlled(c *call, tool string) (event.Control, bool) {
	now := time.Now()
	if ctl, ok := g.ctl.Check(g.cfg.Tenant, c.principal, g.cfg.ServerName, tool, now); ok {
		return ctl, true
	}
	return g.ctl.Match(g.cfg.Tenant, event.ScopeSandbox, g.sandboxOf(c.session), now)
}

// stepUpControl is the step-up control in force (kind step_up, on c's token, subject or client)
// that c's authentication does not satisfy: the principal authenticated before the control, or
// the gateway cannot tell when (no auth_time), or without the [Config.StepUp] demand. A token
// refreshed from an old login keeps its auth_time and so does not satisfy it: only a new
// authentication does.
func (g *Gateway) stepUpControl(c *call) (event.Control, bool) {
	now := time.Now()
	p := c.principal
	for _, q := range [...]struct {
		scope event.ControlScope
		value string
	}{{event.ScopeToken, p.TokenID}, {event.ScopeSubject, p.Subject}, {event.ScopeClient, p.ClientID}} {
		ctl, ok := g.ctl.MatchKind(g.cfg.Tenant, event.ControlStepUp, q.scope, q.value, now)
		if ok && !g.steppedUp(c, ctl) {
			return ctl, true
		}
	}
	return event.Control{}, false
}

func (g *Gateway) steppedUp(c *call, ctl event.Control) bool {
	if c.authTime.IsZero() || !c.authTime.After(ctl.Time) {
		return false
	}
	d := g.cfg.StepUp
	if len(d.AMR) > 0 && !slices.ContainsFunc(c.principal.AuthMethods, func(m string) bool { return slices.Contains(d.AMR, m) }) {
		return false
	}
	return len(d.ACR) == 0 || slices.Contains(d.ACR, c.principal.ACR)
}

// refuseStepUp answers a call held by a step-up control: with an OAuth authenticator the RFC 9470
// challenge, 401 insufficient_user_authentication with max_age — the seconds since the control,
// so that only a login after it satisfies — and acr_values from [Config.StepUp]; else 403.
func (g *Gateway) refuseStepUp(w http.ResponseWriter, c *call, events []*event.Event, msgs []mcpwire.Message, batch bool, ctl event.Control) {
	status, text := http.StatusForbidden, "step-up authentication required by mcpwatch"
	if g.chal != nil {
		age := max(time.Since(ctl.Time).Truncate(time.Second), time.Second)
		status, _ = g.chal.Challenge(w, &oauth.MFAError{AnyAMR: slices.Clone(g.cfg.StepUp.AMR), AnyACR: slices.Clone(g.cfg.StepUp.ACR), MaxAge: age})
		text += ": authenticate again"
		if len(g.cfg.StepUp.AMR) > 0 {
			text += " with " + strings.Join(g.cfg.StepUp.AMR, " or ")
		}
	}
	if ctl.Reason != "" {
		text += " (" + ctl.Reason + ")"
	}
	g.refuse(w, c, events, msgs, batch, status, denyStepUp, CodeDenied, text, "control:"+ctl.Key())
}

func (g *Gateway) sandboxOf(session string) string {
	if g.cfg.Sandboxes == nil || session == "" {
		return ""
	}
	return g.cfg.Sandboxes.SandboxOf(session)
}

// poke wakes the quarantine watcher; called by the control store on every change.
func (r *Router) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// watch applies sandbox quarantines on every control change, and every second for expiries.
func (r *Router) watch() {
	defer close(r.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-r.wake:
		case <-t.C:
		}
		r.applyQuarantines()
	}
}

// quarantineOf is the control that quarantines a sandbox of rt: one naming the sandbox, or the
// server it runs.
func (r *Router) quarantineOf(rt *routed, sandboxID string, now time.Time) (event.Control, bool) {
	if c, ok := r.ctl.Match(r.tenant, event.ScopeSandbox, sandboxID, now); ok {
		return c, true
	}
	return r.ctl.Match(r.tenant, event.ScopeServer, rt.Name, now)
}

func (r *Router) applyQuarantines() {
	now := time.Now()
	for _, rt := range r.routes {
		if rt.Bridge == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		changes := rt.Bridge.ApplyQuarantine(ctx, func(id string) bool {
			_, q := r.quarantineOf(rt, id, now)
			return q
		})
		cancel()
		for _, qc := range changes {
			r.publishQuarantine(rt, qc, now)
			r.recordQuarantine(rt, qc, now)
		}
	}
}

// Attributes of the gateway's sandbox events.
const (
	attrSandboxEvent   = "sandbox.event" // frozen, thawed, ended
	attrSandboxCgroup  = "sandbox.cgroup_id"
	attrSandboxReason  = "sandbox.end_reason"
	attrSandboxExit    = "sandbox.exit"
	attrSandboxStderr  = "sandbox.stderr_tail"
	attrSandboxPending = "sandbox.pending_requests"
)

// sandboxEvent starts the audit event of something that happened to a sandbox.
func (r *Router) sandboxEvent(rt *routed, session, sandboxID string, cgroupID uint64, what string) *event.Event {
	g := rt.g
	e := &event.Event{
		ID: event.NewID(), Time: time.Now(), Source: event.SourceMCP, Observer: g.cfg.Observer, Tenant: g.cfg.Tenant,
		Principal:   r.pub.principal(sandboxID),
		Correlation: event.Correlation{SessionID: session},
		MCP:         &event.MCP{Direction: event.DirNotification, Transport: Transport},
		Target:      event.Target{Server: rt.Name, Route: rt.Prefix, Sandbox: sandboxID},
		Process:     &event.Process{CgroupID: cgroupID},
		Outcome:     event.Outcome{Result: event.ResultAllowed},
		Attributes: map[string]string{"mcp.sender": "gateway", attrSandboxEvent: what,
			attrSandboxCgroup: strconv.FormatUint(cgroupID, 10)},
	}
	return e
}

func (r *Router) publishQuarantine(rt *routed, qc sandbox.QuarantineChange, now time.Time) {
	what := "thawed"
	if qc.Frozen {
		what = "frozen"
	}
	e := r.sandboxEvent(rt, qc.Session, qc.Sandbox, qc.CgroupID, what)
	if ctl, ok := r.quarantineOf(rt, qc.Sandbox, now); ok {
		e.Outcome.PolicyRule = "control:" + ctl.Key()
		e.Outcome.Reason = ctl.Reason
	}
	if qc.Err != nil {
		e.Outcome.Result, e.Outcome.Reason = event.ResultError, "sandbox not "+what+": "+qc.Err.Error()
	}
	e.Severity = 7
	rt.g.publish(context.Background(), e)
}

// sessionEnded audits the end of a sandboxed session: an error when the server exited by itself
// (crashed, killed, or never answered initialize), else the session's ordinary end.
func (r *Router) sessionEnded(rt *routed, se sandbox.SessionEnd) {
	e := r.sandboxEvent(rt, se.Session, se.Sandbox, se.CgroupID, "ended")
	e.Attributes[attrSandboxReason] = se.Reason
	if se.Pending > 0 {
		e.Attributes[attrSandboxPending] = strconv.Itoa(se.Pending)
	}
	switch se.Reason {
	case "exited":
		e.Attributes[attrSandboxExit] = se.Exit
		if tail := strings.TrimSpace(se.Stderr); tail != "" {
			e.Attributes[attrSandboxStderr] = rt.g.b.MaskText(tail, 512)
		}
		e.Outcome = event.Outcome{Result: event.ResultError, Reason: "MCP server process exited (" + se.Exit + ")"}
		e.Severity = 5
	case "initialize_failed":
		e.Outcome = event.Outcome{Result: event.ResultError, Reason: "MCP server did not complete initialize"}
		e.Severity = 3
	}
	rt.g.publish(context.Background(), e)
	r.pub.forget(se.Sandbox)
	r.frozenMu.Lock()
	delete(r.frozenBy, se.Sandbox)
	r.frozenMu.Unlock()
}

// quarantineNamespace scopes the ids of the gateway's quarantine actions; it never changes.
var quarantineNamespace = uuid.MustParse("5b0c7e0a-2f4e-4c43-8d7e-0e6f4f1b9a21")

// recordQuarantine publishes the action record of a freeze or thaw the router applied: a
// quarantine succeeded only when cgroup.events confirmed the cgroup frozen, failed with the
// kernel's reason otherwise; a thaw is a lift, on the control's expiry or its tombstone. The id
// is derived from the control, the sandbox and what happened, so a control applied again yields
// the same record rather than a second one. LatencyMS runs from the control's time to the
// confirmation (for a lift on expiry, from the expiry).
func (r *Router) recordQuarantine(rt *routed, qc sandbox.QuarantineChange, now time.Time) {
	var ctl event.Control
	r.frozenMu.Lock()
	if qc.Frozen {
		ctl, _ = r.quarantineOf(rt, qc.Sandbox, now)
		if qc.Err == nil {
			r.frozenBy[qc.Sandbox] = ctl
		}
	} else {
		ctl = r.frozenBy[qc.Sandbox]
		if qc.Err == nil {
			delete(r.frozenBy, qc.Sandbox)
		}
	}
	r.frozenMu.Unlock()
	if r.actions == nil {
		return
	}
	at := qc.At
	if at.IsZero() {
		at = time.Now()
	}
	what, kind := "frozen", event.ActionQuarantine
	if !qc.Frozen {
		what, kind = "thawed", event.ActionLift
	}
	status := "succeeded"
	if qc.Err != nil {
		status, what = "failed", what+"-failed"
	}
	a := &event.Action{
		ID:   uuid.NewSHA1(quarantineNamespace, []byte(ctl.ID+"\x00"+qc.Sandbox+"\x00"+what)).String(),
		Time: at.UTC(), Tenant: r.tenant, FindingID: ctl.FindingID,
		Kind: kind, Target: qc.Sandbox, Status: status, Attempts: 1,
		Scope: ctl.Scope, Actor: "gateway:" + r.observer, Reason: ctl.Reason, ControlID: ctl.ID, Expires: ctl.Expires,
	}
	if p := r.pub.principal(qc.Sandbox); p.Subject != "" || p.ClientID != "" {
		a.Subject = event.PrincipalID(p)
	}
	since := ctl.Time
	switch {
	case qc.Frozen && qc.Err == nil:
		a.Detail = fmt.Sprintf("sandbox %s of server %s frozen (cgroup %d), confirmed by cgroup.events frozen 1; control %s",
			qc.Sandbox, rt.Name, qc.CgroupID, ctl.Key())
	case qc.Frozen:
		a.Detail = fmt.Sprintf("sandbox %s of server %s not frozen: %v", qc.Sandbox, rt.Name, qc.Err)
	case ctl.Expires != nil && !now.Before(*ctl.Expires):
		since = *ctl.Expires
		a.Detail = fmt.Sprintf("sandbox %s thawed: control %s expired at %s", qc.Sandbox, ctl.Key(), ctl.Expires.UTC().Format(time.RFC3339))
	default:
		since = time.Time{} // a tombstone carries no time
		a.Detail = fmt.Sprintf("sandbox %s thawed: control %s lifted", qc.Sandbox, ctl.Key())
	}
	if !qc.Frozen && qc.Err != nil {
		a.Detail = fmt.Sprintf("sandbox %s not thawed: %v", qc.Sandbox, qc.Err)
	}
	if !since.IsZero() {
		a.LatencyMS = max(float64(at.Sub(since).Microseconds())/1000, 0)
	}
	r.actions.PublishAction(context.Background(), a)
	r.log.Info("quarantine action", "kind", a.Kind, "status", a.Status, "sandbox", qc.Sandbox, "control", ctl.Key(),
		"latency_ms", a.LatencyMS)
}

// Close stops the quarantine watcher, ends every sandboxed session (stopping its sandbox) and
// releases the gateways' idle connections. Stop the HTTP server first.
func (r *Router) Close() {
	select {
	case <-r.stop:
		return
	default:
	}
	close(r.stop)
	<-r.done
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, rt := range r.routes {
		if rt.Bridge != nil {
			if err := rt.Bridge.Close(ctx); err != nil {
				r.log.Warn("close sandboxed server", "server", rt.Name, "err", err)
			}
		}
		rt.g.Close()
	}
}

// principalTracker remembers who uses each sandbox (from the events of its session), so that the
// gateway's own events about the sandbox — frozen, ended — name the principal too.
type principalTracker struct {
	Publisher
	mu        sync.Mutex
	bySandbox map[string]event.Principal
}

func (p *principalTracker) Publish(ctx context.Context, e *event.Event) {
	if sb := e.Target.Sandbox; sb != "" && (e.Principal.Subject != "" || e.Principal.ClientID != "") {
		p.mu.Lock()
		if _, ok := p.bySandbox[sb]; !ok && len(p.bySandbox) < DefaultMaxPending {
			p.bySandbox[sb] = e.Principal
		}
		p.mu.Unlock()
	}
	p.Publisher.Publish(ctx, e)
}

// Healthy passes on the wrapped publisher's health, which the gateway fails closed on.
func (p *principalTracker) Healthy() error {
	if h, ok := p.Publisher.(interface{ Healthy() error }); ok {
		return h.Healthy()
	}
	return nil
}

func (p *principalTracker) principal(sandboxID string) event.Principal {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bySandbox[sandboxID]
}

func (p *principalTracker) forget(sandboxID string) {
	p.mu.Lock()
	delete(p.bySandbox, sandboxID)
	p.mu.Unlock()
}

// handlerTransport is an [http.RoundTripper] that serves each request with an in-process handler,
// streaming its response as it is written.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	pr, pw := io.Pipe()
	rw := &pipeResponse{header: http.Header{}, pw: pw, ready: make(chan struct{})}
	in := req.Clone(ctx)
	in.RequestURI = req.URL.RequestURI()
	in.RemoteAddr = "in-process"
	if in.Body == nil {
		in.Body = http.NoBody
	}
	go func() {
		defer func() {
			if v := recover(); v != nil && v != http.ErrAbortHandler {
				pw.CloseWithError(fmt.Errorf("in-process upstream panicked: %v", v))
			}
			rw.WriteHeader(http.StatusOK) // no-op once written
			_ = pw.Close()
		}()
		t.h.ServeHTTP(rw, in)
	}()
	select {
	case <-rw.ready:
	case <-ctx.Done():
		cancel()
		_ = pr.Close()
		return nil, ctx.Err()
	}
	return &http.Response{
		Status: strconv.Itoa(rw.status) + " " + http.StatusText(rw.status), StatusCode: rw.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rw.sent, Body: &pipeBody{pr, cancel}, ContentLength: -1, Request: req,
	}, nil
}

// pipeResponse is the in-process handler's [http.ResponseWriter]: the header is handed over once
// written, the body flows through a pipe (each Write returns once the reader has taken it, so a
// stream needs no flushing).
type pipeResponse struct {
	header http.Header
	sent   http.Header
	status int
	pw     *io.PipeWriter
	once   sync.Once
	ready  chan struct{}
}

func (p *pipeResponse) Header() http.Header { return p.header }

func (p *pipeResponse) WriteHeader(status int) {
	p.once.Do(func() {
		p.status, p.sent = status, p.header.Clone()
		close(p.ready)
	})
}

func (p *pipeResponse) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return p.pw.Write(b)
}

// Flush is a no-op: the pipe hands every write over as it happens.
func (p *pipeResponse) Flush() {}

// pipeBody ends the handler's request context when the proxy closes the response body, so a
// handler waiting for upstream messages stops when the client goes away.
type pipeBody struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (b *pipeBody) Close() error {
	b.cancel()
	return b.PipeReader.Close()
}
