package oauth_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth"
)

// mintWithHeader is [mint] with extra JOSE header parameters, signed for real.
func mintWithHeader(t *testing.T, method jwt.SigningMethod, key any, kid string, hdr map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["kid"] = kid
	for k, v := range hdr {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCriticalHeaderRefused pins RFC 7515 §4.1.11: a JWS whose "crit" names an extension the
// verifier does not understand must be rejected, as must a "crit" that is malformed, empty,
// names a parameter absent from the header or a registered JWS parameter. The gateway
// understands no extension, so every token carrying "crit" is refused, with reason
// [oauth.ReasonCritical] in the 401 invalid_token challenge. If it failed, a token whose issuer
// meant "do not accept unless you enforce X" (say, a binding or a one-time-use extension) would
// be accepted without X being enforced.
func TestCriticalHeaderRefused(t *testing.T) {
	ks := startKeyServer(t)
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	v := newVerifier(t, ks, &clock{t: now}, nil)
	claims := jwt.MapClaims{"iss": ks.URL, "sub": "alice", "aud": resource, "iat": now.Unix(),
		"exp": now.Add(5 * time.Minute).Unix()}

	// The same token without "crit" is good: the refusals below are about "crit" alone.
	if _, err := v.Verify(bearerRequest(mint(t, jwt.SigningMethodRS256, ks.rsa, "rsa", claims))); err != nil {
		t.Fatalf("control token without crit: %v", err)
	}
	for _, c := range []struct {
		name string
		hdr  map[string]any
	}{
		{"unknown extension, present", map[string]any{"crit": []string{"urn:example:bind"}, "urn:example:bind": "x"}},
		{"b64 (RFC 7797), present", map[string]any{"crit": []string{"b64"}, "b64": true}},
		{"extension absent from header", map[string]any{"crit": []string{"urn:example:bind"}}},
		{"registered parameter", map[string]any{"crit": []string{"kid"}}},
		{"empty list", map[string]any{"crit": []string{}}},
		{"not an array", map[string]any{"crit": "urn:example:bind", "urn:example:bind": "x"}},
		{"non-string member", map[string]any{"crit": []any{1}}},
		{"null", map[string]any{"crit": nil}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, k := range []struct {
				m   jwt.SigningMethod
				key crypto.Signer
				kid string
			}{{jwt.SigningMethodRS256, ks.rsa, "rsa"}, {jwt.SigningMethodES256, ks.ec, "ec"}, {jwt.SigningMethodEdDSA, ks.ed, "ed"}} {
				tok := mintWithHeader(t, k.m, k.key, k.kid, c.hdr, claims)
				g, err := v.Verify(bearerRequest(tok))
				if g != nil {
					t.Fatalf("%s: accepted (%+v)", k.m.Alg(), g.Principal)
				}
				wantReason(t, err, oauth.ReasonCritical)
				w := httptest.NewRecorder()
				v.Challenge401(w, err)
				want := `Bearer error="invalid_token", error_description="` + oauth.ReasonCritical + `"`
				if got := w.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, want) {
					t.Fatalf("challenge %s, want prefix %s", got, want)
				}
			}
		})
	}
}

// TestCriticalHeaderNotOnIntrospection: opaque tokens have no JOSE header; the introspection path
// is unchanged by the "crit" check, and a JWS with "crit" is never handed to introspection as a
// fallback. If it failed, opaque tokens would be refused, or a refused JWT sent to the
// authorization server.
func TestCriticalHeaderNotOnIntrospection(t *testing.T) {
	ks := startKeyServer(t)
	now := time.Now()
	var asked int
	var mu sync.Mutex
	ks.introspect = func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked++
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"active": true, "sub": "alice", "aud": resource,
			"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()})
	}
	t.Setenv("MCPWATCH_TEST_INTRO_SECRET", "s3cret-s3cret")
	v := newVerifier(t, ks, &clock{t: now}, func(c *oauth.Config) {
		c.Introspection = oauth.Introspection{ClientID: "gw", ClientSecretEnv: "MCPWATCH_TEST_INTRO_SECRET"}
	})
	g, err := v.Verify(bearerRequest("opaque-token-abcdefgh"))
	if err != nil || !g.Introspected {
		t.Fatalf("opaque token: %+v, %v", g, err)
	}
	tok := mintWithHeader(t, jwt.SigningMethodRS256, ks.rsa, "rsa", map[string]any{"crit": []string{"x"}, "x": 1},
		jwt.MapClaims{"iss": ks.URL, "sub": "a", "aud": resource, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()})
	_, err = v.Verify(bearerRequest(tok))
	wantReason(t, err, oauth.ReasonCritical)
	mu.Lock()
	defer mu.Unlock()
	if asked != 1 {
		t.Fatalf("introspection asked %d times, want 1 (the opaque token only)", asked)
	}
}

// syncBuffer collects log output from the verifier's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// jwksServer publishes keys as RFC 8414 metadata and a JWKS, as an authorization server would.
// raw are further JWKs as JSON, for keys jwkset would not publish.
func jwksServer(t *testing.T, keys []jwkset.JWK, raw ...string) string {
	t.Helper()
	set := jwkset.NewMemoryStorage()
	for _, k := range keys {
		if err := set.KeyWrite(context.Background(), k); err != nil {
			t.Fatal(err)
		}
	}
	pub, err := set.JSONPublic(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(pub, &doc); err != nil {
		t.Fatal(err)
	}
	for _, r := range raw {
		doc.Keys = append(doc.Keys, json.RawMessage(r))
	}
	jwks, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var url string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/oauth-authorization-server":
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": url, "jwks_uri": url + "/jwks"})
		case "/jwks":
			_, _ = w.Write(jwks)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	url = srv.URL
	return url
}

func jwk(t *testing.T, key any, kid string, alg jwkset.ALG) jwkset.JWK {
	t.Helper()
	j, err := jwkset.NewJWKFromKey(key, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: alg, USE: jwkset.UseSig}})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// es512WithP256 forges an "ES512" JWS with a P-256 key: the SHA-512 digest signed on P-256
