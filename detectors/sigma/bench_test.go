package sigma

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/bench/detectload"
)

// genRules writes n rules in the shapes a SOC writes: tool and server lists, argument contains,
// client allow-lists with not, CIDRs, numeric thresholds and keyword lists. Few of them give the
// prefilter a key (mix "unindexed" of BenchmarkMatch): a sixth need "mcp.method: tools/call",
// which every tool call has, a sixth "outcome.result: denied"; the others none (a wildcard among
// the tool names, argument contains, numbers and lists, keywords and re).
func genRules(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "title: Generated %d\nid: 00000000-0000-4000-8000-%012d\nlevel: medium\nlogsource: {product: mcpwatch, category: mcp_call}\ndetection:\n", i, i)
		switch i % 6 {
		case 0:
			fmt.Fprintf(&b, "  sel:\n    mcp.tool: [pay_%d, transfer_%d, 'wire_*_%d']\n    principal.roles: [intern, contractor]\n  condition: sel\n", i, i, i)
		case 1:
			fmt.Fprintf(&b, "  sel:\n    mcp.arguments_masked|contains: ['secret_%d', 'AKIA%d', 'password=%d']\n  condition: sel\n", i, i, i)
		case 2:
			fmt.Fprintf(&b, "  sel:\n    mcp.method: tools/call\n    target.server|startswith: 'srv-%d'\n  filter:\n    mcp.client_name: [claude-desktop, cursor]\n  condition: sel and not filter\n", i)
		case 3:
			fmt.Fprintf(&b, "  sel:\n    network.src_ip|cidr: ['203.0.%d.0/24', '198.51.100.0/24']\n    outcome.result: denied\n  condition: sel\n", i%256)
		case 4:
			fmt.Fprintf(&b, "  sel:\n    size.request|gt: %d\n    data_classes: [finance, phi]\n  condition: sel\n", 100000+i)
		case 5:
			fmt.Fprintf(&b, "  kw:\n    - 'ignore previous instructions %d'\n    - 'exfil_%d'\n  sel_a:\n    mcp.tool|re: '^shell_%d$'\n  condition: 1 of them\n", i, i, i)
		}
		b.WriteString("---\n")
	}
	return b.String()
}

// genEvents makes realistic MCP tool calls: a few principals, tools, servers and clients, masked
// JSON arguments of a few hundred bytes.
func genEvents(n int) []*event.Event {
	r := rand.New(rand.NewPCG(1, 2))
	tools := []string{"db_query", "read_file", "search_docs", "send_email", "create_ticket", "pay_7"}
	servers := []string{"sales-db", "files", "wiki", "mail", "jira", "payments"}
	clients := []string{"claude-desktop", "cursor", "Custom-Agent"}
	out := make([]*event.Event, n)
	for i := range out {
		e := baseEvent()
		e.MCP.Tool = tools[r.IntN(len(tools))]
		e.Target.Server = servers[r.IntN(len(servers))]
		e.MCP.ClientName = clients[r.IntN(len(clients))]
		e.Principal.Subject = fmt.Sprintf("user%d@example.com", r.IntN(50))
		e.Network.SrcIP = fmt.Sprintf("10.%d.%d.%d", r.IntN(256), r.IntN(256), r.IntN(256))
		e.MCP.ArgumentsMasked = fmt.Sprintf(`{"query":"SELECT name, total FROM Orders WHERE region = 'EU' AND customer = '[EMAIL]' LIMIT %d","options":{"timeout":30,"format":"json"}}`, r.IntN(1000))
		e.Size.Request = 200 + r.IntN(2000)
		if r.IntN(20) == 0 { // now and then an intern calls a payment tool
			e.Principal.Roles = []string{"intern"}
			e.MCP.Tool = "pay_6"
		}
		if r.IntN(10) == 0 {
			e.Outcome.Result = event.ResultDenied
		} else {
			e.Outcome.Result = event.ResultAllowed
		}
		out[i] = e
	}
	return out
}

// benchTools are tool names rules name: the ten that internal/bench/detectload calls, and 190
// that it never calls (the rare, dangerous tools detection rules are written for).
var benchTools = func() []string {
	out := []string{"db_query", "file_read", "list_reports", "get_customer", "search", "send_email",
		"create_issue", "search_issues", "get_file", "post_message"}
	for i := len(out); i < 200; i++ {
		out = append(out, fmt.Sprintf("tool_%d", i))
	}
	return out
}()

// benchServers are server names rules name: detectload's six and 44 others.
var benchServers = func() []string {
	out := []string{"acme-data", "acme-crm", "acme-mail", "jira", "github", "slack"}
	for i := len(out); i < 50; i++ {
		out = append(out, fmt.Sprintf("server-%d", i))
	}
	return out
}()

