package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/mcpwatch/mcpwatch/component"
	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth"
	"github.com/mcpwatch/mcpwatch/ingest/sandbox"
	"github.com/mcpwatch/mcpwatch/ingest/source"
	"github.com/mcpwatch/mcpwatch/internal/approval"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

// NewFactory returns the gateway's factory; it runs unasked only when an upstream is configured.
func NewFactory() component.Factory {
	return component.NewFactory(Type, DefaultConfig, create,
		component.WithEnabled(func(c *Config) bool { return c.Enabled() }))
}

// Gateway is the running gateway component.
type Gateway struct {
	set     component.Settings
	src     *source.Source
	handler interface {
		http.Handler
		Close()
	}
	ln        net.Listener
	url       string
	upstream  string
	sandboxes *sandbox.Manager
	// revoker, if set, revokes at the authorization server the tokens revoke controls name.
	revoker func(context.Context) error
	// approvals, if set, follows the approvals topic into the approval gate's store.
	approvals *approval.Follower
	// kernel, if set, watches the sandboxes in the kernel; closed after them.
	kernel    *kernel
	closes    []func()
	closeOnce sync.Once
}

// URL is the gateway's MCP endpoint.
func (g *Gateway) URL() string { return g.url }

func create(ctx context.Context, set component.Settings, cfg *Config) (_ component.Component, err error) {
	log := set.Logger
	mc, err := cfg.runtime()
	if err != nil {
		return nil, err
	}
	if cfg.Policy.None {
		log.Warn("GATEWAY RUNNING WITHOUT AN ACCESS POLICY (policy.none / --no-policy): every authenticated principal may call every tool; " +
			"only revocations and scopes are enforced. Never do this in production.")
	}
	if !cfg.Masking {
		log.Warn("gateway masking disabled: events carry no tool arguments")
	}
	g := &Gateway{set: set, upstream: cfg.Upstream}
	defer func() {
		if err != nil {
			_ = g.Close()
		}
	}()
	src, err := source.Open(set, cfg.Config, source.Options{FollowControl: true, FollowScores: true})
	if err != nil {
		return nil, err
	}
	g.src = src
	g.closes = append(g.closes, func() {
		fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := src.Close(fctx); err != nil {
			log.Error("audit events not flushed at shutdown", "err", err)
		}
	})
	if src.Policy != nil { // a nil *policy.Store in the interface would not read as "no policy"
		mc.Policy = src.Policy
	}
	mc.ToolPins = src.Pins
	mc.Actions = src.Actions
	// The gateway serves only once the scores are loaded, so a principal never scored has risk 0.
	mc.Scores = src
	if mc.OAuth != nil {
		mc.OAuth.Registerer = set.Registerer
	}
	// The OAuth resource server discovers the authorization server and fetches its keys now, so
	// that a wrong issuer fails the start, not the first call.
	auth, err := mcp.NewAuthenticator(ctx, *mc, log)
	if err != nil {
		return nil, err
	}
	if c, ok := auth.(interface{ Close() }); ok {
		g.closes = append(g.closes, c.Close)
	}
	if err := g.wireRevoker(auth, mc); err != nil {
		return nil, err
	}
	if err := g.wireApprovals(cfg.Approvals, mc); err != nil {
		return nil, err
	}
	// Kernel monitoring: the agent publishes kernel events through the gateway's publisher and
	// learns each sandbox's session and principal from the gateway's own audit events, which
	// pass its tap on the way to that publisher.
	pub := mcp.Publisher(src.Publisher)
	var watcher sandbox.Watcher
	if g.kernel, err = wireEBPF(cfg.EBPF, cfg.hasCommand(), set, observerName(mc), src.Publisher); err != nil {
		return nil, err
	}
	if g.kernel != nil {
		pub, watcher = g.kernel.agent.Tap(src.Publisher), g.kernel.watcher()
	}
	if len(cfg.Upstreams) > 0 {
		routes, m, err := cfg.routes(log, watcher)
		if err != nil {
			return nil, err
		}
		g.sandboxes = m
		if g.kernel != nil && m != nil {
			if err := g.kernel.startEgress(cfg, m.Parent(), set, mc.Tenant, observerName(mc), src.Controls, src.Actions); err != nil {
				return nil, err
			}
		}
		for _, rt := range routes {
			kind := "url"
			if rt.Bridge != nil {
				kind = "sandboxed command"
			}
			log.Info("gateway route", "route", rt.Prefix, "server", rt.Name, "upstream", kind)
		}
		if m != nil {
			log.Info("sandboxes", "cgroup", m.Parent(), "controllers", m.Controllers())
		}
		r, err := mcp.NewRouter(*mc, routes, auth, pub, src.Controls, set.Registerer, log)
		if err != nil {
			for _, rt := range routes {
				if rt.Bridge != nil {
					_ = rt.Bridge.Close(context.Background())
				}
			}
			return nil, err
		}
		g.handler = r
	} else {
		gw, err := mcp.New(*mc, auth, pub, src.Controls, set.Registerer, log)
		if err != nil {
			return nil, err
		}
		g.handler = gw
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	g.ln, g.url = ln, "http://"+ln.Addr().String()+"/mcp"
	set.Health.Set("control-topic", errors.New("starting"))
	if g.approvals != nil {
		set.Health.Set("approvals-topic", errors.New("starting"))
	}
	return g, nil
}

// wireRevoker prepares the RFC 7009 revoker of an OAuth gateway that enables it: it acts on the
// control store and records its actions on the actions topic.
func (g *Gateway) wireRevoker(auth mcp.Authenticator, mc *mcp.Config) error {
	o, ok := auth.(*mcp.OAuth)
	if !ok || o.Revoker() == nil {
		return nil
	}
	cl, err := kafkaio.NewClient(g.set.KafkaClient("actions"))
	if err != nil {
		return fmt.Errorf("revocation at the authorization server: %w", err)
	}
	g.closes = append(g.closes, cl.Close)
	deps := oauth.RevokerDeps{
		Controls: g.src.Controls, Actions: mcp.NewKafkaActions(cl, g.set.Topics.Actions, g.set.Logger),
		Tenant: mc.Tenant, Actor: "gateway:" + observerName(mc),
	}
	rev := o.Revoker()
	g.revoker = func(ctx context.Context) error { return rev.Run(ctx, deps) }
	return nil
}

// wireApprovals builds the approval gate when a keyring is configured: its store follows the
// approvals topic (Run waits until it has read it before serving), it writes requests and claims
// with a client of its own, and it records each step on the actions topic through the source's
// action publisher (spooled like the gateway's other actions).
func (g *Gateway) wireApprovals(c Approvals, mc *mcp.Config) error {
	if !c.Enabled() {
		return nil
	}
	keys, err := approval.LoadKeyring(c.Keyring)
	if err != nil {
		return err
	}
	var opts []approval.StoreOption
	if c.MaxRequests > 0 {
		opts = append(opts, approval.WithMaxRequests(c.MaxRequests))
	}
	store := approval.NewStore(keys, opts...)
	f, err := approval.NewFollower(g.set.KafkaClient("approvals"), g.set.Topics.Approvals, store, g.set.Registerer, g.set.Logger)
	if err != nil {
		return fmt.Errorf("approvals: %w", err)
	}
	g.closes = append(g.closes, f.Close)
	cl, err := kafkaio.NewClient(g.set.KafkaClient("approvals-writer"))
	if err != nil {
		return fmt.Errorf("approvals: %w", err)
	}
	g.closes = append(g.closes, cl.Close)
	actions := g.src.Actions
	gate, err := approval.NewGate(approval.GateConfig{Store: store, Producer: approval.KafkaProducer(cl, g.set.Topics.Approvals),
		Gateway: observerName(mc), APIURL: c.StatusURL, WaitTimeout: c.WaitTimeout, Log: g.set.Logger.With("part", "approvals"),
		Actions: func(ctx context.Context, a event.Action) { actions.PublishAction(ctx, &a) }})
	if err != nil {
		return err
	}
	mc.Approvals, g.approvals = gate, f
	g.set.Logger.Info("approvals", "keyring", c.Keyring, "approvers", len(keys.IDs()), "status_url", c.StatusURL)
	return nil
}

// observerName names this gateway replica: the configured observer, else the host name.
func observerName(mc *mcp.Config) string {
	if mc.Observer != "" {
		return mc.Observer
	}
	h, _ := os.Hostname()
	return h
}

// runtime is the HTTP gateway's configuration: static tokens or OAuth, parsed redaction rules.
func (c *Config) runtime() (*mcp.Config, error) {
	mc := &mcp.Config{
		Listen: c.Listen, Upstream: c.Upstream, ServerName: c.ServerName, Tenant: c.Tenant,
		NoMasking: !c.Masking, DeviceHealthHeader: c.DeviceHealthHeader,
		RedactOversize: mcp.OversizeAction(c.RedactOversize), MaxBodyBytes: c.MaxBodyBytes,
		ShowDeniedTools: c.ShowDeniedTools,
		Unauthenticated: mcp.UnauthLimit{Rate: c.Unauthenticated.Rate, Burst: c.Unauthenticated.Burst},
	}
	for _, p := range c.TrustedProxies {
		prefix, err := mcp.ParseTrustedProxy(p)
		if err != nil {
			return nil, fmt.Errorf("trusted_proxies: %w", err)
		}
		mc.TrustedProxies = append(mc.TrustedProxies, prefix)
	}
	for _, r := range c.Redact {
		rule, err := mcp.ParseRedactRule(r)
		if err != nil {
			return nil, fmt.Errorf("redact: %w", err)
		}
		mc.Redact = append(mc.Redact, rule)
	}
	o := c.Auth.OAuth
	if o.Issuer == "" {
		tokens, err := LoadTokens(c.Auth.TokensFile)
		if err != nil {
			return nil, err
		}
		mc.Tokens = tokens
		return mc, nil
	}
	oc := &oauth.Config{Issuer: o.Issuer, Resource: o.Resource, JWKSURL: o.JWKSURL, RoleClaim: o.RoleClaim,
		RequiredScopes: o.Scopes, RequireAMR: o.RequireAMR, RequireACR: o.RequireACR}
	if o.Introspection.ClientID != "" {
		secret, err := o.Introspection.ClientSecret.Resolve()
		if err != nil {
			return nil, fmt.Errorf("oauth introspection client secret: %w", err)
		}
		oc.Introspection = oauth.Introspection{ClientID: o.Introspection.ClientID, ClientSecret: oauth.Secret(secret),
			JWT: oauth.JWTIntrospection(o.Introspection.JWT), MinRiskScore: o.Introspection.MinRiskScore,
			CacheTTL: o.Introspection.CacheTTL}
	}
	oc.Revocation = oauth.Revocation{Enabled: o.Revocation.Enabled, URL: o.Revocation.URL}
	if err := oc.Validate(); err != nil {
		return nil, fmt.Errorf("oauth: %w", err)
	}
	mc.OAuth = oc
	mc.StepUp = mcp.StepUpDemand{AMR: o.StepUpAMR, ACR: o.StepUpACR}
	return mc, nil
}

// Run serves once the control and scores topics are loaded — before, a revoked principal could
// slip in and every risk would be unknown — until ctx ends; then it stops taking calls, and
// delivers or spools the audit events of the calls it took.
func (g *Gateway) Run(ctx context.Context) error {
	// The followers outlive the server: a call in flight at shutdown is still checked.
	fctx, stopFollowers := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 3)
	go func() { done <- g.src.Run(fctx) }()
	n := 1
	if g.revoker != nil {
		n++
		go func() { done <- g.revoker(fctx) }()
	}
	if g.approvals != nil {
		n++
		go func() { done <- g.approvals.Run(fctx) }()
	}
	defer func() {
		stopFollowers()
		for range n {
			if err := <-done; err != nil {
				g.set.Logger.Warn("followers", "err", err)
			}
		}
	}()
	if err := g.src.WaitReady(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	g.set.Health.Set("control-topic", nil)
	if g.approvals != nil {
		// Before the approvals are read, an approved call would be asked for anew.
		if err := g.approvals.WaitReady(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("approvals topic: %w", err)
		}
		g.set.Health.Set("approvals-topic", nil)
	}
	srv := &http.Server{Handler: g.handler, ReadHeaderTimeout: 10 * time.Second}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	defer stop()
	g.set.Logger.Info("gateway serving", "url", g.url, "upstream", g.upstream)
	err := srv.Serve(g.ln) // Serve closes the listener
	g.handler.Close()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close ends sandboxed sessions, flushes the audit events and releases everything, once. With
// kernel monitoring, the sandboxes stop first, then the probes are detached and their last events
// published, and only then is the audit publisher flushed.
func (g *Gateway) Close() error {
	g.closeOnce.Do(func() {
		if g.handler != nil {
			g.handler.Close() // idempotent
		}
		if g.ln != nil {
			_ = g.ln.Close() // a no-op error once Serve closed it
		}
		if g.kernel != nil {
			if g.sandboxes != nil {
				closeManager(g.sandboxes, g.set.Logger)
				g.sandboxes = nil
			}
			if err := g.kernel.close(); err != nil {
				g.set.Logger.Warn("ebpf probes not all released", "err", err)
			}
		}
		for i := len(g.closes) - 1; i >= 0; i-- {
			g.closes[i]()
		}
		if g.sandboxes != nil {
			closeManager(g.sandboxes, g.set.Logger)
		}
	})
	return nil
}
