package oauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth"
	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth/oauthtest"
	"github.com/mcpwatch/mcpwatch/internal/control"
)

// realVerifier is a verifier trusting the real provider, authenticating to its introspection and
// revocation endpoints as the resource server's confidential client.
func realVerifier(t *testing.T, as *oauthtest.Server, mod func(*oauth.Config)) *oauth.Verifier {
	t.Helper()
	cfg := oauth.Config{Issuer: as.URL, Resource: resource,
		Introspection: oauth.Introspection{ClientID: oauthtest.GatewayClientID, ClientSecret: oauthtest.GatewaySecret}}
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

// refusedWithin verifies tok until it is refused, and returns the refusal and how long it took.
func refusedWithin(t *testing.T, v *oauth.Verifier, tok string, limit time.Duration) (*oauth.Grant, time.Duration, error) {
	t.Helper()
	start := time.Now()
	for {
		g, err := v.Verify(bearerRequest(tok))
		if err != nil {
			return g, time.Since(start), err
		}
		if time.Since(start) > limit {
			t.Fatalf("token revoked at the server still accepted after %s", limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestJWTIntrospectionRealServer revokes a JWT at zitadel's provider (its own client logging out,
// RFC 7009) and checks the three modes: "all" refuses it within the cache TTL, "risky" only for a
// principal whose threat score reaches the minimum, "off" keeps accepting it until exp — which is
// why the mode exists. If it failed, a token revoked at the authorization server would stay
// usable at the gateway for its whole lifetime, or introspection would not follow the risk.
func TestJWTIntrospectionRealServer(t *testing.T) {
	as := oauthtest.Start(t)
	const ttl = time.Second

	t.Run("all", func(t *testing.T) {
		v := realVerifier(t, as, func(c *oauth.Config) {
			c.Introspection.JWT, c.Introspection.CacheTTL = oauth.JWTIntrospectAll, ttl
		})
		tok := as.Login(t, resource, "mcp:tools").AccessToken
		for range 3 { // the first asks, the next two come from the cache
			if _, err := v.Verify(bearerRequest(tok)); err != nil {
				t.Fatalf("live token: %v", err)
			}
		}
		as.RevokeAsClient(t, tok)
		g, took, err := refusedWithin(t, v, tok, ttl+2*time.Second)
		wantReason(t, err, oauth.ReasonInactive)
		if took > ttl+500*time.Millisecond {
			t.Errorf("refused after %s, want within the cache TTL %s", took, ttl)
		}
		// The refusal names the genuine principal, for the audit.
		if g == nil || g.Principal.Subject != oauthtest.Subject {
			t.Errorf("refusal without its principal: %+v", g)
		}
		t.Logf("revoked at the server → refused after %s (cache TTL %s)", took, ttl)
	})

	t.Run("risky", func(t *testing.T) {
		var risk atomic.Int64
		known := atomic.Bool{}
		known.Store(true)
		v := realVerifier(t, as, func(c *oauth.Config) {
			c.Introspection.JWT, c.Introspection.MinRiskScore, c.Introspection.CacheTTL = oauth.JWTIntrospectRisky, 60, ttl
			c.Risk = func(p event.Principal) (float64, bool) {
				if p.Subject != oauthtest.Subject {
					t.Errorf("risk asked for %q", p.Subject)
				}
				return float64(risk.Load()), known.Load()
			}
		})
		tok := as.Login(t, resource, "mcp:tools").AccessToken
		as.RevokeAsClient(t, tok)
		risk.Store(59) // below the minimum: trusted until exp, the server is not asked
		if _, err := v.Verify(bearerRequest(tok)); err != nil {
			t.Fatalf("low-risk principal's token was introspected: %v", err)
		}
		risk.Store(60)
		_, err := v.Verify(bearerRequest(tok))
		wantReason(t, err, oauth.ReasonInactive)
		known.Store(false) // an unknown risk is not a low one
		risk.Store(0)
		_, err = v.Verify(bearerRequest(tok))
		wantReason(t, err, oauth.ReasonInactive)
	})

	t.Run("off", func(t *testing.T) {
		v := realVerifier(t, as, nil)
		tok := as.Login(t, resource, "mcp:tools").AccessToken
		as.RevokeAsClient(t, tok)
		if as.Active(t, tok) {
			t.Fatal("the provider still calls the revoked token active")
		}
		if _, err := v.Verify(bearerRequest(tok)); err != nil {
			t.Fatalf("off: a valid JWT is trusted until exp, got %v", err)
		}
	})
}

// TestJWTIntrospectionFailsClosed: every way an introspection answer about a valid JWT can be
// unusable refuses the token as "authorization server unavailable" (503) with a reason naming
// what went wrong, and is not cached. If it failed, a garbled or hostile answer — or one about
// another token — would let a revoked JWT through, or a refusal would give the operator nothing
// to act on.
func TestJWTIntrospectionFailsClosed(t *testing.T) {
	ks := startKeyServer(t)
	now := time.Now()
	var answer atomic.Value
	var calls atomic.Int64
	ks.introspect = func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		a := answer.Load().(string)
		if a == "503" {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, a)
	}
	v := newVerifier(t, ks, &clock{t: now}, func(c *oauth.Config) {
		c.Introspection = oauth.Introspection{ClientID: "gw", ClientSecret: "x", JWT: oauth.JWTIntrospectAll}
	})
	tok := mint(t, jwt.SigningMethodRS256, ks.rsa, "rsa", jwt.MapClaims{"iss": ks.URL, "sub": "alice", "aud": resource,
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "j1"})
	for _, tc := range []struct{ answer, want string }{
		{"503", "introspection answered status 503"},
		{"{not json", "introspection answer is not a JSON object"},
		{"null", "introspection answer is empty"},
		{`{"sub":"alice"}`, `introspection answer has no boolean "active"`},
		{`{"active":"true"}`, `introspection answer has no boolean "active"`},
		{`{"active":true,"sub":"mallory"}`, "introspection answer names another subject"},
		{`{"active":true,"sub":"alice","iss":"https://elsewhere"}`, "introspection answer names another issuer"},
	} {
		answer.Store(tc.answer)
		before := calls.Load()
		for range 2 {
			g, err := v.Verify(bearerRequest(tok))
			var ue *oauth.UnavailableError
			if !errors.As(err, &ue) || !errors.Is(err, oauth.ErrUnavailable) || oauth.StatusFor(err) != http.StatusServiceUnavailable {
				t.Fatalf("%s: %v, want unavailable", tc.answer, err)
			}
			if ue.Detail != tc.want || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: reason %q, want %q", tc.answer, ue.Detail, tc.want)
			}
			if g == nil || g.Principal.Subject != "alice" {
				t.Errorf("%s: refusal without its principal", tc.answer)
			}
		}
		if calls.Load()-before != 2 {
			t.Errorf("%s: a failed introspection was cached", tc.answer)
		}
	}
	answer.Store(`{"active":true,"sub":"alice"}`)
	if _, err := v.Verify(bearerRequest(tok)); err != nil {
		t.Fatalf("a consistent active answer: %v", err)
	}
}

// actionLog is an action sink that keeps what it is given.
type actionLog struct {
	mu   sync.Mutex
	list []*event.Action
	keys []string
}

func (l *actionLog) PublishAction(_ context.Context, key string, a *event.Action) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.list = append(l.list, a)
	l.keys = append(l.keys, key)
	return nil
}

func (l *actionLog) all() []*event.Action {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*event.Action(nil), l.list...)
}

func (l *actionLog) waitFor(t *testing.T, n int, within time.Duration) []*event.Action {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if a := l.all(); len(a) >= n {
			return a
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%d actions after %s, want %d", len(l.all()), within, n)
	return nil
}

func putControl(t *testing.T, s *control.Store, c event.Control) {
	t.Helper()
	b, err := event.Encode(&c)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply([]byte(c.Key()), b); err != nil {
		t.Fatal(err)
	}
}

// runRevoker runs v's revoker on store until the test ends.
func runRevoker(t *testing.T, v *oauth.Verifier, store *control.Store, sink oauth.ActionSink) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- v.Revoker().Run(ctx, oauth.RevokerDeps{Controls: store, Actions: sink, Tenant: "acme", Actor: "gateway:gw-1"})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// TestRevokerRealServer: a revoke control for a subject makes the gateway revoke the token it
// holds at zitadel's provider (whose introspection then says inactive), recorded as one
// oauth_revoke action however often the control is delivered; a token of a revoked subject seen
// later is revoked on sight; with the provider down the revocation is retried until it comes
// back. If it failed, a revocation decided by the responder would stop at the gateways while the
// token stayed valid at every other resource server, or actions would double.
func TestRevokerRealServer(t *testing.T) {
	as := oauthtest.Start(t)
	v := realVerifier(t, as, func(c *oauth.Config) { c.Revocation.Enabled = true })
	store := control.NewStore()
	sink := &actionLog{}
	runRevoker(t, v, store, sink)

	tok := as.Login(t, resource, "mcp:tools").AccessToken
	other := as.Login(t, resource, "mcp:tools").AccessToken
	for _, tk := range []string{tok, tok, other} {
		if _, err := v.Verify(bearerRequest(tk)); err != nil {
			t.Fatal(err)
		}
	}
	if v.Revoker().Held() != 2 {
		t.Fatalf("held %d tokens, want 2", v.Revoker().Held())
	}
	c := event.Control{Schema: event.SchemaVersion, ID: event.NewID(), Time: time.Now(), Kind: event.ControlRevoke,
		Scope: event.ScopeSubject, Tenant: "acme", Value: oauthtest.Subject, Reason: "exfiltration", FindingID: "f-1"}
	putControl(t, store, c)
	acts := sink.waitFor(t, 2, 5*time.Second)
	putControl(t, store, c)                   // redelivered: nothing more to do
	for _, tk := range []string{tok, other} { // presented again (JWT introspection off): not revoked twice
		if _, err := v.Verify(bearerRequest(tk)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if got := len(sink.all()); got != 2 {
		t.Fatalf("%d actions after a redelivered control and the tokens seen again, want 2 (one per token)", got)
	}
	for _, tk := range []string{tok, other} {
		if as.Active(t, tk) {
			t.Error("the provider still calls a revoked token active")
		}
	}
	ids := map[string]bool{}
	for _, a := range acts {
		if a.Kind != event.ActionOAuthRevoke || a.Status != "succeeded" || a.ControlID != c.ID || a.FindingID != "f-1" ||
			a.Actor != "gateway:gw-1" || a.Subject != oauthtest.Subject || a.Attempts != 1 || a.Reason != "exfiltration" ||
			!strings.HasPrefix(a.Target, "token:") || a.LatencyMS <= 0 || a.Tenant != "acme" {
			t.Errorf("action %+v", a)
		}
		if strings.Contains(a.Target+a.Detail, tok) || strings.Contains(a.Target+a.Detail, other) {
			t.Error("an action carries the token")
		}
		ids[a.ID] = true
	}
	if len(ids) != 2 || v.Revoker().Held() != 0 {
		t.Fatalf("action ids %v, held %d", ids, v.Revoker().Held())
	}

	// A token of the revoked subject presented later (another replica's login, a restart) is
	// revoked when seen; the provider down meanwhile only delays it.
	late := as.Login(t, resource, "mcp:tools").AccessToken
	as.SetDown(true)
	if _, err := v.Verify(bearerRequest(late)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond) // a few attempts against the 503s
	if n := len(sink.all()); n != 2 {
		t.Fatalf("an action was recorded while the provider was down (%d)", n)
	}
	as.SetDown(false)
	acts = sink.waitFor(t, 3, 15*time.Second)
	a := acts[2]
	if a.Status != "succeeded" || a.Attempts < 2 || a.ControlID != c.ID {
		t.Fatalf("after the outage: %+v, want succeeded after several attempts", a)
	}
	if as.Active(t, late) {
		t.Error("the late token is still active at the provider")
	}
	t.Logf("revoked after the outage in %d attempts", a.Attempts)
}

// TestRevokerRefused: a provider that will not let the gateway revoke (wrong client secret: 401
// invalid_client) is not asked again for the same control, and the failure is one action that
// says why. If it failed, the gateway would hammer the server forever or fail silently.
func TestRevokerRefused(t *testing.T) {
	as := oauthtest.Start(t)
	v := realVerifier(t, as, func(c *oauth.Config) {
		c.Revocation.Enabled = true
		c.Introspection.ClientSecret = "wrong"
	})
	store := control.NewStore()
	sink := &actionLog{}
	runRevoker(t, v, store, sink)
	tok := as.Login(t, resource, "mcp:tools").AccessToken
	if _, err := v.Verify(bearerRequest(tok)); err != nil {
		t.Fatal(err)
	}
	jti := func() string {
		c := jwt.MapClaims{}
		_, _, _ = jwt.NewParser().ParseUnverified(tok, c)
		s, _ := c["jti"].(string)
		return s
	}()
	putControl(t, store, event.Control{Schema: event.SchemaVersion, ID: event.NewID(), Time: time.Now(),
		Kind: event.ControlRevoke, Scope: event.ScopeToken, Tenant: "acme", Value: jti, Reason: "stolen"})
	a := sink.waitFor(t, 1, 5*time.Second)[0]
	if a.Status != "failed" || a.Attempts != 1 || !strings.Contains(a.Detail, "status 401") ||
		!strings.Contains(a.Detail, "invalid_client") || a.Target != "token:"+jti {
		t.Fatalf("refused revocation recorded as %+v", a)
	}
	before := as.Revocations()
	putControl(t, store, event.Control{Schema: event.SchemaVersion, ID: "other", Time: time.Now(),
		Kind: event.ControlStepUp, Scope: event.ScopeSubject, Tenant: "acme", Value: "x"}) // any change wakes it
	time.Sleep(200 * time.Millisecond)
	if as.Revocations() != before || len(sink.all()) != 1 {
		t.Fatalf("asked again for the same control: %d requests, %d actions", as.Revocations()-before, len(sink.all()))
	}
	if !as.Active(t, tok) {
		t.Fatal("the provider revoked for a client whose secret was wrong")
	}
}

// TestActionIDDeterministic: the action id depends on the control and the token only. If it
// failed, a retried or redelivered revocation would be two actions downstream.
func TestActionIDDeterministic(t *testing.T) {
	h1, h2 := [32]byte{1}, [32]byte{2}
	first := oauth.ActionID("c1", h1)
	if oauth.ActionID("c1", h1) != first || first == oauth.ActionID("c1", h2) ||
		oauth.ActionID("c1", h1) == oauth.ActionID("c2", h1) {
		t.Fatal("action ids are not a function of control and token")
	}
	var u struct{ ID string }
	_ = json.Unmarshal([]byte(`{"ID":"`+oauth.ActionID("c", h1)+`"}`), &u)
	if len(u.ID) != 36 || u.ID[14] != '5' {
		t.Fatalf("%q is not a UUIDv5", u.ID)
	}
}
