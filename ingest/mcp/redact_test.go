package mcp

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcpwire"
	"github.com/mcpwatch/mcpwatch/internal/mask"
	"github.com/mcpwatch/mcpwatch/internal/testenv"
)

const (
	piiText    = "owner kim@example.com, phone 010-1234-5678, rrn 900101-1234567"
	secretText = "key sk-proj-abc123def456ghi789jkl012 for kim@example.com"
)

// newPIIUpstream is a real MCP server from the official SDK whose tools answer with personal data
// and secrets, in text content and in structuredContent.
func newPIIUpstream(t *testing.T, opts *sdk.StreamableHTTPOptions) *upstream {
	t.Helper()
	u := &upstream{release: make(chan struct{})}
	s := sdk.NewServer(&sdk.Implementation{Name: "crm", Version: "1.0.0"}, nil)
	obj := &sdk.Tool{InputSchema: json.RawMessage(`{"type":"object"}`)}
	tool := func(name string, res *sdk.CallToolResult) {
		t := *obj
		t.Name = name
		s.AddTool(&t, func(context.Context, *sdk.CallToolRequest) (*sdk.CallToolResult, error) { return res, nil })
	}
	tool("lookup", &sdk.CallToolResult{
		Content: []sdk.Content{&sdk.TextContent{Text: piiText}},
		StructuredContent: map[string]any{"email": "kim@example.com", "card": 4111111111111111,
			"token": "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "note": "ok"},
	})
	tool("creds", &sdk.CallToolResult{
		Content:           []sdk.Content{&sdk.TextContent{Text: secretText}},
		StructuredContent: map[string]any{"password": "hunter2", "user": "kim"},
	})
	tool("plain", &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: piiText}}})
	tool("big", &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: strings.Repeat("x", 20000) + " kim@example.com"}}})
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, opts)
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

var redactRules = []RedactRule{
	{Tool: "lookup", Redact: []string{mcpwire.ClassPII}},
	{Server: "files", Tool: "creds", Redact: []string{mcpwire.ClassSecret}},
	{Server: "elsewhere", Tool: "plain", Redact: []string{mcpwire.ClassPII}}, // another upstream's rule
	{Tool: "big", Redact: []string{"email"}},
}

// transports are the upstream's two ways of answering a POST: an event stream on a stateful
// session (the SDK's default) and a plain JSON body without sessions.
var transports = []struct {
	name string
	opts *sdk.StreamableHTTPOptions
}{
	{"sse", nil},
	{"json", &sdk.StreamableHTTPOptions{Stateless: true, JSONResponse: true}},
}

func callTool(t *testing.T, cs *sdk.ClientSession, name string) (*sdk.CallToolResult, error) {
	t.Helper()
	return cs.CallTool(callCtx(t), &sdk.CallToolParams{Name: name})
}

func responseOf(evs []*event.Event, tool string) *event.Event {
	for _, e := range find(evs, event.DirResponse, "tools/call") {
		if e.MCP.Tool == tool {
			return e
		}
	}
	return nil
}

// The Go SDK client calls tools through the gateway whose results carry personal data and
// secrets: with redaction configured for a tool, the client gets the result with exactly the
// chosen classes replaced — in text content and structuredContent, over SSE and JSON — and the
// response's event counts each kind. A tool without a rule is relayed untouched. If this failed,
// personal data would reach the agent that the operator chose to keep from it, or the redaction
// would go unaudited, or rewritten responses would break the client (length, framing).
func TestRedactToolResults(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			f := newFixture(t, newPIIUpstream(t, tr.opts), func(c *Config) { c.Redact = redactRules })
			cs := f.connect(t, clientOpts{token: aliceToken})

			res, err := callTool(t, cs, "lookup")
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Content[0].(*sdk.TextContent).Text; got != "owner [EMAIL], phone [PHONE_KR], rrn [RRN_KR]" {
				t.Errorf("lookup text %q", got)
			}
			sc, _ := res.StructuredContent.(map[string]any)
			want := map[string]any{"email": "[EMAIL]", "card": "[CARD]", "token": "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "note": "ok"}
			if !maps.Equal(sc, want) {
				t.Errorf("lookup structuredContent %v, want %v (pii only: the token stays)", sc, want)
			}

			res, err = callTool(t, cs, "creds")
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Content[0].(*sdk.TextContent).Text; got != "key [API_KEY] for kim@example.com" {
				t.Errorf("creds text %q (secret only: the e-mail stays)", got)
			}
			if sc, _ := res.StructuredContent.(map[string]any); !maps.Equal(sc, map[string]any{"password": "[REDACTED]", "user": "kim"}) {
				t.Errorf("creds structuredContent %v", sc)
			}

			res, err = callTool(t, cs, "plain")
			if err != nil || res.Content[0].(*sdk.TextContent).Text != piiText {
				t.Errorf("plain (no rule for this server): %v %+v", err, res)
			}

			evs := f.events.waitFor(t, "three responses", has(event.DirResponse, "tools/call", 3))
			checkCommon(t, evs, "alice")
			checkPaired(t, evs)
			lookup, creds, plain := responseOf(evs, "lookup"), responseOf(evs, "creds"), responseOf(evs, "plain")
			if want := map[string]int{mask.KindEmail: 2, mask.KindPhoneKR: 1, mask.KindRRNKR: 1, mask.KindCard: 1}; !maps.Equal(lookup.PII, want) ||
				lookup.Attributes[attrRedacted] != "5" || !slices.Equal(lookup.DataClasses, []string{mcpwire.ClassPII}) {
				t.Errorf("lookup event: pii %v attrs %v classes %v", lookup.PII, lookup.Attributes, lookup.DataClasses)
			}
			if want := map[string]int{mask.KindAPIKey: 1, mask.KindField: 1}; !maps.Equal(creds.PII, want) ||
				creds.Attributes[attrRedacted] != "2" || !slices.Equal(creds.DataClasses, []string{mcpwire.ClassSecret}) {
				t.Errorf("creds event: pii %v attrs %v classes %v", creds.PII, creds.Attributes, creds.DataClasses)
			}
			if plain.PII != nil || plain.Attributes[attrRedacted] != "" {
				t.Errorf("plain event: pii %v attrs %v", plain.PII, plain.Attributes)
			}
			if lookup.Size.Response == 0 {
				t.Errorf("lookup response size 0")
			}
		})
	}
}

