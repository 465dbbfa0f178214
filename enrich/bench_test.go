package enrich

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mcpwatch/mcpwatch/event"
)

// benchCatalog has n rules in the shapes real catalogs use: bucket prefixes, path globs,
// server-qualified and bare tool names, prompts and servers.
func benchCatalog(b *testing.B, n int) *Catalog {
	var s strings.Builder
	s.WriteString("version: 1\ndefault_sensitivity: 0.1\nclass_sensitivity: {pii: 0.6}\nrules:\n")
	for i := range n {
		fmt.Fprintf(&s, "  - id: r%d\n    classes: [c%d]\n    sensitivity: 0.%d\n", i, i%7, i%10)
		switch i % 5 {
		case 0:
			fmt.Fprintf(&s, "    resources: [\"s3://bucket-%d/**\"]\n", i)
		case 1:
			fmt.Fprintf(&s, "    resources: [\"file:///srv/app-%d/*/config.*\"]\n", i)
		case 2:
			fmt.Fprintf(&s, "    tools: [\"server-%d/tool_%d\"]\n", i%40, i)
		case 3:
			fmt.Fprintf(&s, "    tools: [\"export_%d_*\"]\n    prompts: [\"p%d\"]\n", i, i)
		case 4:
			fmt.Fprintf(&s, "    servers: [\"server-%d\"]\n", i)
		}
	}
	c, err := ParseCatalog([]byte(s.String()), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func benchDirectory(b *testing.B, n int) *Directory {
	var s strings.Builder
	s.WriteString("subject,client_id,roles,department,peer_group,manager,risk_tier\n")
	for i := range n {
		fmt.Fprintf(&s, "user%d@example.com,,analyst;role%d,dept-%d,peer-%d,mgr%d,tier%d\n", i, i%20, i%50, i%300, i%1000, i%3)
	}
	d, err := ParseDirectory([]byte(s.String()), "bench.csv")
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkEnrich is the normalizer's per-event cost at 500 catalog rules and 50,000 directory
// entries, for a mix of events: resource reads, tool calls, unknown principals.
func BenchmarkEnrich(b *testing.B) {
	en := New(benchCatalog(b, 500), benchDirectory(b, 50_000))
	templates := []event.Event{
		{Tenant: "acme", Principal: event.Principal{Subject: "user123@example.com", Roles: []string{"analyst"}},
			Target: event.Target{Server: "files"}, MCP: &event.MCP{ResourceURI: "s3://bucket-250/2024/q1.csv"}},
		{Tenant: "acme", Principal: event.Principal{Subject: "user49999@example.com"},
			Target: event.Target{Server: "server-2"}, MCP: &event.MCP{Tool: "tool_42"}},
		{Tenant: "acme", Principal: event.Principal{Subject: "stranger"},
			Target: event.Target{Server: "server-9"}, MCP: &event.MCP{Tool: "export_3_all"}},
		{Tenant: "acme", Principal: event.Principal{Subject: "user7@example.com"},
			Target: event.Target{Server: "files"}, MCP: &event.MCP{ResourceURI: "file:///srv/app-6/prod/config.yaml"}},
	}
	events := make([]event.Event, len(templates))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i%len(templates) == 0 {
			copy(events, templates) // fresh events, as the stage decodes them
			for j := range events {
				events[j].Attributes, events[j].Normalized, events[j].DataClasses = nil, nil, nil
			}
		}
		en.Enrich(&events[i%len(events)])
	}
}

// BenchmarkLoadDirectoryCSV is the cost of a (re)load of a 50,000-entry CSV export.
func BenchmarkLoadDirectoryCSV(b *testing.B) {
	for b.Loop() {
		benchDirectory(b, 50_000)
	}
}

func BenchmarkLoadCatalog(b *testing.B) {
	for b.Loop() {
		benchCatalog(b, 500)
	}
}

func BenchmarkCatalogApply(b *testing.B) {
	c := benchCatalog(b, 500)
	b.ReportAllocs()
	for b.Loop() {
		e := event.Event{Tenant: "acme", Target: event.Target{Server: "files"}, MCP: &event.MCP{ResourceURI: "s3://bucket-250/2024/q1.csv"}}
		c.Apply(&e)
	}
}

func BenchmarkDirectoryApply(b *testing.B) {
	d := benchDirectory(b, 50_000)
	b.ReportAllocs()
	for b.Loop() {
		e := event.Event{Tenant: "acme", Principal: event.Principal{Subject: "user123@example.com", Roles: []string{"analyst"}}}
		d.Apply(&e)
	}
}
