// Package detectload generates the detect stage's input for benchmarks: normalized events as the
// process stage publishes them (enrichment's sensitivity and data classes, the CEF rendering,
// correlation ids), for many principals with realistic variety — several tools, servers,
// resources, clients, networks and peer groups per tenant, calls and their responses, a few
// denials and errors, sensitive reads, PII in some responses, and a minority of busy principals.
//
// It imports only the event model, so both the detect stage's Go benchmarks and the bench
// command can use it.
package detectload

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

// Start is the event time of the first event of a [Generator].
var Start = time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)

type tool struct {
	server, name string
	classes      []string
	sens         float64
	resp         int // typical response bytes
}

var tools = []tool{
	{"acme-data", "db_query", []string{"finance"}, 0.6, 8000},
	{"acme-data", "file_read", []string{"internal"}, 0.3, 12000},
	{"acme-data", "list_reports", nil, 0.1, 2000},
	{"acme-crm", "get_customer", []string{"pii"}, 0.7, 3000},
	{"acme-crm", "search", nil, 0.1, 4000},
	{"acme-mail", "send_email", nil, 0.2, 300},
	{"jira", "create_issue", nil, 0.1, 600},
	{"jira", "search_issues", nil, 0.1, 5000},
	{"github", "get_file", []string{"source"}, 0.4, 9000},
	{"slack", "post_message", nil, 0.2, 200},
}

var groups = []struct{ name, dept string }{
	{"finance-analysts", "finance"}, {"sales-analysts", "sales"}, {"support", "support"},
	{"engineering", "engineering"}, {"batch-jobs", "it"},
}

var clients = []struct{ name, version string }{{"claude-desktop", "1.4.2"}, {"cursor", "0.52"}, {"vscode-copilot", "1.101"}}

// Generator yields events in time order. It is not safe for concurrent use.
type Generator struct {
	rng        *rand.Rand
	principals int
	at         time.Time
	gap        int // mean gap between events, µs
	seq        uint64
	pending    []event.Event // responses due after their request
}

// New returns a generator over principals (at least 1) seeded by seed, with events on average
// gap apart in event time.
func New(principals int, seed uint64, gap time.Duration) *Generator {
	return &Generator{rng: rand.New(rand.NewPCG(seed, 7)), principals: max(principals, 1), at: Start,
		gap: max(int(gap/time.Microsecond), 1)}
}

// principal picks who acts next: a fifth of the events come from the busiest 1%.
func (g *Generator) principal() int {
	if g.rng.IntN(5) == 0 {
		return g.rng.IntN(max(g.principals/100, 1))
	}
	return g.rng.IntN(g.principals)
}

func (g *Generator) id() string {
	g.seq++
	return fmt.Sprintf("0193a5c2-%04x-7%03x-8%03x-%012x", g.seq>>48&0xffff, g.seq>>36&0xfff, g.seq>>24&0xfff, g.seq&0xffffffffffff)
}

