package mcp

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth"
	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth/oauthtest"
)

// With JWT introspection on, a token revoked at zitadel's provider is refused by the gateway
// with 401 invalid_token, and the refusal is audited under the token's principal as an
// unauthenticated request saying why; with the provider down, 503 naming what failed. If it
// failed, a SOC could not see who kept using a revoked token, or the refusal would be counted
// as weak authentication, or an outage would let tokens through.
func TestOAuthJWTIntrospectionAudited(t *testing.T) {
	up := newUpstream(t, false)
	f := newOAuthFixture(t, up, func(c *oauth.Config) {
		c.Introspection = oauth.Introspection{ClientID: oauthtest.GatewayClientID, ClientSecret: oauthtest.GatewaySecret,
			JWT: oauth.JWTIntrospectAll, CacheTTL: time.Second}
	})
	tok := f.as.Login(t, f.resource, "mcp:read", "mcp:tools").AccessToken
	const list = `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`

	f.as.SetDown(true)
	r := f.post(t, tok, list)
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "introspection answered status 503") {
		t.Fatalf("provider down: %d %s", r.status, r.body)
	}
	d := lastDenied(t, f.events.all())
	if d.Principal.Subject != oauthtest.Subject || !strings.Contains(d.Outcome.Reason, "introspection answered status 503") {
		t.Fatalf("outage audited as %+v %q", d.Principal, d.Outcome.Reason)
	}
	f.as.SetDown(false)

	f.as.RevokeAsClient(t, tok)
	r = f.post(t, tok, list)
	if r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), `error_description="token is not active"`) {
		t.Fatalf("revoked token: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	d = lastDenied(t, f.events.all())
	if d.Principal.Subject != oauthtest.Subject || d.Principal.TokenID != jti(t, tok) ||
		!strings.Contains(d.Outcome.Reason, "token is not active") {
		t.Fatalf("revoked token audited as %+v %q", d.Principal, d.Outcome.Reason)
	}
	if got := metricValue(t, f.reg, "mcpwatch_gateway_denied_total", "reason", denyUnauthenticated); got != 1 {
		t.Fatalf("unauthenticated refusals = %v, want 1", got)
	}
	if got := metricValue(t, f.reg, "mcpwatch_gateway_denied_total", "reason", denyAuthUnavailable); got != 1 {
		t.Fatalf("auth-unavailable refusals = %v, want 1", got)
	}
	if up.hits.Load() != 0 {
		t.Fatal("a refused token reached the upstream")
	}
}
