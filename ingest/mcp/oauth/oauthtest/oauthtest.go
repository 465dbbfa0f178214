// Package oauthtest is test support, not production code: a real OpenID Provider (zitadel/oidc's
// op package with the library's own example storage and login) run in-process on loopback, and a
// client that obtains access tokens from it through the authorization-code flow with PKCE S256, as
// an MCP host does. Tests of the oauth package and of the gateway share it.
//
// The provider's storage is wrapped for what the example leaves out: JWT access tokens carrying
// the granted scopes, a role and the login's amr; RFC 8707 resource indicators (the resource
// parameter of the authorization request becomes the token's audience); signing-key rotation;
// and a confidential resource-server client ([GatewayClientID]) that may introspect (RFC 7662)
// and revoke (RFC 7009) the access tokens minted for a resource, as production servers let a
// registered API do. The endpoints, client authentication and token handling stay zitadel's.
//
// The example logs every request through the default slog logger; tests that want quiet output
// set a discarding default.
package oauthtest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/oauth2"
)

const (
	// ClientID is the provider's one registered client: a public (native) client issuing JWT
	// access tokens, allowed the mcp:* scopes besides the OpenID ones.
	ClientID = "mcp-client"
	// RedirectURI is the client's registered redirect URI; nothing listens there, the login
	// stops at the redirect and reads the code from it.
	RedirectURI = "http://127.0.0.1/callback"
	// Password is the example user store's test password.
	Password = "verysecure"
	// Subject is the "sub" of the example's test user, whom [Server.Login] logs in.
	Subject = "id1"
	// GatewayClientID and GatewaySecret are the confidential client of the resource server (the
	// gateway), authenticating with HTTP Basic to the introspection and revocation endpoints.
	GatewayClientID = "mcp-gateway"
	GatewaySecret   = "gateway-secret-for-tests"
)

type resourceKey struct{}

// signingKey is one signing key of the provider.
type signingKey struct {
	id  string
	alg jose.SignatureAlgorithm
	key crypto.Signer
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return k.alg }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

type publicKey struct{ *signingKey }

func (k publicKey) Algorithm() jose.SignatureAlgorithm { return k.alg }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return k.key.Public() }

// store is the example storage with JWT access tokens, resource indicators and rotation.
type store struct {
	*storage.Storage
	mu        sync.Mutex
	keys      []*signingKey     // keys[0] signs; all are published
	resources map[string]string // auth request id → requested resource
	amr       []string          // overrides the login's amr when set
	authAge   time.Duration     // age of the simulated single sign-on session (see SetAuthAge)
	issued    map[string]issued // access token id → to whom and for what it was issued
}

// issued is what the example keeps about an access token but does not expose.
type issued struct {
	client   string   // the client the token was issued to
	app      string   // the client id the example stored with it ("" when minted for a resource)
	audience []string // the token's audience
}

// remember records who an access token was issued to and its audience, for introspection and
// revocation (see judgedAs).
func (s *store) remember(id string, req op.TokenRequest) {
	var is issued
	if r, ok := req.(interface{ GetClientID() string }); ok {
		is.client = r.GetClientID()
	}
	// The example reads the client id only from its own request types; a token minted through
	// resourceAuthRequest is stored without one.
	switch r := req.(type) {
	case *storage.AuthRequest:
		is.app = r.ApplicationID
	case *storage.RefreshTokenRequest:
		is.app = r.ApplicationID
	}
	is.audience = slices.Clone(req.GetAudience())
	s.mu.Lock()
	s.issued[id] = is
	s.mu.Unlock()
}

func (s *store) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	id, exp, err := s.Storage.CreateAccessToken(ctx, req)
	if err == nil {
		s.remember(id, req)
	}
	return id, exp, err
}

func (s *store) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	id, refresh, exp, err := s.Storage.CreateAccessAndRefreshTokens(ctx, req, current)
	if err == nil {
		s.remember(id, req)
	}
	return id, refresh, exp, err
}

