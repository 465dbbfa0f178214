package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth"
	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth/oauthtest"
	"github.com/mcpwatch/mcpwatch/internal/control"
)

// oauthFixture is the gateway as an OAuth resource server in front of an SDK upstream, trusting a
// real OpenID Provider (oauthtest, zitadel's op) that issues tokens by the authorization-code flow
// with PKCE S256.
type oauthFixture struct {
	*fixture
	as       *oauthtest.Server
	auth     *OAuth
	resource string
}

// testScopes: the baseline mcp:read for anything, mcp:tools for tool calls, and mcp:admin
// besides for the "fail" tool.
var testScopes = map[string][]string{"*": {"mcp:read"}, "tools/call": {"mcp:tools"}, "fail": {"mcp:admin"}}

func newOAuthFixture(t *testing.T, up *upstream, mutate ...func(*oauth.Config)) *oauthFixture {
	t.Helper()
	return newOAuthGateway(t, up, nil, mutate...)
}

// newOAuthGateway is newOAuthFixture with gw, if set, changing the gateway's configuration.
func newOAuthGateway(t *testing.T, up *upstream, gw func(*Config), mutate ...func(*oauth.Config)) *oauthFixture {
	t.Helper()
	as := oauthtest.Start(t)
	f := &fixture{up: up, store: control.NewStore(), events: &recorder{}, reg: prometheus.NewRegistry()}
	// The resource is the gateway's own URL, so the listener comes first.
	f.srv = httptest.NewUnstartedServer(nil)
	resource := "http://" + f.srv.Listener.Addr().String() + "/mcp"
	oc := oauth.Config{Issuer: as.URL, Resource: resource, RoleClaim: "roles", RequiredScopes: testScopes}
	for _, m := range mutate {
		m(&oc)
	}
	tr := &http.Transport{}
	a, err := NewOAuth(context.Background(), oc, &http.Client{Transport: tr, Timeout: 10 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Upstream: up.srv.URL, ServerName: "files", Tenant: "acme", Observer: "gw-test", OAuth: &oc}
	if gw != nil {
		gw(&cfg)
	}
	f.gw, err = New(cfg, a, f.events, f.store, f.reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.srv.Config.Handler = f.gw
	f.srv.Start()
	t.Cleanup(func() {
		f.srv.Close()
		f.gw.Close()
		a.Close()
		tr.CloseIdleConnections()
	})
	return &oauthFixture{fixture: f, as: as, auth: a, resource: resource}
}

func jti(t *testing.T, tok string) string {
	t.Helper()
	c := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, c); err != nil {
		t.Fatal(err)
	}
	id, _ := c["jti"].(string)
	if id == "" {
		t.Fatal("token has no jti")
	}
	return id
}

func lastDenied(t *testing.T, evs []*event.Event) *event.Event {
	t.Helper()
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Outcome.Result == event.ResultDenied {
			return evs[i]
		}
	}
	t.Fatalf("no denied event:\n%s", dump(evs))
	return nil
}

