package normalize

import (
	"errors"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/internal/kafkaio"
)

var now = time.Date(2026, 11, 23, 9, 6, 13, 0, time.UTC)

func toolCall() event.Event {
	return event.Event{
		Schema: event.SchemaVersion,
		ID:     "0193a5c4-7e1f-7cc3-b5d2-6a1f0e9d3b21",
		Time:   time.Date(2026, 11, 23, 9, 6, 12, 345_000_000, time.UTC),
		Source: event.SourceMCP, Observer: "gw-1", Tenant: "acme",
		Principal: event.Principal{Subject: "alice", ClientID: "claude-desktop", Roles: []string{"analyst", "sales"},
			TokenID: "tok_3f2a"},
		Correlation: event.Correlation{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SessionID: "s-1", RequestID: "7"},
		MCP: &event.MCP{Direction: event.DirRequest, Method: "tools/call", Tool: "db_query",
			ProtocolVersion: "2025-11-25", Transport: "streamable-http", LatencyMS: 12.6},
		Target:   event.Target{Server: "sales-db", Sandbox: "sbx-1"},
		Network:  event.Network{SrcIP: "10.1.2.3", SrcPort: 51234},
		Outcome:  event.Outcome{Result: event.ResultAllowed, PolicyRule: "analysts-read-sales"},
		Size:     event.Size{Request: 312, Response: 2048},
		PII:      map[string]int{"email": 2, "phone_kr": 1},
		Severity: 0,
	}
}

// The whole CEF line of a typical tool call, byte for byte: SIEM field mappings depend on these
// exact keys and labels, so any change here must be deliberate.
func TestNormalizeToolCallGolden(t *testing.T) {
	e, err := Normalize(toolCall(), now)
	if err != nil {
		t.Fatal(err)
	}
	want := "CEF:0|mcpwatch|mcpwatch|" + ProductVersion + "|MCP-1001|Tool call|1|" +
		"rt=1795424772345 cat=mcp/request externalId=0193a5c4-7e1f-7cc3-b5d2-6a1f0e9d3b21 dvchost=gw-1 suser=alice " +
		"spriv=analyst,sales requestClientApplication=claude-desktop src=10.1.2.3 spt=51234 destinationServiceName=sales-db app=streamable-http " +
		"act=tools/call outcome=allowed in=312 out=2048 cs1Label=tool cs1=db_query cs2Label=mcpSessionId cs2=s-1 " +
		"cs3Label=tenant cs3=acme cs4Label=policyRule cs4=analysts-read-sales " +
		"cs5Label=traceId cs5=4bf92f3577b34da6a3ce929d0e0e4736 cs6Label=sandbox cs6=sbx-1 " +
		"cn2Label=piiFindings cn2=3 cn3Label=latencyMs cn3=13 flexString1Label=tokenId flexString1=tok_3f2a"
	if e.Normalized.CEF != want {
		t.Fatalf("CEF\n got %s\nwant %s", e.Normalized.CEF, want)
	}
	if e.Normalized.Signature != "MCP-1001" || e.Normalized.Name != "Tool call" || !e.Normalized.Time.Equal(now) || e.Severity != 1 {
		t.Fatalf("normalized %+v severity %d", e.Normalized, e.Severity)
	}
	if _, err := parseCEF(e.Normalized.CEF); err != nil {
		t.Fatalf("golden line does not parse: %v", err)
	}
}

