package mcpwire

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/mask"
)

func newBuilder(t *testing.T) *Builder {
	t.Helper()
	mk, err := NewMasker(false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Builder{Tenant: "acme", Observer: "gw-1", Server: "files", Route: "/files", Transport: "test", Masker: mk}
}

func parse(t *testing.T, raw string) *Message {
	t.Helper()
	m, err := ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("ParseMessage(%s): %v", raw, err)
	}
	return &m
}

// uriCases are the resource URIs every source must record masked (the gateway's, the stdio
// wrapper's and the hook's tests drive them too).
var uriCases = []struct {
	uri, want string
	pii       map[string]int
	classes   []string
}{
	{"https://api.example.com/v1/report?access_token=abc", "https://api.example.com/v1/report?access_token=[REDACTED]",
		map[string]int{mask.KindField: 1}, []string{ClassSecret}},
	{"mailto:alice@example.com", "mailto:[EMAIL]", map[string]int{mask.KindEmail: 1}, []string{ClassPII}},
	{"file:///customers/alice@example.com/x", "file:///customers/[EMAIL]/x", map[string]int{mask.KindEmail: 1}, []string{ClassPII}},
	{"https://u:p@host/x", "https://host/x", map[string]int{mask.KindField: 1}, []string{ClassSecret}},
}

// TestBuilderMasksResourceURIs: a resource URI reaches Kafka, ClickHouse, CEF and the SIEM in
// every event of its request and response. If it failed, a token in a query string, user
// information or an e-mail address in a path would be recorded as the client sent it, or the
// finding would not be counted and classed as argument findings are.
func TestBuilderMasksResourceURIs(t *testing.T) {
	b := newBuilder(t)
	for _, tc := range uriCases {
		for _, method := range []string{"resources/read", "resources/subscribe", "resources/unsubscribe"} {
			m := parse(t, `{"jsonrpc":"2.0","id":1,"method":"`+method+`","params":{"uri":"`+tc.uri+`"}}`)
			e := b.FromClient(&Context{}, m)
			if e.MCP.ResourceURI != tc.want || !maps.Equal(e.PII, tc.pii) || !slices.Equal(e.DataClasses, tc.classes) {
				t.Errorf("%s %s: uri %q pii %v classes %v; want %q %v %v", method, tc.uri, e.MCP.ResourceURI, e.PII,
					e.DataClasses, tc.want, tc.pii, tc.classes)
			}
			if m.ResourceURI != tc.uri {
				t.Errorf("the message lost the URI as sent: %q", m.ResourceURI)
			}
			// The response's event carries the URI of its request as recorded, not counted again.
			resp := b.FromServer(&Context{}, parse(t, `{"jsonrpc":"2.0","id":1.0,"result":{}}`))
			Pair(resp, PendingOf(e, m, time.Now()))
			if resp.MCP.ResourceURI != tc.want || resp.PII != nil || resp.Correlation.RequestID != "1" {
				t.Errorf("response of %s: uri %q pii %v id %q", tc.uri, resp.MCP.ResourceURI, resp.PII, resp.Correlation.RequestID)
			}
		}
	}
}

