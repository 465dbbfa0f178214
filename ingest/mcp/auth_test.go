package mcp

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/mcpwatch/mcpwatch/event"
)

func authRequest(header ...string) *http.Request {
	r, _ := http.NewRequest(http.MethodPost, "http://gw/", nil)
	for _, h := range header {
		r.Header.Add("Authorization", h)
	}
	return r
}

// Static tokens: the right principal for the right token, nothing for anything else, and the
// token itself nowhere in what the gateway keeps or reports.
func TestStaticTokens(t *testing.T) {
	s, err := NewStaticTokens([]StaticToken{
		{Token: aliceToken, Principal: event.Principal{Subject: "alice", Roles: []string{"analyst"}}},
		{SHA256: strings.ToUpper(HashToken(bobToken)), Principal: event.Principal{ClientID: "ci-bot"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Authenticate(authRequest("Bearer " + aliceToken))
	if err != nil || p.Subject != "alice" || p.TokenID != aliceTokenID || p.AuthMethods[0] != "bearer" {
		t.Fatalf("alice: %+v %v", p, err)
	}
	p.Roles[0] = "admin" // callers get copies
	if p, _ := s.Authenticate(authRequest("bearer " + aliceToken)); p.Roles[0] != "analyst" {
		t.Fatal("a caller changed the configured principal")
	}
	if p, err := s.Authenticate(authRequest("Bearer " + bobToken)); err != nil || p.ClientID != "ci-bot" {
		t.Fatalf("bob by hash: %+v %v", p, err)
	}
	for name, tc := range map[string]struct {
		headers []string
		want    error
	}{
		"none":          {nil, ErrNoCredentials},
		"unknown":       {[]string{"Bearer someone-elses-token-123"}, ErrInvalidCredentials},
		"basic":         {[]string{"Basic YWxpY2U6cHc="}, ErrInvalidCredentials},
		"empty bearer":  {[]string{"Bearer "}, ErrInvalidCredentials},
		"two headers":   {[]string{"Bearer " + aliceToken, "Bearer " + bobToken}, ErrInvalidCredentials},
		"hash as token": {[]string{"Bearer " + HashToken(aliceToken)}, ErrInvalidCredentials},
		"token id":      {[]string{"Bearer " + aliceTokenID}, ErrInvalidCredentials},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := s.Authenticate(authRequest(tc.headers...)); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if strings.Contains(aliceTokenID, HashToken(aliceToken)[:8]) || len(aliceTokenID) != len("tok_")+16 {
		t.Fatalf("token id %q reveals the stored hash or has the wrong shape", aliceTokenID)
	}
}

func TestStaticTokensConfig(t *testing.T) {
	alice := event.Principal{Subject: "alice"}
	for name, tokens := range map[string][]StaticToken{
		"short token":   {{Token: "short", Principal: alice}},
		"both forms":    {{Token: aliceToken, SHA256: HashToken(aliceToken), Principal: alice}},
		"neither":       {{Principal: alice}},
		"bad hash":      {{SHA256: "abc", Principal: alice}},
		"no principal":  {{Token: aliceToken}},
		"same token 2x": {{Token: aliceToken, Principal: alice}, {SHA256: HashToken(aliceToken), Principal: alice}},
	} {
		if _, err := NewStaticTokens(tokens); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