// judgedAs is the client id under which the example storage judges a request by clientID about
// access token id. The example admits introspection only by a client the token's audience names,
// and revocation only by the client the token was issued to (RFC 7009 §2.1 lets a server decide
// so). The resource server's client stands for the resource the token was minted for (RFC 8707),
// as a production server's API registration does, and may revoke it; the token's own client is
// given back the identity the example stored. Other clients are judged as themselves.
func (s *store) judgedAs(clientID, tokenID string, introspect bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	is, ok := s.issued[tokenID]
	if !ok {
		return clientID
	}
	forResource := len(is.audience) > 0 && is.audience[0] != is.client
	switch {
	case introspect && clientID == GatewayClientID && forResource:
		return is.audience[0]
	case !introspect && (clientID == GatewayClientID && forResource || clientID == is.client):
		return is.app
	}
	return clientID
}

func (s *store) SetIntrospectionFromToken(ctx context.Context, in *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	return s.Storage.SetIntrospectionFromToken(ctx, in, tokenID, subject, s.judgedAs(clientID, tokenID, true))
}

func (s *store) RevokeToken(ctx context.Context, tokenIDOrToken, userID, clientID string) *oidc.Error {
	return s.Storage.RevokeToken(ctx, tokenIDOrToken, userID, s.judgedAs(clientID, tokenIDOrToken, false))
}

func (s *store) CreateAuthRequest(ctx context.Context, req *oidc.AuthRequest, userID string) (op.AuthRequest, error) {
	ar, err := s.Storage.CreateAuthRequest(ctx, req, userID)
	if err != nil {
		return nil, err
	}
	if res, _ := ctx.Value(resourceKey{}).(string); res != "" {
		s.mu.Lock()
		s.resources[ar.GetID()] = res
		s.mu.Unlock()
	}
	return ar, nil
}

// resourceAuthRequest makes the requested resource the audience (RFC 8707 §2.2).
type resourceAuthRequest struct {
	op.AuthRequest
	resource string
}

func (r resourceAuthRequest) GetAudience() []string { return []string{r.resource} }

func (s *store) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	ar, err := s.Storage.AuthRequestByCode(ctx, code)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	res := s.resources[ar.GetID()]
	s.mu.Unlock()
	if res == "" {
		return ar, nil
	}
	return resourceAuthRequest{AuthRequest: ar, resource: res}, nil
}

// jwtClient is the example's native client issuing JWT access tokens, allowed mcp:* scopes.
type jwtClient struct{ *storage.Client }

func (c jwtClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }
func (c jwtClient) IsScopeAllowed(scope string) bool {
	return strings.HasPrefix(scope, "mcp:") || c.Client.IsScopeAllowed(scope)
}

func (s *store) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	if sc, ok := c.(*storage.Client); ok {
		return jwtClient{sc}, nil
	}
	return c, nil // the resource server's confidential client
}

// GetPrivateClaimsFromRequest puts the granted scopes, a role, the login's amr and its auth_time
// in the access token, as production authorization servers (Keycloak, Auth0, Okta) do.
func (s *store) GetPrivateClaimsFromRequest(_ context.Context, req op.TokenRequest, scopes []string) (map[string]any, error) {
	claims := map[string]any{"scope": strings.Join(scopes, " "), "roles": []string{"analyst"}}
	if r, ok := req.(interface{ GetAMR() []string }); ok {
		claims["amr"] = r.GetAMR()
	}
	s.mu.Lock()
	if s.amr != nil {
		claims["amr"] = slices.Clone(s.amr)
	}
	if r, ok := req.(interface{ GetAuthTime() time.Time }); ok && !r.GetAuthTime().IsZero() {
		at := r.GetAuthTime()
		if maxAuthAge(req) == nil { // no max_age or prompt=login: the old session is reused
			at = at.Add(-s.authAge)
		}
		claims["auth_time"] = at.Unix()
	}
	s.mu.Unlock()
	return claims, nil
}

// maxAuthAge is the max_age the authorization request asked for (0 for prompt=login), nil for
// none.
func maxAuthAge(req op.TokenRequest) *time.Duration {
	switch r := req.(type) {
	case *storage.AuthRequest:
		return r.MaxAuthAge
	case resourceAuthRequest:
		if a, ok := r.AuthRequest.(*storage.AuthRequest); ok {
			return a.MaxAuthAge
		}
	}
	return nil
}

func (s *store) SigningKey(context.Context) (op.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[0], nil
}

