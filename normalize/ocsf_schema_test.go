package normalize

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/mcpwatch/mcpwatch/event"
)

type schemaResult struct {
	OK     bool     `json:"ok"`
	Errors []string `json:"errors"`
}

// TestOCSFSchema validates every OCSF object mcpwatch writes (the golden events, the finding,
// and events full of hostile or edge-case values) against the JSON Schema compiled from the
// official OCSF schema export of [OCSFVersion]: required attributes, types, enum ids, and no
// attribute the class (with its declared profiles) does not define. A deliberately broken object
// must be refused, or the check proves nothing. If this fails, OCSF consumers (data lakes, SIEM
// connectors) reject or misfile mcpwatch's events.
func TestOCSFSchema(t *testing.T) {
	var objs []any
	var names []string
	add := func(name string, raw []byte) {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("%s: OCSF is not JSON: %v", name, err)
		}
		objs, names = append(objs, v), append(names, name)
	}
	for name, in := range goldenEvents() {
		e, err := Normalize(in, now)
		if err != nil {
			t.Fatal(err)
		}
		add(name, e.Normalized.OCSF)
	}
	for i, e := range edgeEvents() {
		n, err := Normalize(e, now)
		if err != nil {
			t.Fatalf("edge event %d: %v", i, err)
		}
		add("edge "+string(rune('a'+i)), n.Normalized.OCSF)
	}
	f := goldenFinding()
	raw, err := FindingOCSF(f)
	if err != nil {
		t.Fatal(err)
	}
	add("finding", raw)
	bare := event.Finding{ID: "f-1", Time: now, Tenant: "acme", Detector: "novel", Score: math.NaN(),
		Features: map[string]float64{"inf": math.Inf(1), "ok": 1}}
	if raw, err = FindingOCSF(bare); err != nil {
		t.Fatal(err)
	}
	add("finding without principal, NaN score", raw)

	// The control: an API Activity without its required api.operation, an unknown severity_id
	// and an attribute OCSF does not define.
	var broken map[string]any
	if err := json.Unmarshal(mustOCSF(t, toolCall()), &broken); err != nil {
		t.Fatal(err)
	}
	delete(broken["api"].(map[string]any), "operation")
	broken["severity_id"], broken["mcp_tool"] = 42, "x"
	objs, names = append(objs, broken), append(names, "control")

	res := runPeer[schemaResult](t, "ocsf_validate.py", []string{OCSFVersion}, objs)
	for i, r := range res[:len(res)-1] {
		if !r.OK {
			t.Errorf("%s: not valid OCSF %s:\n  %s", names[i], OCSFVersion, strings.Join(r.Errors, "\n  "))
		}
	}
	ctl := res[len(res)-1]
	if ctl.OK || len(ctl.Errors) < 3 {
		t.Fatalf("the schema check accepted a broken object (errors: %v)", ctl.Errors)
	}
}

func mustOCSF(t *testing.T, e event.Event) []byte {
	t.Helper()
	n, err := Normalize(e, now)
	if err != nil {
		t.Fatal(err)
	}
	return n.Normalized.OCSF
}

// edgeEvents are events at the edges of what sources send: nearly empty ones, hostile strings,
// non-finite floats where the model allows them.
func edgeEvents() []event.Event {
	hostileMCP := toolCall()
	v := "mallory\" | suser=root\n\x00 \xff 데이터"
	hostileMCP.Principal = event.Principal{Subject: v, ClientID: v, TokenID: v, Roles: []string{v}}
	hostileMCP.MCP.Method, hostileMCP.MCP.Tool, hostileMCP.MCP.ResourceURI = v, v, v
	hostileMCP.Correlation.RequestID, hostileMCP.Target.Server = v, v
	hostileMCP.Attributes = map[string]string{v: v}
	hostileMCP.Normalized = &event.Normalized{Sensitivity: math.NaN()}

	bareMCP := event.Event{ID: "b", Time: now, Source: event.SourceMCP, Tenant: "t"}
	bareAuth := event.Event{ID: "c", Time: now, Source: event.SourceMCP, Tenant: "t",
		Outcome: event.Outcome{Result: event.ResultDenied, HTTPStatus: 401}}
	bareKernel := event.Event{ID: "d", Time: now, Source: event.SourceKernel, Tenant: "t"}
	bareConnect := event.Event{ID: "e", Time: now, Source: event.SourceKernel, Tenant: "t",
		Process: &event.Process{Syscall: "connect"}}
	bareOpen := event.Event{ID: "f", Time: now, Source: event.SourceKernel, Tenant: "t",
		Process: &event.Process{Syscall: "openat"}}
	nanSpan := event.Event{ID: "g", Time: now, Source: event.SourceOTel, Tenant: "t",
		Span: &event.Span{Name: "x", DurationMS: math.Inf(1)}}
	bareOther := event.Event{ID: "h", Time: now, Source: "other", Tenant: "t"}
	return []event.Event{hostileMCP, bareMCP, bareAuth, bareKernel, bareConnect, bareOpen, nanSpan, bareOther}
}
