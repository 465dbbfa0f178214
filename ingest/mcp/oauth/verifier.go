// Package oauth makes the MCP gateway an OAuth 2.1 resource server, as the MCP authorization
// specification (2025-06-18, 2025-11-25) requires: it validates bearer access tokens issued by
// the configured authorization server — JWTs against the server's JWKS, opaque tokens by RFC 7662
// introspection — binds them to this gateway's canonical URI (RFC 8707 audience), enforces
// per-tool scopes with 403 insufficient_scope step-up, and serves RFC 9728 protected resource
// metadata.
//
// JWT parsing, signature and claim checks come from github.com/golang-jwt/jwt/v5; the JWKS is
// fetched, cached and refreshed by github.com/MicahParks/jwkset through
// github.com/MicahParks/keyfunc/v3. This package decides policy: which algorithms, which
// claims are required, when an unknown key may trigger a refresh, which keys are strong enough
// (RSA of [MinRSABits] or more, EC on the curve its ES* algorithm names), and that a JOSE
// "crit" header naming anything not understood refuses the token (RFC 7515 §4.1.11), which
// golang-jwt does not check.
package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/mcpwatch/mcpwatch/event"
)

// maxTokenBytes bounds a bearer token; longer ones are refused before any parsing.
const maxTokenBytes = 16 << 10

// maxMetadataBytes bounds discovery and introspection responses.
const maxMetadataBytes = 1 << 20

// Grant is what a valid token says: the principal for events, plus what authorization needs.
type Grant struct {
	Principal event.Principal
	// Scopes granted to the token ("scope" or "scp" claim).
	Scopes []string
	// ACR is the authentication context class ("acr").
	ACR string
	// Audience is the token's "aud"; it contains [Config.Resource].
	Audience []string
	// ExpiresAt is the token's "exp".
	ExpiresAt time.Time
	// AuthTime is when the user last authenticated (OpenID Connect "auth_time", which many
	// authorization servers put in access tokens and introspection answers); zero when the token
	// does not say. Step-ups (RFC 9470 max_age) are judged by it.
	AuthTime time.Time
	// Introspected is true when the token was opaque and vouched for by introspection.
	Introspected bool
}

// Verifier validates bearer tokens for one resource. It is safe for concurrent use. Call
// [Verifier.Close] to stop its background JWKS refresh.
type Verifier struct {
	cfg         Config
	log         *slog.Logger
	client      *http.Client
	jwksURL     string
	metadataURL string

	cached jwkset.Storage  // the JWKS as last fetched; reading it never fetches
	policy *policyStorage  // under cached: drops and remembers keys too weak to use
	keys   keyfunc.Keyfunc // reads through to a refresh on an unknown kid
	gate   *rate.Limiter   // allows one unknown-kid refresh per UnknownKIDEvery, never waits
	parser *jwt.Parser     // signature and algorithm only
	claims *jwt.Validator  // iss, aud, exp, nbf, iat with skew
	intro  *introspector   // nil: opaque tokens are refused
	rev    *Revoker        // nil: no revocation at the authorization server
	m      *metrics
	cancel context.CancelFunc
}

