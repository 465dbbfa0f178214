package mcp

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp/oauth/oauthtest"
	"github.com/mcpwatch/mcpwatch/internal/scores"
)

const stepUpPolicy = `version: 1
rules:
  - id: list
    resource: "tool:files/*"
    actions: [list]
  - id: echo-fresh-login
    resource: "tool:files/echo"
    actions: [call]
    conditions:
      max_auth_age: 10m
  - id: fail-risky
    resource: "tool:files/fail"
    actions: [call]
    conditions:
      - step_up_risk: 50
        step_up_auth: [mfa]
        step_up_max_age: 5m
`

const callEcho = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`

// checkStepUpChallenge asserts RFC 9470's answer: 401 with insufficient_user_authentication and
// max_age in seconds, naming the resource metadata.
func checkStepUpChallenge(t *testing.T, r rawResp, maxAge string) {
	t.Helper()
	ch := r.header.Get("WWW-Authenticate")
	if r.status != http.StatusUnauthorized || !strings.HasPrefix(ch, `Bearer error="insufficient_user_authentication"`) ||
		!strings.Contains(ch, `max_age="`+maxAge+`"`) || !strings.Contains(ch, `resource_metadata="`) {
		t.Fatalf("status %d, WWW-Authenticate %q; want 401 insufficient_user_authentication max_age=%s", r.status, ch, maxAge)
	}
}

