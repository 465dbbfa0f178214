package oauth_test

// A real OpenID Provider, zitadel/oidc's op package with the library's own example storage and
// login, run in-process on loopback. The test wraps the storage for three things the example
// leaves out: JWT access tokens, RFC 8707 resource indicators (the resource parameter of the
// authorization request becomes the token's audience) and signing-key rotation.

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
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/oauth2"
)

const (
	asClientID    = "mcp-client"
	asRedirectURI = "http://127.0.0.1/callback"
	asPassword    = "verysecure" // the example user store's test password
)

type resourceKey struct{}

// asKey is one signing key of the test provider.
type asKey struct {
	id  string
	alg jose.SignatureAlgorithm
	key crypto.Signer
}

func (k *asKey) SignatureAlgorithm() jose.SignatureAlgorithm { return k.alg }
func (k *asKey) Key() any                                    { return k.key }
func (k *asKey) ID() string                                  { return k.id }

type asPublicKey struct{ *asKey }

func (k asPublicKey) Algorithm() jose.SignatureAlgorithm { return k.alg }
func (k asPublicKey) Use() string                        { return "sig" }
func (k asPublicKey) Key() any                           { return k.key.Public() }

// asStorage is the example storage with JWT access tokens, resource indicators and rotation.
type asStorage struct {
	*storage.Storage
	mu        sync.Mutex
	keys      []*asKey          // keys[0] signs; all are published
	resources map[string]string // auth request id → requested resource
}

func (s *asStorage) CreateAuthRequest(ctx context.Context, req *oidc.AuthRequest, userID string) (op.AuthRequest, error) {
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

func (s *asStorage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
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

func (s *asStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return jwtClient{c.(*storage.Client)}, nil
}

// GetPrivateClaimsFromRequest puts the granted scopes, a role and the login's amr in the access
// token, as production authorization servers do.
func (s *asStorage) GetPrivateClaimsFromRequest(_ context.Context, req op.TokenRequest, scopes []string) (map[string]any, error) {
	claims := map[string]any{"scope": strings.Join(scopes, " "), "roles": []string{"analyst"}}
	if r, ok := req.(interface{ GetAMR() []string }); ok {
		claims["amr"] = r.GetAMR()
	}
	return claims, nil
}

func (s *asStorage) SigningKey(context.Context) (op.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[0], nil
}

func (s *asStorage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var algs []jose.SignatureAlgorithm
	for _, k := range s.keys {
		algs = append(algs, k.alg)
	}
	return algs, nil
}

func (s *asStorage) KeySet(context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []op.Key
	for _, k := range s.keys {
		keys = append(keys, asPublicKey{k})
	}
	return keys, nil
}

// rotate makes a new ES256 key the signing key; the old ones stay published for tokens in flight.
func (s *asStorage) rotate(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := fmt.Sprintf("es256-%d", len(s.keys))
	s.keys = append([]*asKey{{id: id, alg: jose.ES256, key: k}}, s.keys...)
	return id
}

// testAS is the running provider.
type testAS struct {
	URL       string
	store     *asStorage
	jwksHits  atomic.Int64
	discovery map[string]any
}

func startAS(t *testing.T) *testAS {
	t.Helper()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	as := &testAS{}
	var handler http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/keys" {
			as.jwksHits.Add(1)
		}
		if res := r.URL.Query().Get("resource"); res != "" {
			r = r.WithContext(context.WithValue(r.Context(), resourceKey{}, res))
		}
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	as.URL = srv.URL
	clients := map[string]*storage.Client{asClientID: storage.NativeClient(asClientID, asRedirectURI)}
	as.store = &asStorage{
		Storage:   storage.NewStorageWithClients(storage.NewUserStore(srv.URL), clients),
		keys:      []*asKey{{id: "rs256-0", alg: jose.RS256, key: rsaKey}},
		resources: map[string]string{},
	}
	handler = exampleop.SetupServer(srv.URL, as.store, nil, false)

	resp, err := http.Get(srv.URL + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if err := json.NewDecoder(resp.Body).Decode(&as.discovery); err != nil {
		t.Fatal(err)
	}
	return as
}

// login runs the authorization-code flow with PKCE S256 through the example's login page, as a
// browser would, and exchanges the code. resource, if set, is sent as an RFC 8707 indicator.
func (as *testAS) login(t *testing.T, resource string, scopes ...string) *oauth2.Token {
	t.Helper()
	conf := &oauth2.Config{
		ClientID: asClientID,
		Endpoint: oauth2.Endpoint{
			AuthURL:   as.discovery["authorization_endpoint"].(string),
			TokenURL:  as.discovery["token_endpoint"].(string),
			AuthStyle: oauth2.AuthStyleInParams,
		},
		RedirectURL: asRedirectURI,
		Scopes:      append([]string{"openid"}, scopes...),
	}
	verifier := oauth2.GenerateVerifier()
	state := oauth2.GenerateVerifier()
	authOpts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	exOpts := []oauth2.AuthCodeOption{oauth2.VerifierOption(verifier)}
	if resource != "" {
		authOpts = append(authOpts, oauth2.SetAuthURLParam("resource", resource))
		exOpts = append(exOpts, oauth2.SetAuthURLParam("resource", resource))
	}
	browser := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
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
		url.Values{"username": {"test-user@" + host}, "password": {asPassword}, "id": {id}})
	// Callback → the client's redirect URI with the code.
	final := get(http.MethodGet, callback.String(), nil)
	if got := final.Scheme + "://" + final.Host + final.Path; got != asRedirectURI {
		t.Fatalf("redirected to %s, want %s", final, asRedirectURI)
	}
	if final.Query().Get("state") != state {
		t.Fatalf("state %q, want %q", final.Query().Get("state"), state)
	}
	code := final.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in %s", final)
	}
	tok, err := conf.Exchange(context.Background(), code, exOpts...)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return tok
}
