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
	"strconv"
	"time"
	"unsafe"

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
	reuse      reused        // FillReused's storage
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

// The reused path: [Generator.FillReused] writes events into the caller's storage, as a Kafka
// consumer's records cost no allocation per field. It yields the events [Generator.Next] does,
// in the same order, encoded byte for byte alike (TestFillReusedMatchesNext); a generator is used
// in one mode only.

// draw is one request and its response as drawn from the generator's random source: what
// building either event needs, without the event's strings and blocks.
type draw struct {
	p, tool    int
	seq        uint64    // the request's sequence number; the response's is seq+1
	at, respAt time.Time // request and response times
	srcIP      int       // -1: the principal's own network; else the last byte of 192.0.2.0/24
	srcPort    int
	reqSize    int
	kind       int // 0–1 denied, 2–3 resources/read, 4 tools/list, else tools/call
	quarter    int // resources/read: file:///reports/q<quarter>/<doc>.pdf
	doc        int
	respSize   int
	failed     bool // the response is an upstream error
	email      int  // PII counts of a CRM response
	phone      int
}

var (
	routes     = each(tools, func(t tool) string { return "/mcp/" + t.server })
	userAgents = each(clients, func(c struct{ name, version string }) string { return c.name + "/" + c.version })
	roles      = func() [][]string {
		out := make([][]string, len(groups))
		for i, g := range groups {
			out[i] = []string{g.name}
		}
		return out
	}()
	amr    = []string{"pwd", "mfa"}
	scopes = []string{"mcp:tools"}
)

