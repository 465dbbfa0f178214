package mcp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcpwire"
)

// answeringUpstream is an MCP server that answers every request of a POST with an empty result,
// under the request's id as it was written, or under the ids answer gives for the body.
func answeringUpstream(t *testing.T, answer func(body []byte) []string) *upstream {
	t.Helper()
	up := &upstream{}
	up.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ids []string
		if answer != nil {
			ids = answer(body)
		} else {
			var m struct{ ID json.RawMessage }
			_ = json.Unmarshal(body, &m)
			ids = []string{string(m.ID)}
		}
		parts := make([][]byte, len(ids))
		for i, id := range ids {
			parts[i] = []byte(`{"jsonrpc":"2.0","id":` + id + `,"result":{"contents":[]}}`)
		}
		out := parts[0]
		if answer != nil {
			out = mcpwire.JoinBatch(parts)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	}))
	t.Cleanup(up.srv.Close)
	return up
}

// resourceURICases are the URIs every source must record masked: a token in the query, an
// e-mail address as the whole URI and in a path, and user information with a password.
var resourceURICases = []struct {
	uri, want string
	secret    string // what must appear in no published event
}{
	{"https://api.example.com/report?access_token=s3cr3tT0ken", "https://api.example.com/report?access_token=[REDACTED]", "s3cr3tT0ken"},
	{"mailto:alice@example.com", "mailto:[EMAIL]", "alice@example.com"},
	{"file:///customers/alice@example.com/x", "file:///customers/[EMAIL]/x", "alice@example.com"},
	{"https://u:hunter2@host/x", "https://host/x", "hunter2"},
}

// TestResourceURIsMasked: the gateway records resources/read and subscribe URIs masked, in the
// request's event and in its response's, and counts the findings. If it failed, tokens, passwords
// and e-mail addresses in URIs would reach Kafka, ClickHouse, CEF and the SIEM.
func TestResourceURIsMasked(t *testing.T) {
	f := newFixture(t, answeringUpstream(t, nil))
	for i, tc := range resourceURICases {
		for _, method := range []string{"resources/read", "resources/subscribe"} {
			id := strconv.Itoa(i)
			r := f.post(t, aliceToken, `{"jsonrpc":"2.0","id":`+id+`,"method":"`+method+`","params":{"uri":"`+tc.uri+`"}}`)
			if r.status != http.StatusOK {
				t.Fatalf("%s %s: status %d %s", method, tc.uri, r.status, r.body)
			}
			evs := f.events.waitFor(t, "the response", func(evs []*event.Event) bool {
				for _, e := range find(evs, event.DirResponse, method) {
					if e.Correlation.RequestID == id && e.MCP.ResourceURI == tc.want {
						return true
					}
				}
				return false
			})
			var req *event.Event
			for _, e := range find(evs, event.DirRequest, method) {
				if e.Correlation.RequestID == id {
					req = e
				}
			}
			if req == nil || req.MCP.ResourceURI != tc.want || len(req.PII) != 1 {
				t.Fatalf("%s %s: request event %+v", method, tc.uri, req)
			}
		}
	}
	for _, e := range f.events.all() {
		b, err := event.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range resourceURICases {
			if bytes.Contains(b, []byte(tc.secret)) {
				t.Fatalf("%q published: %s", tc.secret, b)
			}
		}
	}
}

// TestPolicySeesRealURI: masking is for what is recorded; the policy decides on the URI the client
// sent. If it failed, a rule naming a customer's resources would match masked text instead (and
// allow or deny the wrong customers), while the events still record the URI masked.
func TestPolicySeesRealURI(t *testing.T) {
	f := newFixture(t, answeringUpstream(t, nil), func(c *Config) {
		c.Policy = loadPolicy(t, `version: 1
rules:
  - id: alice-folder
    resource: "resource:file:///customers/alice@example.com/**"
    actions: [read]
`)
	})
	for _, tc := range []struct {
		uri    string
		status int
		effect string
	}{
		{"file:///customers/alice@example.com/x", http.StatusOK, "allow"},
		{"file:///customers/bob@example.com/x", http.StatusForbidden, "deny"},
	} {
		r := f.post(t, aliceToken, `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"`+tc.uri+`"}}`)
		if r.status != tc.status {
			t.Fatalf("%s: status %d, want %d (%s)", tc.uri, r.status, tc.status, r.body)
		}
		evs := find(f.events.all(), event.DirRequest, "resources/read")
		e := evs[len(evs)-1]
		if e.Attributes[attrPolicyEffect] != tc.effect || e.MCP.ResourceURI != "file:///customers/[EMAIL]/x" {
			t.Fatalf("%s: effect %q, recorded %q", tc.uri, e.Attributes[attrPolicyEffect], e.MCP.ResourceURI)
		}
	}
}

// pairingCase is a case of ingest/mcpwire/testdata/pairing.json (see there).
type pairingCase struct {
	Name      string
	Requests  []json.RawMessage
	Responses []json.RawMessage
	Want      []int
}

