package main

import (
	"slices"
	"strings"
	"testing"
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