func each[T any](xs []T, f func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

const (
	argsMasked = `{"query":"select * from reports where quarter = ?","limit":100}`
	cefPrefix  = "CEF:0|mcpwatch|mcpwatch|1|MCP-1001|tools/call|3|suser="
)

// reused is the storage [Generator.FillReused] writes into.
type reused struct {
	drawn []draw // responses due after their request, oldest first from head
	head  int
	arena []byte // the strings of the events of one FillReused call
	// blocks and PII maps, one per position in the caller's slice
	mcp  []event.MCP
	norm []event.Normalized
	pii  []map[string]int
}

// nextDraw advances the clock and draws the next request (false) or returns a pending response
// (true), consuming the random source as [Generator.Next] does.
func (g *Generator) nextDraw() (draw, bool) {
	g.at = g.at.Add(time.Duration(g.rng.IntN(2*g.gap)) * time.Microsecond)
	rs := &g.reuse
	if rs.head < len(rs.drawn) && !rs.drawn[rs.head].respAt.After(g.at) {
		d := rs.drawn[rs.head]
		rs.head++
		if rs.head == len(rs.drawn) || rs.head > 4096 && rs.head > len(rs.drawn)/2 {
			rs.drawn = rs.drawn[:copy(rs.drawn, rs.drawn[rs.head:])]
			rs.head = 0
		}
		return d, true
	}
	r := g.rng
	g.seq++
	d := draw{p: g.principal(), seq: g.seq, at: g.at, srcIP: -1}
	d.tool = (d.p + r.IntN(4)) % len(tools)
	d.srcPort = 40000 + r.IntN(20000)
	d.reqSize = 200 + r.IntN(600)
	if r.IntN(200) == 0 {
		d.srcIP = r.IntN(250)
	}
	d.kind = r.IntN(40)
	if d.kind < 2 {
		return d, false
	}
	if d.kind < 4 {
		d.quarter, d.doc = r.IntN(4), r.IntN(50)
	}
	tl := tools[d.tool]
	g.seq++
	d.respAt = g.at.Add(time.Duration(20+r.IntN(400)) * time.Millisecond)
	d.respSize = tl.resp/2 + r.IntN(tl.resp)
	d.failed = r.IntN(50) == 0
	if len(tl.classes) > 0 && tl.classes[0] == "pii" {
		d.email, d.phone = 1+r.IntN(3), r.IntN(2)
	}
	rs.drawn = append(rs.drawn, d)
	return d, false
}

// FillReused overwrites evs with the next len(evs) events, reusing their storage and the
// generator's: the blocks they point to and the bytes of their strings belong to the generator
// and are valid until its next FillReused call. Encode them before then.
func (g *Generator) FillReused(evs []event.Event) {
	rs := &g.reuse
	rs.arena = rs.arena[:0]
	if n := len(evs); len(rs.mcp) < n {
		rs.mcp, rs.norm, rs.pii = make([]event.MCP, n), make([]event.Normalized, n), make([]map[string]int, n)
	}
	// The arena must not move while this call's strings point into it: reserve enough (an event
	// needs well under 512 bytes of formatted strings).
	if need := 512 * len(evs); cap(rs.arena) < need {
		rs.arena = make([]byte, 0, need)
	}
	for i := range evs {
		d, resp := g.nextDraw()
		g.build(&evs[i], &d, resp, &rs.mcp[i], &rs.norm[i], &rs.pii[i])
	}
}

// str formats into the arena: f appends to it, and the string returned refers to what it wrote.
func (g *Generator) str(f func(b []byte) []byte) string {
	rs := &g.reuse
	from := len(rs.arena)
	rs.arena = f(rs.arena)
	if len(rs.arena) == from {
		return ""
	}
	return unsafe.String(&rs.arena[from], len(rs.arena)-from)
}

// appendNum appends v in base 10 or 16, left-padded with zeros to width digits.
func appendNum(b []byte, v uint64, base, width int) []byte {
	var tmp [24]byte
	s := strconv.AppendUint(tmp[:0], v, base)
	for range width - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}

func (g *Generator) subject(p int) string {
	return g.str(func(b []byte) []byte {
		return append(appendNum(append(b, "user-"...), uint64(p), 10, 6), "@acme.example"...)
	})
}

func (g *Generator) eventID(seq uint64) string {
	return g.str(func(b []byte) []byte {
		b = appendNum(append(b, "0193a5c2-"...), seq>>48&0xffff, 16, 4)
		b = appendNum(append(b, "-7"...), seq>>36&0xfff, 16, 3)
		b = appendNum(append(b, "-8"...), seq>>24&0xfff, 16, 3)
		return appendNum(append(b, '-'), seq&0xffffffffffff, 16, 12)
	})
}

// build writes the request (resp false) or the response of d into e, as [Generator.Next] makes
// them, with e's blocks and PII map taken from m, n and pii.
func (g *Generator) build(e *event.Event, d *draw, resp bool, m *event.MCP, n *event.Normalized, pii *map[string]int) {
	p, seq, tl := d.p, d.seq, tools[d.tool]
	grp, ci := p%len(groups), p%len(clients)
	sub := g.subject(p)
	*m = event.MCP{Direction: event.DirRequest, Method: "tools/call", Tool: tl.name, ProtocolVersion: "2025-06-18",
		Transport: "streamable-http", ArgumentsMasked: argsMasked, ClientName: clients[ci].name, ClientVersion: clients[ci].version}
	*n = event.Normalized{Time: d.at.Add(3 * time.Millisecond), Signature: "MCP-1001", Name: "tools/call",
		CEF: g.str(func(b []byte) []byte { return append(append(b, cefPrefix...), sub...) }), Sensitivity: 0.1}
	*e = event.Event{Schema: event.SchemaVersion, ID: g.eventID(seq), Time: d.at, Source: event.SourceMCP, Observer: "gw-1", Tenant: "acme",
		Principal: event.Principal{Subject: sub, ClientID: clients[ci].name, Issuer: "https://idp.acme.example", Roles: roles[grp],
			TokenID: g.str(func(b []byte) []byte {
				return strconv.AppendUint(append(strconv.AppendInt(append(b, "jti-"...), int64(p), 10), '-'), seq/50_000, 10)
			}),
			AuthMethods: amr, Scopes: scopes, Department: groups[grp].dept, PeerGroup: groups[grp].name},
		Correlation: event.Correlation{TraceID: g.str(func(b []byte) []byte { return appendNum(b, seq*2654435761, 16, 32) }),
			SpanID:    g.str(func(b []byte) []byte { return appendNum(b, seq, 16, 16) }),
			SessionID: g.str(func(b []byte) []byte { return strconv.AppendInt(append(b, "sess-"...), int64(p), 10) }),
			RequestID: g.str(func(b []byte) []byte { return strconv.AppendUint(b, seq%1000, 10) })},
		MCP:    m,
		Target: event.Target{Server: tl.server, Route: routes[d.tool]},
		Network: event.Network{SrcIP: g.str(func(b []byte) []byte {
			b = strconv.AppendInt(append(b, "10."...), int64(p%200), 10)
			b = strconv.AppendInt(append(b, '.'), int64(p/200%250), 10)
			return strconv.AppendInt(append(b, '.'), int64(1+p%250), 10)
		}), SrcPort: d.srcPort, DstIP: "10.0.0.10", DstPort: 8443, UserAgent: userAgents[ci]},
		Outcome:    event.Outcome{Result: event.ResultAllowed},
		Size:       event.Size{Request: d.reqSize},
		Normalized: n,
		Severity:   3,
	}
	if d.srcIP >= 0 {
		e.Network.SrcIP = g.str(func(b []byte) []byte { return strconv.AppendInt(append(b, "192.0.2."...), int64(d.srcIP), 10) })
	}
	switch {
	case d.kind < 2:
		e.Outcome = event.Outcome{Result: event.ResultDenied, PolicyRule: "deny-export", Reason: "tool not allowed for role"}
		e.Severity = 6
		return
	case d.kind < 4:
		m.Method, m.Tool = "resources/read", ""
		m.ResourceURI = g.str(func(b []byte) []byte {
			b = strconv.AppendInt(append(b, "file:///reports/q"...), int64(d.quarter), 10)
			return append(strconv.AppendInt(append(b, '/'), int64(d.doc), 10), ".pdf"...)
		})
		n.Name = "resources/read"
	case d.kind < 5:
		m.Method, m.Tool = "tools/list", ""
		m.ToolsHash = "sha256:9f2c4e"
	}
	if m.Tool != "" || m.ResourceURI != "" {
		e.DataClasses, n.Sensitivity = tl.classes, max(tl.sens, 0.1)
	}
	if !resp {
		return
	}
	e.ID, e.Time = g.eventID(seq+1), d.respAt
	m.Direction, m.LatencyMS, m.ArgumentsMasked = event.DirResponse, float64(d.respAt.Sub(d.at).Milliseconds()), ""
	n.Time = d.respAt.Add(3 * time.Millisecond)
	e.Size = event.Size{Response: d.respSize}
	if d.failed {
		e.Outcome = event.Outcome{Result: event.ResultError, ErrorCode: -32603, Reason: "upstream error"}
	}
	if len(tl.classes) > 0 && tl.classes[0] == "pii" {
		if *pii == nil {
			*pii = make(map[string]int, 2)
		}
		(*pii)["email"], (*pii)["phone"] = d.email, d.phone
		e.PII = *pii
	}
}