// New builds a Verifier: it validates cfg, runs discovery (RFC 8414, then OpenID Connect
// discovery) unless the JWKS and introspection URLs are given, and fetches the JWKS once; a JWKS
// that cannot be fetched is an error. ctx bounds discovery. httpClient nil means a client with
// [Config.HTTPTimeout]; log nil discards.
func New(ctx context.Context, cfg Config, httpClient *http.Client, log *slog.Logger) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("oauth config: %w", err)
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if httpClient == nil {
		httpClient = &http.Client{Timeout: cfg.HTTPTimeout}
	}
	v := &Verifier{cfg: cfg, log: log, client: httpClient, jwksURL: cfg.JWKSURL, m: newMetrics(cfg.Registerer)}
	v.metadataURL = metadataURL(cfg.Resource)

	needIntro := cfg.Introspection.enabled() && cfg.Introspection.URL == ""
	needRevoke := cfg.Revocation.Enabled && cfg.Revocation.URL == ""
	var meta *serverMetadata
	if v.jwksURL == "" || needIntro || needRevoke {
		var err error
		meta, err = discover(ctx, httpClient, cfg.Issuer)
		if err != nil {
			return nil, err
		}
		if v.jwksURL == "" {
			if err := checkURL("discovered jwks_uri", meta.JWKSURI, true); err != nil {
				return nil, err
			}
			v.jwksURL = meta.JWKSURI
		}
	}
	if cfg.Introspection.enabled() {
		u := cfg.Introspection.URL
		if u == "" {
			if err := checkURL("discovered introspection_endpoint", meta.IntrospectionEndpoint, true); err != nil {
				return nil, err
			}
			u = meta.IntrospectionEndpoint
		}
		v.intro = newIntrospector(u, cfg, httpClient, log, v.m)
	}
	if cfg.Revocation.Enabled {
		u := cfg.Revocation.URL
		if u == "" {
			if err := checkURL("discovered revocation_endpoint", meta.RevocationEndpoint, true); err != nil {
				return nil, fmt.Errorf("revocation at the authorization server: %w", err)
			}
			u = meta.RevocationEndpoint
		}
		v.rev = newRevoker(u, cfg, httpClient, log, v.m)
	}

	bg, cancel := context.WithCancel(context.Background())
	v.cancel = cancel
	v.policy = newPolicyStorage(v.jwksURL, log)
	cachedStore, err := jwkset.NewStorageFromHTTP(v.jwksURL, jwkset.HTTPClientStorageOptions{
		Storage:         v.policy,
		Client:          httpClient,
		Ctx:             bg,
		HTTPTimeout:     cfg.HTTPTimeout,
		RefreshInterval: cfg.JWKSRefresh,
		RefreshErrorHandler: func(_ context.Context, err error) {
			log.Warn("JWKS refresh failed", "url", v.jwksURL, "err", err)
		},
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("fetch JWKS %s: %w", v.jwksURL, err)
	}
	v.cached = cachedStore
	// The client refreshes on every miss it sees (rate.Inf); v.gate decides which misses it sees,
	// without blocking the request that carries an unknown kid.
	reader, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{v.jwksURL: cachedStore},
		PrioritizeHTTP:    true,
		RateLimitWaitMax:  cfg.HTTPTimeout,
		RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1),
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("JWKS client: %w", err)
	}
	v.keys, err = keyfunc.New(keyfunc.Options{
		Ctx:          bg,
		Storage:      reader,
		UseWhitelist: []jwkset.USE{jwkset.UseSig, ""}, // never a key published for encryption
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("JWKS keyfunc: %w", err)
	}
	v.gate = rate.NewLimiter(rate.Every(cfg.UnknownKIDEvery), 1)
	v.parser = jwt.NewParser(jwt.WithValidMethods(cfg.Algorithms), jwt.WithoutClaimsValidation())
	v.claims = jwt.NewValidator(
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Resource),
		jwt.WithLeeway(cfg.Skew),
		jwt.WithTimeFunc(cfg.Now),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	)
	log.Info("oauth resource server ready", "issuer", cfg.Issuer, "resource", cfg.Resource,
		"jwks", v.jwksURL, "introspection", v.intro != nil, "jwt_introspection", cfg.Introspection.JWT,
		"revocation", v.rev != nil)
	return v, nil
}

// Close stops the background JWKS refresh.
func (v *Verifier) Close() { v.cancel() }

// MetadataURL is where this resource's RFC 9728 metadata is served, for the resource_metadata
// parameter of challenges.
func (v *Verifier) MetadataURL() string { return v.metadataURL }

// Authenticate implements the gateway's Authenticator. On [ErrMFARequired] it also returns the
// principal, so the refusal can be audited under the right name; on any other error the
// principal is empty.
func (v *Verifier) Authenticate(r *http.Request) (event.Principal, error) {
	g, err := v.Verify(r)
	if g == nil {
		return event.Principal{}, err
	}
	return g.Principal, err
}

// Verify validates the request's bearer token and returns its grant. Errors match
// [ErrNoToken], [ErrInvalidToken] (a [*TokenError]), [ErrMFARequired] (a [*MFAError], returned
// together with the grant) or [ErrUnavailable] (an [*UnavailableError]). A JWT that passed every
// local check but that JWT introspection refuses (inactive: revoked at the authorization server;
// or the server could not answer) is returned with its grant too, so that the refusal is audited
// under the principal's name. A token accepted is held for revocation when [Revocation] is on.
func (v *Verifier) Verify(r *http.Request) (*Grant, error) {
	tok, err := bearer(r)
	if err != nil {
		return nil, err
	}
	var g *Grant
	if looksLikeJWT(tok) {
		g, err = v.verifyJWT(r.Context(), tok)
		if err == nil && v.introspectJWT(g.Principal) {
			if err := v.intro.checkJWT(r.Context(), tok, g); err != nil {
				return g, err
			}
		}
	} else if v.intro != nil {
		g, err = v.intro.grant(r.Context(), tok, v.grantFromClaims)
	} else {
		err = invalid(ReasonOpaqueNotAllowed, nil)
	}
	if err != nil {
		return nil, err
	}
	if err := v.checkAuthStrength(g); err != nil {
		return g, err
	}
	if v.rev != nil {
		v.rev.hold(tok, g)
	}
	return g, nil
}

