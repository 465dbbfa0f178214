package oauth

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpwatch/mcpwatch/event"
)

// Defaults for [Config].
const (
	DefaultSkew            = 30 * time.Second
	DefaultMaxLifetime     = 15 * time.Minute
	DefaultJWKSRefresh     = time.Hour
	DefaultUnknownKIDEvery = time.Minute
	DefaultHTTPTimeout     = 10 * time.Second
	DefaultIntrospectTTL   = 30 * time.Second
	DefaultIntrospectCache = 10000
	// MaxIntrospectTTL caps [Introspection.CacheTTL]: a revoked opaque token stays usable for at
	// most this long after the authorization server stops vouching for it.
	MaxIntrospectTTL = 5 * time.Minute
	// DefaultMaxHeld bounds the access tokens a [Revoker] holds.
	DefaultMaxHeld = 100000
)

// JWTIntrospection says which JWT access tokens are also introspected (RFC 7662) once their
// signature, issuer, audience and lifetime have passed: a JWT revoked at the authorization server
// is otherwise accepted until it expires.
type JWTIntrospection string

const (
	// JWTIntrospectOff trusts a valid JWT until its exp (the default).
	JWTIntrospectOff JWTIntrospection = "off"
	// JWTIntrospectAll asks about every JWT (cached for [Introspection.CacheTTL]).
	JWTIntrospectAll JWTIntrospection = "all"
	// JWTIntrospectRisky asks only about the JWTs of principals whose live threat score is at
	// least [Introspection.MinRiskScore], or unknown.
	JWTIntrospectRisky JWTIntrospection = "risky"
)

// DefaultAlgorithms are the JWS algorithms accepted when [Config.Algorithms] is empty: asymmetric
// only, because the verification keys come from a public JWKS.
var DefaultAlgorithms = []string{"RS256", "ES256", "EdDSA"}

// allowedAlgorithms are the asymmetric JWS algorithms the verifier knows. "none" and HS* are
// never accepted: with a public JWKS, an HMAC "secret" is public (algorithm confusion).
var allowedAlgorithms = []string{
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
}

// Config configures a [Verifier]: this gateway as an OAuth 2.1 resource server (MCP
// authorization, RFC 9728, RFC 8707).
type Config struct {
	// Issuer is the authorization server's issuer identifier. Tokens must carry exactly this
	// "iss", and discovery metadata must name it (RFC 8414 §3.3).
	Issuer string
	// JWKSURL overrides the jwks_uri found by discovery.
	JWKSURL string
	// Resource is this gateway's canonical URI (RFC 8707, RFC 9728 "resource"). Tokens must name
	// it in "aud": a token minted for another resource is refused (no token passthrough).
	Resource string
	// Algorithms is the allow-list of JWS algorithms. Default [DefaultAlgorithms]. "none" and
	// HS256/384/512 are refused.
	Algorithms []string
	// Skew is the clock leeway applied to exp, nbf and iat. Default [DefaultSkew].
	Skew time.Duration
	// MaxLifetime refuses tokens whose exp - iat exceeds it, and tokens missing exp or iat.
	// Default [DefaultMaxLifetime] (the design's 15-minute session tokens).
	MaxLifetime time.Duration
	// RequiredScopes maps a tool name (for tools/call) or an MCP method ("tools/list",
	// "resources/read", ...) to the scopes it needs, all of them. The key "*" applies to
	// anything without its own entry. See [Verifier.Authorize].
	RequiredScopes map[string][]string
	// ScopesSupported are advertised in the protected resource metadata besides those named in
	// RequiredScopes.
	ScopesSupported []string
	// RoleClaim names the claim holding the principal's roles ("roles", or a dotted path such
	// as "realm_access.roles"). Empty: no roles.
	RoleClaim string
	// RequireAMR, when set, requires the token's "amr" to contain at least one of these values
	// (e.g. "mfa", "hwk", "otp"); otherwise [ErrMFARequired].
	RequireAMR []string
	// RequireACR, when set, requires the token's "acr" to be one of these values; otherwise
	// [ErrMFARequired].
	RequireACR []string
	// Introspection configures RFC 7662 introspection for opaque (non-JWT) tokens, and for JWTs
	// when [Introspection.JWT] says so. Without a client ID, opaque tokens are refused.
	Introspection Introspection
	// Revocation configures RFC 7009 revocation at the authorization server.
	Revocation Revocation
	// Risk gives the principal's threat score for [JWTIntrospectRisky]; nil: always unknown, so
	// every JWT is introspected.
	Risk RiskFunc
	// Registerer, when set, registers the introspection and revocation metrics.
	Registerer prometheus.Registerer
	// ResourceSigningAlgs, when set, is advertised as RFC 9728
	// resource_signing_alg_values_supported. It describes algorithms this resource signs its
	// own responses with, which the gateway does not do today, so it is empty by default.
	ResourceSigningAlgs []string
	// JWKSRefresh is the interval of the background JWKS refresh. Default [DefaultJWKSRefresh].
	JWKSRefresh time.Duration
	// UnknownKIDEvery is the minimum interval between JWKS refreshes triggered by a token whose
	// "kid" is unknown. Default [DefaultUnknownKIDEvery].
	UnknownKIDEvery time.Duration
	// HTTPTimeout bounds each request to the authorization server. Default [DefaultHTTPTimeout].
	HTTPTimeout time.Duration
	// Now is the clock; nil means [time.Now]. For tests.
	Now func() time.Time
}