// Each class of event must get its documented signature and at least its severity floor; a
// SIEM rule on "MCP-4001" that silently stopped matching denials would hide attacks.
func TestNormalizeSignatures(t *testing.T) {
	mcp := func(method string, mod ...func(*event.Event)) event.Event {
		e := toolCall()
		e.MCP = &event.MCP{Direction: event.DirRequest, Method: method}
		for _, m := range mod {
			m(&e)
		}
		return e
	}
	denied := func(e *event.Event) {
		e.Outcome = event.Outcome{Result: event.ResultDenied, PolicyRule: "default-deny"}
	}
	kernel := func(syscall string) event.Event {
		e := toolCall()
		e.Source, e.MCP = event.SourceKernel, nil
		e.Outcome = event.Outcome{}
		e.Process = &event.Process{PID: 4242, UID: 0, Comm: "sh", Exe: "/bin/sh", Syscall: syscall}
		return e
	}
	span := toolCall()
	span.Source, span.MCP, span.Span = event.SourceOTel, nil, &event.Span{Name: "GET /"}
	otelMCP := mcp("resources/read")
	otelMCP.Source = event.SourceOTel
	mcpNoPart := toolCall()
	mcpNoPart.MCP = nil
	odd := toolCall()
	odd.Source = "carrier-pigeon"
	highSource := mcp("tools/call")
	highSource.Severity = 8
	tooHigh := mcp("tools/call")
	tooHigh.Severity = 42

	cases := []struct {
		name     string
		in       event.Event
		sig      string
		severity int
	}{
		{"initialize", mcp("initialize"), "MCP-1000", 1},
		{"tools/call", mcp("tools/call"), "MCP-1001", 1},
		{"resources/read", mcp("resources/read"), "MCP-1002", 1},
		{"prompts/get", mcp("prompts/get"), "MCP-1003", 1},
		{"tools/list", mcp("tools/list"), "MCP-1004", 0},
		{"resources/templates/list", mcp("resources/templates/list"), "MCP-1005", 0},
		{"prompts/list", mcp("prompts/list"), "MCP-1006", 0},
		{"resources/subscribe", mcp("resources/subscribe"), "MCP-1007", 1},
		{"completion", mcp("completion/complete"), "MCP-1008", 0},
		{"sampling", mcp("sampling/createMessage"), "MCP-1010", 2},
		{"elicitation", mcp("elicitation/create"), "MCP-1011", 2},
		{"ping", mcp("ping"), "MCP-1020", 0},
		{"setLevel", mcp("logging/setLevel"), "MCP-1021", 0},
		{"notification", mcp("notifications/tools/list_changed"), "MCP-1090", 0},
		{"unknown method", mcp("x-vendor/thing"), "MCP-1099", 1},
		{"mcp source without mcp part", mcpNoPart, "MCP-1099", 1},
		{"denied", mcp("tools/call", denied), "MCP-4001", 5},
		{"denied 401", mcp("initialize", denied, func(e *event.Event) { e.Outcome.HTTPStatus = 401 }), "MCP-4002", 6},
		{"error", mcp("tools/call", func(e *event.Event) { e.Outcome = event.Outcome{Result: event.ResultError, ErrorCode: -32603} }), "MCP-5001", 3},
		{"otel mcp span", otelMCP, "MCP-1002", 1},
		{"otel span", span, "MCP-2001", 0},
		{"execve", kernel("execve"), "MCP-3001", 3},
		{"connect", kernel("connect"), "MCP-3002", 3},
		{"openat", kernel("openat"), "MCP-3003", 2},
		{"other kernel", kernel("ptrace"), "MCP-3099", 2},
		{"unknown source", odd, "MCP-9999", 1},
		{"source judged higher", highSource, "MCP-1001", 8},
		{"severity clamped", tooHigh, "MCP-1001", 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := Normalize(c.in, now)
			if err != nil {
				t.Fatal(err)
			}
			if e.Normalized.Signature != c.sig || e.Severity != c.severity {
				t.Fatalf("got %s severity %d, want %s severity %d", e.Normalized.Signature, e.Severity, c.sig, c.severity)
			}
			p, err := parseCEF(e.Normalized.CEF)
			if err != nil {
				t.Fatalf("CEF %q: %v", e.Normalized.CEF, err)
			}
			if p.Header[4] != c.sig || p.Header[5] != e.Normalized.Name || p.Header[6] != strconv.Itoa(c.severity) {
				t.Fatalf("CEF header %q disagrees with the event", p.Header)
			}
		})
	}
}

