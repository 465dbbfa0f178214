package sigma

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/mcpwatch/mcpwatch/event"
)

// genRules writes n rules in the shapes a SOC writes: tool and server lists, argument contains,
// client allow-lists with not, CIDRs, numeric thresholds and keyword lists.
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

// BenchmarkMatch reports the time to match one event against 100 and 1,000 rules.
func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			rs, errs := Parse("bench.yml", []byte(genRules(n)))
			if len(errs) > 0 || rs.Len() != n {
				b.Fatalf("loaded %d rules, errors %v", rs.Len(), errs)
			}
			events := genEvents(1024)
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
		})
	}
}