// A result that must be redacted but is larger than the gateway scans is withheld by default:
// the client's call fails with CodeResultWithheld and the event says so under rule
// redact:oversize. With OversizePass it is relayed unredacted and the event says it was not
// redacted. If the default failed, a server could smuggle personal data past redaction by
// padding its answer.
func TestRedactOversize(t *testing.T) {
	for _, tr := range transports {
		for _, mode := range []OversizeAction{"", OversizePass} {
			t.Run(tr.name+"/"+string(mode), func(t *testing.T) {
				f := newFixture(t, newPIIUpstream(t, tr.opts), func(c *Config) {
					c.Redact, c.RedactOversize, c.MaxBodyBytes = redactRules, mode, 8<<10
				})
				cs := f.connect(t, clientOpts{token: aliceToken})
				res, err := callTool(t, cs, "big")
				if mode == OversizePass {
					if err != nil || !strings.HasSuffix(res.Content[0].(*sdk.TextContent).Text, "kim@example.com") {
						t.Fatalf("pass: %v %+v", err, res)
					}
					// Over SSE an unread event cannot be told to answer the call (it might be a
					// notification), so it is audited unpaired; a JSON body is the call's answer.
					var e *event.Event
					f.events.waitFor(t, "the unredacted response", func(evs []*event.Event) bool {
						for _, x := range evs {
							if x.MCP.Direction == event.DirResponse && x.Attributes[attrRedactSkipped] != "" {
								e = x
							}
						}
						return e != nil
					})
					if e.Outcome.Result != event.ResultAllowed || e.Size.Response < 20000 || tr.name == "json" && e.MCP.Tool != "big" {
						t.Fatalf("pass event: %+v %+v", e.MCP, e.Outcome)
					}
					return
				}
				if err == nil || rpcCode(t, err) != CodeResultWithheld {
					t.Fatalf("block: got %v %+v, want error %d", err, res, CodeResultWithheld)
				}
				evs := f.events.waitFor(t, "the withheld response", has(event.DirResponse, "tools/call", 1))
				e := responseOf(evs, "big")
				if e == nil || e.Outcome.Result != event.ResultDenied || e.Outcome.PolicyRule != ruleRedactOversize ||
					e.Outcome.ErrorCode != CodeResultWithheld {
					t.Fatalf("block event: %+v\n%s", e, dump(evs))
				}
				// The session still works after the withheld answer.
				if res, err := callTool(t, cs, "lookup"); err != nil || res.IsError {
					t.Fatalf("next call: %v %+v", err, res)
				}
			})
		}
	}
}

// Redaction events reach real Kafka with their counts: what a SOC analyst queries.
func TestRedactEventOnKafka(t *testing.T) {
	brokers, names := testenv.Kafka(t), testenv.Topics(t)
	cl := kafkaClient(t, brokers)
	ensureRaw(t, cl, names)
	f := newFixture(t, newPIIUpstream(t, nil), func(c *Config) { c.Redact = redactRules })
	f.gw.pub = NewKafkaPublisher(cl, names.Raw, nil, nil)
	cs := f.connect(t, clientOpts{token: aliceToken})
	if _, err := callTool(t, cs, "lookup"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	consumer := kafkaClient(t, brokers, kgo.ConsumeTopics(names.Raw), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for {
		fetches := consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("no redacted tools/call response on the raw topic")
		}
		var found *event.Event
		fetches.EachRecord(func(r *kgo.Record) {
			var e event.Event
			if err := event.Decode(r.Value, &e); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if e.MCP != nil && e.MCP.Direction == event.DirResponse && e.MCP.Tool == "lookup" {
				found = &e
			}
		})
		if found != nil {
			if found.PII[mask.KindEmail] != 2 || found.PII[mask.KindCard] != 1 || found.Attributes[attrRedacted] != "5" {
				t.Fatalf("event from Kafka: pii %v attrs %v", found.PII, found.Attributes)
			}
			return
		}
	}
}

func TestRedactConfig(t *testing.T) {
	for _, bad := range []Config{
		{Redact: []RedactRule{{Tool: "x", Redact: []string{"pii", "nonsense"}}}},
		{Redact: []RedactRule{{Redact: []string{"pii"}}}},
		{Redact: []RedactRule{{Tool: "x"}}},
		{RedactOversize: "maybe"},
	} {
		bad.Upstream, bad.ServerName = "http://127.0.0.1:1/mcp", "s"
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
	r, err := ParseRedactRule("crm/db_query=pii,card")
	if err != nil || r.Server != "crm" || r.Tool != "db_query" || !slices.Equal(r.Redact, []string{"pii", "card"}) {
		t.Fatalf("ParseRedactRule: %+v %v", r, err)
	}
	if _, err := ParseRedactRule("x=unknown"); err == nil {
		t.Fatal("unknown class accepted")
	}
}
