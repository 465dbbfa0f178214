package mcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth"
)

// rootMetadataPath is where clients that do not insert the resource's path look for RFC 9728
// metadata.
const rootMetadataPath = "/.well-known/oauth-protected-resource"

// OAuth makes the gateway an OAuth 2.1 resource server (MCP authorization, 2025-06-18 and
// 2025-11-25): it authenticates bearer access tokens with an [oauth.Verifier] (issuer, audience =
// this gateway's resource, lifetime, signature, amr/acr), authorizes every call against the
// token's scopes ([oauth.Config.RequiredScopes]), answers refusals with the challenges the
// specification names (401 with resource_metadata, 403 insufficient_scope for step-up, 401
// insufficient_user_authentication), and publishes the RFC 9728 metadata.
//
// It implements [Authenticator], [Authorizer], [Challenger] and [WellKnown]. The principal it
// returns carries the token's jti as [event.Principal.TokenID] (so token revocations apply), its
// scopes and acr.
type OAuth struct {
	v    *oauth.Verifier
	meta map[string]http.Handler
}

// NewOAuth builds the verifier for cfg (discovery and a first JWKS fetch, bounded by ctx). client
// nil means a client with [oauth.Config.HTTPTimeout]; log nil discards. Call [OAuth.Close] when
// done.
func NewOAuth(ctx context.Context, cfg oauth.Config, client *http.Client, log *slog.Logger) (*OAuth, error) {
	v, err := oauth.New(ctx, cfg, client, log)
	if err != nil {
		return nil, err
	}
	h := oauth.MetadataHandler(cfg)
	meta := map[string]http.Handler{oauth.MetadataPath(cfg.Resource): h, rootMetadataPath: h}
	return &OAuth{v: v, meta: meta}, nil
}

// Close stops the verifier's background JWKS refresh.
func (o *OAuth) Close() { o.v.Close() }

// Authenticate implements [Authenticator]. On [oauth.ErrMFARequired] it returns the principal too.
func (o *OAuth) Authenticate(r *http.Request) (event.Principal, error) {
	p, _, err := o.AuthenticateTimed(r)
	return p, err
}

// AuthenticateTimed implements [TimedAuthenticator]: the principal and the token's auth_time.
func (o *OAuth) AuthenticateTimed(r *http.Request) (event.Principal, time.Time, error) {
	g, err := o.v.Verify(r)
	if g == nil {
		return event.Principal{}, time.Time{}, err
	}
	p := g.Principal
	p.Scopes = slices.Clone(g.Scopes)
	p.ACR = g.ACR
	return p, g.AuthTime, err
}

// Authorize implements [Authorizer] with the scopes the token granted ([event.Principal.Scopes]).
// It returns nil or an [*oauth.ErrInsufficientScope].
func (o *OAuth) Authorize(p event.Principal, method, tool string) error {
	return o.v.Authorize(p, p.Scopes, method, tool)
}

// Challenge implements [Challenger]: the status from [oauth.StatusFor], the WWW-Authenticate
// challenge from [oauth.Verifier.Challenge401] or [oauth.Verifier.Challenge403] (none for 503:
// the token may be good, the authorization server could not be asked).
func (o *OAuth) Challenge(w http.ResponseWriter, err error) (int, string) {
	status := oauth.StatusFor(err)
	var scope *oauth.ErrInsufficientScope
	switch {
	case errors.As(err, &scope):
		o.v.Challenge403(w, scope.Required)
	case status == http.StatusUnauthorized:
		o.v.Challenge401(w, err)
	}
	return status, safeReason(err)
}

// safeReason describes an error of the verifier without what it wraps: the library and
// authorization-server errors inside may describe internals.
func safeReason(err error) string {
	var (
		te    *oauth.TokenError
		mfa   *oauth.MFAError
		scope *oauth.ErrInsufficientScope
	)
	switch {
	case errors.Is(err, oauth.ErrNoToken):
		return oauth.ErrNoToken.Error()
	case errors.As(err, &te):
		return te.Error()
	case errors.As(err, &mfa):
		return mfa.Error()
	case errors.As(err, &scope):
		return scope.Error()
	case errors.Is(err, oauth.ErrUnavailable):
		var ue *oauth.UnavailableError
		if errors.As(err, &ue) {
			return ue.Error() // says which endpoint failed and how, never the server's words
		}
		return oauth.ErrUnavailable.Error()
	}
	return oauth.ErrInvalidToken.Error()
}

// Revoker is the verifier's revoker of tokens at the authorization server (RFC 7009), nil unless
// [oauth.Revocation.Enabled]. The gateway runs it with its control store and an action sink
// ([NewKafkaActions]).
func (o *OAuth) Revoker() *oauth.Revoker { return o.v.Revoker() }

// WellKnown implements [WellKnown]: the RFC 9728 metadata at [oauth.MetadataPath] of the
// resource and at the root well-known path.
func (o *OAuth) WellKnown() map[string]http.Handler { return o.meta }

// MetadataURL is where clients are told to find the metadata (the resource_metadata parameter).
func (o *OAuth) MetadataURL() string { return o.v.MetadataURL() }

// NewAuthenticator builds what cfg configures: [OAuth] from cfg.OAuth, or [StaticTokens] from
// cfg.Tokens. Neither is an error (default deny: the gateway would refuse everyone). Close the
// result if it has a Close method.
func NewAuthenticator(ctx context.Context, cfg Config, log *slog.Logger) (Authenticator, error) {
	if cfg.OAuth != nil && len(cfg.Tokens) > 0 {
		return nil, errConflictingAuth
	}
	if cfg.OAuth != nil {
		oc := *cfg.OAuth
		if oc.Risk == nil && cfg.Scores != nil {
			// JWT introspection for risky principals judges them by the policy's risk.
			scores, tenant := cfg.Scores, cfg.Tenant
			oc.Risk = func(p event.Principal) (float64, bool) { return scores.Risk(tenant, event.PrincipalID(p)) }
		}
		a, err := NewOAuth(ctx, oc, nil, log)
		if err != nil {
			return nil, fmt.Errorf("oauth: %w", err)
		}
		return a, nil
	}
	if len(cfg.Tokens) == 0 {
		return nil, errors.New("no static tokens and no OAuth configured (default deny: nobody could call)")
	}
	return NewStaticTokens(cfg.Tokens)
}