// Kernel events carry who ran what; uid 0 (root) must be written, not omitted as "zero".
func TestNormalizeKernelFields(t *testing.T) {
	e := toolCall()
	e.Source, e.MCP, e.Outcome = event.SourceKernel, nil, event.Outcome{}
	e.Process = &event.Process{PID: 4242, UID: 0, Comm: "curl", Exe: "/usr/bin/curl", Syscall: "execve"}
	n, err := Normalize(e, now)
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseCEF(n.Normalized.CEF)
	if err != nil {
		t.Fatal(err)
	}
	if p.Ext["suid"] != "0" || p.Ext["spid"] != "4242" || p.Ext["sproc"] != "curl" || p.Ext["filePath"] != "/usr/bin/curl" ||
		p.Ext["cat"] != "kernel" || p.Ext["act"] != "" {
		t.Fatalf("kernel extensions %v", p.Ext)
	}
}

// Hostile values from an MCP client reach the CEF line; they must come out as the same field
// values and never as extra fields.
func TestNormalizeHostileValues(t *testing.T) {
	e := toolCall()
	e.Principal.Subject = "eve suser=root"
	e.MCP.Tool = "db_query|x\ncs3=othertenant"
	e.MCP.ResourceURI = `file:///etc/passwd\=x`
	e.Outcome.Reason = "denied =\r\n\\"
	n, err := Normalize(e, now)
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseCEF(n.Normalized.CEF)
	if err != nil {
		t.Fatal(err)
	}
	if p.Ext["suser"] != e.Principal.Subject || p.Ext["cs1"] != e.MCP.Tool || p.Ext["request"] != e.MCP.ResourceURI ||
		p.Ext["reason"] != e.Outcome.Reason || p.Ext["cs3"] != "acme" {
		t.Fatalf("hostile values changed or injected: %v", p.Ext)
	}
}

// Events that cannot be normalized must be refused as permanent, so the stage dead-letters them
// instead of retrying forever or publishing garbage downstream.
func TestNormalizeRejects(t *testing.T) {
	cases := map[string]func(*event.Event){
		"no tenant":       func(e *event.Event) { e.Tenant = "" },
		"blank tenant":    func(e *event.Event) { e.Tenant = "  " },
		"no id":           func(e *event.Event) { e.ID = "" },
		"no source":       func(e *event.Event) { e.Source = "" },
		"no time":         func(e *event.Event) { e.Time = time.Time{} },
		"before 1970":     func(e *event.Event) { e.Time = time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC) },
		"after 2106":      func(e *event.Event) { e.Time = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC) },
		"negative size":   func(e *event.Event) { e.Size.Response = -1 },
		"port too big":    func(e *event.Event) { e.Network.SrcPort = 70000 },
		"negative port":   func(e *event.Event) { e.Network.DstPort = -1 },
		"status":          func(e *event.Event) { e.Outcome.HTTPStatus = 1000 },
		"negative pii":    func(e *event.Event) { e.PII = map[string]int{"email": -1} },
		"latency":         func(e *event.Event) { e.MCP.LatencyMS = -5 },
		"negative pid":    func(e *event.Event) { e.Process = &event.Process{PID: -1} },
		"error code wide": func(e *event.Event) { e.Outcome.ErrorCode = 1 << 40 },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			e := toolCall()
			mod(&e)
			_, err := Normalize(e, now)
			if !errors.Is(err, event.ErrMalformed) || !errors.Is(err, ErrInvalid) || !kafkaio.IsPermanent(err) {
				t.Fatalf("got %v, want a permanent ErrMalformed", err)
			}
		})
	}
}

// Normalize must not write through to maps and slices shared with the caller's event.
func TestNormalizeDoesNotMutateInput(t *testing.T) {
	in := toolCall()
	in.Normalized = &event.Normalized{Sensitivity: 0.7, Signature: "OLD", OCSF: []byte(`{"old":1}`)}
	orig := *in.Normalized
	orig.OCSF = slices.Clone(orig.OCSF)
	out, err := Normalize(in, now)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*in.Normalized, orig) || in.Severity != 0 {
		t.Fatalf("input changed: %+v severity %d", in.Normalized, in.Severity)
	}
	if out.Normalized.Sensitivity != 0.7 || out.Normalized.Signature != "MCP-1001" {
		t.Fatalf("re-normalization lost enrichment or kept a stale signature: %+v", out.Normalized)
	}
}

// BenchmarkNormalize is the per-core ceiling of the normalizer stage, without Kafka.
func BenchmarkNormalize(b *testing.B) {
	e := toolCall()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Normalize(e, now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
