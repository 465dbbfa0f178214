package mcphook

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcpwire"
)

// Defaults for [Config].
const (
	DefaultTenant           = "default"
	DefaultMaxArgumentBytes = 4 << 10
)

// Transport is the value of [event.MCP.Transport] in the hook's events: the hook sits inside the
// server, whatever transport carried the message to it.
const Transport = "embedded"

// Event and Principal are the audit event model. They are aliases so that servers outside the
// mcpwatch module, which cannot import its internal packages, can still implement [Publisher]
// and [Config.Principal].
type (
	Event     = event.Event
	Principal = event.Principal
)

// Config configures a [Hook].
type Config struct {
	// Tenant the server's principals belong to. Default [DefaultTenant].
	Tenant string
	// ServerName names this server in events ([event.Target.Server]) and in server and tool
	// quarantines. Required.
	ServerName string
	// Observer identifies this server instance in events. Default: the host name.
	Observer string
	// Principal says who sent a request the server received. Default [TokenPrincipal], which
	// reads the token information the SDK's bearer-token middleware
	// ([auth.RequireBearerToken]) attached to the request. It is called once per request and
	// must not block; a panic in it leaves the principal empty.
	//
	// [auth.RequireBearerToken]: https://pkg.go.dev/github.com/modelcontextprotocol/go-sdk/auth#RequireBearerToken
	Principal func(ctx context.Context, req sdk.Request) Principal
	// MaskArguments, if set, turns the raw arguments of a tools/call into the text kept in
	// [event.MCP.ArgumentsMasked] and counts the personal data it masked per kind
	// ([event.Event.PII]). It must mask everything personal or secret: its output is published
	// as is (clipped to MaxArgumentBytes). Nil keeps arguments out of events entirely; their
	// size is always recorded.
	MaskArguments func(args []byte) (masked string, pii map[string]int)
	// MaxArgumentBytes is the size of the largest arguments given to MaskArguments, and the
	// longest masked text kept. Larger arguments are recorded by size only: masking a truncated
	// document could miss a value cut in half and publish its remainder. Default
	// [DefaultMaxArgumentBytes].
	MaxArgumentBytes int
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.ServerName == "" {
		errs = append(errs, errors.New("server name is required: quarantines and events name the server by it"))
	}
	if c.MaxArgumentBytes < 0 {
		errs = append(errs, errors.New("max argument bytes must not be negative"))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.Tenant == "" {
		c.Tenant = DefaultTenant
	}
	if c.Observer == "" {
		c.Observer, _ = os.Hostname()
	}
	if c.Principal == nil {
		c.Principal = TokenPrincipal
	}
	if c.MaxArgumentBytes == 0 {
		c.MaxArgumentBytes = DefaultMaxArgumentBytes
	}
	return c
}

// Limits on what a principal copies from token claims.
const (
	maxClaimLen    = 256
	maxClaimValues = 64
)

// TokenPrincipal is the default [Config.Principal]. It maps the [auth.TokenInfo] of the request
// (set by the SDK's bearer-token middleware from what the server's token verifier returned):
// UserID (or the "sub" claim in Extra) is the subject, Scopes the scopes, and the Extra claims
// "client_id" (or "azp"), "iss", "jti", "acr", "roles" and "amr" the rest. The token itself is
// never available to it. Requests without token information have the empty principal, which
// downstream stages key as "anonymous".
//
// [auth.TokenInfo]: https://pkg.go.dev/github.com/modelcontextprotocol/go-sdk/auth#TokenInfo
func TokenPrincipal(_ context.Context, req sdk.Request) Principal {
	if req == nil {
		return Principal{}
	}
	ex := req.GetExtra()
	if ex == nil || ex.TokenInfo == nil {
		return Principal{}
	}
	ti := ex.TokenInfo
	str := func(k string) string {
		s, _ := ti.Extra[k].(string)
		return mcpwire.Clip(s, maxClaimLen)
	}
	p := Principal{
		Subject:     mcpwire.Clip(ti.UserID, maxClaimLen),
		ClientID:    str("client_id"),
		Issuer:      str("iss"),
		TokenID:     str("jti"),
		ACR:         str("acr"),
		Roles:       strs(ti.Extra["roles"]),
		AuthMethods: strs(ti.Extra["amr"]),
		Scopes:      strs(ti.Scopes),
	}
	if p.Subject == "" {
		p.Subject = str("sub")
	}
	if p.ClientID == "" {
		p.ClientID = str("azp")
	}
	return p
}

// strs reads a claim that is a list of strings: a JSON array (as []any after decoding), a
// []string, or one space-separated string (as OAuth's "scope").
func strs(v any) []string {
	var out []string
	add := func(s string) {
		if s != "" && len(out) < maxClaimValues {
			out = append(out, mcpwire.Clip(s, maxClaimLen))
		}
	}
	switch v := v.(type) {
	case string:
		for _, s := range strings.Fields(v) {
			add(s)
		}
	case []string:
		for _, s := range v {
			add(s)
		}
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				add(s)
			}
		}
	}
	return slices.Clip(out)
}
