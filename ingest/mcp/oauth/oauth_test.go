package oauth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth"
	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth/oauthtest"
)

func TestMain(m *testing.M) {
	// The example provider logs every request through the default logger.
	slog.SetDefault(slog.New(slog.DiscardHandler))
	// The verifier's JWKS refresh goroutine must end with Close; httptest and net/http keep-alive
	// goroutines are the test's own.
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

const resource = "https://gateway.example/mcp"

func bearerRequest(tok string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "https://gateway.example/mcp", nil)
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	return r
}

func wantReason(t *testing.T, err error, reason string) {
	t.Helper()
	var te *oauth.TokenError
	if !errors.As(err, &te) || !errors.Is(err, oauth.ErrInvalidToken) {
		t.Fatalf("error %v, want invalid token (%s)", err, reason)
	}
	if te.Reason != reason {
		t.Fatalf("reason %q (%v), want %q", te.Reason, err, reason)
	}
}

// --- (1) the real authorization server ---------------------------------------------------------

// TestRealAuthorizationServer runs the authorization-code flow with PKCE S256 and an RFC 8707
// resource indicator against zitadel's OpenID Provider and validates the JWT access token it
// issues. If it failed, tokens from a standard provider would not be accepted, or the principal
// recorded in audit events would be wrong.
func TestRealAuthorizationServer(t *testing.T) {
	as := oauthtest.Start(t)
	if got := as.Discovery["code_challenge_methods_supported"]; !slices.Contains(toStrings(got), "S256") {
		t.Fatalf("provider does not advertise S256: %v", got)
	}
	v, err := oauth.New(context.Background(), oauth.Config{
		Issuer: as.URL, Resource: resource, RoleClaim: "roles",
		RequiredScopes: map[string][]string{"tools/call": {"mcp:tools"}, "db_query": {"mcp:db"}},
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()

	tok := as.Login(t, resource, "mcp:tools")
	if strings.Count(tok.AccessToken, ".") != 2 {
		t.Fatalf("access token is not a JWT")
	}
	g, err := v.Verify(bearerRequest(tok.AccessToken))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	p := g.Principal
	if p.Subject != "id1" || p.ClientID != oauthtest.ClientID || p.Issuer != as.URL {
		t.Errorf("principal %+v: want sub id1, client %s, iss %s", p, oauthtest.ClientID, as.URL)
	}
	if !slices.Equal(p.Roles, []string{"analyst"}) || !slices.Equal(p.AuthMethods, []string{"pwd"}) {
		t.Errorf("roles %v amr %v: want [analyst] [pwd]", p.Roles, p.AuthMethods)
	}
	unverified := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok.AccessToken, unverified); err != nil {
		t.Fatal(err)
	}
	if jti, _ := unverified["jti"].(string); jti == "" || p.TokenID != jti {
		t.Errorf("token id %q, want the provider's jti %q", p.TokenID, jti)
	}
	if !slices.Contains(g.Scopes, "mcp:tools") || !slices.Equal(g.Audience, []string{resource}) {
		t.Errorf("scopes %v audience %v", g.Scopes, g.Audience)
	}
	// Authenticate is the gateway's interface and gives the same principal.
	if p2, err := v.Authenticate(bearerRequest(tok.AccessToken)); err != nil || p2.Subject != "id1" {
		t.Errorf("authenticate: %+v %v", p2, err)
	}
	// Scopes: tools/call is covered, the db_query tool needs mcp:db as well → step up.
	if err := v.Authorize(p, g.Scopes, "tools/call", "search"); err != nil {
		t.Errorf("authorize search: %v", err)
	}
	var scopeErr *oauth.ErrInsufficientScope
	if err := v.Authorize(p, g.Scopes, "tools/call", "db_query"); !errors.As(err, &scopeErr) ||
		!slices.Equal(scopeErr.Required, []string{"mcp:db", "mcp:tools"}) {
		t.Errorf("authorize db_query: %v, want insufficient scope [mcp:db mcp:tools]", err)
	}
	// Step up: a token with the extra scope passes.
	tok2 := as.Login(t, resource, "mcp:tools", "mcp:db")
	g2, err := v.Verify(bearerRequest(tok2.AccessToken))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Authorize(g2.Principal, g2.Scopes, "tools/call", "db_query"); err != nil {
		t.Errorf("after step-up: %v", err)
	}

	// MFA: the example logs in with a password only (amr pwd).
	mfa, err := oauth.New(context.Background(), oauth.Config{
		Issuer: as.URL, Resource: resource, RequireAMR: []string{"mfa", "hwk", "otp"},
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mfa.Close()
	p3, err := mfa.Authenticate(bearerRequest(tok.AccessToken))
	if !errors.Is(err, oauth.ErrMFARequired) || p3.Subject != "id1" {
		t.Errorf("password-only token with MFA required: %+v %v", p3, err)
	}
}

// TestRealAuthorizationServerAudience: tokens the provider minted for another resource, or with
// no resource (audience = the client), and its ID token are refused. If it failed, the gateway
// would accept tokens meant for other services (token passthrough, confused deputy).
func TestRealAuthorizationServerAudience(t *testing.T) {
	as := oauthtest.Start(t)
	v, err := oauth.New(context.Background(), oauth.Config{Issuer: as.URL, Resource: resource}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()

	other := as.Login(t, "https://other.example/api")
	_, err = v.Verify(bearerRequest(other.AccessToken))
	wantReason(t, err, oauth.ReasonWrongAudience)

	none := as.Login(t, "")
	_, err = v.Verify(bearerRequest(none.AccessToken))
	wantReason(t, err, oauth.ReasonWrongAudience)

	idToken, _ := none.Extra("id_token").(string)
	if idToken == "" {
		t.Fatal("no id_token")
	}
	_, err = v.Verify(bearerRequest(idToken))
	wantReason(t, err, oauth.ReasonWrongAudience)

	// The same token is fine for the resource it was minted for.
	v2, err := oauth.New(context.Background(), oauth.Config{Issuer: as.URL, Resource: "https://other.example/api"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	if _, err := v2.Verify(bearerRequest(other.AccessToken)); err != nil {
		t.Errorf("token for other.example at other.example: %v", err)
	}
}

// --- (2) key rotation ---------------------------------------------------------------------------

// TestKeyRotation: the provider switches to a new signing key (ES256, new kid); the first token
// signed with it triggers one JWKS refresh and verifies, and tokens signed with the old key,
// still published, keep verifying. If it failed, every key rotation at the authorization server
// would lock all clients out until a gateway restart.
func TestKeyRotation(t *testing.T) {
	as := oauthtest.Start(t)
	v, err := oauth.New(context.Background(), oauth.Config{Issuer: as.URL, Resource: resource}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	old := as.Login(t, resource)
	if _, err := v.Verify(bearerRequest(old.AccessToken)); err != nil {
		t.Fatal(err)
	}
	hits := as.JWKSHits()

	kid := as.Rotate(t)
	fresh := as.Login(t, resource)
	hdr, _, err := jwt.NewParser().ParseUnverified(fresh.AccessToken, jwt.MapClaims{})
	if err != nil || hdr.Header["kid"] != kid || hdr.Header["alg"] != "ES256" {
		t.Fatalf("rotated token header %v (%v), want kid %s ES256", hdr.Header, err, kid)
	}
	if _, err := v.Verify(bearerRequest(fresh.AccessToken)); err != nil {
		t.Fatalf("token signed with the rotated key: %v", err)
	}
	if got := as.JWKSHits() - hits; got != 1 {
		t.Errorf("JWKS fetched %d times for the new kid, want 1", got)
	}
	if _, err := v.Verify(bearerRequest(old.AccessToken)); err != nil {
		t.Errorf("token signed with the previous key: %v", err)
	}
}

// --- (3) a JWKS the test controls ---------------------------------------------------------------

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// keyServer is an authorization server reduced to what the verifier reads: RFC 8414 metadata,
// a JWKS built with jwkset, and an RFC 7662 introspection endpoint.
type keyServer struct {
	URL        string
	rsa        *rsa.PrivateKey
	ec         *ecdsa.PrivateKey
	ed         ed25519.PrivateKey
	jwks       json.RawMessage
	jwksHits   atomic.Int64
	introspect http.HandlerFunc
}

func startKeyServer(t *testing.T) *keyServer {
	t.Helper()
	ks := &keyServer{}
	var err error
	if ks.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if ks.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if _, ks.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	set := jwkset.NewMemoryStorage()
	for _, k := range []struct {
		key any
		kid string
		alg jwkset.ALG
	}{{ks.rsa.Public(), "rsa", jwkset.AlgRS256}, {ks.ec.Public(), "ec", jwkset.AlgES256}, {ks.ed.Public(), "ed", jwkset.AlgEdDSA}} {
		j, err := jwkset.NewJWKFromKey(k.key, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: k.kid, ALG: k.alg, USE: jwkset.UseSig}})
		if err != nil {
			t.Fatal(err)
		}
		if err := set.KeyWrite(context.Background(), j); err != nil {
			t.Fatal(err)
		}
	}
	if ks.jwks, err = set.JSONPublic(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/oauth-authorization-server":
			_ = json.NewEncoder(w).Encode(map[string]string{
				"issuer": ks.URL, "jwks_uri": ks.URL + "/jwks", "introspection_endpoint": ks.URL + "/introspect",
			})
		case "/jwks":
			ks.jwksHits.Add(1)
			_, _ = w.Write(ks.jwks)
		case "/introspect":
			if ks.introspect == nil {
				http.NotFound(w, r)
				return
			}
			ks.introspect(w, r)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	ks.URL = srv.URL
	return ks
}

// mint signs claims with golang-jwt; method and key select the algorithm, kid the header.
func mint(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newVerifier(t *testing.T, ks *keyServer, clk *clock, mod func(*oauth.Config)) *oauth.Verifier {
	t.Helper()
	cfg := oauth.Config{Issuer: ks.URL, Resource: resource, Now: clk.Now, RoleClaim: "realm_access.roles"}
	if mod != nil {
		mod(&cfg)
	}
	v, err := oauth.New(context.Background(), cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

// TestMintedTokens covers each way a JWT must be refused, with a clock the test sets. If a case
// failed, that class of forged, stale or misdirected token would be accepted.
func TestMintedTokens(t *testing.T) {
	ks := startKeyServer(t)
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	clk := &clock{t: now}
	v := newVerifier(t, ks, clk, nil)
	mfa := newVerifier(t, ks, clk, func(c *oauth.Config) { c.RequireAMR = []string{"mfa", "hwk"} })
	acr := newVerifier(t, ks, clk, func(c *oauth.Config) { c.RequireACR = []string{"phr"} })

	good := func() jwt.MapClaims {
		return jwt.MapClaims{
			"iss": ks.URL, "sub": "alice", "aud": []string{resource, "https://other"}, "azp": "cli",
			"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "jti": "j-1",
			"scope": "mcp:tools mcp:read", "amr": []string{"pwd", "hwk"}, "acr": "phr",
			"realm_access": map[string]any{"roles": []string{"admin", "soc"}},
		}
	}
	with := func(k string, val any) jwt.MapClaims {
		c := good()
		if val == nil {
			delete(c, k)
		} else {
			c[k] = val
		}
		return c
	}
	rsaPubDER, err := x509.MarshalPKIXPublicKey(ks.rsa.Public())
	if err != nil {
		t.Fatal(err)
	}
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	// All three default algorithms verify, and the principal is read right.
	for _, c := range []struct {
		m   jwt.SigningMethod
		key crypto.Signer
		kid string
	}{{jwt.SigningMethodRS256, ks.rsa, "rsa"}, {jwt.SigningMethodES256, ks.ec, "ec"}, {jwt.SigningMethodEdDSA, ks.ed, "ed"}} {
		g, err := v.Verify(bearerRequest(mint(t, c.m, c.key, c.kid, good())))
		if err != nil {
			t.Fatalf("%s: %v", c.m.Alg(), err)
		}
		want := event.Principal{Subject: "alice", ClientID: "cli", Issuer: ks.URL, Roles: []string{"admin", "soc"},
			TokenID: "j-1", AuthMethods: []string{"pwd", "hwk"}}
		if !principalEqual(g.Principal, want) || !slices.Equal(g.Scopes, []string{"mcp:tools", "mcp:read"}) || g.ACR != "phr" {
			t.Fatalf("%s: grant %+v", c.m.Alg(), g)
		}
	}
	if _, err := mfa.Verify(bearerRequest(mint(t, jwt.SigningMethodRS256, ks.rsa, "rsa", good()))); err != nil {
		t.Errorf("hwk token with MFA required: %v", err)
	}

	cases := []struct {
		name, tok, reason string
		v                 *oauth.Verifier
		mfa               bool
	}{
		{name: "expired", tok: mint(t, jwt.SigningMethodRS256, ks.rsa, "rsa",
			with("exp", now.Add(-time.Minute).Unix())), reason: oauth.ReasonExpired},
		{name: "nbf in future", tok: mint(t, jwt.SigningMethodRS256, ks.rsa, "rsa",
			with("nbf", now.Add(5*time.Minute).Unix())), reason: oauth.ReasonNotYetValid},
		{name: "iat in future", tok: mint(t, jwt.SigningMethodRS256, ks.rsa, "rsa",
			with("iat", now.Add(5*time.Minute).Unix())), reason: oauth.ReasonIssuedInFuture},
		{name: "lifetime over 15m", tok: mint(t, jwt.SigningMethodRS256, ks.rsa, "rsa",
			with("exp", now.Add(16*time.Minute).Unix())), reason: oauth.ReasonLifetime},
		{name: "no exp", tok: mint(t, jwt.SigningMethodRS256, ks.rsa, "rsa", with("exp", nil)), reason: oauth.ReasonMissingExp},
		{name: "no iat", tok: mint(t, jwt.SigningMethodRS256, ks.rsa, "rsa", with("iat", nil)), reason: oauth.ReasonMissingIat},
		{name: "alg none", tok: mint(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "rsa", good()),
			reason: oauth.ReasonAlgorithm},
		{name: "HS256 keyed with the RSA public key", tok: mint(t, jwt.SigningMethodHS256, rsaPubDER, "rsa", good()),
			reason: oauth.ReasonAlgorithm},
		{name: "HS256 keyed with the JWKS text", tok: mint(t, jwt.SigningMethodHS256, []byte(ks.jwks), "rsa", good()),
			reason: oauth.ReasonAlgorithm},
		{name: "unknown alg", tok: func() string {
			parts := strings.Split(mint(t, jwt.SigningMethodRS256, ks.rsa, "rsa", good()), ".")
			hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"XYZ","kid":"rsa"}`))
			return hdr + "." + parts[1] + "." + parts[2]
		}(), reason: oauth.ReasonAlgorithm},
		{name: "garbage JWT", tok: "a.b.c", reason: oauth.ReasonMalformed},
		{name: "RS384 not allowed", tok: mint(t, jwt.SigningMethodRS384, ks.rsa, "rsa", good()), reason: oauth.ReasonAlgorithm},
		{name: "unknown kid", tok: mint(t, jwt.SigningMethodRS256, otherRSA, "nope", good()), reason: oauth.ReasonUnknownKey},
		{name: "known kid, other key", tok: mint(t, jwt.SigningMethodRS256, otherRSA, "rsa", good()), reason: oauth.ReasonBadSignature},
		{name: "ES256 under the RSA kid", tok: mint(t, jwt.SigningMethodES256, ks.ec, "rsa", good()), reason: oauth.ReasonBadSignature},
		{name: "missing aud", tok: mint(t, jwt.SigningMethodRS256, ks.rsa, "rsa", with("aud", nil)), reason: oauth.ReasonMissingAudience},
		{name: "wrong aud", tok: mint(t, jwt.SigningMethodRS256, ks.rsa, "rsa", with("aud", "https://gateway.example/mcp2")),
			reason: oauth.ReasonWrongAudience},
		{name: "wrong iss", tok: mint(t, jwt.SigningMethodRS256, ks.rsa, "rsa", with("iss", "https://evil.example")),
			reason: oauth.ReasonWrongIssuer},
		{name: "no sub or client", tok: mint(t, jwt.SigningMethodRS256, ks.rsa, "rsa", func() jwt.MapClaims {
			c := good()
			delete(c, "sub")
			delete(c, "azp")
			return c
		}()), reason: oauth.ReasonNoSubject},
		{name: "tampered payload", tok: func() string {
			s := mint(t, jwt.SigningMethodRS256, ks.rsa, "rsa", good())
			parts := strings.Split(s, ".")
			other := strings.Split(mint(t, jwt.SigningMethodRS256, ks.rsa, "rsa", with("sub", "mallory")), ".")
			return parts[0] + "." + other[1] + "." + parts[2]
		}(), reason: oauth.ReasonBadSignature},
		{name: "opaque without introspection", tok: "abcdefghijklmnop", reason: oauth.ReasonOpaqueNotAllowed},
		{name: "missing amr when MFA required", v: mfa, mfa: true,
			tok: mint(t, jwt.SigningMethodRS256, ks.rsa, "rsa", with("amr", nil))},
		{name: "pwd only when MFA required", v: mfa, mfa: true,
			tok: mint(t, jwt.SigningMethodRS256, ks.rsa, "rsa", with("amr", []string{"pwd"}))},
		{name: "wrong acr", v: acr, mfa: true, tok: mint(t, jwt.SigningMethodRS256, ks.rsa, "rsa", with("acr", "low"))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ver := c.v
			if ver == nil {
				ver = v
			}
			_, err := ver.Verify(bearerRequest(c.tok))
			if c.mfa {
				if !errors.Is(err, oauth.ErrMFARequired) || errors.Is(err, oauth.ErrInvalidToken) {
					t.Fatalf("error %v, want MFA required", err)
				}
				return
			}
			wantReason(t, err, c.reason)
		})
	}

	// Skew: expired 20s ago is within the default 30s leeway; 40s ago is not.
	if _, err := v.Verify(bearerRequest(mint(t, jwt.SigningMethodRS256, ks.rsa, "rsa", with("exp", now.Add(-20*time.Second).Unix())))); err != nil {
		t.Errorf("within skew: %v", err)
	}
	clk.Advance(11 * time.Minute) // the good token's exp is now+10m
	_, err = v.Verify(bearerRequest(mint(t, jwt.SigningMethodRS256, ks.rsa, "rsa", good())))
	wantReason(t, err, oauth.ReasonExpired)
}

func principalEqual(a, b event.Principal) bool {
	return a.Subject == b.Subject && a.ClientID == b.ClientID && a.Issuer == b.Issuer && a.TokenID == b.TokenID &&
		slices.Equal(a.Roles, b.Roles) && slices.Equal(a.AuthMethods, b.AuthMethods)
}

// TestUnknownKIDRefreshIsRateLimited: made-up kids trigger at most one JWKS fetch per interval,
// and never wait. If it failed, anyone could make the gateway hammer the authorization server.
func TestUnknownKIDRefreshIsRateLimited(t *testing.T) {
	ks := startKeyServer(t)
	clk := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	v := newVerifier(t, ks, clk, func(c *oauth.Config) { c.UnknownKIDEvery = time.Minute })
	base := ks.jwksHits.Load()
	claims := jwt.MapClaims{"iss": ks.URL, "sub": "a", "aud": resource, "iat": clk.Now().Unix(), "exp": clk.Now().Add(time.Minute).Unix()}
	for i := range 5 {
		_, err := v.Verify(bearerRequest(mint(t, jwt.SigningMethodRS256, ks.rsa, "kid-"+string(rune('a'+i)), claims)))
		wantReason(t, err, oauth.ReasonUnknownKey)
	}
	if got := ks.jwksHits.Load() - base; got != 1 {
		t.Fatalf("%d JWKS fetches for 5 unknown kids in one interval, want 1", got)
	}
	clk.Advance(61 * time.Second)
	_, err := v.Verify(bearerRequest(mint(t, jwt.SigningMethodRS256, ks.rsa, "kid-z", claims)))
	wantReason(t, err, oauth.ReasonUnknownKey)
	if got := ks.jwksHits.Load() - base; got != 2 {
		t.Fatalf("%d JWKS fetches after the interval, want 2", got)
	}
	// A known kid never fetches.
	if _, err := v.Verify(bearerRequest(mint(t, jwt.SigningMethodRS256, ks.rsa, "rsa", claims))); err != nil {
		t.Fatal(err)
	}
	if got := ks.jwksHits.Load() - base; got != 2 {
		t.Fatalf("known kid fetched the JWKS")
	}
}

// TestBearerExtraction: only an Authorization: Bearer header carries a token. If it failed,
// tokens in URLs (which end up in logs) would be accepted, or odd headers misparsed.
func TestBearerExtraction(t *testing.T) {
	ks := startKeyServer(t)
	v := newVerifier(t, ks, &clock{t: time.Now()}, nil)
	if _, err := v.Verify(bearerRequest("")); !errors.Is(err, oauth.ErrNoToken) {
		t.Errorf("no header: %v", err)
	}
	r := httptest.NewRequest(http.MethodGet, "https://gateway.example/mcp?access_token=abcdefgh", nil)
	if _, err := v.Verify(r); !errors.Is(err, oauth.ErrInvalidToken) {
		t.Errorf("query token: %v, want invalid", err)
	}
	for _, h := range []string{"Basic abc", "Bearer", "Bearer a b", "Bearer a\"b", "Token abc"} {
		r := bearerRequest("")
		r.Header.Set("Authorization", h)
		_, err := v.Verify(r)
		wantReason(t, err, oauth.ReasonBadHeader)
	}
	r = bearerRequest("abc")
	r.Header.Add("Authorization", "Bearer def")
	_, err := v.Verify(r)
	wantReason(t, err, oauth.ReasonBadHeader)
}

// --- (4) introspection --------------------------------------------------------------------------

// TestIntrospection checks RFC 7662 for opaque tokens: client authentication, active and
// inactive answers, the cache (by token hash, bounded by TTL and exp) and failing closed. If it
// failed, opaque tokens could pass unchecked, revoked tokens live on, or an outage open the door.
func TestIntrospection(t *testing.T) {
	ks := startKeyServer(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := &clock{t: now}
	var calls atomic.Int64
	var mode atomic.Value
	mode.Store("ok")
	var mu sync.Mutex
	var seenForms []string
	ks.introspect = func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		id, secret, ok := r.BasicAuth()
		if !ok || id != "gateway" || secret != "s3cret" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		mu.Lock()
		seenForms = append(seenForms, r.PostForm.Encode())
		mu.Unlock()
		switch mode.Load() {
		case "500":
			http.Error(w, "down", http.StatusInternalServerError)
			return
		case "garbage":
			_, _ = io.WriteString(w, "{not json")
			return
		case "noactive":
			_, _ = io.WriteString(w, `{"sub":"x"}`)
			return
		}
		tok := r.PostForm.Get("token")
		resp := map[string]any{"active": false}
		switch tok {
		case "opaque-alice":
			resp = map[string]any{"active": true, "sub": "alice", "client_id": "cli", "scope": "mcp:tools",
				"aud": resource, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(), "jti": "op-1", "amr": []string{"otp"}}
		case "opaque-other-aud":
			resp = map[string]any{"active": true, "sub": "alice", "aud": "https://other", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
		case "opaque-long":
			resp = map[string]any{"active": true, "sub": "alice", "aud": resource, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		}
		_ = json.NewEncoder(w).Encode(resp)
	}
	t.Setenv("MCPWATCH_TEST_INTROSPECT_SECRET", "s3cret")
	v := newVerifier(t, ks, clk, func(c *oauth.Config) {
		c.Introspection = oauth.Introspection{ClientID: "gateway", ClientSecretEnv: "MCPWATCH_TEST_INTROSPECT_SECRET",
			CacheTTL: time.Minute}
	})

	g, err := v.Verify(bearerRequest("opaque-alice"))
	if err != nil {
		t.Fatal(err)
	}
	if g.Principal.Subject != "alice" || g.Principal.ClientID != "cli" || g.Principal.TokenID != "op-1" ||
		g.Principal.Issuer != ks.URL || !g.Introspected || !slices.Equal(g.Scopes, []string{"mcp:tools"}) {
		t.Fatalf("grant %+v", g)
	}
	if len(seenForms) != 1 || !strings.Contains(seenForms[0], "token_type_hint=access_token") {
		t.Errorf("request form %v", seenForms)
	}
	// Cache hit: no second call within the TTL.
	if _, err := v.Verify(bearerRequest("opaque-alice")); err != nil || calls.Load() != 1 {
		t.Fatalf("second verify: %v, %d calls, want 1", err, calls.Load())
	}
	// After the TTL, asked again.
	clk.Advance(61 * time.Second)
	if _, err := v.Verify(bearerRequest("opaque-alice")); err != nil || calls.Load() != 2 {
		t.Fatalf("after TTL: %v, %d calls, want 2", err, calls.Load())
	}
	clk.Advance(-61 * time.Second)

	_, err = v.Verify(bearerRequest("opaque-revoked"))
	wantReason(t, err, oauth.ReasonInactive)
	n := calls.Load()
	_, err = v.Verify(bearerRequest("opaque-revoked")) // negative answers are cached too
	wantReason(t, err, oauth.ReasonInactive)
	if calls.Load() != n {
		t.Errorf("inactive answer not cached")
	}
	_, err = v.Verify(bearerRequest("opaque-other-aud"))
	wantReason(t, err, oauth.ReasonWrongAudience)
	_, err = v.Verify(bearerRequest("opaque-long"))
	wantReason(t, err, oauth.ReasonLifetime)

	// Failures are ErrUnavailable (503), never a pass, and never cached.
	for _, m := range []string{"500", "garbage", "noactive"} {
		mode.Store(m)
		before := calls.Load()
		for range 2 {
			g, err := v.Verify(bearerRequest("opaque-fresh-" + m))
			if g != nil || !errors.Is(err, oauth.ErrUnavailable) || oauth.StatusFor(err) != http.StatusServiceUnavailable {
				t.Errorf("%s: %v %v, want unavailable", m, g, err)
			}
		}
		if calls.Load()-before != 2 {
			t.Errorf("%s: failure was cached", m)
		}
	}

	// Wrong client secret: the endpoint refuses us → unavailable, not invalid.
	t.Setenv("MCPWATCH_TEST_INTROSPECT_SECRET", "wrong")
	mode.Store("ok")
	bad := newVerifier(t, ks, clk, func(c *oauth.Config) {
		c.Introspection = oauth.Introspection{ClientID: "gateway", ClientSecretEnv: "MCPWATCH_TEST_INTROSPECT_SECRET"}
	})
	if _, err := bad.Verify(bearerRequest("opaque-alice")); !errors.Is(err, oauth.ErrUnavailable) {
		t.Errorf("wrong secret: %v", err)
	}
}

// TestIntrospectionCacheBoundedByExp: a cached answer is not used past the token's exp even when
// the TTL is longer. If it failed, an expired opaque token would pass from the cache.
func TestIntrospectionCacheBoundedByExp(t *testing.T) {
	ks := startKeyServer(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := &clock{t: now}
	var calls atomic.Int64
	ks.introspect = func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"active": true, "sub": "a", "aud": []string{resource},
			"iat": now.Unix(), "exp": now.Add(20 * time.Second).Unix()})
	}
	v := newVerifier(t, ks, clk, func(c *oauth.Config) {
		c.Skew = time.Second
		c.Introspection = oauth.Introspection{ClientID: "gw", ClientSecret: "x", CacheTTL: 5 * time.Minute}
	})
	if _, err := v.Verify(bearerRequest("opaque")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(30 * time.Second)
	_, err := v.Verify(bearerRequest("opaque"))
	wantReason(t, err, oauth.ReasonExpired)
	if calls.Load() != 2 {
		t.Errorf("%d calls, want the expired cache entry to be re-asked", calls.Load())
	}
}

// --- (5) challenges and metadata -----------------------------------------------------------------

// TestChallenges pins the WWW-Authenticate headers to RFC 6750 §3, RFC 9728 §5.1 and RFC 9470
// §3. If it failed, MCP clients would not find the authorization server or not know to step up.
func TestChallenges(t *testing.T) {
	ks := startKeyServer(t)
	v := newVerifier(t, ks, &clock{t: time.Now()}, func(c *oauth.Config) { c.RequireACR = []string{"phr", "phrh"} })
	md := "https://gateway.example/.well-known/oauth-protected-resource/mcp"
	if v.MetadataURL() != md {
		t.Fatalf("metadata URL %s", v.MetadataURL())
	}
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"no token", oauth.ErrNoToken, `Bearer resource_metadata="` + md + `"`},
		{"invalid", &oauth.TokenError{Reason: oauth.ReasonExpired},
			`Bearer error="invalid_token", error_description="token expired", resource_metadata="` + md + `"`},
		{"mfa", &oauth.MFAError{AnyACR: []string{"phr", "phrh"}},
			`Bearer error="insufficient_user_authentication", error_description="stronger authentication required", acr_values="phr phrh", resource_metadata="` + md + `"`},
		{"other", errors.New("boom"), `Bearer error="invalid_token", resource_metadata="` + md + `"`},
	} {
		w := httptest.NewRecorder()
		v.Challenge401(w, c.err)
		if got := w.Header().Get("WWW-Authenticate"); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
		if oauth.StatusFor(c.err) != http.StatusUnauthorized {
			t.Errorf("%s: status %d", c.name, oauth.StatusFor(c.err))
		}
	}
	w := httptest.NewRecorder()
	v.Challenge403(w, []string{"mcp:db", "mcp:tools", `bad"scope`})
	want := `Bearer error="insufficient_scope", scope="mcp:db mcp:tools", resource_metadata="` + md + `", error_description="additional scope required"`
	if got := w.Header().Get("WWW-Authenticate"); got != want {
		t.Errorf("403:\n got %s\nwant %s", got, want)
	}
	if oauth.StatusFor(&oauth.ErrInsufficientScope{}) != http.StatusForbidden {
		t.Error("insufficient scope is not 403")
	}
	// With baseline scopes configured, the 401 names them (MCP 2025-11-25 scope selection).
	base := newVerifier(t, ks, &clock{t: time.Now()}, func(c *oauth.Config) {
		c.RequiredScopes = map[string][]string{"*": {"mcp:read"}}
	})
	w = httptest.NewRecorder()
	base.Challenge401(w, oauth.ErrNoToken)
	if got, want := w.Header().Get("WWW-Authenticate"), `Bearer scope="mcp:read", resource_metadata="`+md+`"`; got != want {
		t.Errorf("baseline:\n got %s\nwant %s", got, want)
	}
	// A real verification error renders its reason.
	_, err := v.Verify(bearerRequest("a.b.c"))
	w = httptest.NewRecorder()
	v.Challenge401(w, err)
	if got := w.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, `Bearer error="invalid_token", error_description="malformed token"`) {
		t.Errorf("malformed: %s", got)
	}
}

// TestMetadata checks the RFC 9728 document and path. If it failed, MCP clients could not
// discover the authorization server.
func TestMetadata(t *testing.T) {
	cfg := oauth.Config{Issuer: "https://as.example", Resource: resource, ScopesSupported: []string{"mcp:read"},
		RequiredScopes: map[string][]string{"tools/call": {"mcp:tools"}, "db_query": {"mcp:db", "mcp:tools"}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := oauth.MetadataPath(resource); got != "/.well-known/oauth-protected-resource/mcp" {
		t.Errorf("path %s", got)
	}
	if got := oauth.MetadataPath("https://gw.example/"); got != "/.well-known/oauth-protected-resource" {
		t.Errorf("root path %s", got)
	}
	srv := httptest.NewServer(oauth.MetadataHandler(cfg))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, type %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var got map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"resource":                 resource,
		"authorization_servers":    []any{"https://as.example"},
		"scopes_supported":         []any{"mcp:db", "mcp:read", "mcp:tools"},
		"bearer_methods_supported": []any{"header"},
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Errorf("metadata\n got %s\nwant %s", gb, wb)
	}
	post, err := http.Post(srv.URL, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = post.Body.Close()
	if post.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", post.StatusCode)
	}
}

// --- config ---------------------------------------------------------------------------------------

// TestValidate: unsafe configurations are refused at load. If it failed, a typo could disable
// signature or audience checks.
func TestValidate(t *testing.T) {
	ok := oauth.Config{Issuer: "https://as.example", Resource: resource}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*oauth.Config){
		"no issuer":         func(c *oauth.Config) { c.Issuer = "" },
		"http issuer":       func(c *oauth.Config) { c.Issuer = "http://as.example" },
		"no resource":       func(c *oauth.Config) { c.Resource = "" },
		"resource fragment": func(c *oauth.Config) { c.Resource = resource + "#x" },
		"alg none":          func(c *oauth.Config) { c.Algorithms = []string{"none"} },
		"alg HS256":         func(c *oauth.Config) { c.Algorithms = []string{"RS256", "HS256"} },
		"alg unknown":       func(c *oauth.Config) { c.Algorithms = []string{"RS1"} },
		"negative skew":     func(c *oauth.Config) { c.Skew = -time.Second },
		"huge skew":         func(c *oauth.Config) { c.Skew = time.Hour },
		"long intro TTL": func(c *oauth.Config) {
			c.Introspection = oauth.Introspection{ClientID: "a", ClientSecret: "b", CacheTTL: time.Hour}
		},
		"intro no secret": func(c *oauth.Config) {
			c.Introspection = oauth.Introspection{ClientID: "a", ClientSecretEnv: "MCPWATCH_UNSET_VAR_X"}
		},
		"intro URL no client": func(c *oauth.Config) { c.Introspection = oauth.Introspection{URL: "https://as.example/i"} },
		"bad scope":           func(c *oauth.Config) { c.RequiredScopes = map[string][]string{"x": {"a b"}} },
		"jwt mode unknown": func(c *oauth.Config) {
			c.Introspection = oauth.Introspection{ClientID: "a", ClientSecret: "b", JWT: "sometimes"}
		},
		"jwt mode no client": func(c *oauth.Config) { c.Introspection = oauth.Introspection{JWT: oauth.JWTIntrospectAll} },
		"risk score range": func(c *oauth.Config) {
			c.Introspection = oauth.Introspection{ClientID: "a", ClientSecret: "b", JWT: oauth.JWTIntrospectRisky, MinRiskScore: 101}
		},
		"risk score not risky": func(c *oauth.Config) {
			c.Introspection = oauth.Introspection{ClientID: "a", ClientSecret: "b", JWT: oauth.JWTIntrospectAll, MinRiskScore: 50}
		},
		"revocation no client":  func(c *oauth.Config) { c.Revocation = oauth.Revocation{Enabled: true} },
		"revocation URL unused": func(c *oauth.Config) { c.Revocation = oauth.Revocation{URL: "https://as.example/revoke"} },
		"revocation http URL": func(c *oauth.Config) {
			c.Introspection = oauth.Introspection{ClientID: "a", ClientSecret: "b"}
			c.Revocation = oauth.Revocation{Enabled: true, URL: "http://as.example/revoke"}
		},
	} {
		c := ok
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := oauth.New(context.Background(), oauth.Config{}, nil, nil); err == nil {
		t.Error("New accepted an empty config")
	}
}

// TestSecretNeverPrints: the introspection secret does not reach logs or JSON.
func TestSecretNeverPrints(t *testing.T) {
	in := oauth.Introspection{ClientID: "gw", ClientSecret: "hunter2hunter2"}
	b, _ := json.Marshal(in)
	var sb strings.Builder
	for _, s := range []string{string(b), in.ClientSecret.String(), in.ClientSecret.GoString(),
		in.ClientSecret.LogValue().String()} {
		sb.WriteString(s)
	}
	if strings.Contains(sb.String(), "hunter2") {
		t.Errorf("secret printed: %s", sb.String())
	}
}

// TestTokenIDWithoutJTI: a token without jti gets a stable fingerprint, never the token.
func TestTokenIDWithoutJTI(t *testing.T) {
	ks := startKeyServer(t)
	now := time.Now()
	v := newVerifier(t, ks, &clock{t: now}, nil)
	claims := jwt.MapClaims{"iss": ks.URL, "sub": "a", "aud": resource, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
	tok := mint(t, jwt.SigningMethodES256, ks.ec, "ec", claims)
	g1, err := v.Verify(bearerRequest(tok))
	if err != nil {
		t.Fatal(err)
	}
	g2, _ := v.Verify(bearerRequest(mint(t, jwt.SigningMethodES256, ks.ec, "ec", claims)))
	if !strings.HasPrefix(g1.Principal.TokenID, "tok_") || g1.Principal.TokenID != g2.Principal.TokenID ||
		strings.Contains(tok, strings.TrimPrefix(g1.Principal.TokenID, "tok_")) {
		t.Errorf("token ids %q %q", g1.Principal.TokenID, g2.Principal.TokenID)
	}
	// It is not the static-token fingerprint of the token either (that would tie it to the secret).
	if g1.Principal.TokenID == mcp.TokenID(mcp.HashToken(tok)) {
		t.Error("fingerprint derived from the token")
	}
}

func toStrings(v any) []string {
	var out []string
	if a, ok := v.([]any); ok {
		for _, e := range a {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}