// introspectJWT reports whether the JWT of p, valid by every local check, must also be
// introspected: always in [JWTIntrospectAll]; in [JWTIntrospectRisky] when p's threat score is at
// least the minimum, or unknown.
func (v *Verifier) introspectJWT(p event.Principal) bool {
	if v.intro == nil {
		return false
	}
	switch v.cfg.Introspection.JWT {
	case JWTIntrospectAll:
		return true
	case JWTIntrospectRisky:
		if v.cfg.Risk == nil {
			return true
		}
		score, ok := v.cfg.Risk(p)
		return !ok || score >= v.cfg.Introspection.MinRiskScore
	}
	return false
}

// Revoker is the verifier's revoker of tokens at the authorization server, nil unless
// [Revocation.Enabled]. Run it with [Revoker.Run].
func (v *Verifier) Revoker() *Revoker { return v.rev }

// bearer extracts an RFC 6750 §2.1 bearer token from the Authorization header. Tokens in the
// query string or form body are never read (MCP forbids them; URLs end up in logs), and a
// request that tries is refused rather than treated as anonymous.
func bearer(r *http.Request) (string, error) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		if r.URL != nil && r.URL.Query().Has("access_token") {
			return "", invalid("tokens in the query string are not accepted", nil)
		}
		return "", ErrNoToken
	}
	if len(vals) > 1 {
		return "", invalid(ReasonBadHeader, errors.New("more than one Authorization header"))
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", invalid(ReasonBadHeader, errors.New("not a Bearer authorization"))
	}
	tok = strings.TrimLeft(tok, " ")
	if tok == "" || len(tok) > maxTokenBytes || !isB64Token(tok) {
		return "", invalid(ReasonBadHeader, errors.New("malformed bearer token"))
	}
	return tok, nil
}

// isB64Token checks RFC 6750's b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	s = strings.TrimRight(s, "=")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/':
		default:
			return false
		}
	}
	return true
}

// looksLikeJWT: a JWS compact serialization has three dot-separated parts. Anything else is
// an opaque token for introspection.
func looksLikeJWT(tok string) bool { return strings.Count(tok, ".") == 2 }

// errUnknownKID marks a key lookup refused by the refresh gate or missing after a refresh.
var errUnknownKID = errors.New("unknown kid")