// Step-up by authentication age, end to end with zitadel's OpenID Provider: the user's single
// sign-on session is an hour old, so a token from a plain authorization-code + PKCE login carries
// that auth_time, and a tool whose rule says max_auth_age: 10m answers 401
// insufficient_user_authentication with max_age=600 (RFC 9470). The client logs in again with
// max_age and prompt=login, as the challenge asks; the provider authenticates afresh and the new
// token passes, through the official SDK client. The risk-based step-up (step_up_risk) answers
// the same challenge with its own max_age, and a fresh MFA login satisfies it. If this failed,
// old logins would reach sensitive tools, or clients could not tell how to step up.
func TestOAuthStepUpAuthTime(t *testing.T) {
	up := newUpstream(t, true)
	risk := scores.NewStore()
	f := newOAuthGateway(t, up, func(c *Config) {
		c.Policy, c.Scores = loadPolicy(t, stepUpPolicy), risk
	})
	f.as.SetAuthAge(time.Hour)
	old := f.as.Login(t, f.resource, "mcp:read", "mcp:tools")

	checkStepUpChallenge(t, f.post(t, old.AccessToken, callEcho), "600")
	d := lastDenied(t, f.events.all())
	if d.Outcome.PolicyRule != "echo-fresh-login" || !strings.Contains(d.Outcome.Reason, "within 10m0s") ||
		d.Principal.Subject != oauthtest.Subject || d.Attributes[attrPolicyEffect] != "step_up" {
		t.Fatalf("step-up audited as %+v %+v", d.Outcome, d.Attributes)
	}
	if up.hits.Load() != 0 {
		t.Fatal("the stale token's call reached the upstream")
	}

	fresh := f.as.StepUpLogin(t, f.resource, 10*time.Minute, "mcp:read", "mcp:tools", "mcp:admin")
	cs := f.connect(t, clientOpts{token: fresh.AccessToken})
	if res, err := echo(t, cs, "fresh"); err != nil || res.IsError {
		t.Fatalf("fresh login: %v %+v", err, res)
	}
	evs := f.events.waitFor(t, "the allowed call", has(event.DirResponse, "tools/call", 1))
	if e := lastRequest(evs, "echo"); e.Outcome.Result != event.ResultAllowed || e.Outcome.PolicyRule != "echo-fresh-login" {
		t.Fatalf("fresh call audited as %+v", e.Outcome)
	}

	// Risk above step_up_risk: the same RFC 9470 challenge, max_age from step_up_max_age. The
	// fresh password login is not enough (the rule wants mfa); a fresh MFA login is.
	risk.Set("acme", oauthtest.Subject, scores.Entry{Score: 70})
	callFail := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"fail"}}`
	checkStepUpChallenge(t, f.post(t, fresh.AccessToken, callFail), "300")
	if d := lastDenied(t, f.events.all()); d.Outcome.PolicyRule != "fail-risky" || !strings.Contains(d.Outcome.Reason, "risk 70") {
		t.Fatalf("risk step-up audited as %+v", d.Outcome)
	}
	f.as.SetAMR("pwd", "mfa")
	mfa := f.as.StepUpLogin(t, f.resource, 5*time.Minute, "mcp:read", "mcp:tools", "mcp:admin")
	r := f.post(t, mfa.AccessToken, callFail, "Mcp-Protocol-Version", "2025-06-18")
	// The tool itself fails ("disk on fire"): what matters is that the gateway let it through.
	if r.status != http.StatusOK || !strings.Contains(r.body, "disk on fire") {
		t.Fatalf("fresh MFA login: %d %s", r.status, r.body)
	}
}

// A step-up control (kind step_up from the control topic) on the subject, against zitadel's
// OpenID Provider: the subject's token from an hour-old login is answered with RFC 9470's
// challenge (401 insufficient_user_authentication, max_age = the seconds since the control) and
// never reaches the upstream; a fresh login without the demanded amr (mfa) is still refused; a
// fresh MFA login after the control passes; the old token passes again once the control has
// expired. If it failed, a playbook's or operator's step-up would either lock the user out for
// good or be satisfied by the very session it distrusts.
func TestStepUpControl(t *testing.T) {
	up := newUpstream(t, true)
	f := newOAuthGateway(t, up, func(c *Config) { c.StepUp = StepUpDemand{AMR: []string{"mfa"}} })
	f.as.SetAuthAge(time.Hour)
	old := f.as.Login(t, f.resource, "mcp:read", "mcp:tools")
	if r := f.post(t, old.AccessToken, callEcho, "Mcp-Protocol-Version", "2025-06-18"); r.status != http.StatusOK {
		t.Fatalf("before the control: %d %s", r.status, r.body)
	}
	hits := up.hits.Load()

	exp := time.Now().Add(4 * time.Second)
	ctl := event.Control{ID: event.NewID(), Time: time.Now(), Kind: event.ControlStepUp, Scope: event.ScopeSubject,
		Tenant: "acme", Value: oauthtest.Subject, Reason: "impossible travel", Actor: "operator:carol", Expires: &exp}
	b, err := event.Encode(&ctl)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.Apply([]byte(ctl.Key()), b); err != nil {
		t.Fatal(err)
	}
	r := f.post(t, old.AccessToken, callEcho)
	ch := r.header.Get("WWW-Authenticate")
	if r.status != http.StatusUnauthorized || !strings.HasPrefix(ch, `Bearer error="insufficient_user_authentication"`) ||
		!strings.Contains(ch, `max_age="1"`) || !strings.Contains(ch, "resource_metadata=") {
		t.Fatalf("old login under a step-up control: %d %q", r.status, ch)
	}
	d := lastDenied(t, f.events.all())
	if d.Outcome.PolicyRule != "control:"+ctl.Key() || !strings.Contains(d.Outcome.Reason, "impossible travel") {
		t.Fatalf("step-up audited as %+v", d.Outcome)
	}
	if up.hits.Load() != hits {
		t.Fatal("a call held for step-up reached the upstream")
	}

	time.Sleep(1100 * time.Millisecond) // auth_time has whole seconds: log in a second after the control
	pwd := f.as.StepUpLogin(t, f.resource, time.Second, "mcp:read", "mcp:tools")
	if r := f.post(t, pwd.AccessToken, callEcho); r.status != http.StatusUnauthorized {
		t.Fatalf("fresh login without mfa: %d %s", r.status, r.body)
	}
	f.as.SetAMR("pwd", "mfa")
	mfa := f.as.StepUpLogin(t, f.resource, time.Second, "mcp:read", "mcp:tools")
	if r := f.post(t, mfa.AccessToken, callEcho, "Mcp-Protocol-Version", "2025-06-18"); r.status != http.StatusOK {
		t.Fatalf("fresh MFA login after the control: %d %s", r.status, r.body)
	}

	time.Sleep(time.Until(exp) + 50*time.Millisecond)
	if r := f.post(t, old.AccessToken, callEcho, "Mcp-Protocol-Version", "2025-06-18"); r.status != http.StatusOK {
		t.Fatalf("old login after the control expired: %d %s", r.status, r.body)
	}
}