// (ECDSA truncates it to the curve's size) and r, s left-padded to ES512's 66 bytes each. The
// signature is mathematically valid for the key, so only a check that ES512 means P-521
// refuses it.
func es512WithP256(t *testing.T, key *ecdsa.PrivateKey, kid string, claims jwt.MapClaims) string {
	t.Helper()
	hdr, _ := json.Marshal(map[string]any{"alg": "ES512", "typ": "JWT", "kid": kid})
	body, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(body)
	sum := sha512.Sum512([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 2*66)
	r.FillBytes(sig[:66])
	s.FillBytes(sig[66:])
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestSigningKeyStrength: RSA keys under 2048 bits are dropped from the JWKS (with a log line
// naming the kid) and tokens they signed refused; EC keys must be on P-256, P-384 or P-521 and
// on the curve the algorithm names (ES256↔P-256, ES384↔P-384, ES512↔P-521), whether or not the
// JWK carries an "alg". If it failed, a token signed with a factorable RSA-1024 key, or
// verified under a weaker curve than its algorithm promises, would be accepted.
func TestSigningKeyStrength(t *testing.T) {
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey := func(c elliptic.Curve) *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	hmacKey := []byte("a shared secret published by mistake")
	p256, p384, p521, p256bare, p384as256 := ecKey(elliptic.P256()), ecKey(elliptic.P384()), ecKey(elliptic.P521()),
		ecKey(elliptic.P256()), ecKey(elliptic.P384())
	issuer := jwksServer(t, []jwkset.JWK{
		jwk(t, rsa1024.Public(), "rsa-1024", jwkset.AlgRS256),
		jwk(t, rsa1024.Public(), "rsa-1024-no-alg", ""),
		jwk(t, rsa2048.Public(), "rsa-2048", jwkset.AlgRS256),
		jwk(t, p256.Public(), "p256", jwkset.AlgES256),
		jwk(t, p384.Public(), "p384", jwkset.AlgES384),
		jwk(t, p521.Public(), "p521", jwkset.AlgES512),
		jwk(t, p256bare.Public(), "p256-no-alg", ""),                 // no "alg": the curve alone must decide
		jwk(t, p384as256.Public(), "p384-as-es256", jwkset.AlgES256), // "alg" contradicts "crv"
	}, `{"kty":"oct","kid":"hmac","alg":"HS256","use":"sig","k":"`+base64.RawURLEncoding.EncodeToString(hmacKey)+`"}`)
	logs := &syncBuffer{}
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	v, err := oauth.New(context.Background(), oauth.Config{
		Issuer: issuer, Resource: resource, Now: func() time.Time { return now },
		Algorithms: []string{"RS256", "PS256", "ES256", "ES384", "ES512"},
	}, nil, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	claims := jwt.MapClaims{"iss": issuer, "sub": "alice", "aud": resource, "iat": now.Unix(),
		"exp": now.Add(5 * time.Minute).Unix()}

	for _, c := range []struct {
		name string
		tok  string
	}{
		{"RS256 2048", mint(t, jwt.SigningMethodRS256, rsa2048, "rsa-2048", claims)},
		{"ES256 P-256", mint(t, jwt.SigningMethodES256, p256, "p256", claims)},
		{"ES384 P-384", mint(t, jwt.SigningMethodES384, p384, "p384", claims)},
		{"ES512 P-521", mint(t, jwt.SigningMethodES512, p521, "p521", claims)},
		{"ES256 P-256 without JWK alg", mint(t, jwt.SigningMethodES256, p256bare, "p256-no-alg", claims)},
	} {
		if _, err := v.Verify(bearerRequest(c.tok)); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	for _, c := range []struct {
		name string
		tok  string
	}{
		{"RS256 1024", mint(t, jwt.SigningMethodRS256, rsa1024, "rsa-1024", claims)},
		{"PS256 1024", mint(t, jwt.SigningMethodPS256, rsa1024, "rsa-1024-no-alg", claims)},
		{"ES512 forged with a P-256 key without JWK alg", es512WithP256(t, p256bare, "p256-no-alg", claims)},
		{"ES384 under a P-384 key published as ES256", mint(t, jwt.SigningMethodES384, p384as256, "p384-as-es256", claims)},
	} {
		t.Run(c.name, func(t *testing.T) {
			g, err := v.Verify(bearerRequest(c.tok))
			if g != nil {
				t.Fatalf("accepted (%+v)", g.Principal)
			}
			wantReason(t, err, oauth.ReasonKeyNotAllowed)
		})
	}
	out := logs.String()
	for _, kid := range []string{"rsa-1024", "rsa-1024-no-alg", "p384-as-es256", "hmac"} {
		if !strings.Contains(out, "kid="+kid) {
			t.Errorf("no log line names the refused key %s:\n%s", kid, out)
		}
	}
	for _, kid := range []string{"rsa-2048", "p256", "p384", "p521", "p256-no-alg"} {
		if strings.Contains(out, "kid="+kid+" ") {
			t.Errorf("log names the good key %s:\n%s", kid, out)
		}
	}
}