func (s *store) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var algs []jose.SignatureAlgorithm
	for _, k := range s.keys {
		algs = append(algs, k.alg)
	}
	return algs, nil
}

func (s *store) KeySet(context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []op.Key
	for _, k := range s.keys {
		keys = append(keys, publicKey{k})
	}
	return keys, nil
}

// Server is the running provider. Its issuer is URL.
type Server struct {
	URL string
	// Discovery is the provider's OpenID Connect discovery document.
	Discovery map[string]any
	store     *store
	jwksHits  atomic.Int64
	// down answers 503 to every request but the JWKS: the server unreachable for introspection
	// and revocation (see SetDown).
	down        atomic.Bool
	revocations atomic.Int64
}

// Start runs a provider on loopback until the test ends. It signs with an RS256 key.
func Start(t testing.TB) *Server {
	t.Helper()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	as := &Server{}
	var handler http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/keys" {
			as.jwksHits.Add(1)
		} else if as.down.Load() {
			http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path == "/revoke" {
			as.revocations.Add(1)
		}
		if res := r.URL.Query().Get("resource"); res != "" {
			r = r.WithContext(context.WithValue(r.Context(), resourceKey{}, res))
		}
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	as.URL = srv.URL
	clients := map[string]*storage.Client{
		ClientID:        storage.NativeClient(ClientID, RedirectURI),
		GatewayClientID: storage.WebClient(GatewayClientID, GatewaySecret),
	}
	as.store = &store{
		Storage:   storage.NewStorageWithClients(storage.NewUserStore(srv.URL), clients),
		keys:      []*signingKey{{id: "rs256-0", alg: jose.RS256, key: rsaKey}},
		resources: map[string]string{},
		issued:    map[string]issued{},
	}
	handler = exampleop.SetupServer(srv.URL, as.store, nil, false)

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if err := json.NewDecoder(resp.Body).Decode(&as.Discovery); err != nil {
		t.Fatal(err)
	}
	return as
}

// SetDown makes the provider answer 503 to every request except the JWKS (so tokens still
// verify), as an authorization server under maintenance does; false brings it back.
func (as *Server) SetDown(down bool) { as.down.Store(down) }

// Revocations is how many requests reached the revocation endpoint (while the server was up).
func (as *Server) Revocations() int64 { return as.revocations.Load() }