func (v *Verifier) verifyJWT(ctx context.Context, tok string) (*Grant, error) {
	// Read the header first, to give the precise reason for a refused algorithm.
	unverified, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if unverified == nil || errors.Is(err, jwt.ErrTokenMalformed) {
		return nil, invalid(ReasonMalformed, err)
	}
	// Here err is nil or names an algorithm the library does not know.
	if alg, _ := unverified.Header["alg"].(string); !slices.Contains(v.cfg.Algorithms, alg) {
		return nil, invalid(ReasonAlgorithm, fmt.Errorf("alg %q", alg))
	}
	// golang-jwt ignores "crit"; RFC 7515 §4.1.11 says refuse what is not understood. Checked
	// before the signature, so a refused token never triggers an unknown-kid JWKS refresh.
	if err := checkCritical(unverified.Header); err != nil {
		return nil, invalid(ReasonCritical, err)
	}
	claims := jwt.MapClaims{}
	_, err = v.parser.ParseWithClaims(tok, claims, v.keyfunc(ctx))
	switch {
	case err == nil:
	case errors.Is(err, errKeyNotAllowed):
		return nil, invalid(ReasonKeyNotAllowed, err)
	case errors.Is(err, errUnknownKID) || errors.Is(err, jwkset.ErrKeyNotFound):
		return nil, invalid(ReasonUnknownKey, err)
	case errors.Is(err, jwt.ErrTokenMalformed):
		return nil, invalid(ReasonMalformed, err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return nil, invalid(ReasonBadSignature, err)
	case errors.Is(err, keyfunc.ErrKeyfunc), errors.Is(err, jwt.ErrTokenUnverifiable):
		// Key present but unusable for this token: wrong alg or use for the key.
		return nil, invalid(ReasonBadSignature, err)
	default:
		return nil, invalid(ReasonMalformed, err)
	}
	g, err := v.grantFromClaims(claims)
	if err != nil {
		return nil, err
	}
	return g, nil
}

// keyfunc returns the verification key for a token. A kid not in the cached JWKS may trigger a
// refresh (key rotation), at most once per UnknownKIDEvery: a flood of made-up kids neither
// hammers the authorization server nor waits on it. A kid whose key the JWKS load dropped
// ([checkJWK]) is refused without a refresh, and the key found must suit the token's alg
// ([checkKeyForAlg]), in case a weak key reached the cache another way.
func (v *Verifier) keyfunc(ctx context.Context) jwt.Keyfunc {
	inner := v.keys.KeyfuncCtx(ctx)
	return func(t *jwt.Token) (any, error) {
		alg, _ := t.Header["alg"].(string)
		if kid, ok := t.Header["kid"].(string); ok {
			if err := v.policy.refusedKey(kid); err != nil {
				return nil, fmt.Errorf("kid %q: %w", clip(kid, 64), err)
			}
			_, err := v.cached.KeyRead(ctx, kid)
			if errors.Is(err, jwkset.ErrKeyNotFound) {
				if !v.gate.AllowN(v.cfg.Now(), 1) {
					return nil, errUnknownKID
				}
				v.log.Info("unknown kid: refreshing JWKS", "kid", clip(kid, 64), "url", v.jwksURL)
			}
		}
		key, err := inner(t)
		if err != nil {
			if kid, ok := t.Header["kid"].(string); ok {
				if why := v.policy.refusedKey(kid); why != nil { // the refresh just dropped it
					return nil, fmt.Errorf("kid %q: %w", clip(kid, 64), why)
				}
			}
			return nil, err
		}
		return allowKey(alg, key)
	}
}

// grantFromClaims checks verified (or introspected) claims against policy and builds the grant.
func (v *Verifier) grantFromClaims(claims jwt.MapClaims) (*Grant, error) {
	exp, err := claims.GetExpirationTime()
	if err != nil {
		return nil, invalid(ReasonMalformed, err)
	}
	if exp == nil {
		return nil, invalid(ReasonMissingExp, nil)
	}
	iat, err := claims.GetIssuedAt()
	if err != nil {
		return nil, invalid(ReasonMalformed, err)
	}
	if iat == nil {
		return nil, invalid(ReasonMissingIat, nil)
	}
	aud, err := claims.GetAudience()
	if err != nil {
		return nil, invalid(ReasonMalformed, err)
	}
	if len(aud) == 0 {
		return nil, invalid(ReasonMissingAudience, nil)
	}
	if err := v.claims.Validate(claims); err != nil {
		// Most specific first: a token both expired and for another audience is reported as
		// for another audience, the condition that will not heal by refreshing.
		for _, m := range []struct {
			target error
			reason string
		}{
			{jwt.ErrTokenInvalidIssuer, ReasonWrongIssuer},
			{jwt.ErrTokenInvalidAudience, ReasonWrongAudience},
			{jwt.ErrTokenExpired, ReasonExpired},
			{jwt.ErrTokenNotValidYet, ReasonNotYetValid},
			{jwt.ErrTokenUsedBeforeIssued, ReasonIssuedInFuture},
		} {
			if errors.Is(err, m.target) {
				return nil, invalid(m.reason, err)
			}
		}
		return nil, invalid(ReasonMalformed, err)
	}
	if exp.Sub(iat.Time) > v.cfg.MaxLifetime {
		return nil, invalid(ReasonLifetime, fmt.Errorf("exp - iat = %s > %s", exp.Sub(iat.Time), v.cfg.MaxLifetime))
	}
	sub, _ := claims["sub"].(string)
	clientID, _ := claims["client_id"].(string)
	if clientID == "" {
		clientID, _ = claims["azp"].(string)
	}
	if sub == "" && clientID == "" {
		return nil, invalid(ReasonNoSubject, nil)
	}
	iss, _ := claims["iss"].(string)
	jti, _ := claims["jti"].(string)
	if jti == "" {
		jti = fingerprint(claims)
	}
	acr, _ := claims["acr"].(string)
	g := &Grant{
		Principal: event.Principal{
			Subject:     sub,
			ClientID:    clientID,
			Issuer:      iss,
			TokenID:     clip(jti, 128),
			AuthMethods: claimStrings(claims["amr"], false),
		},
		Scopes:    scopes(claims),
		ACR:       acr,
		Audience:  []string(aud),
		ExpiresAt: exp.Time,
		AuthTime:  numericDate(claims["auth_time"]),
	}
	if v.cfg.RoleClaim != "" {
		g.Principal.Roles = claimStrings(lookup(claims, v.cfg.RoleClaim), true)
	}
	return g, nil
}

// numericDate reads a NumericDate claim (seconds since the epoch); zero when absent or not a
// positive number.
func numericDate(v any) time.Time {
	var f float64
	switch n := v.(type) {
	case float64:
		f = n
	case json.Number:
		f, _ = n.Float64()
	case int64:
		f = float64(n)
	}
	if f <= 0 || f > 1e11 {
		return time.Time{}
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9))
}