func loadPairingCases(t *testing.T) []pairingCase {
	t.Helper()
	b, err := os.ReadFile("../mcpwire/testdata/pairing.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []pairingCase
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	return cases
}

// TestPairingMatchesBridge drives the shared pairing cases (ids in varied encodings, answered
// under ids a server re-encoded) through the gateway: each case's requests as one batch, answered
// by an upstream with the case's responses. The sandbox bridge's TestPairingMatchesGateway drives
// the same cases through its own pairing, and both must give the cases' results. If it failed,
// the gateway would pair a response with another request than the bridge in front of a sandbox
// does (or than the id's value says), and record a call's outcome under the wrong tool.
func TestPairingMatchesBridge(t *testing.T) {
	var mu sync.Mutex
	var answers []json.RawMessage
	up := answeringUpstream(t, func([]byte) []string {
		mu.Lock()
		defer mu.Unlock()
		ids := make([]string, len(answers))
		for i, a := range answers {
			ids[i] = string(a)
		}
		return ids
	})
	for _, tc := range loadPairingCases(t) {
		t.Run(tc.Name, func(t *testing.T) {
			f := newFixture(t, up)
			mu.Lock()
			answers = tc.Responses
			mu.Unlock()
			reqs := make([]string, len(tc.Requests))
			for i, id := range tc.Requests {
				reqs[i] = fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"method":"tools/call","params":{"name":"t%d"}}`, id, i)
			}
			if r := f.post(t, aliceToken, "["+strings.Join(reqs, ",")+"]"); r.status != http.StatusOK {
				t.Fatalf("status %d %s", r.status, r.body)
			}
			answered := func(e *event.Event) bool { return e.MCP.Direction == event.DirResponse && e.Outcome.Reason == "" }
			evs := f.events.waitFor(t, "the answers", func(evs []*event.Event) bool {
				n := 0
				for _, e := range evs {
					if answered(e) {
						n++
					}
				}
				return n == len(tc.Responses)
			})
			got := make([]int, 0, len(tc.Responses))
			for _, e := range evs {
				switch {
				case !answered(e):
					// requests; and requests left unanswered, audited when the response ends
				case e.Attributes[mcpwire.AttrUnmatched] == "true":
					got = append(got, -1)
				default:
					n, err := strconv.Atoi(strings.TrimPrefix(e.MCP.Tool, "t"))
					if err != nil {
						t.Fatalf("paired with %q", e.MCP.Tool)
					}
					got = append(got, n)
				}
			}
			if !slices.Equal(got, tc.Want) {
				t.Fatalf("paired %v, want %v\n%s", got, tc.Want, dump(evs))
			}
		})
	}
}

// TestSandboxedURIsMasked: behind a route to a sandboxed stdio server (the sandbox bridge), the
// gateway records resource URIs masked as for any upstream, the sandbox named on the events, and
// the bridge delivers each answer to its request (the call returns, paired). If it failed, the
// sandbox path would publish URIs unmasked or lose the answers of resource requests.
func TestSandboxedURIsMasked(t *testing.T) {
	requireSandboxes(t)
	bridge := goStdioBridge(t, newSandboxManager(t), "local")
	f := newRouterFixture(t, []Route{{Name: "local", Prefix: "/local/mcp", Bridge: bridge}})
	cs := f.connect(t, "/local/mcp", clientOpts{token: aliceToken})
	for _, tc := range resourceURICases {
		// The server has no resources: it answers with an error, audited all the same.
		if _, err := cs.ReadResource(callCtx(t), &sdk.ReadResourceParams{URI: tc.uri}); err == nil {
			t.Fatalf("%s: read succeeded", tc.uri)
		}
	}
	evs := f.events.waitFor(t, "the answers", has(event.DirResponse, "resources/read", len(resourceURICases)))
	reqs, resps := find(evs, event.DirRequest, "resources/read"), find(evs, event.DirResponse, "resources/read")
	for i, tc := range resourceURICases {
		for _, e := range []*event.Event{reqs[i], resps[i]} {
			if e.MCP.ResourceURI != tc.want || e.Target.Sandbox == "" || e.Target.Sandbox != bridge.SandboxOf(cs.ID()) {
				t.Errorf("%s: %s recorded %q in sandbox %q", tc.uri, e.MCP.Direction, e.MCP.ResourceURI, e.Target.Sandbox)
			}
		}
		if resps[i].Outcome.Result != event.ResultError || resps[i].Attributes[mcpwire.AttrUnmatched] != "" {
			t.Errorf("%s: answer %+v %v", tc.uri, resps[i].Outcome, resps[i].Attributes)
		}
	}
	for _, e := range evs {
		b, _ := event.Encode(e)
		for _, tc := range resourceURICases {
			if bytes.Contains(b, []byte(tc.secret)) {
				t.Fatalf("%q published: %s", tc.secret, b)
			}
		}
	}
}
