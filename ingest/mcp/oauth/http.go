package oauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

// RequiredScopes returns the scopes a call needs: the union of the entry for the method and,
// for tools/call, the entry for the tool; the "*" entry when neither has one. Sorted, no
// duplicates; empty means no scope is needed.
func (v *Verifier) RequiredScopes(method, tool string) []string {
	return requiredScopes(v.cfg.RequiredScopes, method, tool)
}

func requiredScopes(m map[string][]string, method, tool string) []string {
	var req []string
	found := false
	if s, ok := m[method]; ok && method != "" {
		req, found = append(req, s...), true
	}
	if method == "tools/call" && tool != "" {
		if s, ok := m[tool]; ok {
			req, found = append(req, s...), true
		}
	}
	if !found {
		req = append(req, m["*"]...)
	}
	slices.Sort(req)
	return slices.Compact(req)
}

// Authorize checks that a token granted scopes covers the call (MCP method, and tool name for
// tools/call). It returns nil or an [*ErrInsufficientScope] listing every scope the call needs,
// which is what the 403 challenge must name for the client to step up (MCP 2025-11-25 "Scope
// Challenge Handling"). p is the authenticated principal; it is not consulted yet (role-based
// requirements belong to the policy engine) but keeps the signature stable for them.
func (v *Verifier) Authorize(p event.Principal, scopes []string, method, tool string) error {
	_ = p
	req := v.RequiredScopes(method, tool)
	for _, s := range req {
		if !slices.Contains(scopes, s) {
			return &ErrInsufficientScope{Required: req}
		}
	}
	return nil
}

// StatusFor is the HTTP status for an error from [Verifier.Verify] or [Verifier.Authorize]:
// 401 for a missing, invalid or too weakly authenticated token, 403 for missing scopes, 503 when
// the authorization server could not be asked.
func StatusFor(err error) int {
	var scope *ErrInsufficientScope
	switch {
	case err == nil:
		return http.StatusOK
	case errors.As(err, &scope):
		return http.StatusForbidden
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	default:
		return http.StatusUnauthorized
	}
}

// Challenge401 sets the WWW-Authenticate header for a refused authentication; the caller writes
// the 401 status and body. Per RFC 6750 §3.1 a request with no token gets no error code; an
// invalid token gets error="invalid_token" with the [TokenError] reason; a token with too weak
// authentication gets RFC 9470's error="insufficient_user_authentication" (with acr_values when
// an acr is required, max_age when a recent authentication is). The first two carry the baseline scopes (RequiredScopes["*"]) when
// configured. Every challenge names the RFC 9728 metadata (resource_metadata), which
// is how an MCP client finds the authorization server.
func (v *Verifier) Challenge401(w http.ResponseWriter, err error) {
	params := []string{}
	var te *TokenError
	var mfa *MFAError
	switch {
	case errors.Is(err, ErrNoToken):
	case errors.As(err, &mfa):
		params = append(params, param("error", "insufficient_user_authentication"),
			param("error_description", "stronger authentication required"))
		if len(mfa.AnyACR) > 0 {
			params = append(params, param("acr_values", strings.Join(mfa.AnyACR, " ")))
		}
		if mfa.MaxAge > 0 {
			// Whole seconds, rounded down so that a fresh login always satisfies it.
			params = append(params, param("max_age", strconv.FormatInt(int64(mfa.MaxAge/time.Second), 10)))
		}
	case errors.As(err, &te):
		params = append(params, param("error", "invalid_token"), param("error_description", te.Reason))
	default:
		params = append(params, param("error", "invalid_token"))
	}
	if mfa == nil {
		// MCP 2025-11-25: name the baseline scopes (the "*" entry) so the client asks for no more.
		if s := scopeList(v.cfg.RequiredScopes["*"]); s != "" {
			params = append(params, param("scope", s))
		}
	}
	params = append(params, param("resource_metadata", v.metadataURL))
	w.Header().Set("WWW-Authenticate", "Bearer "+strings.Join(params, ", "))
}

// Challenge403 sets the WWW-Authenticate header for a call the token's scopes do not cover
// (RFC 6750 §3.1 insufficient_scope); the caller writes the 403 status and body. scope lists
// every scope the call needs ([ErrInsufficientScope.Required]), so the client can request a
// token with them.
func (v *Verifier) Challenge403(w http.ResponseWriter, required []string) {
	params := []string{param("error", "insufficient_scope")}
	if s := scopeList(required); s != "" {
		params = append(params, param("scope", s))
	}
	params = append(params, param("resource_metadata", v.metadataURL),
		param("error_description", "additional scope required"))
	w.Header().Set("WWW-Authenticate", "Bearer "+strings.Join(params, ", "))
}

func scopeList(scopes []string) string {
	var ok []string
	for _, s := range scopes {
		if validScope(s) {
			ok = append(ok, s)
		}
	}
	return strings.Join(ok, " ")
}

// param renders an auth-param as a quoted string. RFC 6750 §3 allows neither '"' nor '\' nor
// controls in these values, so such characters become spaces rather than escapes.
func param(name, value string) string {
	b := []byte(value)
	for i, c := range b {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			b[i] = ' '
		}
	}
	return name + `="` + string(b) + `"`
}

// ProtectedResourceMetadata is the RFC 9728 §2 document served by [MetadataHandler].
type ProtectedResourceMetadata struct {
	Resource                     string   `json:"resource"`
	AuthorizationServers         []string `json:"authorization_servers"`
	ScopesSupported              []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported       []string `json:"bearer_methods_supported"`
	ResourceSigningAlgsSupported []string `json:"resource_signing_alg_values_supported,omitempty"`
}

// Metadata returns the RFC 9728 metadata for cfg: its resource, its one authorization server,
// the scopes it knows (ScopesSupported and all RequiredScopes), and header-only bearer tokens.
func Metadata(cfg Config) ProtectedResourceMetadata {
	var scopes []string
	scopes = append(scopes, cfg.ScopesSupported...)
	for _, s := range cfg.RequiredScopes {
		scopes = append(scopes, s...)
	}
	slices.Sort(scopes)
	return ProtectedResourceMetadata{
		Resource:                     cfg.Resource,
		AuthorizationServers:         []string{cfg.Issuer},
		ScopesSupported:              slices.Compact(scopes),
		BearerMethodsSupported:       []string{"header"},
		ResourceSigningAlgsSupported: slices.Clone(cfg.ResourceSigningAlgs),
	}
}

// MetadataHandler serves [Metadata] as JSON on GET and HEAD. Mount it at [MetadataPath] of the
// resource, outside authentication: clients read it before they have a token.
func MetadataHandler(cfg Config) http.Handler {
	body, _ := json.Marshal(Metadata(cfg)) // strings and slices only: cannot fail
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(body)
	})
}