// checkAuthStrength enforces RequireAMR and RequireACR.
func (v *Verifier) checkAuthStrength(g *Grant) error {
	amrOK := len(v.cfg.RequireAMR) == 0 || slices.ContainsFunc(g.Principal.AuthMethods, func(m string) bool {
		return slices.Contains(v.cfg.RequireAMR, m)
	})
	acrOK := len(v.cfg.RequireACR) == 0 || slices.Contains(v.cfg.RequireACR, g.ACR)
	if amrOK && acrOK {
		return nil
	}
	return &MFAError{AnyAMR: slices.Clone(v.cfg.RequireAMR), AnyACR: slices.Clone(v.cfg.RequireACR)}
}

// fingerprint names a token without a jti: a hash of the fields that identify an issuance.
// It never contains the token, and with the same claims gives the same id on every replica.
func fingerprint(c jwt.MapClaims) string {
	b, _ := json.Marshal([]any{c["iss"], c["sub"], c["client_id"], c["iat"], c["exp"], c["aud"]})
	sum := sha256.Sum256(append([]byte("mcpwatch/oauth-token-id/v1\x00"), b...))
	return "tok_" + hex.EncodeToString(sum[:8])
}

// scopes reads "scope" (RFC 9068, RFC 8693: space-delimited) or "scp" (array or string).
func scopes(c jwt.MapClaims) []string {
	if s, ok := c["scope"]; ok {
		return claimStrings(s, true)
	}
	return claimStrings(c["scp"], true)
}

// claimStrings reads a claim that is an array of strings, or a string (split on spaces if split).
// Non-string members are dropped.
func claimStrings(v any, split bool) []string {
	switch t := v.(type) {
	case string:
		if split {
			return strings.Fields(t)
		}
		if t == "" {
			return nil
		}
		return []string{t}
	case []any:
		var out []string
		for _, e := range t {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	case []string:
		return slices.Clone(t)
	}
	return nil
}

// lookup follows a dotted claim path ("realm_access.roles"). An exact top-level name wins.
func lookup(c map[string]any, path string) any {
	if v, ok := c[path]; ok {
		return v
	}
	var cur any = c
	for part := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// serverMetadata is the part of RFC 8414 / OpenID discovery metadata the verifier uses.
type serverMetadata struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
	RevocationEndpoint    string `json:"revocation_endpoint"`
}

// discover fetches authorization server metadata: RFC 8414 first (well-known suffix inserted
// before the issuer's path), then OpenID Connect Discovery (appended). The metadata's issuer
// must equal the configured one exactly (RFC 8414 §3.3), or an attacker-controlled document
// could point at its own keys.
func discover(ctx context.Context, client *http.Client, issuer string) (*serverMetadata, error) {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	path := strings.TrimSuffix(u.Path, "/")
	candidates := []string{
		u.Scheme + "://" + u.Host + "/.well-known/oauth-authorization-server" + path,
		strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration",
	}
	var errs []error
	for _, c := range candidates {
		m, err := fetchMetadata(ctx, client, c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if m.Issuer != issuer {
			return nil, fmt.Errorf("discovery %s: issuer %q does not match configured %q", c, m.Issuer, issuer)
		}
		return m, nil
	}
	return nil, fmt.Errorf("discovery for %s: %w", issuer, errors.Join(errs...))
}

func fetchMetadata(ctx context.Context, client *http.Client, u string) (*serverMetadata, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	var m serverMetadata
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxMetadataBytes)).Decode(&m); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return &m, nil
}

// metadataURL is the RFC 9728 §3.1 location of a resource's metadata: the well-known suffix
// goes between the host and the resource's path, with a trailing slash removed.
func metadataURL(resource string) string {
	u, err := url.Parse(resource)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host + MetadataPath(resource)
}

// MetadataPath is the path the gateway must serve [MetadataHandler] on for resource:
// "/.well-known/oauth-protected-resource" followed by the resource's own path, if any.
func MetadataPath(resource string) string {
	u, err := url.Parse(resource)
	if err != nil {
		return ""
	}
	return "/.well-known/oauth-protected-resource" + strings.TrimSuffix(u.EscapedPath(), "/")
}
