package normalize

import (
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

// The source document's example line, reproduced exactly from an equivalent event.
func TestLineSourceExample(t *testing.T) {
	e := event.Event{
		ID: "x", Time: time.Date(2025, 1, 22, 9, 6, 12, 900_000_000, time.UTC), Source: event.SourceMCP, Tenant: "acme",
		Principal: event.Principal{Subject: "alice"},
		MCP:       &event.MCP{Direction: event.DirRequest, Method: "tools/call", Tool: "db_query", ResourceURI: "sales_data"},
		Outcome:   event.Outcome{Result: event.ResultAllowed},
	}
	n, err := Normalize(e, now)
	if err != nil {
		t.Fatal(err)
	}
	const want = "2025-01-22T09:06:12 | MCP-1001 | user=alice | tool=db_query | resource=sales_data | risk=low"
	if got := Line(n); got != want {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
}

func TestLineFields(t *testing.T) {
	kst := time.FixedZone("KST", 9*3600)
	denied := event.Event{
		Time: time.Date(2025, 1, 22, 18, 6, 12, 0, kst), Source: event.SourceMCP,
		Principal: event.Principal{ClientID: "agent-7"},
		MCP:       &event.MCP{Method: "prompts/get", Prompt: "summarize"},
		Target:    event.Target{Server: "docs"},
		Outcome:   event.Outcome{Result: event.ResultDenied},
		Severity:  7,
	}
	hostile := denied
	hostile.Principal = event.Principal{Subject: "mallory | risk=low\nforged"}
	hostile.Severity = 9
	kernel := event.Event{Time: time.Unix(0, 0), Source: event.SourceKernel, Process: &event.Process{Syscall: "execve"}}
	cases := []struct {
		name string
		in   event.Event
		want string
	}{
		// The time is written in UTC whatever zone the source used; result only when not allowed;
		// the signature is classified when the event was never normalized.
		{"denied by client id", denied, "2025-01-22T09:06:12 | MCP-4001 | user=agent-7 | prompt=summarize | server=docs | result=denied | risk=high"},
		// A subject cannot forge separators or a second line.
		{"hostile", hostile, `2025-01-22T09:06:12 | MCP-4001 | user=mallory \| risk=low\nforged | prompt=summarize | server=docs | result=denied | risk=very-high`},
		{"kernel", kernel, "1970-01-01T00:00:00 | MCP-3001 | risk=low"},
	}
	for _, c := range cases {
		got := Line(c.in)
		if got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
		if strings.ContainsAny(got, "\r\n") {
			t.Errorf("%s: line break in %q", c.name, got)
		}
	}
}

func TestRisk(t *testing.T) {
	want := []string{"low", "low", "low", "low", "medium", "medium", "medium", "high", "high", "very-high", "very-high"}
	for s, w := range want {
		if got := Risk(s); got != w {
			t.Errorf("Risk(%d) = %s, want %s", s, got, w)
		}
	}
	if Risk(-3) != "low" || Risk(99) != "very-high" {
		t.Error("out-of-range severities not clamped")
	}
}
