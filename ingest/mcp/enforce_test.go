package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcpwire"
	"github.com/mcpwatch/mcpwatch/internal/scores"
	"github.com/mcpwatch/mcpwatch/policy"
)

const testPolicy = `version: 1
rules:
  - id: analysts-echo
    resource: "tool:files/echo"
    actions: [call]
    principals: [role:analyst]
    conditions:
      - ip_range: "127.0.0.0/8"
      - step_up_risk: 50
      - max_risk: 90
  - id: analysts-list
    resource: "tool:files/*"
    actions: [list]
    principals: [role:analyst]
  - id: fail-from-office
    resource: "tool:files/fail"
    actions: [call]
    principals: [role:analyst]
    conditions:
      - ip_range: "192.168.1.0/24"
`

func loadPolicy(t *testing.T, src string) *policy.Policy {
	t.Helper()
	p, err := policy.Load(strings.NewReader(src), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func policyFixture(t *testing.T, risk *scores.Store) *fixture {
	t.Helper()
	return newFixture(t, newUpstream(t, false), func(c *Config) {
		c.Policy = loadPolicy(t, testPolicy)
		if risk != nil {
			c.Scores = risk
		}
	})
}

func rpcCode(t *testing.T, err error) int64 {
	t.Helper()
	var we *jsonrpc.Error
	if !errors.As(err, &we) {
		t.Fatalf("want a JSON-RPC error, got %v", err)
	}
	return we.Code
}

// lastRequest is the last request event for tools/call of tool.
func lastRequest(evs []*event.Event, tool string) *event.Event {
	var out *event.Event
	for _, e := range find(evs, event.DirRequest, "tools/call") {
		if e.MCP.Tool == tool {
			out = e
		}
	}
	return out
}

// Zero trust end to end with the official SDK on both sides: an allowed call reaches the
// upstream and its audit event names the allowing rule; a call no rule allows for the principal,
// or from outside a rule's network, is refused with the gateway's JSON-RPC error, never forwarded,
// and audited as denied naming the deciding rule and why. If this failed, the policy engine would
// be configured but not in the request path, or its decisions would not be auditable.
func TestPolicyAllowAndDeny(t *testing.T) {
	f := policyFixture(t, scores.NewStore())
	alice := f.connect(t, clientOpts{token: aliceToken})
	if _, err := alice.ListTools(callCtx(t), nil); err != nil {
		t.Fatalf("tools/list allowed by analysts-list: %v", err)
	}
	// The store has no score for alice: the rule's step_up_risk makes an unknown risk a step-up,
	// so give her a low one.
	f.gw.cfg.Scores.(*scores.Store).Set("acme", "alice", scores.Entry{Score: 3})
	if _, err := echo(t, alice, "hello"); err != nil {
		t.Fatalf("allowed call failed: %v", err)
	}
	evs := f.events.waitFor(t, "allowed echo", has(event.DirResponse, "tools/call", 1))
	e := lastRequest(evs, "echo")
	if e.Outcome.Result != event.ResultAllowed || e.Outcome.PolicyRule != "analysts-echo" || e.Attributes[attrPolicyEffect] != "allow" {
		t.Fatalf("allowed request event: %+v %v", e.Outcome, e.Attributes)
	}
	for _, e := range find(evs, event.DirRequest, "initialize") {
		if e.Attributes[attrPolicyEffect] != "ungoverned" {
			t.Fatalf("initialize not marked ungoverned: %v", e.Attributes)
		}
	}

	// Outside the rule's CIDR.
	hits := f.up.hits.Load()
	_, err := alice.CallTool(callCtx(t), &sdk.CallToolParams{Name: "fail", Arguments: map[string]any{}})
	if code := rpcCode(t, err); code != CodeDenied {
		t.Fatalf("code %d, want %d", code, CodeDenied)
	}
	if f.up.hits.Load() != hits {
		t.Fatal("denied call reached the upstream")
	}
	evs = f.events.all()
	e = lastRequest(evs, "fail")
	if e.Outcome.Result != event.ResultDenied || e.Outcome.PolicyRule != policy.DefaultDenyRule ||
		!strings.Contains(e.Outcome.Reason, "rule fail-from-office requires ip in 192.168.1.0/24, got 127.0.0.1") ||
		e.Outcome.HTTPStatus != http.StatusForbidden || e.Outcome.ErrorCode != CodeDenied {
		t.Fatalf("denied event: %+v", e.Outcome)
	}

	// Wrong role: bob has none.
	bob := f.connect(t, clientOpts{token: bobToken})
	_, err = echo(t, bob, "hi")
	if code := rpcCode(t, err); code != CodeDenied {
		t.Fatalf("bob: code %d", code)
	}
	e = lastRequest(f.events.all(), "echo")
	if e.Outcome.Result != event.ResultDenied || e.Outcome.PolicyRule != policy.DefaultDenyRule ||
		!strings.Contains(e.Outcome.Reason, "for sub bob") {
		t.Fatalf("bob's denied event: %+v", e.Outcome)
	}
	if got := metricValue(t, f.reg, "mcpwatch_gateway_denied_total", "reason", denyPolicy); got != 2 {
		t.Fatalf("policy denials metric = %v, want 2", got)
	}
}

// The detectors' live score reaches the policy: above max_risk the call is denied by the rule that
// would otherwise allow it, between step_up_risk and max_risk it needs a step-up (403 without an
// OAuth authorization server to step up with). If this failed, a principal the detectors flag
// would keep its access until the responder revoked it.
func TestPolicyRiskFromScores(t *testing.T) {
	risk := scores.NewStore()
	f := policyFixture(t, risk)
	alice := f.connect(t, clientOpts{token: aliceToken})

	risk.Set("acme", "alice", scores.Entry{Score: 95})
	_, err := echo(t, alice, "x")
	if code := rpcCode(t, err); code != CodeDenied {
		t.Fatalf("high risk: code %d", code)
	}
	e := lastRequest(f.events.all(), "echo")
	if e.Outcome.Result != event.ResultDenied || e.Outcome.PolicyRule != "analysts-echo" ||
		!strings.Contains(e.Outcome.Reason, "allows risk up to 90, sub alice has 95") {
		t.Fatalf("high-risk event: %+v", e.Outcome)
	}

	risk.Set("acme", "alice", scores.Entry{Score: 60})
	r := f.post(t, aliceToken, `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`)
	if r.status != http.StatusForbidden || !strings.Contains(r.body, "step-up required") {
		t.Fatalf("step-up: %d %s", r.status, r.body)
	}
	e = lastRequest(f.events.all(), "echo")
	if e.Outcome.Result != event.ResultDenied || e.Outcome.PolicyRule != "analysts-echo" || e.Attributes[attrPolicyEffect] != "step_up" {
		t.Fatalf("step-up event: %+v %v", e.Outcome, e.Attributes)
	}
}

// Personal data in tool arguments never leaves the gateway: the e-mail address and the card
// number (Luhn-valid) must appear in no published event, in any field, while the event still
// says what was found and carries the masked arguments. If this failed, the audit trail itself
// would become a store of personal data.
func TestMaskingBeforePublish(t *testing.T) {
	const email, card = "jane.doe@example.com", "4111 1111 1111 1111"
	f := newFixture(t, newUpstream(t, false))
	cs := f.connect(t, clientOpts{token: aliceToken})
	if _, err := echo(t, cs, "mail "+email+" card "+card); err != nil {
		t.Fatal(err)
	}
	// A refused request's arguments are masked as well.
	r := f.post(t, aliceToken, `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"x","arguments":{"to":"`+email+`"}}}`,
		headerName, "y")
	if r.status != http.StatusBadRequest {
		t.Fatalf("header mismatch: %d", r.status)
	}
	evs := f.events.waitFor(t, "the echo response", has(event.DirResponse, "tools/call", 1))
	for _, e := range evs {
		b, err := event.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		// The card's digits, spaced or not ("4111" alone is also a port number now and then).
		if bytes.Contains(b, []byte(email)) || bytes.Contains(b, []byte(card)) || bytes.Contains(b, []byte("4111111111111111")) ||
			bytes.Contains(b, []byte("1111 1111")) {
			t.Fatalf("personal data in a published event: %s", b)
		}
	}
	e := lastRequest(evs, "echo")
	if e.PII["email"] != 1 || e.PII["card"] != 1 || len(e.PII) != 2 {
		t.Fatalf("PII counts %v, want email 1 and card 1", e.PII)
	}
	var args map[string]string
	if err := json.Unmarshal([]byte(e.MCP.ArgumentsMasked), &args); err != nil || args["text"] != "mail [EMAIL] card [CARD]" {
		t.Fatalf("arguments_masked %q (%v)", e.MCP.ArgumentsMasked, err)
	}
	if strings.Join(e.DataClasses, ",") != mcpwire.ClassPII {
		t.Fatalf("data classes %v, want [pii]", e.DataClasses)
	}
}

// Arguments are cut after masking: the stored text is bounded, valid UTF-8, and flagged.
func TestArgumentsMaskedBounded(t *testing.T) {
	f := newFixture(t, newUpstream(t, false))
	cs := f.connect(t, clientOpts{token: aliceToken})
	long := strings.Repeat("가", 3000) + " bob@example.org"
	if _, err := echo(t, cs, long); err != nil {
		t.Fatal(err)
	}
	e := lastRequest(f.events.all(), "echo")
	if len(e.MCP.ArgumentsMasked) > mcpwire.MaxArgumentsMasked || e.Attributes[mcpwire.AttrArgumentsCut] != "true" || e.PII["email"] != 1 {
		t.Fatalf("len %d attrs %v pii %v", len(e.MCP.ArgumentsMasked), e.Attributes, e.PII)
	}
	if _, err := event.Encode(e); err != nil {
		t.Fatal(err)
	}
}

// The client behind a trusted proxy, end to end with the SDK client: its forwarded address is the
// events' source (the proxy beside it) and the one policy ip_range conditions see, its User-Agent
// is on every event, and without the proxy being trusted the same headers change nothing. A
// prepended hop does not let a client choose its address. If this failed, behind a load balancer
// every call would come from the balancer (IP conditions useless, stolen-token detection blind),
// or a client could pick the address policy believes.
func TestTrustedProxySource(t *testing.T) {
	const pol = `version: 1
rules:
  - id: office-echo
    resource: "tool:files/echo"
    actions: [call]
    principals: [role:analyst]
    conditions:
      - ip_range: "192.168.1.0/24"
`
	const ua = "agent-test/1.0 (linux)"
	for _, tc := range []struct {
		name    string
		trusted []string
		xff     string
		src     string // the events' source address
		proxy   string
		allowed bool
	}{
		{"untrusted peer: headers ignored", nil, "192.168.1.50", "127.0.0.1", "", false},
		{"peer not among the trusted", []string{"10.0.0.0/8"}, "192.168.1.50", "127.0.0.1", "", false},
		{"trusted proxy", []string{"127.0.0.1"}, "192.168.1.50", "192.168.1.50", "127.0.0.1", true},
		{"spoofed prepend", []string{"127.0.0.0/8"}, "192.168.1.50, 203.0.113.9", "203.0.113.9", "127.0.0.1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, newUpstream(t, false), func(c *Config) {
				c.Policy = loadPolicy(t, pol)
				for _, s := range tc.trusted {
					p, err := ParseTrustedProxy(s)
					if err != nil {
						t.Fatal(err)
					}
					c.TrustedProxies = append(c.TrustedProxies, p)
				}
			})
			cs := f.connect(t, clientOpts{token: aliceToken, header: http.Header{"X-Forwarded-For": {tc.xff}, "User-Agent": {ua}}})
			_, err := echo(t, cs, "hi")
			if tc.allowed != (err == nil) {
				t.Fatalf("echo: %v, want allowed %v", err, tc.allowed)
			}
			evs := f.events.all()
			if e := lastRequest(evs, "echo"); e == nil || (e.Outcome.PolicyRule == "office-echo") != tc.allowed {
				t.Fatalf("echo's event: %+v", e)
			}
			if len(evs) < 3 {
				t.Fatalf("only %d events", len(evs))
			}
			for _, e := range evs {
				n := e.Network
				if n.SrcIP != tc.src || n.Proxy != tc.proxy || n.UserAgent != ua || (tc.proxy != "" && n.SrcPort != 0) || n.DstIP == "" {
					t.Fatalf("%s %s event network %+v", e.MCP.Direction, e.MCP.Method, n)
				}
			}
			if got := metricValue(t, f.reg, "mcpwatch_gateway_forwarded_total", "result", string(fwdXFF)); (got > 0) != (tc.proxy != "") {
				t.Fatalf("forwarded metric %v", got)
			}
		})
	}
}

