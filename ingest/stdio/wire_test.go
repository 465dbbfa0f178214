package stdio

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/policy"
)

// resourceURICases are the URIs every source must record masked (as the gateway's test).
var resourceURICases = []struct {
	uri, want string
	secret    string // what must appear in no published event
}{
	{"https://api.example.com/report?access_token=s3cr3tT0ken", "https://api.example.com/report?access_token=[REDACTED]", "s3cr3tT0ken"},
	{"mailto:alice@example.com", "mailto:[EMAIL]", "alice@example.com"},
	{"file:///customers/alice@example.com/x", "file:///customers/[EMAIL]/x", "alice@example.com"},
	{"https://u:hunter2@host/x", "https://host/x", "hunter2"},
}

// TestRelayMasksResourceURIs: the wrapper records resource URIs masked, in the request's event and
// its response's, and the client's name too, while passing the lines through byte for byte. If it
// failed, tokens, passwords and e-mail addresses in URIs would be published by stdio servers'
// wrappers although the gateway masks them.
func TestRelayMasksResourceURIs(t *testing.T) {
	h := startRelay(t, Config{Principal: event.Principal{Subject: "alice"}})
	init := `{"jsonrpc":"2.0","id":"i","method":"initialize","params":{"protocolVersion":"2025-06-18","clientInfo":{"name":"desk of carol@example.com","version":"1"}}}` + "\n"
	h.clientSends(init)
	readLine(t, h.toServer)
	n := 1
	for i, tc := range resourceURICases {
		req := `{"jsonrpc":"2.0","id":` + strconv.Itoa(i) + `,"method":"resources/read","params":{"uri":"` + tc.uri + `"}}` + "\n"
		h.clientSends(req)
		if got := readLine(t, h.toServer); got != req {
			t.Fatalf("server got %q, want %q", got, req)
		}
		h.serverSends(`{"jsonrpc":"2.0","id":` + strconv.Itoa(i) + `.0,"result":{"contents":[]}}` + "\n")
		readLine(t, h.toClient)
		n += 2
		h.rec.nth(t, n)
		evs := h.rec.all()
		req1, resp := evs[n-2], evs[n-1]
		if req1.MCP.ResourceURI != tc.want || len(req1.PII) != 1 || resp.MCP.ResourceURI != tc.want ||
			resp.MCP.Method != "resources/read" || resp.PII != nil {
			t.Errorf("%s: request %q %v, response %q %s %v", tc.uri, req1.MCP.ResourceURI, req1.PII,
				resp.MCP.ResourceURI, resp.MCP.Method, resp.PII)
		}
	}
	for _, e := range h.rec.all() {
		b, err := event.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"s3cr3tT0ken", "alice@example.com", "hunter2", "carol@example.com"} {
			if bytes.Contains(b, []byte(s)) {
				t.Fatalf("%q published: %s", s, b)
			}
		}
		if e.Principal.ClientID != "desk of [EMAIL]" || e.MCP.ClientName != "desk of [EMAIL]" {
			t.Fatalf("client %q / %q", e.Principal.ClientID, e.MCP.ClientName)
		}
	}
}

// TestRelayPolicySeesRealURI: the policy decides on the URI the client sent, the event records it
// masked. If it failed, a rule naming one customer's resources would match masked text and allow
// or deny the wrong customers.
func TestRelayPolicySeesRealURI(t *testing.T) {
	p, err := policy.Load(strings.NewReader(`version: 1
rules:
  - id: alice-folder
    resource: "resource:file:///customers/alice@example.com/**"
    actions: [read]
`), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	h := startRelay(t, Config{Policy: p})
	allowed := `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///customers/alice@example.com/x"}}` + "\n"
	h.clientSends(allowed)
	if got := readLine(t, h.toServer); got != allowed {
		t.Fatalf("server got %q", got)
	}
	h.clientSends(`{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///customers/bob@example.com/x"}}` + "\n")
	if got := readLine(t, h.toClient); !strings.Contains(got, `"id":2,"error"`) || !strings.Contains(got, strconv.Itoa(mcp.CodeDenied)) {
		t.Fatalf("client got %q, want a refusal", got)
	}
	h.rec.nth(t, 2)
	for i, effect := range []string{"allow", "deny"} {
		e := h.rec.all()[i]
		if e.Attributes[mcp.AttrPolicyEffect] != effect || e.MCP.ResourceURI != "file:///customers/[EMAIL]/x" {
			t.Errorf("request %d: effect %q, recorded %q", i+1, e.Attributes[mcp.AttrPolicyEffect], e.MCP.ResourceURI)
		}
	}
}