// genMixedRules writes n rules in the mix a SOC's rule set has when most rules name what they
// watch, as SigmaHQ's name an EventID or an Image (mix "indexed" of BenchmarkMatch). Per 20 rules:
//
//   - 9 name one or two tools (mcp.tool: [a, b]) with a role, argument or size condition;
//   - 2 name a server and tools/call, with "and not" a client allow-list;
//   - 2 are "1 of sel_*" over two tool selections;
//   - 1 names resources/read with a resource_uri contains; 1 names direction response with a
//     response size; 1 names outcome denied with a policy rule prefix;
//   - 4 have no index key: 2 argument contains, 1 keyword list, 1 tool startswith or re.
//
// Tools are drawn from [benchTools] and servers from [benchServers], so about 5% of the tool
// rules name a tool the traffic calls.
func genMixedRules(n int) string {
	var b strings.Builder
	tool := func(i, k int) string { return benchTools[(i*7+k*13)%len(benchTools)] }
	for i := range n {
		fmt.Fprintf(&b, "title: Mixed %d\nid: 00000000-0000-4000-9000-%012d\nlevel: high\nlogsource: {product: mcpwatch, category: mcp_call}\ndetection:\n", i, i)
		switch k := i % 20; {
		case k < 3:
			fmt.Fprintf(&b, "  sel:\n    mcp.tool: [%s, %s]\n    principal.roles: [intern, contractor]\n  condition: sel\n", tool(i, 0), tool(i, 1))
		case k < 6:
			fmt.Fprintf(&b, "  sel:\n    mcp.tool: %s\n    mcp.arguments_masked|contains: ['drop table', 'secret_%d']\n  condition: sel\n", tool(i, 0), i)
		case k < 9:
			fmt.Fprintf(&b, "  sel:\n    mcp.tool: [%s, %s]\n    size.request|gt: %d\n  condition: sel\n", tool(i, 0), tool(i, 1), 500+i%400)
		case k < 11:
			fmt.Fprintf(&b, "  sel:\n    target.server: %s\n    mcp.method: tools/call\n  filter:\n    mcp.client_name: [claude-desktop, cursor]\n  condition: sel and not filter\n", benchServers[(i*3)%len(benchServers)])
		case k < 13:
			fmt.Fprintf(&b, "  sel_a:\n    mcp.tool: %s\n    outcome.result: allowed\n  sel_b:\n    mcp.tool: %s\n    principal.department: [sales, support]\n  condition: 1 of sel_*\n", tool(i, 0), tool(i, 1))
		case k == 13:
			fmt.Fprintf(&b, "  sel:\n    mcp.method: resources/read\n    mcp.resource_uri|contains: ['/secret_%d/', '.ssh/']\n  condition: sel\n", i)
		case k == 14:
			fmt.Fprintf(&b, "  sel:\n    mcp.direction: response\n    size.response|gt: %d\n  condition: sel\n", 100000+i)
		case k == 15:
			fmt.Fprintf(&b, "  sel:\n    outcome.result: denied\n    outcome.policy_rule|startswith: 'rule-%d'\n  condition: sel\n", i)
		case k < 18:
			fmt.Fprintf(&b, "  sel:\n    mcp.arguments_masked|contains: ['AKIA%d', 'password=%d', 'exfil_%d']\n  condition: sel\n", i, i, i)
		case k == 18:
			fmt.Fprintf(&b, "  kw:\n    - 'ignore previous instructions %d'\n    - 'exfil_%d'\n  condition: kw\n", i, i)
		default:
			fmt.Fprintf(&b, "  sel:\n    - mcp.tool|startswith: 'shell_%d'\n    - mcp.tool|re: '^exec_%d$'\n  condition: sel\n", i, i)
		}
		b.WriteString("---\n")
	}
	return b.String()
}

// loadEvents returns n events as the process stage publishes them (internal/bench/detectload):
// tool calls of ten tools on six servers, their responses, resource reads, tool listings, a few
// denials and errors.
func loadEvents(n int) []*event.Event {
	g := detectload.New(1000, 1, 10*time.Microsecond)
	out := make([]*event.Event, n)
	for i := range out {
		e := g.Next()
		out[i] = &e
	}
	return out
}

// BenchmarkMatch reports the time to match one event against 100 and 1,000 rules, with the
// prefilter and without it (every rule evaluated, as before the prefilter), for two mixes:
// "indexed" ([genMixedRules], 80% of rules with an index key, over detectload's events) and
// "unindexed" ([genRules], the mix of the first version of this benchmark, over [genEvents]).
func BenchmarkMatch(b *testing.B) {
	for _, mix := range []string{"indexed", "unindexed"} {
		for _, n := range []int{100, 1000} {
			for _, pre := range []string{"off", "on"} {
				b.Run(fmt.Sprintf("mix=%s/rules=%d/prefilter=%s", mix, n, pre), func(b *testing.B) {
					src, events := genMixedRules(n), loadEvents(1024)
					if mix == "unindexed" {
						src, events = genRules(n), genEvents(1024)
					}
					rs, errs := Parse("bench.yml", []byte(src))
					if len(errs) > 0 || rs.Len() != n {
						b.Fatalf("loaded %d rules, errors %v", rs.Len(), errs)
					}
					rs.scanAll = pre == "off"
					var dst []Match
					matches := 0
					b.ReportAllocs()
					b.ResetTimer()
					for i := 0; b.Loop(); i++ {
						dst = rs.AppendMatches(dst[:0], events[i%len(events)])
						matches += len(dst)
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
					b.ReportMetric(float64(matches)/float64(b.N), "matches/event")
					b.ReportMetric(float64(rs.indexedRules()), "indexed-rules")
				})
			}
		}
	}
}