// Active asks the provider's introspection endpoint (RFC 7662) about tok as the gateway's client
// and returns its "active".
func (as *Server) Active(t testing.TB, tok string) bool {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, as.Discovery["introspection_endpoint"].(string),
		strings.NewReader(url.Values{"token": {tok}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(GatewayClientID, GatewaySecret)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Active bool `json:"active"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("introspection: status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return body.Active
}

// RevokeAsClient revokes tok at the provider's revocation endpoint (RFC 7009) as the public
// client the token was issued to would (a user logging out, an administrator), and fails the
// test unless the provider answers 200.
func (as *Server) RevokeAsClient(t testing.TB, tok string) {
	t.Helper()
	resp, err := http.PostForm(as.Discovery["revocation_endpoint"].(string),
		url.Values{"token": {tok}, "token_type_hint": {"access_token"}, "client_id": {ClientID}})
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: status %d", resp.StatusCode)
	}
}

// JWKSHits is how many times the provider's JWKS has been fetched.
func (as *Server) JWKSHits() int64 { return as.jwksHits.Load() }

// Rotate makes a new ES256 key the signing key and returns its kid; the old keys stay published
// for tokens in flight.
func (as *Server) Rotate(t testing.TB) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := as.store
	s.mu.Lock()
	defer s.mu.Unlock()
	id := fmt.Sprintf("es256-%d", len(s.keys))
	s.keys = append([]*signingKey{{id: id, alg: jose.ES256, key: k}}, s.keys...)
	return id
}

// SetAMR makes access tokens issued from now on carry amr instead of the login's ("pwd"), as if
// the user had authenticated with those methods (e.g. "mfa", "hwk"). No arguments restores the
// login's amr.
func (as *Server) SetAMR(amr ...string) {
	as.store.mu.Lock()
	defer as.store.mu.Unlock()
	if len(amr) == 0 {
		as.store.amr = nil
		return
	}
	as.store.amr = slices.Clone(amr)
}

// SetAuthAge makes the provider behave as if the user had a single sign-on session from d ago:
// tokens from logins that do not ask for a fresh authentication carry an auth_time d in the past.
// A login with max_age or prompt=login ([Server.StepUpLogin]) authenticates afresh, as OpenID
// Connect requires. 0 restores fresh logins everywhere.
func (as *Server) SetAuthAge(d time.Duration) {
	as.store.mu.Lock()
	defer as.store.mu.Unlock()
	as.store.authAge = d
}

// Login runs the authorization-code flow with PKCE S256 through the example's login page, as a
// browser would, logging in as the test user ([Subject]), and exchanges the code. resource, if
// set, is sent as an RFC 8707 indicator in both the authorization and the token request.
func (as *Server) Login(t testing.TB, resource string, scopes ...string) *oauth2.Token {
	t.Helper()
	return as.login(t, resource, nil, scopes)
}

// StepUpLogin is [Server.Login] answering an RFC 9470 step-up challenge: the authorization
// request carries max_age (whole seconds of maxAge) and prompt=login, so the user authenticates
// afresh and the token's auth_time is now.
func (as *Server) StepUpLogin(t testing.TB, resource string, maxAge time.Duration, scopes ...string) *oauth2.Token {
	t.Helper()
	return as.login(t, resource, []oauth2.AuthCodeOption{
		oauth2.SetAuthURLParam("max_age", strconv.FormatInt(int64(maxAge/time.Second), 10)),
		oauth2.SetAuthURLParam("prompt", "login"),
	}, scopes)
}

func (as *Server) login(t testing.TB, resource string, extra []oauth2.AuthCodeOption, scopes []string) *oauth2.Token {
	t.Helper()
	conf := &oauth2.Config{
		ClientID: ClientID,
		Endpoint: oauth2.Endpoint{
			AuthURL:   as.Discovery["authorization_endpoint"].(string),
			TokenURL:  as.Discovery["token_endpoint"].(string),
			AuthStyle: oauth2.AuthStyleInParams,
		},
		RedirectURL: RedirectURI,
		Scopes:      append([]string{"openid"}, scopes...),
	}
	verifier := oauth2.GenerateVerifier()
	state := oauth2.GenerateVerifier()
	authOpts := append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}, extra...)
	exOpts := []oauth2.AuthCodeOption{oauth2.VerifierOption(verifier)}
	if resource != "" {
		authOpts = append(authOpts, oauth2.SetAuthURLParam("resource", resource))
		exOpts = append(exOpts, oauth2.SetAuthURLParam("resource", resource))
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	browser := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(method, u string, form url.Values) *url.URL {
		t.Helper()
		var resp *http.Response
		var err error
		if method == http.MethodPost {
			resp, err = browser.PostForm(u, form)
		} else {
			resp, err = browser.Get(u)
		}
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("%s %s: status %d, want 302", method, u, resp.StatusCode)
		}
		loc, err := resp.Location()
		if err != nil {
			t.Fatal(err)
		}
		return loc
	}
	// Authorization request → the login page of the example.
	loginURL := get(http.MethodGet, conf.AuthCodeURL(state, authOpts...), nil)
	id := loginURL.Query().Get("authRequestID")
	if id == "" {
		t.Fatalf("authorize redirected to %s, want the login page", loginURL)
	}
	// Log in as the example's test user → back to the provider's callback.
	host := strings.Split(strings.Split(as.URL, "://")[1], ":")[0]
	callback := get(http.MethodPost, as.URL+"/login/username",
		url.Values{"username": {"test-user@" + host}, "password": {Password}, "id": {id}})
	// Callback → the client's redirect URI with the code.
	final := get(http.MethodGet, callback.String(), nil)
	if got := final.Scheme + "://" + final.Host + final.Path; got != RedirectURI {
		t.Fatalf("redirected to %s, want %s", final, RedirectURI)
	}
	if final.Query().Get("state") != state {
		t.Fatalf("state %q, want %q", final.Query().Get("state"), state)
	}
	code := final.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in %s", final)
	}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: tr})
	tok, err := conf.Exchange(ctx, code, exOpts...)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return tok
}