// Introspection configures RFC 7662 token introspection.
type Introspection struct {
	// URL of the introspection endpoint; default the introspection_endpoint from discovery.
	URL string
	// ClientID and ClientSecret authenticate the gateway to the endpoint (HTTP Basic).
	ClientID     string
	ClientSecret Secret
	// ClientSecretEnv names an environment variable holding the secret; it is read when
	// ClientSecret is empty. Prefer it: configuration files then never hold the secret.
	ClientSecretEnv string
	// CacheTTL is how long an introspection answer is reused, keyed by the token's hash; never
	// past the token's exp. Default [DefaultIntrospectTTL], at most [MaxIntrospectTTL].
	CacheTTL time.Duration
	// CacheSize bounds the cached answers. Default [DefaultIntrospectCache].
	CacheSize int
	// JWT says which JWTs are introspected too; "" means [JWTIntrospectOff]. A JWT the server
	// calls inactive is refused ([ReasonInactive]); one it cannot answer about is refused with
	// [ErrUnavailable] (fail closed).
	JWT JWTIntrospection
	// MinRiskScore is the threat score (0–100) from which [JWTIntrospectRisky] introspects.
	MinRiskScore float64
}

// Revocation configures RFC 7009 revocation at the authorization server of the access tokens a
// revoke control names (see [Revoker]). It authenticates with the introspection client.
type Revocation struct {
	// Enabled turns it on. It needs [Introspection.ClientID] and its secret.
	Enabled bool
	// URL of the revocation endpoint; default the revocation_endpoint from discovery.
	URL string
	// MaxHeld bounds the live access tokens held in memory for revocation. Default
	// [DefaultMaxHeld]; when full, a new token is not held (and counted).
	MaxHeld int
}

// RiskFunc returns a principal's live threat score (0–100), and false when it is unknown.
type RiskFunc func(p event.Principal) (float64, bool)

// Secret is a string that never prints: fmt, slog and encoders see "[redacted]".
type Secret string

// String implements [fmt.Stringer].
func (Secret) String() string { return "[redacted]" }

// GoString implements [fmt.GoStringer].
func (Secret) GoString() string { return `"[redacted]"` }

