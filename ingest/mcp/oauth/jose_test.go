package oauth_test

import (
	"crypto"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

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