// The gateway as an MCP authorization server's resource server, end to end with the official SDK
// client holding a token from the authorization-code + PKCE flow: metadata served without a token,
// 401 pointing at it, calls within the token's scopes proxied and audited with the token's
// identity, 403 insufficient_scope naming the scopes for step-up, a stepped-up token accepted, and
// neither the token nor the cookie reaching the upstream. If it failed, standard MCP clients could
// not discover or use the gateway's authorization, or a token would leak to the upstream.
func TestOAuthEndToEnd(t *testing.T) {
	up := newUpstream(t, false)
	f := newOAuthFixture(t, up)
	metaURL := "http://" + f.srv.Listener.Addr().String() + "/.well-known/oauth-protected-resource/mcp"
	if f.auth.MetadataURL() != metaURL {
		t.Fatalf("metadata URL %s, want %s", f.auth.MetadataURL(), metaURL)
	}

	// RFC 9728 metadata, at the path-inserted location and at the root, without a token.
	for _, u := range []string{metaURL, f.srv.URL + "/.well-known/oauth-protected-resource"} {
		resp, err := f.srv.Client().Get(u)
		if err != nil {
			t.Fatal(err)
		}
		var md oauth.ProtectedResourceMetadata
		err = json.NewDecoder(resp.Body).Decode(&md)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", u, resp.StatusCode, err)
		}
		if md.Resource != f.resource || !slices.Equal(md.AuthorizationServers, []string{f.as.URL}) ||
			!slices.Equal(md.ScopesSupported, []string{"mcp:admin", "mcp:read", "mcp:tools"}) {
			t.Fatalf("metadata %+v", md)
		}
	}
	resp, err := f.srv.Client().Post(metaURL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST metadata: %d, want 405", resp.StatusCode)
	}
	if up.hits.Load() != 0 || len(f.events.all()) != 0 {
		t.Fatal("metadata requests reached the upstream or the audit")
	}

	// No token: 401 naming the metadata and the baseline scope, audited without a principal.
	r := f.post(t, "", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	want := `Bearer scope="mcp:read", resource_metadata="` + metaURL + `"`
	if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != want ||
		!strings.Contains(r.body, fmt.Sprint(CodeUnauthenticated)) {
		t.Fatalf("no token: %d %q %s", r.status, r.header.Get("WWW-Authenticate"), r.body)
	}
	// A token the provider minted for another resource: invalid_token, wrong audience.
	other := f.as.Login(t, "https://other.example/mcp", "mcp:read", "mcp:tools")
	r = f.post(t, other.AccessToken, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	if r.status != http.StatusUnauthorized ||
		!strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token", error_description="wrong audience"`) {
		t.Fatalf("token for another resource: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	for _, e := range f.events.all() {
		if e.Outcome.Result != event.ResultDenied || e.Outcome.HTTPStatus != http.StatusUnauthorized ||
			e.Principal.Subject != "" || strings.Contains(e.Outcome.Reason, other.AccessToken) {
			t.Fatalf("refused token audited as %+v %+v", e.Principal, e.Outcome)
		}
	}
	if up.hits.Load() != 0 {
		t.Fatal("an unauthenticated request reached the upstream")
	}

	// A token with mcp:read and mcp:tools: the SDK client works through the gateway.
	tok := f.as.Login(t, f.resource, "mcp:read", "mcp:tools")
	cs := f.connect(t, clientOpts{token: tok.AccessToken, cookie: "session=browser-secret"})
	res, err := echo(t, cs, "hello")
	if err != nil || res.IsError {
		t.Fatalf("echo: %v %+v", err, res)
	}
	evs := f.events.waitFor(t, "the echo response", has(event.DirResponse, "tools/call", 1))
	call := find(evs, event.DirRequest, "tools/call")[0]
	p := call.Principal
	if p.Subject != oauthtest.Subject || p.ClientID != oauthtest.ClientID || p.Issuer != f.as.URL ||
		p.TokenID != jti(t, tok.AccessToken) || !slices.Contains(p.Scopes, "mcp:tools") ||
		!slices.Equal(p.Roles, []string{"analyst"}) || call.Outcome.Result != event.ResultAllowed {
		t.Fatalf("audited principal %+v outcome %+v", p, call.Outcome)
	}
	b, err := event.Encode(call)
	if err != nil || !strings.Contains(string(b), `"scope":["openid","mcp:read","mcp:tools"]`) {
		t.Fatalf("encoded principal lacks its scopes: %s %v", b, err)
	}

	// The "fail" tool needs mcp:admin as well: 403, the call never reaches the upstream.
	hits := up.hits.Load()
	_, err = cs.CallTool(callCtx(t), &sdk.CallToolParams{Name: "fail", Arguments: map[string]any{}})
	var werr *jsonrpc.Error
	if !errors.As(err, &werr) || werr.Code != CodeDenied || !strings.Contains(werr.Message, "insufficient scope") {
		t.Fatalf("call beyond the token's scopes: %v", err)
	}
	if up.hits.Load() != hits {
		t.Fatal("a call beyond the token's scopes reached the upstream")
	}
	d := lastDenied(t, f.events.all())
	if d.MCP.Tool != "fail" || d.Outcome.PolicyRule != "scope:mcp:admin mcp:tools" || d.Outcome.HTTPStatus != http.StatusForbidden ||
		d.Principal.Subject != oauthtest.Subject {
		t.Fatalf("scope refusal audited as %+v %+v", d.MCP, d.Outcome)
	}
	if got := metricValue(t, f.reg, "mcpwatch_gateway_denied_total", "reason", denyScope); got != 1 {
		t.Fatalf("denied metric = %v", got)
	}
	// The challenge the client steps up with (the SDK surfaces only the JSON-RPC error).
	r = f.post(t, tok.AccessToken, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fail","arguments":{}}}`,
		"Mcp-Session-Id", cs.ID(), "Mcp-Protocol-Version", "2025-11-25")
	want = `Bearer error="insufficient_scope", scope="mcp:admin mcp:tools", resource_metadata="` + metaURL +
		`", error_description="additional scope required"`
	if r.status != http.StatusForbidden || r.header.Get("WWW-Authenticate") != want || !strings.Contains(r.body, `"id":7`) {
		t.Fatalf("insufficient scope: %d %q %s", r.status, r.header.Get("WWW-Authenticate"), r.body)
	}

	// Step up: a token with mcp:admin gets the call through (the tool itself fails, upstream).
	admin := f.as.Login(t, f.resource, "mcp:read", "mcp:tools", "mcp:admin")
	cs2 := f.connect(t, clientOpts{token: admin.AccessToken})
	res, err = cs2.CallTool(callCtx(t), &sdk.CallToolParams{Name: "fail", Arguments: map[string]any{}})
	if err != nil || !res.IsError {
		t.Fatalf("stepped-up call: %v %+v", err, res)
	}

	// No token passthrough: neither the access tokens nor the cookie ever reached the upstream.
	if n := up.credentials.Load(); n != 0 {
		t.Fatalf("%d upstream requests carried Authorization or Cookie", n)
	}
	f.events.waitFor(t, "the stepped-up call's response", func(evs []*event.Event) bool {
		for _, e := range find(evs, event.DirResponse, "tools/call") {
			if e.MCP.Tool == "fail" {
				return true
			}
		}
		return false
	})
}

// A revocation of one token id (the OAuth jti) refuses that token while another token of the same
// user keeps working. If it failed, the responder could only revoke whole users, or revoking a
// stolen token would not stop it.
func TestOAuthTokenRevocation(t *testing.T) {
	up := newUpstream(t, false)
	f := newOAuthFixture(t, up)
	stolen := f.as.Login(t, f.resource, "mcp:read", "mcp:tools")
	good := f.as.Login(t, f.resource, "mcp:read", "mcp:tools")
	if jti(t, stolen.AccessToken) == jti(t, good.AccessToken) {
		t.Fatal("two logins gave the same jti")
	}
	csStolen := f.connect(t, clientOpts{token: stolen.AccessToken})
	csGood := f.connect(t, clientOpts{token: good.AccessToken})

	revoke := applyControl(t, f.store, event.ControlRevoke, event.ScopeToken, jti(t, stolen.AccessToken), "token reported stolen")
	_, err := echo(t, csStolen, "x")
	var werr *jsonrpc.Error
	if !errors.As(err, &werr) || werr.Code != CodeDenied || !strings.Contains(werr.Message, "token reported stolen") {
		t.Fatalf("revoked token: %v", err)
	}
	d := lastDenied(t, f.events.all())
	if d.Outcome.PolicyRule != "control:"+revoke.Key() || d.Principal.TokenID != jti(t, stolen.AccessToken) {
		t.Fatalf("revocation audited as %+v %+v", d.Principal, d.Outcome)
	}
	if res, err := echo(t, csGood, "y"); err != nil || res.IsError {
		t.Fatalf("the user's other token: %v %+v", err, res)
	}
}

// With MFA required, a password-only login is refused with RFC 9470's challenge and audited under
// the user's name; a token from an MFA login is served. If it failed, the design's MFA requirement
// would not be enforced, or refusals would be anonymous in the audit.
func TestOAuthMFARequired(t *testing.T) {
	up := newUpstream(t, true)
	f := newOAuthFixture(t, up, func(c *oauth.Config) { c.RequireAMR = []string{"mfa", "hwk"} })
	pwd := f.as.Login(t, f.resource, "mcp:read", "mcp:tools")
	r := f.post(t, pwd.AccessToken, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	if r.status != http.StatusUnauthorized ||
		!strings.HasPrefix(r.header.Get("WWW-Authenticate"), `Bearer error="insufficient_user_authentication"`) {
		t.Fatalf("password-only token: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	d := lastDenied(t, f.events.all())
	if d.Principal.Subject != oauthtest.Subject || d.Principal.TokenID != jti(t, pwd.AccessToken) ||
		!slices.Equal(d.Principal.AuthMethods, []string{"pwd"}) || d.Outcome.HTTPStatus != http.StatusUnauthorized {
		t.Fatalf("MFA refusal audited as %+v %+v", d.Principal, d.Outcome)
	}
	if got := metricValue(t, f.reg, "mcpwatch_gateway_denied_total", "reason", denyWeakAuth); got != 1 {
		t.Fatalf("denied metric = %v", got)
	}
	if up.hits.Load() != 0 {
		t.Fatal("a password-only token reached the upstream")
	}

	f.as.SetAMR("pwd", "mfa")
	strong := f.as.Login(t, f.resource, "mcp:read", "mcp:tools")
	cs := f.connect(t, clientOpts{token: strong.AccessToken})
	if res, err := echo(t, cs, "z"); err != nil || res.IsError {
		t.Fatalf("MFA token: %v %+v", err, res)
	}
}

// The authorization server cannot be asked (introspection fails): 503, not 401 (the token may be
// good), fail closed, and no challenge that would send the client to re-authorize.
func TestOAuthUnavailable(t *testing.T) {
	rec := httptest.NewRecorder()
	a := &OAuth{}
	status, text := a.Challenge(rec, fmt.Errorf("%w: dial tcp 10.0.0.7:443: refused", oauth.ErrUnavailable))
	if status != http.StatusServiceUnavailable || rec.Header().Get("WWW-Authenticate") != "" ||
		text != "authorization server unavailable" {
		t.Fatalf("unavailable: %d %q %q", status, rec.Header().Get("WWW-Authenticate"), text)
	}
}

// Static tokens and OAuth are exclusive; a broken OAuth config fails validation.
func TestConfigAuthExclusive(t *testing.T) {
	oc := &oauth.Config{Issuer: "https://as.example", Resource: "https://gw.example/mcp"}
	c := Config{Upstream: "http://127.0.0.1:1/mcp", ServerName: "s", OAuth: oc, Tokens: []StaticToken{{Token: aliceToken}}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("tokens and oauth: %v", err)
	}
	c.Tokens = nil
	if err := c.Validate(); err != nil {
		t.Fatalf("oauth only: %v", err)
	}
	c.OAuth = &oauth.Config{Issuer: "http://as.example", Resource: "https://gw.example/mcp"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "https is required") {
		t.Fatalf("plain-http issuer: %v", err)
	}
	if _, err := NewAuthenticator(context.Background(), Config{}, nil); err == nil {
		t.Fatal("no authentication configured, yet an authenticator")
	}
}