// TestBuilderMaskingOff: with masking off ([Config.NoMasking] of the sources) nothing is
// rewritten and arguments stay out of events entirely. If it failed, turning masking off would
// either still alter what is recorded or start recording raw arguments.
func TestBuilderMaskingOff(t *testing.T) {
	b := &Builder{Transport: "test"}
	long := "file:///" + strings.Repeat("a", MaxURILen)
	e := b.FromClient(&Context{}, parse(t, `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"`+long+`"}}`))
	if e.MCP.ResourceURI != long[:MaxURILen] || e.PII != nil {
		t.Errorf("uri %d bytes, pii %v", len(e.MCP.ResourceURI), e.PII)
	}
	e = b.FromClient(&Context{}, parse(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t","arguments":{"to":"bob@example.com"}}}`))
	if e.MCP.ArgumentsMasked != "" || e.Attributes[AttrArgumentBytes] != "24" {
		t.Errorf("arguments %q attributes %v", e.MCP.ArgumentsMasked, e.Attributes)
	}
}

// TestBuilderMasksFreeText: prompt names and the client's name and version are written by the
// client and recorded on events; they are masked with the same masker. Prompt findings count
// like argument findings; the client's name, repeated on every event of a session, does not. If
// it failed, personal data a client puts there would reach the event stream unmasked.
func TestBuilderMasksFreeText(t *testing.T) {
	b := newBuilder(t)
	c := &Context{ClientName: "laptop of bob@example.com", ClientVersion: "1.0 010-1234-5678"}
	e := b.FromClient(c, parse(t, `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"summary for alice@example.com","arguments":{"x":"carol@example.com"}}}`))
	if e.MCP.Prompt != "summary for [EMAIL]" || e.MCP.ClientName != "laptop of [EMAIL]" || e.MCP.ClientVersion != "1.0 [PHONE_KR]" {
		t.Errorf("prompt %q client %q %q", e.MCP.Prompt, e.MCP.ClientName, e.MCP.ClientVersion)
	}
	if e.PII[mask.KindEmail] != 2 || len(e.PII) != 1 || !strings.Contains(e.MCP.ArgumentsMasked, "[EMAIL]") {
		t.Errorf("pii %v arguments %q: want the prompt's and the argument's e-mail counted", e.PII, e.MCP.ArgumentsMasked)
	}
	// A client naming itself in initialize: masked the same, from the message.
	e = b.FromClient(&Context{}, parse(t, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","clientInfo":{"name":"alice@example.com","version":"2"}}}`))
	if e.MCP.ClientName != "[EMAIL]" || e.MCP.ClientVersion != "2" || e.PII != nil {
		t.Errorf("client %q %q pii %v", e.MCP.ClientName, e.MCP.ClientVersion, e.PII)
	}
	// Tool names are kept: quarantines, pins and policies key on them.
	e = b.FromClient(&Context{}, parse(t, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"lookup_4111111111111111"}}`))
	if e.MCP.Tool != "lookup_4111111111111111" {
		t.Errorf("tool %q", e.MCP.Tool)
	}
}

// TestBuilderArguments: arguments are masked, cut after masking and flagged, and their findings
// counted and classed. If it failed, arguments could be recorded unmasked, unbounded, or cut
// through a finding.
func TestBuilderArguments(t *testing.T) {
	b := newBuilder(t)
	e := b.FromClient(&Context{}, parse(t, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"to":"bob@example.com","key":"sk-proj-abc123def456ghi789jkl012"}}}`))
	if e.MCP.ArgumentsMasked != `{"to":"[EMAIL]","key":"[API_KEY]"}` || e.PII[mask.KindEmail] != 1 ||
		!slices.Equal(e.DataClasses, []string{ClassPII, ClassSecret}) {
		t.Errorf("arguments %q pii %v classes %v", e.MCP.ArgumentsMasked, e.PII, e.DataClasses)
	}
	long := strings.Repeat("가", 3000) + " bob@example.org"
	e = b.FromClient(&Context{}, parse(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t","arguments":{"text":"`+long+`"}}}`))
	if len(e.MCP.ArgumentsMasked) > MaxArgumentsMasked || e.Attributes[AttrArgumentsCut] != "true" || e.PII[mask.KindEmail] != 1 {
		t.Errorf("len %d attributes %v pii %v", len(e.MCP.ArgumentsMasked), e.Attributes, e.PII)
	}
}

// TestBuilderDataClasses: configured classes are matched against the target as the client sent
// it, before masking. If it failed, a class configured for a resource whose URI holds an e-mail
// address would never apply.
func TestBuilderDataClasses(t *testing.T) {
	b := newBuilder(t)
	b.DataClasses = map[string][]string{"resource:file:///customers/alice@example.com/x": {"finance"}, "tool:q": {"hr"}}
	e := b.FromClient(&Context{}, parse(t, `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///customers/alice@example.com/x"}}`))
	if !slices.Equal(e.DataClasses, []string{"finance", ClassPII}) {
		t.Errorf("classes %v", e.DataClasses)
	}
	e = b.FromClient(&Context{}, parse(t, `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"q"}}`))
	if !slices.Equal(e.DataClasses, []string{"hr"}) {
		t.Errorf("notification classes %v", e.DataClasses)
	}
}

// TestBuilderRoles: direction, sizes, sender and outcome of each kind of message, as every source
// records them. If it failed, the sources' events would disagree with each other and with what
// detectors expect of a request, a notification or a response.
func TestBuilderRoles(t *testing.T) {
	b := newBuilder(t)
	c := &Context{Principal: event.Principal{Subject: "alice"}, Session: "s1", Sandbox: "sb", TraceID: "t", SpanID: "s",
		ProtocolVersion: "2025-06-18", Network: event.Network{SrcIP: "10.0.0.1"}}
	tp := `"_meta":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}`
	cases := []struct {
		name   string
		client bool
		raw    string
		dir    event.Direction
		size   event.Size
		sender string
		result event.Result
		code   int
	}{
		{"request", true, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x",` + tp + `}}`, event.DirRequest, event.Size{Request: 1}, "", event.ResultAllowed, 0},
		{"client notification", true, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, event.DirNotification, event.Size{Request: 1}, "client", event.ResultAllowed, 0},
		{"client answer", true, `{"jsonrpc":"2.0","id":"s","error":{"code":-1,"message":"no"}}`, event.DirResponse, event.Size{Request: 1}, "client", event.ResultError, -1},
		{"server request", false, `{"jsonrpc":"2.0","id":"s","method":"sampling/createMessage","params":{}}`, event.DirServerRequest, event.Size{Response: 1}, "", event.ResultAllowed, 0},
		{"server notification", false, `{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`, event.DirNotification, event.Size{Response: 1}, "server", event.ResultAllowed, 0},
		{"response", false, `{"jsonrpc":"2.0","id":1,"result":{}}`, event.DirResponse, event.Size{Response: 1}, "", event.ResultAllowed, 0},
	}
	for _, tc := range cases {
		m := parse(t, tc.raw)
		var e *event.Event
		if tc.client {
			e = b.FromClient(c, m)
		} else {
			e = b.FromServer(c, m)
		}
		if tc.size.Request > 0 {
			tc.size.Request = len(tc.raw)
		} else {
			tc.size.Response = len(tc.raw)
		}
		if e.MCP.Direction != tc.dir || e.Size != tc.size || e.Attributes[AttrSender] != tc.sender ||
			e.Outcome.Result != tc.result || e.Outcome.ErrorCode != tc.code {
			t.Errorf("%s: %s %+v sender %q %s %d", tc.name, e.MCP.Direction, e.Size, e.Attributes[AttrSender], e.Outcome.Result, e.Outcome.ErrorCode)
		}
		if e.Tenant != "acme" || e.Observer != "gw-1" || e.Source != event.SourceMCP || e.Target != (event.Target{Server: "files", Route: "/files", Sandbox: "sb"}) ||
			e.Principal.Subject != "alice" || e.Correlation.SessionID != "s1" || e.MCP.Transport != "test" ||
			e.MCP.ProtocolVersion != "2025-06-18" || e.Network.SrcIP != "10.0.0.1" || e.ID == "" {
			t.Errorf("%s: context not carried: %+v", tc.name, e)
		}
		wantTrace := "t"
		if strings.Contains(tc.raw, "traceparent") {
			wantTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		}
		if e.Correlation.TraceID != wantTrace {
			t.Errorf("%s: trace %q, want %q", tc.name, e.Correlation.TraceID, wantTrace)
		}
	}
}

// TestAnswer: the outcome of a response from its message and the answered method. If it failed,
// failed tool calls would be audited as allowed, or tool-definition changes go unseen.
func TestAnswer(t *testing.T) {
	b := newBuilder(t)
	e := b.FromServer(&Context{}, parse(t, `{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}`))
	Answer(e, parse(t, `{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}`), "tools/call")
	if e.Outcome.Result != event.ResultError || e.Outcome.Reason != "tool reported an error" {
		t.Errorf("tool error: %+v", e.Outcome)
	}
	e = b.FromServer(&Context{}, parse(t, `{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"x"}}`))
	Answer(e, parse(t, `{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"x"}}`), "tools/call")
	if e.Outcome.Result != event.ResultError || e.Outcome.ErrorCode != -32602 || e.Outcome.Reason != "" {
		t.Errorf("error: %+v", e.Outcome)
	}
	m := parse(t, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25"}}`)
	e = b.FromServer(&Context{ProtocolVersion: "2025-06-18"}, m)
	if ri := Answer(e, m, "initialize"); ri.ProtocolVersion != "2025-11-25" || e.MCP.ProtocolVersion != "2025-11-25" {
		t.Errorf("negotiated %q, event %q", ri.ProtocolVersion, e.MCP.ProtocolVersion)
	}
}

// TestMaskReason: reasons may quote client input. If it failed, an e-mail address quoted in a
// refusal reason would be published.
func TestMaskReason(t *testing.T) {
	b := newBuilder(t)
	e := b.Unanswered(&Context{}, "7", Pending{Method: "resources/read", Start: time.Now()},
		event.Outcome{Result: event.ResultError, Reason: "no resource for bob@example.com"})
	b.MaskReason(e)
	if e.Outcome.Reason != "no resource for [EMAIL]" || e.Correlation.RequestID != "7" || e.MCP.Method != "resources/read" {
		t.Errorf("%+v %+v", e.Outcome, e.MCP)
	}
}