// LogValue implements [slog.LogValuer].
func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// MarshalText implements [encoding.TextMarshaler].
func (Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

func (c Introspection) enabled() bool { return c.ClientID != "" }

// secret returns the client secret, from the environment if so configured.
func (c Introspection) secret() string {
	if c.ClientSecret != "" {
		return string(c.ClientSecret)
	}
	if c.ClientSecretEnv != "" {
		return os.Getenv(c.ClientSecretEnv)
	}
	return ""
}

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	if len(c.Algorithms) == 0 {
		c.Algorithms = slices.Clone(DefaultAlgorithms)
	}
	if c.Skew == 0 {
		c.Skew = DefaultSkew
	}
	if c.MaxLifetime == 0 {
		c.MaxLifetime = DefaultMaxLifetime
	}
	if c.JWKSRefresh == 0 {
		c.JWKSRefresh = DefaultJWKSRefresh
	}
	if c.UnknownKIDEvery == 0 {
		c.UnknownKIDEvery = DefaultUnknownKIDEvery
	}
	if c.HTTPTimeout == 0 {
		c.HTTPTimeout = DefaultHTTPTimeout
	}
	if c.Introspection.CacheTTL == 0 {
		c.Introspection.CacheTTL = DefaultIntrospectTTL
	}
	if c.Introspection.CacheSize == 0 {
		c.Introspection.CacheSize = DefaultIntrospectCache
	}
	if c.Introspection.JWT == "" {
		c.Introspection.JWT = JWTIntrospectOff
	}
	if c.Revocation.MaxHeld == 0 {
		c.Revocation.MaxHeld = DefaultMaxHeld
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports a configuration that cannot work or would be unsafe. Zero durations and an
// empty algorithm list mean the defaults.
func (c Config) Validate() error {
	var errs []error
	if err := checkURL("issuer", c.Issuer, false); err != nil {
		errs = append(errs, err)
	}
	if c.JWKSURL != "" {
		if err := checkURL("JWKS URL", c.JWKSURL, true); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Resource == "" {
		errs = append(errs, errors.New("resource (this gateway's canonical URI, the required audience) is required"))
	} else if err := checkURL("resource", c.Resource, false); err != nil {
		errs = append(errs, err)
	} else if u, _ := url.Parse(c.Resource); u.Fragment != "" || u.RawQuery != "" {
		errs = append(errs, errors.New("resource must not have a query or fragment (RFC 8707 §2)"))
	}
	for _, a := range c.Algorithms {
		switch {
		case strings.EqualFold(a, "none"):
			errs = append(errs, errors.New(`algorithm "none" is never accepted`))
		case strings.HasPrefix(strings.ToUpper(a), "HS"):
			errs = append(errs, fmt.Errorf("algorithm %q is symmetric: with a public JWKS its key is public", a))
		case !slices.Contains(allowedAlgorithms, a):
			errs = append(errs, fmt.Errorf("algorithm %q is not supported (want one of %s)", a, strings.Join(allowedAlgorithms, ", ")))
		}
	}
	for name, d := range map[string]time.Duration{
		"skew": c.Skew, "max lifetime": c.MaxLifetime, "JWKS refresh": c.JWKSRefresh,
		"unknown kid interval": c.UnknownKIDEvery, "HTTP timeout": c.HTTPTimeout,
		"introspection cache TTL": c.Introspection.CacheTTL,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", name))
		}
	}
	if c.Skew > 5*time.Minute {
		errs = append(errs, errors.New("skew over 5m defeats expiry checks"))
	}
	if c.Introspection.CacheTTL > MaxIntrospectTTL {
		errs = append(errs, fmt.Errorf("introspection cache TTL over %s keeps revoked tokens alive", MaxIntrospectTTL))
	}
	if c.Introspection.CacheSize < 0 {
		errs = append(errs, errors.New("introspection cache size must not be negative"))
	}
	for key, scopes := range c.RequiredScopes {
		if key == "" {
			errs = append(errs, errors.New("required scopes: empty tool or method name"))
		}
		for _, s := range scopes {
			if !validScope(s) {
				errs = append(errs, fmt.Errorf("required scopes for %q: %q is not a valid scope token (RFC 6749 §3.3)", key, s))
			}
		}
	}
	in := c.Introspection
	if in.enabled() {
		if in.URL != "" {
			if err := checkURL("introspection URL", in.URL, true); err != nil {
				errs = append(errs, err)
			}
		}
		if in.ClientSecret != "" && in.ClientSecretEnv != "" {
			errs = append(errs, errors.New("introspection: give a client secret or its environment variable, not both"))
		}
		if in.secret() == "" {
			errs = append(errs, errors.New("introspection: client secret is empty (set client secret env)"))
		}
	} else if in.URL != "" {
		errs = append(errs, errors.New("introspection URL set without a client ID"))
	}
	switch in.JWT {
	case "", JWTIntrospectOff:
	case JWTIntrospectAll, JWTIntrospectRisky:
		if !in.enabled() {
			errs = append(errs, fmt.Errorf("introspection: jwt %q needs the introspection client id and secret", in.JWT))
		}
	default:
		errs = append(errs, fmt.Errorf("introspection: jwt %q: want off, all or risky", in.JWT))
	}
	if in.MinRiskScore != 0 && in.JWT != JWTIntrospectRisky {
		errs = append(errs, errors.New("introspection: min risk score applies only with jwt: risky"))
	}
	if in.MinRiskScore < 0 || in.MinRiskScore > 100 {
		errs = append(errs, fmt.Errorf("introspection: min risk score %v: want 0 to 100", in.MinRiskScore))
	}
	rv := c.Revocation
	if rv.Enabled && !in.enabled() {
		errs = append(errs, errors.New("revocation: needs the introspection client id and secret (the gateway's confidential client)"))
	}
	if rv.URL != "" {
		if !rv.Enabled {
			errs = append(errs, errors.New("revocation URL set without revocation enabled"))
		} else if err := checkURL("revocation URL", rv.URL, true); err != nil {
			errs = append(errs, err)
		}
	}
	if rv.MaxHeld < 0 {
		errs = append(errs, errors.New("revocation: max held tokens must not be negative"))
	}
	return errors.Join(errs...)
}

// checkURL requires an absolute https URL; plain http only to a loopback host (tests, local
// development). Issuer and resource identifiers must not carry a query or fragment.
func checkURL(what, raw string, queryOK bool) error {
	if raw == "" {
		return fmt.Errorf("%s is required", what)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if u.Host == "" {
		return fmt.Errorf("%s %q: not an absolute URL", what, raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return fmt.Errorf("%s %q: https is required except on loopback", what, raw)
		}
	default:
		return fmt.Errorf("%s %q: want https", what, raw)
	}
	if !queryOK && (u.RawQuery != "" || u.Fragment != "") {
		return fmt.Errorf("%s %q: must not have a query or fragment", what, raw)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validScope reports whether s is an RFC 6749 scope-token: %x21 / %x23-5B / %x5D-7E, non-empty.
// It also keeps scopes safe inside a quoted WWW-Authenticate parameter.
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
