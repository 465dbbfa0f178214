package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/mcpwatch/mcpwatch/ingest/mcp"
)

// The OAuth flags build the gateway's resource-server config, exclusive with the tokens file. If
// it failed, `mcpwatch gateway --oauth-issuer ...` would start with the wrong scopes or silently
// fall back to static tokens.
func TestGatewayOAuthFlags(t *testing.T) {
	sf := &stageFlags{}
	sf.oauth = oauthFlags{issuer: "https://as.example", resource: "https://gw.example/mcp",
		scopes:     []string{"*=mcp:read", "tools/call=mcp:tools", "db_query=mcp:db", "db_query=mcp:audit mcp:x"},
		requireAMR: []string{"mfa"}}
	gw, err := sf.gatewayConfig()
	if err != nil {
		t.Fatal(err)
	}
	o := gw.OAuth
	if o == nil || len(gw.Tokens) != 0 || o.Issuer != "https://as.example" || !slices.Equal(o.RequireAMR, []string{"mfa"}) ||
		!slices.Equal(o.RequiredScopes["db_query"], []string{"mcp:db", "mcp:audit", "mcp:x"}) ||
		!slices.Equal(o.RequiredScopes["*"], []string{"mcp:read"}) {
		t.Fatalf("oauth config %+v", o)
	}

	sf.tokens = "tokens.yaml"
	if _, err := sf.gatewayConfig(); err == nil || !strings.Contains(err.Error(), "exclusive") {
		t.Fatalf("tokens file with OAuth: %v", err)
	}
	sf.tokens = ""
	sf.oauth.scopes = []string{"tools/call"}
	if _, err := sf.gatewayConfig(); err == nil || !strings.Contains(err.Error(), "key=scope") {
		t.Fatalf("malformed scopes: %v", err)
	}
	sf.oauth = oauthFlags{issuer: "https://as.example"}
	if _, err := sf.gatewayConfig(); err == nil || !strings.Contains(err.Error(), "resource") {
		t.Fatalf("no resource: %v", err)
	}
	sf.oauth = oauthFlags{resource: "https://gw.example/mcp"}
	if _, err := sf.gatewayConfig(); err == nil || !strings.Contains(err.Error(), "--oauth-issuer") {
		t.Fatalf("oauth flags without issuer: %v", err)
	}
}

// The redaction and rate-limit flags reach the gateway's config; a bad class is refused at start.
func TestGatewayRedactFlags(t *testing.T) {
	sf := &stageFlags{tokens: "testdata-none"}
	cmd := &cobra.Command{}
	sf.registerGateway(cmd)
	if err := cmd.ParseFlags([]string{"--redact", "*=pii", "--redact", "crm/db_query=pii,secret", "--redact-oversize", "pass",
		"--show-denied-tools", "--unauth-rate", "-1"}); err != nil {
		t.Fatal(err)
	}
	sf.tokens = ""
	sf.oauth = oauthFlags{issuer: "https://as.example", resource: "https://gw.example/mcp"}
	gw, err := sf.gatewayConfig()
	if err != nil {
		t.Fatal(err)
	}
	if len(gw.Redact) != 2 || gw.Redact[0].Tool != "*" || gw.Redact[1].Server != "crm" || gw.Redact[1].Tool != "db_query" ||
		!slices.Equal(gw.Redact[1].Redact, []string{"pii", "secret"}) || gw.RedactOversize != mcp.OversizePass ||
		!gw.ShowDeniedTools || gw.Unauthenticated.Rate != -1 || gw.Unauthenticated.Burst != mcp.DefaultUnauthBurst {
		t.Fatalf("config %+v", gw)
	}
	sf.redact = []string{"*=pii,nonsense"}
	if _, err := sf.gatewayConfig(); err == nil || !strings.Contains(err.Error(), "nonsense") {
		t.Fatalf("unknown class: %v", err)
	}
}