// The unauthenticated limit counts per forwarded client behind a trusted proxy, not per proxy:
// else one client guessing tokens would lock out everyone behind the same load balancer.
func TestTrustedProxyUnauthLimit(t *testing.T) {
	f := newFixture(t, newUpstream(t, true), func(c *Config) {
		c.Unauthenticated = UnauthLimit{Rate: 0.01, Burst: 1}
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	ping := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	for i, tc := range []struct {
		fwd    string
		status int
	}{
		{`for="[2001:db8::1]:4711"`, http.StatusUnauthorized},
		{`for=198.51.100.1`, http.StatusUnauthorized},
		{`for="[2001:db8::1]:4712"`, http.StatusTooManyRequests}, // the same client
		{`for=_hidden`, http.StatusUnauthorized},                 // the proxy stands as the source
	} {
		if r := f.post(t, "", ping, "Forwarded", tc.fwd); r.status != tc.status {
			t.Fatalf("request %d (%s): status %d, want %d", i, tc.fwd, r.status, tc.status)
		}
	}
	var srcs []string
	for _, e := range f.events.all() {
		srcs = append(srcs, e.Network.SrcIP+"|"+e.Network.Proxy)
	}
	want := []string{"2001:db8::1|127.0.0.1", "198.51.100.1|127.0.0.1", "2001:db8::1|127.0.0.1", "127.0.0.1|"}
	if !slices.Equal(srcs, want) {
		t.Fatalf("event sources %v, want %v", srcs, want)
	}
	if got := metricValue(t, f.reg, "mcpwatch_gateway_forwarded_total", "result", string(fwdObfuscated)); got != 1 {
		t.Fatalf("obfuscated metric %v", got)
	}
}
