package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth"
	"github.com/mcpwatch/mcpwatch/ingest/sandbox"
)

func TestParseUser(t *testing.T) {
	for in, want := range map[string]*sandbox.User{"": nil, "nobody": {UID: 65534, GID: 65534}, "65534": {UID: 65534, GID: 65534},
		"0": {UID: 0, GID: 0}, "1000:1001": {UID: 1000, GID: 1001}} {
		got, err := parseUser(in)
		if err != nil || (got == nil) != (want == nil) || (got != nil && *got != *want) {
			t.Errorf("parseUser(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"1000:", ":1", "-1:0", "4294967296:0", "424242", "no-such-user-here"} {
		if u, err := parseUser(in); err == nil {
			t.Errorf("parseUser(%q) = %+v, accepted", in, u)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "1048576": 1 << 20, "512MiB": 512 << 20, "1G": 1e9, "1.5Gi": 3 << 29, "64k": 64000, "2 MB": 2e6} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"-1", "1X", "lots", "1e30"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) accepted", in)
		}
	}
}

// The environment of a sandboxed server is only what the config gives: the gateway's secrets
// (OAuth introspection secret, webhook secret) must never leak into it.
func TestUpstreamEnv(t *testing.T) {
	t.Setenv("MCPWATCH_OAUTH_INTROSPECTION_SECRET", "s3cret")
	t.Setenv("LANG", "C.UTF-8")
	u := Upstream{Env: map[string]string{"API_BASE": "https://x"}, InheritEnv: []string{"LANG", "UNSET_VAR"}}
	got := strings.Join(u.env(), " ")
	if got != "API_BASE=https://x LANG=C.UTF-8 PATH="+defaultServerPath {
		t.Fatalf("env %q", got)
	}
}

// A gateway without tokens must refuse to start (default deny), and a typo in the tokens file
// must be an error, not a silently ignored field.
func TestLoadTokens(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := LoadTokens(""); err == nil || !strings.Contains(err.Error(), "default deny") {
		t.Fatalf("no tokens file: %v", err)
	}
	if _, err := LoadTokens(write("typo.yaml", "- sha256: abc\n  subject: alice\n")); err == nil || !strings.Contains(err.Error(), "subject") {
		t.Fatalf("unknown field accepted: %v", err)
	}
	good := write("good.yaml", "- sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n  sub: alice\n  client_id: desk\n  roles: [analyst]\n")
	toks, err := LoadTokens(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != 1 || toks[0].Principal.Subject != "alice" || toks[0].Principal.ClientID != "desk" || toks[0].Principal.Roles[0] != "analyst" {
		t.Fatalf("parsed %+v", toks)
	}
}

// The section becomes the HTTP gateway's config: OAuth with its scopes and the introspection
// secret resolved from the environment, or static tokens from the file; redaction rules parsed.
func TestRuntime(t *testing.T) {
	t.Setenv(IntrospectionSecretEnv, "intro-s3cret")
	c := DefaultConfig()
	c.Upstream, c.Policy.None = "http://127.0.0.1:1/mcp", true
	c.Auth.OAuth = OAuth{Issuer: "https://as.example", Resource: "https://gw.example/mcp",
		Scopes: map[string][]string{"*": {"mcp:read"}}, RequireAMR: []string{"mfa"},
		Introspection: Introspection{ClientID: "gw", ClientSecret: c.Auth.OAuth.Introspection.ClientSecret,
			JWT: "risky", MinRiskScore: 70, CacheTTL: 2 * time.Second},
		Revocation: Revocation{Enabled: true}}
	c.Redact, c.Masking = []string{"crm/db_query=pii,secret"}, false
	mc, err := c.runtime()
	if err != nil {
		t.Fatal(err)
	}
	o := mc.OAuth
	if o == nil || len(mc.Tokens) != 0 || o.Issuer != "https://as.example" || o.RequiredScopes["*"][0] != "mcp:read" ||
		o.RequireAMR[0] != "mfa" || string(o.Introspection.ClientSecret) != "intro-s3cret" || o.Introspection.ClientID != "gw" {
		t.Fatalf("oauth %+v", o)
	}
	// JWT introspection and revocation at the server reach the resource server's config.
	if o.Introspection.JWT != oauth.JWTIntrospectRisky || o.Introspection.MinRiskScore != 70 ||
		o.Introspection.CacheTTL != 2*time.Second || !o.Revocation.Enabled {
		t.Fatalf("introspection %+v revocation %+v", o.Introspection, o.Revocation)
	}
	if len(mc.Redact) != 1 || mc.Redact[0].Server != "crm" || mc.Redact[0].Tool != "db_query" || !mc.NoMasking {
		t.Fatalf("gateway %+v", mc)
	}
	c.Auth.OAuth = OAuth{}
	c.Auth.TokensFile = filepath.Join(t.TempDir(), "t.yaml")
	if err := os.WriteFile(c.Auth.TokensFile, []byte("- token: x0123456789abcdef\n  sub: alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if mc, err = c.runtime(); err != nil || mc.OAuth != nil || len(mc.Tokens) != 1 || mc.Tokens[0].Principal.Subject != "alice" {
		t.Fatalf("tokens: %v %+v", err, mc)
	}
}
