package mcphook

import (
	"context"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpwatch/mcpwatch/event"
)

// TestResourceURIsMasked: the hook records resource URIs masked, in the request's event and its
// answer's, like the gateway, and the client's name too. If it failed, a server embedding the hook
// would publish tokens, passwords and e-mail addresses from URIs that the gateway masks.
func TestResourceURIsMasked(t *testing.T) {
	cases := []struct{ uri, want, secret string }{
		{"https://api.example.com/report?access_token=s3cr3tT0ken", "https://api.example.com/report?access_token=[REDACTED]", "s3cr3tT0ken"},
		{"mailto:alice@example.com", "mailto:[EMAIL]", "alice@example.com"},
		{"file:///customers/alice@example.com/x", "file:///customers/[EMAIL]/x", "alice@example.com"},
		{"https://u:hunter2@host/x", "https://host/x", "hunter2"},
	}
	rec := &recorder{}
	s := newServer(t, newHook(t, Config{}, rec), "echoes")
	ctx := context.Background()
	st, ct := sdk.NewInMemoryTransports()
	ss, err := s.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "desk of carol@example.com", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.Close()
		_ = ss.Wait()
	})
	for _, tc := range cases {
		_, _ = cs.ReadResource(ctx, &sdk.ReadResourceParams{URI: tc.uri}) // not found: audited all the same
	}
	reqs := rec.find(event.DirRequest, "resources/read", "")
	resps := rec.find(event.DirResponse, "resources/read", "")
	if len(reqs) != len(cases) || len(resps) != len(cases) {
		t.Fatalf("%d requests, %d responses:\n%s", len(reqs), len(resps), dump(rec.all()))
	}
	for i, tc := range cases {
		if reqs[i].MCP.ResourceURI != tc.want || len(reqs[i].PII) != 1 || resps[i].MCP.ResourceURI != tc.want || resps[i].PII != nil {
			t.Errorf("%s: request %q %v, response %q %v", tc.uri, reqs[i].MCP.ResourceURI, reqs[i].PII,
				resps[i].MCP.ResourceURI, resps[i].PII)
		}
	}
	all := dump(rec.all())
	for _, tc := range append(cases, struct{ uri, want, secret string }{secret: "carol@example.com"}) {
		if strings.Contains(all, tc.secret) {
			t.Fatalf("%q published:\n%s", tc.secret, all)
		}
	}
	if e := reqs[0]; e.MCP.ClientName != "desk of [EMAIL]" {
		t.Errorf("client name %q", e.MCP.ClientName)
	}
}