// Next returns the next event.
func (g *Generator) Next() event.Event {
	g.at = g.at.Add(time.Duration(g.rng.IntN(2*g.gap)) * time.Microsecond)
	if len(g.pending) > 0 && !g.pending[0].Time.After(g.at) {
		e := g.pending[0]
		g.pending = g.pending[1:]
		return e
	}
	r := g.rng
	p := g.principal()
	grp := groups[p%len(groups)]
	cl := clients[p%len(clients)]
	tl := tools[(p+r.IntN(4))%len(tools)]
	e := event.Event{Schema: event.SchemaVersion, ID: g.id(), Time: g.at, Source: event.SourceMCP, Observer: "gw-1", Tenant: "acme",
		Principal: event.Principal{Subject: fmt.Sprintf("user-%06d@acme.example", p), ClientID: cl.name,
			Issuer: "https://idp.acme.example", Roles: []string{grp.name}, TokenID: fmt.Sprintf("jti-%d-%d", p, g.seq/50_000),
			AuthMethods: []string{"pwd", "mfa"}, Scopes: []string{"mcp:tools"}, Department: grp.dept, PeerGroup: grp.name},
		Correlation: event.Correlation{TraceID: fmt.Sprintf("%032x", g.seq*2654435761), SpanID: fmt.Sprintf("%016x", g.seq),
			SessionID: fmt.Sprintf("sess-%d", p), RequestID: fmt.Sprint(g.seq % 1000)},
		MCP: &event.MCP{Direction: event.DirRequest, Method: "tools/call", Tool: tl.name, ProtocolVersion: "2025-06-18",
			Transport: "streamable-http", ArgumentsMasked: `{"query":"select * from reports where quarter = ?","limit":100}`,
			ClientName: cl.name, ClientVersion: cl.version},
		Target:  event.Target{Server: tl.server, Route: "/mcp/" + tl.server},
		Network: event.Network{SrcIP: fmt.Sprintf("10.%d.%d.%d", p%200, p/200%250, 1+p%250), SrcPort: 40000 + r.IntN(20000), DstIP: "10.0.0.10", DstPort: 8443, UserAgent: cl.name + "/" + cl.version},
		Outcome: event.Outcome{Result: event.ResultAllowed},
		Size:    event.Size{Request: 200 + r.IntN(600)},
		Normalized: &event.Normalized{Time: g.at.Add(3 * time.Millisecond), Signature: "MCP-1001", Name: "tools/call",
			CEF: "CEF:0|mcpwatch|mcpwatch|1|MCP-1001|tools/call|3|suser=" + fmt.Sprintf("user-%06d@acme.example", p), Sensitivity: 0.1},
		Severity: 3,
	}
	if r.IntN(200) == 0 { // now and then from another network
		e.Network.SrcIP = fmt.Sprintf("192.0.2.%d", r.IntN(250))
	}
	switch x := r.IntN(40); {
	case x < 2:
		e.Outcome = event.Outcome{Result: event.ResultDenied, PolicyRule: "deny-export", Reason: "tool not allowed for role"}
		e.Severity = 6
		return e
	case x < 4:
		e.MCP.Method, e.MCP.Tool, e.MCP.ResourceURI = "resources/read", "", fmt.Sprintf("file:///reports/q%d/%d.pdf", r.IntN(4), r.IntN(50))
		e.Normalized.Name = "resources/read"
	case x < 5:
		e.MCP.Method, e.MCP.Tool = "tools/list", ""
		e.MCP.ToolsHash = "sha256:9f2c4e"
	}
	if e.MCP.Tool != "" || e.MCP.ResourceURI != "" {
		e.DataClasses, e.Normalized.Sensitivity = tl.classes, max(tl.sens, 0.1)
	}
	resp := e
	resp.ID, resp.Time = g.id(), g.at.Add(time.Duration(20+r.IntN(400))*time.Millisecond)
	m := *e.MCP
	m.Direction, m.LatencyMS, m.ArgumentsMasked = event.DirResponse, float64(resp.Time.Sub(e.Time).Milliseconds()), ""
	resp.MCP = &m
	n := *e.Normalized
	n.Time = resp.Time.Add(3 * time.Millisecond)
	resp.Normalized = &n
	resp.Size = event.Size{Response: tl.resp/2 + r.IntN(tl.resp)}
	if r.IntN(50) == 0 {
		resp.Outcome = event.Outcome{Result: event.ResultError, ErrorCode: -32603, Reason: "upstream error"}
	}
	if len(tl.classes) > 0 && tl.classes[0] == "pii" {
		resp.PII = map[string]int{"email": 1 + r.IntN(3), "phone": r.IntN(2)}
	}
	g.pending = append(g.pending, resp)
	return e
}

// Fill overwrites evs with the next len(evs) events.
func (g *Generator) Fill(evs []event.Event) {
	for i := range evs {
		evs[i] = g.Next()
	}
}
